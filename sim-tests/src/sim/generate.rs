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
            http: None,
            passthrough: false,
            inbound_listener: false,
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
        gen_retries_and_weights(seed, &mut scn);
        // Ejection-time caps (Envoy's `max_ejection_time`), and hosts that fail on every
        // request, came with the first-principles ejection timelines: a stream of their own.
        let mut caps = fastrand::Rng::with_seed(seed ^ 0x0e7e_c71e_0000_0008);
        gen_ejection_caps(&mut caps, &mut scn);
        // `http2MaxRequests` below `maxConnections` on some pools: a stream of its own.
        let mut maxr = fastrand::Rng::with_seed(seed ^ 0x3a5e_0e57_0000_0009);
        for svc in &mut scn.services {
            for ver in &mut svc.versions {
                if let Some(p) = ver.pool.as_mut() {
                    if maxr.u8(0..100) < 40 {
                        p.max_requests = maxr.u32(1..=p.max_connections.max(1));
                    }
                }
            }
        }
        // Panic mode (`minHealthPercent`) on some clusters with outlier detection: a stream of
        // its own.
        let mut panic = fastrand::Rng::with_seed(seed ^ 0x9a41_c0de_0000_000c);
        for ver in scn.services.iter_mut().flat_map(|s| &mut s.versions) {
            if let Some(o) = ver.outlier.as_mut() {
                if panic.u8(0..100) < 30 {
                    o.min_health_percent = [1, 34, 50, 100][panic.usize(0..4)];
                }
            }
        }
        // Upstream idle timeouts of milliseconds and retry budgets (`maxRetries`): a stream of
        // its own.
        let mut pool = fastrand::Rng::with_seed(seed ^ 0x1d1e_7e7e_0000_000d);
        for ver in scn.services.iter_mut().flat_map(|s| &mut s.versions) {
            if pool.u8(0..100) < 25 {
                ver.upstream_idle_ms = Some([1, 5, 20, 100][pool.usize(0..4)]);
            }
            if pool.u8(0..100) < 20 {
                ver.max_retries = Some(pool.u32(0..=2));
            }
            if ver.lb == 1 && pool.u8(0..100) < 30 {
                ver.least_request_choices = Some(pool.u32(3..=5));
            }
        }
        // `refused-stream` in some `retryOn`s (Istio's default has it): a stream of its own.
        let mut refused = fastrand::Rng::with_seed(seed ^ 0x7ef5_ed00_0000_000f);
        let rules = (scn.services.iter_mut().flat_map(|s| &mut s.rules))
            .chain(scn.config_pushes.iter_mut().flat_map(|p| &mut p.rules));
        for rule in rules {
            if let Some(rt) = rule.retries.as_mut() {
                rt.on_refused_stream = refused.u8(0..100) < 40;
            }
        }
        // Chunked bodies both ways in a quarter of the seeds: a stream of its own.
        let mut framing = fastrand::Rng::with_seed(seed ^ 0xc4a2_4ced_0000_000a);
        if framing.u8(0..100) < 25 {
            scn.framing = Some(FramingSpec {
                chunked_requests_percent: framing.u8(10..=100),
                chunked_responses_percent: framing.u8(10..=100),
            });
        }
        // The HTTP connection manager's limits and timeouts, small enough to reach, in a
        // quarter of the seeds: a stream of its own.
        let mut http = fastrand::Rng::with_seed(seed ^ 0x4774_7053_0000_000b);
        if http.u8(0..100) < 25 {
            let max_request_line_bytes = http.u32(60..=400);
            scn.http = Some(HttpSpec {
                max_request_line_bytes,
                // The engine applies the same limits to response heads: these stay above
                // what servers answer (8 fields, under 200 bytes), which are not probed.
                max_header_bytes: max_request_line_bytes + http.u32(200..=1500),
                max_headers: http.u32(9..=40),
                header_read_timeout_ms: [1, 5, 50, 10_000][http.usize(0..4)],
                idle_timeout_ms: [1, 5, 50, 3_600_000][http.usize(0..4)],
                retry_buffer_bytes: [0, 1, 500, 1500, 65_536][http.usize(0..5)],
                probe_percent: [0, 5, 20, 50][http.usize(0..4)],
            });
        }
        // `ALLOW_ANY` passthrough to the original destination in a third of the seeds (it
        // shows with the vocabulary's unknown hosts): a stream of its own.
        let mut allow_any = fastrand::Rng::with_seed(seed ^ 0xa110_a4e1_0000_000e);
        scn.passthrough = allow_any.u8(0..100) < 33;
        scn.inbound_listener = allow_any.u8(0..100) < 20;
        // The routing vocabulary (match conditions of every kind, redirects, direct responses,
        // rewrites, header edits, edge weights) on a stream of its own: about half the seeds.
        let mut vocab = fastrand::Rng::with_seed(seed ^ 0x70c4_b0a1_0000_0007);
        if vocab.u8(0..100) < 50 {
            super::gen_routes::enrich(&mut vocab, &mut scn);
        }
        scn.normalize();
        scn
    }
}

/// Retry conditions beyond `5xx`/`connect-failure`/`reset` (gateway-error, retriable-4xx,
/// retriable status codes, 0 to 5 attempts, short per-try timeouts), the error statuses those
/// conditions tell apart, and endpoint weights (1 against a large one, or uneven), from a
/// stream of their own: older seeds keep everything else they had.
fn gen_retries_and_weights(seed: u64, scn: &mut Scenario) {
    let mut r = fastrand::Rng::with_seed(seed ^ 0x4e75_7259_0000_0007);
    let retry_rules = r.u8(0..100) < 60;
    let statuses = r.u8(0..100) < 60;
    let weights = r.u8(0..100) < 40;
    let widen = |r: &mut fastrand::Rng, rule: &mut Rule| {
        let Some(rt) = rule.retries.as_mut() else {
            return;
        };
        if r.u8(0..100) < 40 {
            rt.attempts = r.u32(0..=5);
        }
        rt.on_gateway_error = r.u8(0..100) < 40;
        rt.on_retriable_4xx = r.u8(0..100) < 30;
        if r.u8(0..100) < 40 {
            let n = r.usize(1..=2);
            rt.status_codes = (0..n)
                .map(|_| [500, 503, 409, 502][r.usize(0..4)])
                .collect();
            rt.status_codes.sort_unstable();
            rt.status_codes.dedup();
        }
        if r.u8(0..100) < 30 {
            rt.per_try_ms = Some(r.u64(5..=200));
        }
    };
    if retry_rules {
        for svc in &mut scn.services {
            for rule in &mut svc.rules {
                widen(&mut r, rule);
            }
        }
        for push in &mut scn.config_pushes {
            for rule in &mut push.rules {
                widen(&mut r, rule);
            }
        }
    }
    for svc in &mut scn.services {
        for ver in &mut svc.versions {
            let style = r.u8(0..4);
            for (i, ep) in ver.endpoints.iter_mut().enumerate() {
                if statuses && ep.error_percent > 0 && ver.outlier.is_none() && r.u8(0..100) < 70 {
                    ep.error_status = [500, 502, 503, 504, 409][r.usize(0..5)];
                }
                if weights {
                    ep.weight = match style {
                        0 => 1,
                        1 if i == 0 => r.u32(10..=100),
                        1 => 1,
                        _ => r.u32(1..=10),
                    };
                }
            }
        }
    }
}

/// In about two thirds of the versions with outlier detection, a `max_ejection_time` that
/// binds: equal to the base time, two or three base times, or somewhere in between. In most
/// seeds with outlier detection, some versions get a host that answers 503 to everything, a
/// short base ejection time and a cap that lets one host go, so the same host is ejected again
/// and again within the run: the multiplier grows, hits `max_ejection_time`, and decays when
/// the host gets a break (a quiet spell, the cap full, a crash of its own). Some versions also
/// switch on the gateway-error detector (sometimes instead of the 5xx one) or split
/// local-origin failures into a detector of their own.
fn gen_ejection_caps(r: &mut fastrand::Rng, scn: &mut Scenario) {
    let flappers = r.u8(0..100) < 70;
    for svc in &mut scn.services {
        for ver in &mut svc.versions {
            let Some(o) = ver.outlier.as_mut() else {
                continue;
            };
            let n = ver.endpoints.len().max(1);
            if flappers && r.u8(0..100) < 60 {
                let i = r.usize(0..n);
                if let Some(ep) = ver.endpoints.get_mut(i) {
                    ep.error_percent = 100;
                }
                o.base_ejection_ms = r.u64(20..=250);
                let one_host = 100_u32.div_ceil(n as u32);
                o.max_ejection_percent = o.max_ejection_percent.max(one_host);
            }
            let base = o.base_ejection_ms;
            o.max_ejection_ms = match r.u8(0..6) {
                0 => Some(base),
                1 => Some(2 * base),
                2 => Some(3 * base),
                3 => Some(r.u64(base..=4 * base)),
                _ => None,
            };
            // The other consecutive-error detectors: gateway errors (sometimes alone), and
            // local-origin failures split from the 5xx count.
            if r.u8(0..100) < 30 {
                o.consecutive_gateway_errors = r.u32(1..=5);
                if r.u8(0..100) < 30 {
                    o.consecutive_5xx = 0;
                }
            }
            if r.u8(0..100) < 25 {
                o.split_local_origin = Some(r.u32(1..=5));
            }
        }
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

impl Scenario {
    /// A steady mesh for speed measurements: `services` services × 3 versions × 3 endpoints,
    /// three sidecars with open-loop load of `rate` requests/s each for `duration_ms`, retries,
    /// timeouts and outlier detection on, a few percent of server errors, no scheduled faults.
    pub fn benchmark(services: usize, rate: u32, duration_ms: u64) -> Scenario {
        let mut scn = Scenario::from_seed(1);
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
