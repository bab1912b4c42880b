//! ClusterState as the engine sees it: picking with ejections, panic mode, avoid, weights,
//! config swaps.

use super::*;
use crate::config::{Cluster, ConnectionPool, Endpoint, LbPolicy, OutlierDetection};
use quickcheck::{Arbitrary, Gen};
use quickcheck_macros::quickcheck;
use std::collections::BTreeMap;
use std::time::Duration;

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 8080))
}

fn cluster(weights: &[u32], lb: LbPolicy, outlier: Option<OutlierDetection>) -> Arc<Cluster> {
    Arc::new(Cluster {
        name: "outbound|80||svc".into(),
        service: "svc".into(),
        endpoints: weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Endpoint {
                sidecar: false,
                address: addr(i),
                weight: w,
                labels: BTreeMap::new(),
            })
            .collect(),
        lb,
        outlier,
        pool: ConnectionPool::default(),
        ..Cluster::default()
    })
}

fn od(percent: u32, min_health: u32) -> OutlierDetection {
    OutlierDetection {
        consecutive_5xx: 1,
        max_ejection_percent: percent,
        min_health_percent: min_health,
        ..OutlierDetection::default()
    }
}

fn s(secs: u64) -> Instant {
    Instant::from_millis(secs * 1000)
}

const POLICIES: [LbPolicy; 4] = [
    LbPolicy::RoundRobin,
    LbPolicy::LeastRequest { choice_count: 2 },
    LbPolicy::Random,
    LbPolicy::Default,
];

#[derive(Clone, Copy, Debug)]
struct Policy(LbPolicy);

impl Arbitrary for Policy {
    fn arbitrary(g: &mut Gen) -> Self {
        Policy(*g.choose(&POLICIES).unwrap_or(&LbPolicy::Default))
    }
}

#[test]
fn no_endpoints_is_no_healthy_upstream() {
    let mut rng = EngineRng::with_seed(1);
    for lb in POLICIES {
        let mut c = ClusterState::new(cluster(&[], lb, None), s(0));
        assert_eq!(c.pick(&mut rng, &[]), Err(NoHealthyUpstream));
        assert_eq!(c.stats().none_healthy, 1);
        assert_eq!(c.next_timer(), None);
    }
}

#[test]
fn all_ejected_without_panic_is_no_healthy_upstream() {
    let mut rng = EngineRng::with_seed(1);
    let mut c = ClusterState::new(
        cluster(&[1, 1], LbPolicy::RoundRobin, Some(od(100, 0))),
        s(0),
    );
    assert!(c.report(s(1), 0, Outcome::Response(500)));
    assert_eq!(c.pick(&mut rng, &[]).map(|p| p.host), Ok(1));
    assert!(c.report(s(1), 1, Outcome::Response(502)));
    assert_eq!(c.pick(&mut rng, &[]), Err(NoHealthyUpstream));
    // Both return at the first sweep after 30 s.
    assert_eq!(c.on_timer(s(40)), vec![0, 1]);
    assert!(c.pick(&mut rng, &[]).is_ok());
    assert_eq!(c.stats().ejections_total, 2);
    assert_eq!(c.stats().ejections_consecutive_5xx, 2);
}

#[test]
fn panic_mode_spreads_over_all_hosts() {
    let mut rng = EngineRng::with_seed(2);
    let mut c = ClusterState::new(
        cluster(&[1, 1, 1, 1], LbPolicy::RoundRobin, Some(od(100, 50))),
        s(0),
    );
    c.report(s(1), 0, Outcome::Response(500));
    // 3 of 4 available (75 % ≥ 50 %): normal, host 0 skipped.
    for _ in 0..8 {
        let p = c.pick(&mut rng, &[]).unwrap();
        assert!(!p.panic && p.host != 0);
    }
    c.report(s(1), 1, Outcome::Response(500));
    c.report(s(1), 2, Outcome::Response(500));
    // 1 of 4 available (25 % < 50 %): panic, every host picked, ejected or not.
    let mut seen = [false; 4];
    for _ in 0..8 {
        let p = c.pick(&mut rng, &[]).unwrap();
        assert!(p.panic);
        seen[p.host] = true;
    }
    assert_eq!(seen, [true; 4]);
    assert!(c.in_panic());
    assert_eq!(c.stats().lb_healthy_panic, 8);
}

/// Envoy's `recalculatePerPriorityPanic` never puts a level in panic while the normalized
/// total health is 100, and a level's health is `min(100, 140 × healthy / hosts)`
/// (load_balancer_impl.cc, `recalculatePerPriorityState`; pilot sets no overprovisioning
/// factor, so Envoy's default 140 applies). With `minHealthPercent: 100`, 3 of 4 available is
/// health 105 → 100: no panic, the ejected host is skipped; 2 of 4 is 70: panic.
#[test]
fn panic_waits_for_health_below_the_overprovisioned_full() {
    let mut rng = EngineRng::with_seed(3);
    let mut c = ClusterState::new(
        cluster(&[1, 1, 1, 1], LbPolicy::RoundRobin, Some(od(100, 100))),
        s(0),
    );
    c.report(s(1), 0, Outcome::Response(500));
    for _ in 0..8 {
        let p = c.pick(&mut rng, &[]).unwrap();
        assert!(!p.panic && p.host != 0, "75 % available is full health");
    }
    assert!(!c.in_panic());
    c.report(s(1), 1, Outcome::Response(500));
    let mut seen = [false; 4];
    for _ in 0..8 {
        let p = c.pick(&mut rng, &[]).unwrap();
        assert!(p.panic);
        seen[p.host] = true;
    }
    assert_eq!(
        seen, [true; 4],
        "50 % available (health 70) below 100 %: panic"
    );
    assert!(!single_level_panic(5, 7, 100), "140 × 5 / 7 = 100");
    assert!(single_level_panic(4, 7, 100), "140 × 4 / 7 = 80");
    assert!(!single_level_panic(0, 4, 0), "threshold 0: never");
}

#[derive(Clone, Debug)]
enum Step {
    Fail(u8),
    Succeed(u8),
    Pick(Vec<u8>),
    Sweep(u16),
}

impl Arbitrary for Step {
    fn arbitrary(g: &mut Gen) -> Self {
        match u8::arbitrary(g) % 5 {
            0 => Step::Fail(u8::arbitrary(g)),
            1 => Step::Succeed(u8::arbitrary(g)),
            2 => Step::Sweep(u16::arbitrary(g)),
            _ => Step::Pick(Vec::<u8>::arbitrary(g).into_iter().take(3).collect()),
        }
    }
}

/// Whatever happens, without panic mode an ejected host is never picked, `avoid` is respected
/// whenever a non-avoided available host exists, and the ejection cap holds.
#[quickcheck]
fn ejected_never_picked_and_avoid_respected(
    policy: Policy,
    weights: Vec<u8>,
    percent: u8,
    steps: Vec<Step>,
    seed: u64,
) -> bool {
    let weights: Vec<u32> = weights
        .iter()
        .take(12)
        .map(|&w| u32::from(w % 4) + 1)
        .collect();
    let n = weights.len();
    if n == 0 {
        return true;
    }
    let cfg = OutlierDetection {
        interval: Duration::from_millis(100),
        base_ejection_time: Duration::from_millis(250),
        ..od(u32::from(percent % 101), 0)
    };
    let mut c = ClusterState::new(cluster(&weights, policy.0, Some(cfg)), s(0));
    let mut rng = EngineRng::with_seed(seed);
    let mut now = s(0);
    for step in steps {
        match step {
            Step::Fail(h) => {
                c.report(now, usize::from(h) % n, Outcome::Response(503));
            }
            Step::Succeed(h) => {
                c.report(now, usize::from(h) % n, Outcome::Response(200));
            }
            Step::Sweep(ms) => {
                now += Duration::from_millis(u64::from(ms % 1000));
                c.on_timer(now);
            }
            Step::Pick(avoid) => {
                let avoid: Vec<usize> = avoid.iter().map(|&a| usize::from(a) % n).collect();
                let available: Vec<usize> = (0..n).filter(|&h| !c.is_ejected(h)).collect();
                match c.pick(&mut rng, &avoid) {
                    Err(NoHealthyUpstream) => {
                        if !available.is_empty() {
                            return false;
                        }
                    }
                    Ok(p) => {
                        if p.panic || c.is_ejected(p.host) {
                            return false;
                        }
                        let escape = available.iter().any(|h| !avoid.contains(h));
                        if escape && avoid.contains(&p.host) {
                            return false;
                        }
                        c.request_started(p.host);
                    }
                }
            }
        }
        if c.ejected_count() * 100 > usize::from(percent % 101) * n {
            return false;
        }
    }
    true
}

/// Over a whole number of cycles, every policy's picks follow endpoint weights: exactly for
/// round robin, within one pick per host for weighted least request with no load, within 3
/// points for the random ones.
#[quickcheck]
fn distribution_follows_weights(policy: Policy, weights: Vec<u8>, seed: u64) -> bool {
    let weights: Vec<u32> = weights
        .iter()
        .take(8)
        .map(|&w| u32::from(w % 6) + 1)
        .collect();
    if weights.is_empty() {
        return true;
    }
    let total: u32 = weights.iter().sum();
    let uniform = weights.windows(2).all(|w| w[0] == w[1]);
    let mut c = ClusterState::new(cluster(&weights, policy.0, None), s(0));
    let mut rng = EngineRng::with_seed(seed);
    let cycles = 20_000 / total as usize + 1;
    let picks = cycles * total as usize;
    let mut counts = vec![0usize; weights.len()];
    for _ in 0..picks {
        counts[c.pick(&mut rng, &[]).unwrap().host] += 1;
    }
    let round_robin = matches!(policy.0, LbPolicy::RoundRobin);
    let scheduled_lr = !uniform && !round_robin && policy.0 != LbPolicy::Random;
    weights.iter().zip(&counts).all(|(&w, &got)| {
        let expected = cycles * w as usize;
        if round_robin {
            got == expected
        } else if scheduled_lr {
            // Floating-point deadlines (as in Envoy) may swap two turns that tie exactly, so a
            // host can be one turn ahead or behind at the cut.
            got.abs_diff(expected) <= 1
        } else {
            let share = got as f64 / picks as f64;
            (share - f64::from(w) / f64::from(total)).abs() < 0.03
        }
    })
}

#[test]
fn least_request_prefers_idle_hosts() {
    let mut rng = EngineRng::with_seed(3);
    let mut c = ClusterState::new(cluster(&[1, 1, 1], LbPolicy::Default, None), s(0));
    for _ in 0..5 {
        c.request_started(0);
        c.request_started(1);
    }
    // Host 2 is idle and the only least-loaded host: P2C never picks the busiest of its
    // choices, so host 2 wins whenever it is sampled, i.e. 2/3 of the time.
    let mut picks2 = 0;
    for _ in 0..3000 {
        if c.pick(&mut rng, &[]).unwrap().host == 2 {
            picks2 += 1;
        }
    }
    assert!((1900..2100).contains(&picks2), "{picks2}");
    c.request_finished(0);
    assert_eq!(c.active_requests(0), 4);
}

#[test]
fn carry_over_matches_hosts_by_address() {
    let mut rng = EngineRng::with_seed(4);
    let old_cfg = cluster(&[1, 1, 1, 1], LbPolicy::RoundRobin, Some(od(50, 0)));
    let mut old = ClusterState::new(old_cfg, s(0));
    assert!(old.report(s(1), 2, Outcome::Response(500)));
    old.request_started(3);
    assert!(old.breaker_mut().try_open_connection());
    old.pick(&mut rng, &[]).unwrap();

    // New snapshot: host 0 gone, the others reordered, one new host.
    let mut endpoints: Vec<Endpoint> = [3usize, 2, 1, 7]
        .iter()
        .map(|&i| Endpoint {
            sidecar: false,
            address: addr(i),
            weight: 1,
            labels: BTreeMap::new(),
        })
        .collect();
    endpoints[3].weight = 2;
    let new_cfg = Arc::new(Cluster {
        endpoints,
        ..(*cluster(&[], LbPolicy::RoundRobin, Some(od(50, 0)))).clone()
    });
    let mut new = ClusterState::new(new_cfg, s(5));
    new.carry_over(&old);
    assert!(new.is_ejected(1), "addr(2) is now host 1 and still ejected");
    assert_eq!(new.ejected_count(), 1);
    assert_eq!(new.active_requests(0), 1, "addr(3) is now host 0");
    assert_eq!(new.breaker().connections(), 1);
    assert_eq!(new.stats().ejections_total, 1);
    assert_eq!(new.host_index(addr(7)), Some(3));
    assert_eq!(new.host_address(3), addr(7));
    // The old sweep phase is kept: addr(2) returns at the 40 s sweep.
    assert_eq!(new.next_timer(), Some(s(10)));
    assert!(new.on_timer(s(30)).is_empty());
    assert_eq!(new.on_timer(s(40)), vec![1]);
    for _ in 0..10 {
        assert!(new.pick(&mut rng, &[]).is_ok());
    }
}

#[test]
fn carry_over_enforces_the_cap_of_the_new_snapshot() {
    let mut old = ClusterState::new(
        cluster(&[1, 1, 1, 1], LbPolicy::RoundRobin, Some(od(50, 0))),
        s(0),
    );
    assert!(old.report(s(1), 0, Outcome::Response(500)));
    assert!(old.report(s(2), 1, Outcome::Response(500)));
    // Two hosts at 50 %: only one may stay ejected; the one ending first returns.
    let new_cfg = cluster(&[1, 1], LbPolicy::RoundRobin, Some(od(50, 0)));
    let mut new = ClusterState::new(new_cfg, s(3));
    new.carry_over(&old);
    assert_eq!(new.ejected_count(), 1);
    assert!(!new.is_ejected(0) && new.is_ejected(1));
    // Without outlier detection in the new snapshot nothing stays ejected.
    let mut plain = ClusterState::new(cluster(&[1, 1], LbPolicy::RoundRobin, None), s(3));
    plain.carry_over(&old);
    assert_eq!(plain.ejected_count(), 0);
    assert_eq!(plain.next_timer(), None);
}

#[test]
fn out_of_range_hosts_are_ignored() {
    let mut c = ClusterState::new(cluster(&[1], LbPolicy::Random, Some(od(100, 0))), s(0));
    assert!(!c.report(s(1), 5, Outcome::Response(500)));
    c.request_started(9);
    c.request_finished(9);
    assert!(!c.is_ejected(9));
    assert_eq!(c.active_requests(9), 0);
}
