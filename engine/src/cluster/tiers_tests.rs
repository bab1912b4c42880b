//! Priority levels and localities (Envoy's LoadBalancerBase as Istio's locality failover and
//! `distribute` configure it): failover when the preferred level loses hosts, the 140 %
//! overprovisioning factor, locality weights scaled by availability, panic per level.

use super::*;
use crate::config::{Cluster, Endpoint, LbPolicy, OutlierDetection};
use crate::locality::{LocalityGroup, LocalityLb, LocalityLbError};
use std::collections::BTreeMap;

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 1, 0, i as u8 + 1], 8080))
}

/// A cluster of `groups` (priority, weight, host count) with consecutive host indices.
fn layered(
    groups: &[(u32, u32, usize)],
    weighted: bool,
    lb: LbPolicy,
    min_health: u32,
) -> Arc<Cluster> {
    let mut next = 0;
    let mut layout = LocalityLb {
        weighted,
        ..LocalityLb::default()
    };
    for (i, &(priority, weight, n)) in groups.iter().enumerate() {
        layout.groups.push(LocalityGroup {
            locality: format!("region{i}"),
            priority,
            weight,
            hosts: (next..next + n).collect(),
        });
        next += n;
    }
    Arc::new(Cluster {
        name: "outbound|80||svc".into(),
        endpoints: (0..next)
            .map(|i| Endpoint {
                sidecar: false,
                address: addr(i),
                weight: 1,
                labels: BTreeMap::new(),
            })
            .collect(),
        lb,
        outlier: Some(OutlierDetection {
            consecutive_5xx: 1,
            max_ejection_percent: 100,
            min_health_percent: min_health,
            ..OutlierDetection::default()
        }),
        locality: Some(layout),
        ..Cluster::default()
    })
}

fn eject(state: &mut ClusterState, hosts: impl IntoIterator<Item = usize>) {
    for h in hosts {
        assert!(
            state.report(Instant::ZERO, h, Outcome::Response(503)),
            "host {h} ejected"
        );
    }
}

fn counts(state: &mut ClusterState, rng: &mut EngineRng, picks: usize) -> Vec<usize> {
    let mut seen = vec![0; state.host_count()];
    for _ in 0..picks {
        let host = state.pick(rng, &[]).expect("a host").host;
        seen[host] += 1;
    }
    seen
}

#[test]
fn all_load_stays_on_priority_zero_while_it_is_healthy_enough() {
    // 10 hosts at P0, 10 at P1: 3 of 10 ejected leaves 70 % × 1.4 = 98 % for P0, so 2 % spills;
    // 2 of 10 ejected leaves 80 % × 1.4 = 112 % → capped at 100: nothing spills.
    let mut rng = EngineRng::with_seed(1);
    let mut state = ClusterState::new(
        layered(&[(0, 1, 10), (1, 1, 10)], false, LbPolicy::RoundRobin, 0),
        Instant::ZERO,
    );
    assert_eq!(state.priority_loads(&mut rng), vec![100, 0]);
    eject(&mut state, [0, 1]);
    assert_eq!(state.priority_loads(&mut rng), vec![100, 0]);
    let seen = counts(&mut state, &mut rng, 1000);
    assert!(
        seen[10..].iter().all(|&c| c == 0),
        "no pick at P1: {seen:?}"
    );
    eject(&mut state, [2]);
    assert_eq!(state.priority_loads(&mut rng), vec![98, 2]);
}

#[test]
fn failover_moves_all_load_when_the_preferred_level_is_gone() {
    let mut rng = EngineRng::with_seed(2);
    let mut state = ClusterState::new(
        layered(
            &[(0, 1, 2), (1, 1, 2), (2, 1, 2)],
            false,
            LbPolicy::Random,
            0,
        ),
        Instant::ZERO,
    );
    eject(&mut state, [0, 1]);
    assert_eq!(state.priority_loads(&mut rng), vec![0, 100, 0]);
    let seen = counts(&mut state, &mut rng, 400);
    assert_eq!(seen[0] + seen[1] + seen[4] + seen[5], 0, "{seen:?}");
    assert!(seen[2] > 100 && seen[3] > 100, "{seen:?}");
    // Half of P1 gone too: P1 health 70, P2 100 → loads 70 / 30 after normalisation.
    eject(&mut state, [2]);
    assert_eq!(state.priority_loads(&mut rng), vec![0, 70, 30]);
}

#[test]
fn nothing_healthy_without_panic_threshold_answers_no_healthy_upstream() {
    let mut rng = EngineRng::with_seed(3);
    let mut state = ClusterState::new(
        layered(&[(0, 1, 1), (1, 1, 1)], false, LbPolicy::RoundRobin, 0),
        Instant::ZERO,
    );
    eject(&mut state, [0, 1]);
    assert_eq!(state.priority_loads(&mut rng), vec![100, 0]);
    assert_eq!(state.pick(&mut rng, &[]), Err(NoHealthyUpstream));
}

#[test]
fn total_panic_spreads_by_host_counts_over_all_hosts() {
    // Threshold 50 %: both levels below it and total health < 100 → total panic, load 25/75.
    let mut rng = EngineRng::with_seed(4);
    let mut state = ClusterState::new(
        layered(&[(0, 1, 1), (1, 1, 3)], false, LbPolicy::RoundRobin, 50),
        Instant::ZERO,
    );
    eject(&mut state, [0, 1, 2]);
    assert_eq!(state.priority_loads(&mut rng), vec![25, 75]);
    let pick = state.pick(&mut rng, &[]).expect("panic picks");
    assert!(pick.panic);
}

#[test]
fn weighted_localities_split_by_weight_and_shrink_with_availability() {
    // distribute: 80 / 20 over two localities of one level, four hosts each.
    let mut rng = EngineRng::with_seed(5);
    let mut state = ClusterState::new(
        layered(&[(0, 80, 4), (0, 20, 4)], true, LbPolicy::RoundRobin, 0),
        Instant::ZERO,
    );
    let seen = counts(&mut state, &mut rng, 1000);
    let first: usize = seen[..4].iter().sum();
    assert_eq!(first, 800, "{seen:?}");
    // Two of the first locality's four hosts ejected: availability min(1, 1.4 × 0.5) = 0.7,
    // so its effective weight is 56 against 20.
    eject(&mut state, [0, 1]);
    let seen = counts(&mut state, &mut rng, 760);
    let first: usize = seen[..4].iter().sum();
    assert_eq!(first, 560, "{seen:?}");
    assert_eq!(seen[0] + seen[1], 0);
}

#[test]
fn a_single_level_draws_nothing_extra() {
    // One level, unweighted: the same picks as a cluster without a layout.
    let plain = {
        let c = layered(&[(0, 1, 5)], false, LbPolicy::Random, 0);
        let mut c = (*c).clone();
        c.locality = None;
        Arc::new(c)
    };
    let mut a = ClusterState::new(plain, Instant::ZERO);
    let mut b = ClusterState::new(
        layered(&[(0, 1, 5)], false, LbPolicy::Random, 0),
        Instant::ZERO,
    );
    let (mut ra, mut rb) = (EngineRng::with_seed(9), EngineRng::with_seed(9));
    for _ in 0..200 {
        assert_eq!(a.pick(&mut ra, &[]), b.pick(&mut rb, &[]));
    }
}

#[test]
fn a_layout_must_place_every_endpoint_once() {
    let layout = |hosts: Vec<Vec<usize>>| LocalityLb {
        groups: hosts
            .into_iter()
            .map(|hosts| LocalityGroup {
                hosts,
                ..LocalityGroup::default()
            })
            .collect(),
        ..LocalityLb::default()
    };
    assert_eq!(layout(vec![vec![0], vec![1]]).validate(2), Ok(()));
    assert_eq!(
        layout(vec![vec![0]]).validate(2),
        Err(LocalityLbError::Unplaced { host: 1 })
    );
    assert_eq!(
        layout(vec![vec![0, 1], vec![1]]).validate(2),
        Err(LocalityLbError::PlacedTwice { host: 1 })
    );
    assert!(matches!(
        layout(vec![vec![0, 2]]).validate(2),
        Err(LocalityLbError::OutOfRange { .. })
    ));
}

/// Envoy rebuilds a level's locality scheduler with `EdfScheduler::createWithPicks(entries,
/// weight, seed)` (`LocalityWrr::rebuildLocalityScheduler`, upstream_impl.cc): a random number
/// of picks already made, so the first picks after a rebuild are not always the heaviest
/// locality's. Weights 5 and 1: the first pick of a fresh schedule lands in the light one
/// about once in six, never in none.
#[test]
fn a_rebuilt_locality_schedule_starts_at_a_random_phase() {
    let mut light_first = 0;
    for seed in 0..600 {
        let mut rng = EngineRng::with_seed(seed);
        let mut state = ClusterState::new(
            layered(&[(0, 5, 1), (0, 1, 1)], true, LbPolicy::RoundRobin, 0),
            Instant::ZERO,
        );
        if state.pick(&mut rng, &[]).expect("a host").host == 1 {
            light_first += 1;
        }
    }
    assert!(
        (50..=160).contains(&light_first),
        "{light_first} of 600 first picks in the weight-1 locality, expected about 100"
    );
}
