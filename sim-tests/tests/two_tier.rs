//! Two-tier meshes: a workload that calls another service through its own sidecar while it
//! serves a request. Hand-written scenarios with exact expectations; the swarm
//! (`tests/swarm.rs`) generates such meshes from about a third of its seeds.

use sim_tests::sim::scenario::{
    ClientSpec, EndpointSpec, Fault, FaultKind, Load, NetSpec, Rule, Scenario, Service, Version,
};
use sim_tests::sim::{run, RunOptions};

fn endpoint(latency_ms: u32, error_percent: u8) -> EndpointSpec {
    EndpointSpec {
        latency_base_ms: latency_ms,
        latency_jitter_ms: 0,
        error_percent,
        garbage_percent: 0,
        hang_percent: 0,
        ..EndpointSpec::healthy()
    }
}

fn service(endpoints: Vec<EndpointSpec>, calls: Vec<usize>) -> Service {
    Service {
        versions: vec![Version {
            endpoints,
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
        calls,
    }
}

/// `frontend` (svc0, two workloads) calls `backend` (svc1) for every request; one closed-loop
/// client with four loops calls the frontend.
fn two_tier(backend: Vec<EndpointSpec>) -> Scenario {
    Scenario {
        seed: 11,
        services: vec![
            service(vec![endpoint(2, 0), endpoint(2, 0)], vec![1]),
            service(backend, Vec::new()),
        ],
        clients: vec![ClientSpec {
            load: Load::Closed {
                concurrency: 4,
                think_ms: 5,
            },
            targets: vec![0],
            users: Vec::new(),
            post_percent: 30,
            max_body: 2000,
            max_response: 3000,
            deadline_ms: 5_000,
        }],
        net: NetSpec {
            latency_us: 300,
            jitter_us: 100,
            bandwidth_bpms: 100_000,
            loss_percent: 0,
            rto_ms: 50,
            reset_permille: 0,
            client_read_bpms: 0,
            buffer_bytes: 0,
        },
        faults: Vec::new(),
        duration_ms: 2_000,
        config_pushes: Vec::new(),
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
    }
}

#[test]
fn every_request_to_the_frontend_makes_one_call_to_the_backend() {
    let scn = two_tier(vec![endpoint(10, 0), endpoint(10, 0)]);
    let report = run(&scn, RunOptions::default());
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    let client_requests = report.requests - report.calls;
    assert!(client_requests > 100, "{report:?}");
    assert_eq!(report.calls, client_requests, "one call per request served");
    assert_eq!(report.outcomes.get("200"), Some(&report.requests));
    // A call waits for the backend (10 ms) and two network crossings of at least 200 µs; a
    // client request for its call, the frontend (2 ms) and two more crossings.
    let ms = |us| std::time::Duration::from_micros(us);
    assert!(
        report.quantile(0.0) >= ms(10_400),
        "{:?}",
        report.quantile(0.0)
    );
    assert!(
        report.quantile(1.0) >= ms(12_800),
        "{:?}",
        report.quantile(1.0)
    );
}

#[test]
fn a_failing_backend_makes_the_frontend_answer_502() {
    let scn = two_tier(vec![endpoint(1, 100)]);
    let report = run(&scn, RunOptions::default());
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    let client_requests = report.requests - report.calls;
    assert!(client_requests > 100);
    assert_eq!(report.outcomes.get("502"), Some(&client_requests));
    assert_eq!(report.outcomes.get("503"), Some(&report.calls));
}

#[test]
fn a_crashing_frontend_cancels_its_calls_and_its_sidecar_lets_go_of_them() {
    let mut scn = two_tier(vec![endpoint(300, 0)]);
    scn.faults = vec![Fault {
        at_ms: 700,
        for_ms: 400,
        kind: FaultKind::Crash((0, 0, 0)),
    }];
    let report = run(&scn, RunOptions::default());
    // Ends once, one access-log record each, no request left inside any engine: the calls
    // cut by the crash included.
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    let cancelled = report.outcomes.get("cancelled").copied().unwrap_or(0);
    assert!(cancelled >= 1, "{:?}", report.outcomes);
    // The requests the crashed workload was serving see their connection reset (503 UC).
    let reset = report.outcomes.get("503 UC").copied().unwrap_or(0);
    assert!(reset >= cancelled, "{:?}", report.outcomes);
}

#[test]
fn a_partition_between_a_caller_and_its_backend_fails_only_that_callers_requests() {
    let mut scn = two_tier(vec![endpoint(5, 0)]);
    scn.faults = vec![Fault {
        at_ms: 0,
        for_ms: 10_000,
        kind: FaultKind::CallerPartition {
            caller: (0, 0, 1),
            service: 1,
            outbound: true,
            inbound: true,
            reset: true,
        },
    }];
    let report = run(&scn, RunOptions::default());
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    // Round robin over the two frontends: half the client requests reach the cut-off one,
    // whose calls fail to connect (503 UF) and which then answers 502.
    let failed_calls = report.outcomes.get("503 UF").copied().unwrap_or(0);
    let bad_gateway = report.outcomes.get("502").copied().unwrap_or(0);
    let client_requests = report.requests - report.calls;
    assert_eq!(failed_calls, bad_gateway);
    let half = client_requests as f64 / 2.0;
    assert!(
        (bad_gateway as f64 - half).abs() <= 2.0,
        "{:?}",
        report.outcomes
    );
}
