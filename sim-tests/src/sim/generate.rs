//! `Scenario::from_seed`: swarm generation. Each seed first decides which features and faults
//! exist at all (the "swarm"), then draws sizes and rates. Sizes are tuned so that hundreds of
//! seeds run in a debug-build CI job: most meshes are small, a few are large (up to 50
//! services × 10 endpoints), and request counts stay in the hundreds.

use super::scenario::*;

/// Which features one seed switches on.
struct Swarm {
    outlier: bool,
    pool: bool,
    retries: bool,
    timeouts: bool,
    faults_injection: bool,
    header_routes: bool,
    errors: bool,
    garbage: bool,
    hangs: bool,
    crashes: bool,
    partitions: bool,
    lossy: bool,
    resets: bool,
    backpressure: bool,
    /// Services call services (a call DAG), each calling workload through its own sidecar.
    tiers: bool,
    churn: bool,
}

impl Swarm {
    fn draw(r: &mut fastrand::Rng) -> Self {
        let mut p = |percent: u8| r.u8(0..100) < percent;
        Swarm {
            outlier: p(50),
            pool: p(40),
            retries: p(55),
            timeouts: p(65),
            faults_injection: p(20),
            header_routes: p(50),
            errors: p(50),
            garbage: p(15),
            hangs: p(25),
            crashes: p(35),
            partitions: p(35),
            lossy: p(20),
            resets: p(10),
            backpressure: false,
            tiers: false,
            churn: false,
        }
    }
}

impl Scenario {
    /// The scenario of one seed. Same seed, same scenario, on every machine.
    pub fn from_seed(seed: u64) -> Scenario {
        let mut r = fastrand::Rng::with_seed(seed ^ 0x5eed_5ce0_a210_0001);
        let mut sw = Swarm::draw(&mut r);
        // Features added later draw from their own stream, so the scenarios of older seeds
        // (and the seeds recorded as catching planted bugs) stay as they were.
        let mut later = fastrand::Rng::with_seed(seed ^ 0xbac4_9e55_0000_0002);
        sw.backpressure = later.u8(0..100) < 25;
        // Config churn came later still: a third stream, so seeds without churn keep their
        // scenarios byte for byte and seeds with it keep everything but the pushes.
        let mut churn = fastrand::Rng::with_seed(seed ^ 0xc0f1_6c4a_0000_0003);
        sw.churn = churn.u8(0..100) < 30;
        // Mostly small meshes; one seed in ten gets a large one.
        let n_services = if r.u8(0..10) == 0 {
            r.usize(10..=50)
        } else {
            r.usize(2..=6)
        };
        let big = n_services > 10;
        let services = (0..n_services)
            .map(|_| gen_service(&mut r, &sw, big))
            .collect::<Vec<_>>();
        let n_clients = r.usize(1..=3);
        let users: Vec<String> = (0..3).map(|u| format!("u{u}")).collect();
        let clients = (0..n_clients)
            .map(|_| {
                let n_targets = r.usize(1..=n_services.min(8));
                let mut targets: Vec<usize> =
                    (0..n_targets).map(|_| r.usize(0..n_services)).collect();
                targets.sort_unstable();
                targets.dedup();
                let load = if r.bool() {
                    Load::Open {
                        rate: r.u32(20..=250),
                    }
                } else {
                    Load::Closed {
                        concurrency: r.u32(1..=12),
                        think_ms: r.u64(0..=40),
                    }
                };
                ClientSpec {
                    load,
                    targets,
                    users: if sw.header_routes {
                        users.clone()
                    } else {
                        Vec::new()
                    },
                    post_percent: r.u8(0..=50),
                    max_body: r.u32(0..=3000),
                    max_response: match r.u32(0..=4000) {
                        _ if sw.backpressure => later.u32(0..=48_000),
                        m => m,
                    },
                    deadline_ms: 5_000,
                }
            })
            .collect::<Vec<_>>();
        let net = NetSpec {
            latency_us: r.u64(50..=3000),
            jitter_us: r.u64(0..=1500),
            bandwidth_bpms: [1_000, 10_000, 100_000, 1_000_000][r.usize(0..4)],
            loss_percent: if sw.lossy { r.u8(1..=5) } else { 0 },
            rto_ms: r.u64(20..=200),
            reset_permille: if sw.resets { r.u16(1..=5) } else { 0 },
            client_read_bpms: if sw.backpressure {
                [200, 1_000, 10_000][later.usize(0..3)]
            } else {
                0
            },
            buffer_bytes: if sw.backpressure {
                later.u32(512..=8192)
            } else {
                0
            },
        };
        let duration_ms = r.u64(500..=2000);
        let mut scn = Scenario {
            seed,
            services,
            clients,
            net,
            faults: Vec::new(),
            duration_ms,
            config_pushes: Vec::new(),
            requests: None,
            framing: None,
            messages: None,
            connections: None,
            interim: None,
            http: None,
            passthrough: false,
            inbound_listener: false,
            security: super::mtls::SecuritySpec::from_seed(seed),
            mirror: super::mirror::MirrorSpec::from_seed(seed),
            plane: super::plane::PlaneSpec::in_swarm(seed),
            tcp: super::tcp::TcpSpec::from_seed(seed),
            gateway: super::gateway::GatewaySpec::from_seed(seed),
        };
        scn.faults = gen_faults(&mut r, &sw, &scn);
        if sw.churn {
            scn.config_pushes = gen_pushes(&mut churn, &sw, &scn);
        }
        // Two-tier meshes come from a stream of their own, for the same reason as `later`.
        let mut tiers = fastrand::Rng::with_seed(seed ^ 0x71e2_5ca1_1500_0003);
        sw.tiers = tiers.u8(0..100) < 35;
        if sw.tiers {
            gen_calls(&mut tiers, &sw, &mut scn);
            // Config pushes reach the calling workloads' sidecars too, each in its own time.
            let workloads = scn.callers().count();
            let (clients, d) = (scn.clients.len(), scn.duration_ms);
            for push in &mut scn.config_pushes {
                for k in 0..workloads {
                    if tiers.u8(0..100) < 85 {
                        let delay = match tiers.u8(0..10) {
                            0 => tiers.u64(0..=d),
                            1..=3 => 0,
                            _ => tiers.u64(0..=50),
                        };
                        push.deliveries.push((clients + k, delay));
                    }
                }
            }
        }
        // Some pushes also shorten the stream idle timeout (a stream of its own): requests in
        // flight must keep their own snapshot's, which only a short one makes visible.
        let mut idle = fastrand::Rng::with_seed(seed ^ 0x1d1e_5707_0000_0006);
        for push in &mut scn.config_pushes {
            if idle.u8(0..100) < 30 {
                push.stream_idle_ms = Some(idle.u64(30..=600));
            }
        }
        // Slow-loris servers: a stream of their own.
        let mut loris = fastrand::Rng::with_seed(seed ^ 0x510e_1005_0000_0004);
        if loris.u8(0..100) < 20 {
            for svc in &mut scn.services {
                for ver in &mut svc.versions {
                    for ep in &mut ver.endpoints {
                        if loris.u8(0..100) < 30 {
                            ep.trickle_percent = loris.u8(5..=60);
                            ep.trickle_gap_ms = loris.u32(1..=80);
                        }
                    }
                }
            }
        }
        // Long-tailed service times, from the same stream after the slow-loris draws.
        if loris.u8(0..100) < 30 {
            for svc in &mut scn.services {
                for ver in &mut svc.versions {
                    for ep in &mut ver.endpoints {
                        if loris.u8(0..100) < 50 {
                            ep.tail_percent = loris.u8(1..=20);
                            ep.tail_ms = loris.u32(20..=2000);
                        }
                    }
                }
            }
        }
        super::gen_policy::gen_retries_and_weights(seed, &mut scn);
        // Ejection-time caps (Envoy's `max_ejection_time`), and hosts that fail on every
        // request, came with the first-principles ejection timelines: a stream of their own.
        let mut caps = fastrand::Rng::with_seed(seed ^ 0x0e7e_c71e_0000_0008);
        super::gen_policy::gen_ejection_caps(&mut caps, &mut scn);
        // Pool, outlier, retry, framing, connection-manager and listener knobs, each on a
        // stream of its own.
        super::gen_policy::knobs(seed, &mut scn);
        super::gen_policy::consistent_hash(seed, &mut scn);
        super::locality::generate(seed, &mut scn);
        // The routing vocabulary (match conditions of every kind, redirects, direct responses,
        // rewrites, header edits, edge weights) on a stream of its own: about half the seeds.
        let mut vocab = fastrand::Rng::with_seed(seed ^ 0x70c4_b0a1_0000_0007);
        if vocab.u8(0..100) < 50 {
            super::gen_routes::enrich(&mut vocab, &mut scn);
            super::gen_routes::fallbacks(seed, &mut scn);
            super::gen_routes::dest_authorities(seed, &mut scn);
            super::gen_routes::redirect_extras(seed, &mut scn);
        }
        super::path_dirt::generate(seed, &mut scn);
        super::cors::generate(seed, &mut scn);
        scn.normalize();
        scn
    }
}

fn gen_service(r: &mut fastrand::Rng, sw: &Swarm, big: bool) -> Service {
    let n_versions = r.usize(1..=3);
    let versions = (0..n_versions)
        .map(|v| {
            let n_eps = if big { r.usize(1..=3) } else { r.usize(1..=10) };
            let bad = r.u8(0..100) < 40;
            Version {
                endpoints: (0..n_eps)
                    .map(|_| EndpointSpec {
                        latency_base_ms: r.u32(0..=30),
                        latency_jitter_ms: r.u32(0..=20),
                        error_percent: if sw.errors && bad {
                            [2, 10, 50, 100][r.usize(0..4)]
                        } else {
                            0
                        },
                        garbage_percent: if sw.garbage && bad { r.u8(1..=10) } else { 0 },
                        hang_percent: if sw.hangs && bad { r.u8(1..=5) } else { 0 },
                        trickle_percent: 0,
                        trickle_gap_ms: 0,
                        tail_percent: 0,
                        tail_ms: 0,
                        error_status: 0,
                        weight: 0,
                    })
                    .collect(),
                // Istio's default (no `simple`, 3) is least request; it takes half the
                // least-request draws without a draw of its own, so the RNG stream, and every
                // trace, is the same as when both were `LEAST_REQUEST`.
                lb: match r.u8(0..3) {
                    1 if v % 2 == 1 => 3,
                    lb => lb,
                },
                outlier: (sw.outlier && r.bool()).then(|| OutlierSpec {
                    consecutive_5xx: r.u32(1..=5),
                    interval_ms: r.u64(20..=500),
                    base_ejection_ms: r.u64(50..=1000),
                    max_ejection_percent: [10, 20, 34, 50, 100][r.usize(0..5)],
                    max_ejection_ms: None,
                    consecutive_gateway_errors: 0,
                    split_local_origin: None,
                    min_health_percent: 0,
                }),
                pool: (sw.pool && r.bool()).then(|| PoolSpec {
                    max_connections: r.u32(1..=6),
                    max_pending: [1, 4, 32, u32::MAX][r.usize(0..4)],
                    connect_timeout_ms: r.u64(50..=1000),
                    max_requests_per_connection: [0, 0, 1, 3][r.usize(0..4)],
                    max_requests: 0,
                }),
                upstream_idle_ms: None,
                max_retries: None,
                least_request_choices: None,
                locality: None,
            }
        })
        .collect::<Vec<_>>();
    let rules = gen_rules(r, sw, n_versions);
    Service {
        versions,
        rules,
        calls: Vec::new(),
    }
}

/// A service's VirtualService `http[]` rules over `n_versions` versions (the same draws for a
/// service's own rules and for the rules a config push brings).
fn gen_rules(r: &mut fastrand::Rng, sw: &Swarm, n_versions: usize) -> Vec<Rule> {
    let n_rules = if sw.header_routes { r.usize(1..=3) } else { 1 };
    (0..n_rules)
        .map(|i| {
            let last = i + 1 == n_rules;
            let user = if last && r.u8(0..100) < 90 {
                None
            } else {
                Some(format!("u{}", r.u8(0..3)))
            };
            let n_dests = r.usize(1..=n_versions);
            let mut dests: Vec<(usize, u32)> = Vec::new();
            for _ in 0..n_dests {
                let v = r.usize(0..n_versions);
                if !dests.iter().any(|(x, _)| *x == v) {
                    dests.push((v, r.u32(1..=100)));
                }
            }
            Rule {
                user,
                dests,
                timeout_ms: (sw.timeouts && r.u8(0..100) < 80).then(|| r.u64(50..=1500)),
                retries: (sw.retries && r.u8(0..100) < 80).then(|| RetrySpec {
                    attempts: r.u32(1..=3),
                    per_try_ms: r.bool().then(|| r.u64(20..=400)),
                    on_5xx: r.bool(),
                    on_connect_failure: r.u8(0..100) < 70,
                    on_reset: r.bool(),
                    backoff_base_ms: r.u64(1..=25),
                    on_gateway_error: false,
                    on_retriable_4xx: false,
                    status_codes: Vec::new(),
                    on_refused_stream: false,
                }),
                fault: (sw.faults_injection && r.bool()).then(|| FaultSpec {
                    delay_ms: r.u64(1..=100),
                    delay_percent: r.u8(0..=100),
                    abort_status: [418, 500, 503][r.usize(0..3)],
                    abort_percent: r.u8(0..=30),
                    grpc_status: None,
                }),
                vocab: None,
            }
        })
        .collect()
}

fn gen_faults(r: &mut fastrand::Rng, sw: &Swarm, scn: &Scenario) -> Vec<Fault> {
    let eps: Vec<EndpointRef> = scn.endpoints().map(|(e, _)| e).collect();
    let mut faults = Vec::new();
    let d = scn.duration_ms;
    if sw.crashes {
        for _ in 0..r.usize(1..=4) {
            let ep = eps[r.usize(0..eps.len())];
            let kind = match r.u8(0..3) {
                0 => FaultKind::Crash(ep),
                1 => FaultKind::Hang(ep),
                _ => FaultKind::Slow(ep, r.u64(10..=300)),
            };
            faults.push(Fault {
                at_ms: r.u64(0..d),
                for_ms: r.u64(10..=d),
                kind,
            });
        }
        // Sometimes a whole version goes down together (what ejection caps are for).
        if r.bool() {
            let (s, v, _) = eps[r.usize(0..eps.len())];
            let at = r.u64(0..d);
            let for_ms = r.u64(50..=d);
            for i in 0..scn.services[s].versions[v].endpoints.len() {
                faults.push(Fault {
                    at_ms: at,
                    for_ms,
                    kind: FaultKind::Crash((s, v, i)),
                });
            }
        }
    }
    if sw.partitions {
        for _ in 0..r.usize(1..=3) {
            let dir = r.u8(0..3);
            faults.push(Fault {
                at_ms: r.u64(0..d),
                for_ms: r.u64(10..=d),
                kind: FaultKind::Partition {
                    sidecar: r.usize(0..scn.clients.len()),
                    service: r.usize(0..scn.services.len()),
                    outbound: dir != 1,
                    inbound: dir != 0,
                    reset: r.bool(),
                },
            });
        }
    }
    faults.sort_by_key(|f| f.at_ms);
    faults
}

/// Which services call which: the services are cut into two or three tiers by index, and a
/// service calls one or two services of the next tier, so the call graph is a DAG and one
/// client request fans out to at most 1 + 2 + 4 requests.
fn gen_calls(r: &mut fastrand::Rng, sw: &Swarm, scn: &mut Scenario) {
    let n = scn.services.len();
    let tiers = r.usize(2..=3).min(n);
    let tier = |s: usize| s * tiers / n;
    for s in 0..n {
        let next: Vec<usize> = (s + 1..n).filter(|&c| tier(c) == tier(s) + 1).collect();
        if next.is_empty() || r.u8(0..100) >= 60 {
            continue;
        }
        let k = r.usize(1..=2.min(next.len()));
        scn.services[s].calls = (0..k).map(|_| next[r.usize(0..next.len())]).collect();
    }
    if n >= 2 && scn.services.iter().all(|s| s.calls.is_empty()) {
        scn.services[0].calls = vec![r.usize(1..n)];
    }
    // Most clients call into the top of the graph, so the calls happen.
    let callers: Vec<usize> = (0..n)
        .filter(|&s| !scn.services[s].calls.is_empty())
        .collect();
    for c in &mut scn.clients {
        if r.u8(0..100) < 80 {
            c.targets.push(callers[r.usize(0..callers.len())]);
            c.targets.sort_unstable();
            c.targets.dedup();
        }
    }
    if sw.partitions {
        let callers: Vec<EndpointRef> = scn
            .endpoints()
            .map(|(e, _)| e)
            .filter(|(s, _, _)| !scn.services[*s].calls.is_empty())
            .collect();
        let d = scn.duration_ms;
        for _ in 0..r.usize(0..=2) {
            let caller = callers[r.usize(0..callers.len())];
            let calls = &scn.services[caller.0].calls;
            let service = calls[r.usize(0..calls.len())];
            let dir = r.u8(0..3);
            scn.faults.push(Fault {
                at_ms: r.u64(0..d),
                for_ms: r.u64(10..=d),
                kind: FaultKind::CallerPartition {
                    caller,
                    service,
                    outbound: dir != 1,
                    inbound: dir != 0,
                    reset: r.bool(),
                },
            });
        }
        scn.faults.sort_by_key(|f| f.at_ms);
    }
}

/// Config churn: 1–6 VirtualService edits during the run, each replacing the rules of a
/// service some client calls, delivered to each sidecar after its own delay (most sidecars get
/// each push within tens of milliseconds; some late, some never).
fn gen_pushes(r: &mut fastrand::Rng, sw: &Swarm, scn: &Scenario) -> Vec<ConfigPush> {
    let mut targets: Vec<usize> = scn
        .clients
        .iter()
        .flat_map(|c| c.targets.iter().copied())
        .collect();
    targets.sort_unstable();
    targets.dedup();
    let d = scn.duration_ms;
    let mut pushes = Vec::new();
    for _ in 0..r.usize(1..=6) {
        let service = targets[r.usize(0..targets.len())];
        let mut deliveries = Vec::new();
        for sc in 0..scn.clients.len() {
            if r.u8(0..100) >= 85 {
                continue;
            }
            let delay = match r.u8(0..10) {
                0 => r.u64(0..=d),
                1..=3 => 0,
                _ => r.u64(0..=50),
            };
            deliveries.push((sc, delay));
        }
        let n_versions = scn.services[service].versions.len();
        pushes.push(ConfigPush {
            at_ms: r.u64(0..d),
            deliveries,
            service,
            rules: gen_rules(r, sw, n_versions),
            stream_idle_ms: None,
        });
    }
    pushes.sort_by_key(|p| p.at_ms);
    pushes
}
