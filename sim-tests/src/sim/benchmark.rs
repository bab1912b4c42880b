//! `Scenario::benchmark`: the fixed, steady mesh the simulator's speed is measured on
//! (`examples/speed.rs`, the fingerprint's last line), apart from the swarm's generator.

use super::scenario::*;

impl Scenario {
    /// A steady mesh for speed measurements: `services` services × 3 versions × 3 endpoints,
    /// three sidecars with open-loop load of `rate` requests/s each for `duration_ms`, retries,
    /// timeouts and outlier detection on, a few percent of server errors, no scheduled faults.
    pub fn benchmark(services: usize, rate: u32, duration_ms: u64) -> Scenario {
        let mut scn = Scenario::from_seed(1);
        // The routing mesh's speed: no security world beside it.
        scn.security = None;
        scn.mirror = None;
        scn.tcp = None;
        scn.gateway = None;
        scn.plane = None;
        // One connection per request, as when this mesh was first measured.
        scn.connections = None;
        scn.interim = None;
        let ep = EndpointSpec {
            latency_base_ms: 2,
            latency_jitter_ms: 3,
            error_percent: 2,
            garbage_percent: 0,
            hang_percent: 0,
            trickle_percent: 0,
            trickle_gap_ms: 0,
            tail_percent: 0,
            tail_ms: 0,
            error_status: 0,
            weight: 0,
        };
        let version = Version {
            endpoints: vec![ep; 3],
            lb: 1,
            outlier: Some(OutlierSpec {
                consecutive_5xx: 3,
                interval_ms: 100,
                base_ejection_ms: 300,
                max_ejection_percent: 34,
                max_ejection_ms: None,
                consecutive_gateway_errors: 0,
                split_local_origin: None,
                min_health_percent: 0,
            }),
            pool: None,
            upstream_idle_ms: None,
            max_retries: None,
            least_request_choices: None,
            locality: None,
        };
        scn.services = (0..services)
            .map(|_| Service {
                versions: vec![version.clone(); 3],
                rules: vec![
                    Rule {
                        user: Some("u0".into()),
                        dests: vec![(2, 100)],
                        timeout_ms: Some(500),
                        retries: None,
                        fault: None,
                        vocab: None,
                    },
                    Rule {
                        user: None,
                        dests: vec![(0, 80), (1, 20)],
                        timeout_ms: Some(500),
                        retries: Some(RetrySpec {
                            attempts: 2,
                            per_try_ms: Some(100),
                            on_5xx: true,
                            on_connect_failure: true,
                            on_reset: true,
                            backoff_base_ms: 5,
                            on_gateway_error: false,
                            on_retriable_4xx: false,
                            status_codes: Vec::new(),
                            on_refused_stream: false,
                        }),
                        fault: None,
                        vocab: None,
                    },
                ],
                calls: Vec::new(),
            })
            .collect();
        scn.clients = (0..3)
            .map(|_| ClientSpec {
                load: Load::Open { rate },
                targets: (0..services).collect(),
                users: vec!["u0".into(), "u1".into()],
                post_percent: 20,
                max_body: 1024,
                max_response: 1024,
                deadline_ms: 5_000,
            })
            .collect();
        scn.net = NetSpec {
            latency_us: 200,
            jitter_us: 100,
            bandwidth_bpms: 100_000,
            loss_percent: 0,
            rto_ms: 200,
            reset_permille: 0,
            client_read_bpms: 0,
            buffer_bytes: 0,
        };
        scn.faults = Vec::new();
        scn.config_pushes = Vec::new();
        scn.duration_ms = duration_ms;
        scn.normalize();
        scn
    }
}
