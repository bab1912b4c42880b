//! Config churn, by hand: a 50/50 split between two versions is pushed to 100/0 halfway
//! through the run, on one of two sidecars only. The snapshot contract says requests started
//! before the push finish on the old split (retries included), requests started after it use
//! the new one, and the sidecar the push never reached keeps the old split throughout.
//!
//! Both versions answer 503 to 40 % of requests and the route retries 5xx with backoff,
//! so requests in flight at the push keep making attempts after it: those attempts must still
//! follow the 50/50 split they started on.

use sim_tests::sim::report::{Outcome, RequestRecord};
use sim_tests::sim::scenario::*;
use sim_tests::sim::stats::{chi_square, chi_square_p, FALSE_ALARM};
use sim_tests::sim::{run, RunOptions};
use trellis_engine::Instant;

const PUSH_MS: u64 = 500;

fn rule(dests: Vec<(usize, u32)>) -> Rule {
    Rule {
        user: None,
        dests,
        timeout_ms: Some(1_000),
        retries: Some(RetrySpec {
            attempts: 3,
            per_try_ms: None,
            on_5xx: true,
            on_connect_failure: true,
            on_reset: true,
            backoff_base_ms: 25,
            on_gateway_error: false,
            on_retriable_4xx: false,
            status_codes: Vec::new(),
            on_refused_stream: false,
        }),
        fault: None,
        vocab: None,
    }
}

fn scenario() -> Scenario {
    let endpoint = EndpointSpec {
        latency_base_ms: 30,
        latency_jitter_ms: 20,
        error_percent: 40,
        garbage_percent: 0,
        hang_percent: 0,
        ..EndpointSpec::healthy()
    };
    let version = Version {
        endpoints: vec![endpoint; 2],
        lb: 0,
        outlier: None,
        pool: None,
        upstream_idle_ms: None,
        max_retries: None,
        least_request_choices: None,
        locality: None,
    };
    let client = ClientSpec {
        load: Load::Open { rate: 400 },
        targets: vec![0],
        users: Vec::new(),
        post_percent: 20,
        max_body: 512,
        max_response: 512,
        deadline_ms: 5_000,
    };
    let mut scn = Scenario {
        seed: 7,
        services: vec![Service {
            versions: vec![version.clone(), version],
            rules: vec![rule(vec![(0, 50), (1, 50)])],
            calls: Vec::new(),
        }],
        clients: vec![client.clone(), client],
        net: NetSpec {
            latency_us: 200,
            jitter_us: 50,
            bandwidth_bpms: 100_000,
            loss_percent: 0,
            rto_ms: 200,
            reset_permille: 0,
            client_read_bpms: 0,
            buffer_bytes: 0,
        },
        faults: Vec::new(),
        duration_ms: 1_000,
        config_pushes: vec![ConfigPush {
            at_ms: PUSH_MS,
            deliveries: vec![(0, 0)],
            service: 0,
            rules: vec![rule(vec![(0, 100)])],
            stream_idle_ms: None,
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

/// Requests by the version their first attempt reached (the weighted pick; retries stay in
/// the picked version's cluster).
fn split(records: &[&RequestRecord]) -> [usize; 2] {
    let mut out = [0; 2];
    for r in records {
        if let Some(&(_, v)) = r.reached.first() {
            out[v] += 1;
        }
    }
    out
}

/// Attempts (one per endpoint reached) by version, over `records`, optionally only those that
/// reached their endpoint after the push.
fn attempts(records: &[&RequestRecord], after_push: bool) -> [usize; 2] {
    let push = Instant::from_millis(PUSH_MS);
    let mut out = [0; 2];
    for r in records {
        for &(at, v) in &r.reached {
            if !after_push || at > push {
                out[v] += 1;
            }
        }
    }
    out
}

#[test]
fn split_swapped_mid_run_holds_old_and_new_requests_to_their_snapshot() {
    let scn = scenario();
    let report = run(
        &scn,
        RunOptions {
            records: true,
            ..RunOptions::default()
        },
    );
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
    assert_eq!(report.pushes_delivered, 1);

    let push = Instant::from_millis(PUSH_MS);
    let on = |sc: usize, g: usize| -> Vec<&RequestRecord> {
        (report.records.iter())
            .filter(|r| r.sidecar == sc && r.generation == g)
            .collect()
    };
    // Every request knows the generation it started on: sidecar 0's switch at the push.
    for r in &report.records {
        let expected = usize::from(r.sidecar == 0 && r.start >= push);
        assert_eq!(r.generation, expected, "{r:?}");
        assert!(r.outcome.is_some(), "{r:?}");
    }
    let (old0, new0, old1) = (on(0, 0), on(0, 1), on(1, 0));
    assert!(on(1, 1).is_empty(), "the push never reached sidecar 1");
    let in_flight: Vec<&RequestRecord> = (old0.iter().copied())
        .filter(|r| r.end.is_some_and(|e| e > push))
        .collect();
    let retried = |rs: &[&RequestRecord]| rs.iter().filter(|r| r.reached.len() > 1).count();
    let ok = |rs: &[&RequestRecord]| {
        (rs.iter())
            .filter(|r| r.outcome == Some(Outcome::Response(200)))
            .count()
    };
    let got = Numbers {
        requests: [old0.len(), new0.len(), old1.len()],
        in_flight_at_push: report.in_flight_at_push,
        in_flight_ending_after: in_flight.len(),
        new0_split: split(&new0),
        old0_split: split(&old0),
        old1_split: split(&old1),
        new0_attempts: attempts(&new0, false),
        in_flight_attempts_after_push: attempts(&in_flight, true),
        old1_attempts_after_push: attempts(&old1, true),
        retried: [retried(&old0), retried(&new0)],
        ok: [ok(&old0), ok(&new0)],
    };
    eprintln!("{got:#?}");
    // After the push, sidecar 0's new requests only reach v0 ...
    assert_eq!(got.new0_attempts[1], 0);
    // ... while requests started before it, even their attempts after it, still reach v1.
    assert!(got.in_flight_attempts_after_push[1] > 0, "{got:#?}");
    // Every request in flight at the push ended after it, on the old split.
    assert_eq!(got.in_flight_ending_after as u64, got.in_flight_at_push);
    // The old split is 50/50 on both sidecars (the simulator's own chi-square test).
    for [v0, v1] in [got.old0_split, got.old1_split] {
        let (stat, df) = chi_square(&[v0 as u64, v1 as u64], &[1.0, 1.0]).expect("enough requests");
        assert!(chi_square_p(stat, df) >= FALSE_ALARM, "{got:#?}");
    }
    // The whole run, seen from the reports (deterministic: same scenario, same numbers).
    assert_eq!(
        got,
        Numbers {
            requests: [200, 222, 406],
            in_flight_at_push: 32,
            in_flight_ending_after: 32,
            new0_split: [222, 0],
            old0_split: [105, 95],
            old1_split: [194, 212],
            new0_attempts: [361, 0],
            in_flight_attempts_after_push: [8, 14],
            old1_attempts_after_push: [134, 196],
            retried: [69, 92],
            ok: [198, 217],
        }
    );
}

/// What the test reads off the run.
#[derive(Debug, PartialEq)]
struct Numbers {
    /// Requests of sidecar 0 before the push, after it, and of sidecar 1 (never pushed).
    requests: [usize; 3],
    in_flight_at_push: u64,
    /// Sidecar 0's requests started before the push that ended after it.
    in_flight_ending_after: usize,
    /// Requests by the version (v0, v1) of their first attempt: sidecar 0 after and before
    /// the push, sidecar 1.
    new0_split: [usize; 2],
    old0_split: [usize; 2],
    old1_split: [usize; 2],
    /// Attempts by version (v0, v1) that reached an endpoint.
    new0_attempts: [usize; 2],
    in_flight_attempts_after_push: [usize; 2],
    old1_attempts_after_push: [usize; 2],
    /// Requests of sidecar 0 with more than one attempt, before and after the push.
    retried: [usize; 2],
    /// Requests of sidecar 0 answered 200, before and after the push.
    ok: [usize; 2],
}

/// The same scenario with the engine's planted bug (retries re-route on the running snapshot)
/// breaks routing: an attempt after the push of a request started on the 50/50 split is sent
/// by the new rules.
#[test]
fn in_flight_requests_rerouted_on_the_new_snapshot_are_caught() {
    use sim_tests::sim::Invariant;
    use trellis_engine::mutants::Mutations;
    fn mutate(_: usize, e: &mut trellis_engine::Engine) {
        e.set_mutations(Mutations {
            config_applies_to_in_flight: true,
            ..Mutations::default()
        });
    }
    let report = run(
        &scenario(),
        RunOptions {
            engine_hook: Some(mutate),
            ..RunOptions::default()
        },
    );
    assert!(
        (report.violations.iter()).any(|v| v.invariant == Invariant::Routing),
        "{:#?}",
        report.violations
    );
}
