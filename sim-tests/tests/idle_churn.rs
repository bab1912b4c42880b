//! A config push that shortens the stream idle timeout, by hand. A slow-loris server sends each
//! response head at once and then its body in pieces up to 120 ms apart. Halfway through, sidecar
//! 0 gets a push setting `stream_idle_timeout` to 40 ms. Requests that started before the push
//! keep their snapshot's 5 minutes and finish whole; requests that start after it are cut for
//! idleness (SI) at their first long gap. An engine that reads the running config's timeout
//! for requests in flight (the `idle_timeout_from_running_config` mutant) cuts the old ones too,
//! which the simulator reports as a `ConfigSwap` violation.

use sim_tests::sim::report::Outcome;
use sim_tests::sim::scenario::*;
use sim_tests::sim::{run, Invariant, RunOptions};
use trellis_engine::mutants::Mutations;
use trellis_engine::{Engine, Instant};

const PUSH_MS: u64 = 600;

fn scenario() -> Scenario {
    let endpoint = EndpointSpec {
        latency_base_ms: 5,
        trickle_percent: 100,
        trickle_gap_ms: 120,
        ..EndpointSpec::healthy()
    };
    let mut scn = Scenario {
        seed: 3,
        services: vec![Service {
            versions: vec![Version {
                endpoints: vec![endpoint; 2],
                lb: 0,
                outlier: None,
                pool: None,
                upstream_idle_ms: None,
                max_retries: None,
                least_request_choices: None,
                locality: None,
            }],
            rules: vec![Rule {
                user: None,
                dests: vec![(0, 100)],
                timeout_ms: None,
                retries: None,
                fault: None,
                vocab: None,
            }],
            calls: Vec::new(),
        }],
        clients: vec![ClientSpec {
            load: Load::Open { rate: 40 },
            targets: vec![0],
            users: Vec::new(),
            post_percent: 0,
            max_body: 0,
            max_response: 4000,
            deadline_ms: 5_000,
        }],
        net: NetSpec {
            latency_us: 200,
            jitter_us: 0,
            bandwidth_bpms: 100_000,
            loss_percent: 0,
            rto_ms: 50,
            reset_permille: 0,
            client_read_bpms: 0,
            buffer_bytes: 0,
        },
        faults: Vec::new(),
        duration_ms: 1_200,
        config_pushes: vec![ConfigPush {
            at_ms: PUSH_MS,
            deliveries: vec![(0, 0)],
            service: 0,
            rules: vec![Rule {
                user: None,
                dests: vec![(0, 100)],
                timeout_ms: None,
                retries: None,
                fault: None,
                vocab: None,
            }],
            stream_idle_ms: Some(40),
        }],
        requests: None,
        framing: None,
        messages: None,
        connections: None,
        interim: None,
        http: None,
        passthrough: false,
        inbound_listener: false,
        security: None,
        mirror: None,
        plane: None,
        tcp: None,
        gateway: None,
    };
    assert!(scn.normalize());
    scn
}

#[test]
fn requests_in_flight_keep_their_snapshots_idle_timeout() {
    let opts = RunOptions {
        records: true,
        ..RunOptions::default()
    };
    let report = run(&scenario(), opts);
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    let push = Instant::from_millis(PUSH_MS);
    let (before, after): (Vec<_>, Vec<_>) = report.records.iter().partition(|r| r.start < push);
    let whole = |o: &Option<Outcome>| matches!(o, Some(Outcome::Response(200)));
    // Before the push: every response arrives whole, however long its gaps, including those
    // still streaming when the push lands.
    let in_flight = before.iter().filter(|r| r.end.is_some_and(|e| e > push));
    assert!(
        in_flight.count() >= 1,
        "no request was streaming at the push"
    );
    assert!(before.len() >= 15, "{}", before.len());
    assert!(before.iter().all(|r| whole(&r.outcome)), "{before:#?}");
    // After it: the 40 ms timeout cuts most of them (a response whose gaps all stay under
    // 40 ms survives).
    let cut = after.iter().filter(|r| !whole(&r.outcome)).count();
    assert!(after.len() >= 15, "{}", after.len());
    assert!(cut * 2 >= after.len(), "{cut} of {} cut", after.len());
}

fn running_config_idle(_: usize, e: &mut Engine) {
    e.set_mutations(Mutations {
        idle_timeout_from_running_config: true,
        ..Mutations::default()
    });
}

#[test]
fn an_engine_applying_the_new_idle_timeout_to_requests_in_flight_is_caught() {
    let opts = RunOptions {
        engine_hook: Some(running_config_idle),
        ..RunOptions::default()
    };
    let report = run(&scenario(), opts);
    assert!(
        (report.violations.iter()).any(|v| v.invariant == Invariant::ConfigSwap),
        "{:?}",
        report.violations
    );
}
