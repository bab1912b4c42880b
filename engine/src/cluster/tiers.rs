//! Priority levels and localities: which part of a cluster an attempt goes to before the
//! balancing policy picks a host in it.
//!
//! Envoy's `LoadBalancerBase` (source/extensions/load_balancing_policies/common/
//! load_balancer_impl.cc), as Istio's locality failover and `distribute` configure it:
//! - Each priority's *health* is `min(100, factor × healthy / hosts)` (factor 140 %, so a
//!   level keeps all its load until fewer than ~72 % of its hosts are healthy).
//! - Load is given to the levels in order, each taking up to its health, out of 100 scaled by
//!   the normalized total health (`recalculatePerPriorityState`, `distributeLoad`); what
//!   rounding leaves goes to the first level with any health.
//! - A level is in panic when the total health is below 100 and its healthy share is below
//!   the panic threshold (`recalculatePerPriorityPanic`); when all are, load follows host
//!   counts (`recalculateLoadInTotalPanic`). With threshold 0 (Istio's default) and nothing
//!   healthy anywhere, all load goes to priority 0, which then has no host to give.
//! - The level is drawn by `hash % 100 + 1` against the cumulative loads (`choosePriority`),
//!   with the request's hash for the hashing policies and a random draw otherwise.
//! - With locality weighting, a locality of the level is chosen by weight × `min(1, factor ×
//!   healthy / hosts)` (`HostSetImpl::effectiveLocalityWeight`), in smooth weighted round
//!   robin order (Envoy uses an EDF scheduler: the same sequence up to tie-breaking), then a
//!   host in it. Every rebuild starts the sequence at a random phase: Envoy builds the
//!   scheduler with `EdfScheduler::createWithPicks(entries, weight, seed)`, a random number of
//!   picks already made (`LocalityWrr::rebuildLocalityScheduler`, upstream_impl.cc), so a
//!   cluster whose hosts flap does not send the first picks of every rebuild to its heaviest
//!   locality.
//!
//! Deliberate simplifications: no degraded hosts (Trellis has no active health checks), the
//! consistent-hash policies balance over the whole level (Envoy folds locality weights into
//! the ring), and in panic a level pools all of its hosts.

use std::net::SocketAddr;

use super::balancer::Balancer;
use crate::config::LbPolicy;
use crate::locality::LocalityLb;
use crate::rng::EngineRng;

/// The layered balancer of one cluster.
#[derive(Clone, Debug)]
pub(crate) struct Tiers {
    levels: Vec<Level>,
    /// Per level, the percentage of attempts it takes; sums to 100.
    load: Vec<u32>,
    weighted: bool,
    /// The policy hashes (ring hash, Maglev): it balances over the whole level, so the
    /// locality schedule is never consulted.
    hashing: bool,
    factor: u64,
}

#[derive(Clone, Debug)]
struct Level {
    /// Every host of the level, in ascending index order.
    hosts: Vec<usize>,
    groups: Vec<Group>,
    /// The level's hosts pooled: used when localities are not weighted, in panic, and for the
    /// hashing policies.
    pooled: Balancer,
    healthy: usize,
    panic: bool,
}

#[derive(Clone, Debug)]
struct Group {
    hosts: Vec<usize>,
    weight: u64,
    balancer: Balancer,
    /// Weight scaled by availability, in thousandths (0: not chosen).
    effective: i64,
    /// Smooth weighted round robin's running score.
    current: i64,
}

/// Where a pick lands: a host, and whether its level was in panic.
pub(crate) struct TierPick {
    pub host: Option<usize>,
    pub panic: bool,
}

impl Tiers {
    pub(crate) fn new(layout: &LocalityLb, lb: LbPolicy, hosts: usize) -> Self {
        debug_assert!(
            layout.validate(hosts).is_ok(),
            "locality layout checked at compile"
        );
        let mut priorities: Vec<u32> = layout.groups.iter().map(|g| g.priority).collect();
        priorities.sort_unstable();
        priorities.dedup();
        let levels = priorities
            .iter()
            .map(|&p| {
                let groups: Vec<Group> = layout
                    .groups
                    .iter()
                    .filter(|g| g.priority == p)
                    .map(|g| Group {
                        hosts: g.hosts.clone(),
                        weight: u64::from(g.weight),
                        balancer: Balancer::new(lb, hosts),
                        effective: 0,
                        current: 0,
                    })
                    .collect();
                let mut level_hosts: Vec<usize> = groups
                    .iter()
                    .flat_map(|g| g.hosts.iter().copied())
                    .collect();
                level_hosts.sort_unstable();
                Level {
                    hosts: level_hosts,
                    groups,
                    pooled: Balancer::new(lb, hosts),
                    healthy: 0,
                    panic: false,
                }
            })
            .collect::<Vec<_>>();
        let mut load = vec![0; levels.len().max(1)];
        load[0] = 100;
        Tiers {
            levels,
            load,
            weighted: layout.weighted,
            hashing: matches!(lb, LbPolicy::RingHash { .. } | LbPolicy::Maglev { .. }),
            factor: u64::from(layout.factor()),
        }
    }

    /// Recompute health, loads, panic and every balancer's eligible set.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn refresh(
        &mut self,
        rng: &mut EngineRng,
        is_healthy: &dyn Fn(usize) -> bool,
        min_health_percent: u64,
        weights: &[u32],
        active: &[u32],
        addresses: &[SocketAddr],
    ) {
        let factor = self.factor;
        #[cfg(feature = "mutants")]
        let level_factor = if crate::mutants::route().locality_health_without_overprovisioning {
            100
        } else {
            factor
        };
        #[cfg(not(feature = "mutants"))]
        let level_factor = factor;
        let mut health = Vec::with_capacity(self.levels.len());
        for level in &mut self.levels {
            level.healthy = level.hosts.iter().filter(|&&h| is_healthy(h)).count();
            let total = level.hosts.len() as u64;
            let level_health = (level_factor * level.healthy as u64).checked_div(total);
            health.push(level_health.unwrap_or(0).min(100));
        }
        let total_health = health.iter().sum::<u64>().min(100);
        self.load.iter_mut().for_each(|l| *l = 0);
        let threshold = min_health_percent.min(100);
        if total_health == 0 && threshold == 0 {
            self.load[0] = 100;
            self.levels.iter_mut().for_each(|l| l.panic = false);
        } else {
            let mut all_panic = true;
            #[cfg(feature = "mutants")]
            let cluster_share = crate::mutants::route().priority_panic_per_cluster.then(|| {
                let hosts = self
                    .levels
                    .iter()
                    .map(|l| l.hosts.len() as u64)
                    .sum::<u64>();
                let healthy = self.levels.iter().map(|l| l.healthy as u64).sum::<u64>();
                (healthy, hosts)
            });
            for level in &mut self.levels {
                let total = level.hosts.len() as u64;
                let healthy_percent_below = |t: u64| (level.healthy as u64) * 100 < t * total;
                #[cfg(feature = "mutants")]
                let healthy_percent_below = |t: u64| match cluster_share {
                    Some((healthy, hosts)) => healthy * 100 < t * hosts,
                    None => healthy_percent_below(t),
                };
                level.panic = total_health < 100 && healthy_percent_below(threshold);
                all_panic &= level.panic;
            }
            if all_panic {
                self.load_by_host_counts();
            } else {
                self.distribute(&health, total_health);
            }
        }
        debug_assert_eq!(
            self.load.iter().sum::<u32>(),
            100,
            "priority loads sum to 100"
        );
        for level in &mut self.levels {
            let panic = level.panic;
            let eligible = |h: &usize| panic || is_healthy(*h);
            level.pooled.rebuild(
                rng,
                level.hosts.iter().copied().filter(eligible),
                weights,
                active,
                addresses,
            );
            for group in &mut level.groups {
                let healthy = group.hosts.iter().filter(|&&h| is_healthy(h)).count() as u64;
                let total = group.hosts.len() as u64;

                // weight × min(1, factor × healthy / total), kept in thousandths.
                let availability = (factor * healthy * 10)
                    .checked_div(total)
                    .unwrap_or(0)
                    .min(1000);
                group.effective = i64::try_from(group.weight * availability).unwrap_or(i64::MAX);
                group.current = 0;
                group.balancer.rebuild(
                    rng,
                    group.hosts.iter().copied().filter(|&h| is_healthy(h)),
                    weights,
                    active,
                    addresses,
                );
            }
            if self.weighted && !self.hashing {
                start_at_random_phase(&mut level.groups, rng);
            }
        }
    }

    /// `distributeLoad` for healthy hosts, with the remainder to the first healthy level.
    fn distribute(&mut self, health: &[u64], total_health: u64) {
        debug_assert!(total_health > 0);
        let mut left: u64 = 100;
        let mut first = None;
        for (i, &h) in health.iter().enumerate() {
            if first.is_none() && h > 0 {
                first = Some(i);
            }
            let share = (h * 100 / total_health).min(left);
            self.load[i] = share as u32;
            left -= share;
        }
        if left > 0 {
            let i = first.unwrap_or(0);
            self.load[i] += left as u32;
        }
    }

    /// `recalculateLoadInTotalPanic`: load by each level's share of all hosts.
    fn load_by_host_counts(&mut self) {
        let total: usize = self.levels.iter().map(|l| l.hosts.len()).sum();
        if total == 0 {
            self.load[0] = 100;
            return;
        }
        let mut left = 100u32;
        let mut first = None;
        for (i, level) in self.levels.iter().enumerate() {
            if first.is_none() && !level.hosts.is_empty() {
                first = Some(i);
            }
            let share = (100 * level.hosts.len() / total) as u32;
            self.load[i] = share;
            left -= share;
        }
        self.load[first.unwrap_or(0)] += left;
    }

    /// Choose a level (drawing only when there is more than one), then a host in it.
    pub(crate) fn pick(
        &mut self,
        rng: &mut EngineRng,
        weights: &[u32],
        active: &[u32],
        avoid: &[usize],
        hash: Option<u64>,
        hashing: bool,
    ) -> TierPick {
        let index = if self.levels.len() <= 1 {
            0
        } else {
            let draw = hash.unwrap_or_else(|| rng.next_u64()) % 100 + 1;
            let mut sum = 0u64;
            self.load
                .iter()
                .position(|&l| {
                    sum += u64::from(l);
                    draw <= sum
                })
                .unwrap_or(0)
        };
        let weighted = self.weighted && !hashing;
        #[cfg(feature = "mutants")]
        let weighted = weighted && !crate::mutants::route().locality_weights_ignored;
        let Some(level) = self.levels.get_mut(index) else {
            return TierPick {
                host: None,
                panic: false,
            };
        };
        let panic = level.panic;
        if panic || !weighted {
            let host = level.pooled.pick(rng, weights, active, avoid, hash);
            return TierPick { host, panic };
        }
        match choose_group(&mut level.groups) {
            Some(g) => TierPick {
                host: level.groups[g]
                    .balancer
                    .pick(rng, weights, active, avoid, hash),
                panic,
            },
            // No locality has availability: Envoy falls back to the level's healthy hosts.
            None => TierPick {
                host: level.pooled.pick(rng, weights, active, avoid, hash),
                panic,
            },
        }
    }

    /// The load each level takes (percent), for tests and `explain`.
    pub(crate) fn loads(&self) -> &[u32] {
        &self.load
    }

    #[cfg(feature = "mutants")]
    pub(crate) fn set_mutations(&mut self, m: crate::mutants::Mutations) {
        for level in &mut self.levels {
            level.pooled.set_mutations(m);
            for g in &mut level.groups {
                g.balancer.set_mutations(m);
            }
        }
    }
}

/// Pre-picks emulated at most when a level's schedule is rebuilt: the phase is uniform over
/// schedules up to this period, and close to it beyond.
const MAX_PRE_PICKS: u64 = 4096;

/// Advance freshly reset `groups` by a random number of picks below the schedule's period
/// (Envoy's `createWithPicks`). Only when two groups or more have weight: with one the phase
/// is moot, and no draw is spent.
fn start_at_random_phase(groups: &mut [Group], rng: &mut EngineRng) {
    debug_assert!(
        groups.iter().all(|g| g.current == 0),
        "schedule reset first"
    );
    let weighted = groups.iter().filter(|g| g.effective > 0);
    if weighted.clone().count() < 2 {
        return;
    }
    let divisor = weighted.fold(0u64, |d, g| gcd(d, g.effective.unsigned_abs()));
    let total: u64 = groups.iter().map(|g| g.effective.unsigned_abs()).sum();
    let period = (total / divisor.max(1)).clamp(1, MAX_PRE_PICKS);
    for _ in 0..rng.below_u64(period) {
        choose_group(groups);
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Smooth weighted round robin over the groups' effective weights: deterministic, and every
/// group with weight gets its share in every window of the total weight.
fn choose_group(groups: &mut [Group]) -> Option<usize> {
    let total: i64 = groups.iter().map(|g| g.effective).sum();
    if total == 0 {
        return None;
    }
    let mut best: Option<(usize, i64)> = None;
    for (i, g) in groups.iter_mut().enumerate() {
        if g.effective == 0 {
            continue;
        }
        g.current += g.effective;
        if best.is_none_or(|(_, c)| g.current > c) {
            best = Some((i, g.current));
        }
    }
    let (b, _) = best?;
    groups[b].current -= total;
    Some(b)
}
