//! Per-cluster upstream state: load balancing, outlier detection, circuit breaking.
//!
//! One [`ClusterState`] lives per cluster per engine (per core), built from a config snapshot's
//! [`config::Cluster`]. It answers "which host gets this attempt" ([`ClusterState::pick`]),
//! learns from how attempts end ([`ClusterState::report`], Envoy's passive health checking),
//! and enforces the cluster's connection-pool limits ([`CircuitBreaker`]). Everything follows
//! Envoy's semantics as Istio configures them; where we deliberately differ the module that
//! does it says so (the strict `max_ejection_percent` cap in [`outlier`], distinct samples in
//! least request, weights honoured by random).
//!
//! Hosts are identified by their index in the cluster's endpoint list. A config swap builds a
//! new state and calls [`ClusterState::carry_over`] with the old one, which matches hosts by
//! address so ejections, backoff multipliers, active-request counts, breaker counters and stats
//! survive endpoint churn.
//!
//! Panic mode is Envoy's panic threshold, configured by Istio's `minHealthPercent` (0 by default,
//! which turns it off): when fewer than that share of hosts is available, the balancer spreads
//! over all hosts, ejected or not, rather than overload the few that are left.
//!
//! Files: [`balancer`] (eligible set and policy dispatch), `round_robin`, `least_request`,
//! `random` (the policies), [`outlier`], [`breaker`], `stats`.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use crate::config;
use crate::rng::EngineRng;
use crate::time::Instant;

pub(crate) mod balancer;
pub mod breaker;
pub mod hash_policy;
mod least_request;
pub mod maglev;
pub mod outlier;
mod random;
pub mod ring_hash;
mod round_robin;
mod stats;
mod tiers;
pub mod xxhash;

use balancer::Balancer;
pub use breaker::{BreakerOverflow, CircuitBreaker};
pub use outlier::Detector;
use outlier::{OutlierDetector, Verdict};
pub use stats::ClusterStats;
use tiers::Tiers;

/// The host chosen for an attempt, and whether panic mode chose it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostPick {
    pub host: usize,
    pub panic: bool,
}

/// No host can take the attempt: the cluster has no endpoints, or all are ejected and panic mode
/// is off. The router answers 503 with response flag `UH`.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[error("no healthy upstream")]
pub struct NoHealthyUpstream;

/// What one upstream attempt ended with, for outlier detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A response head arrived with this status.
    Response(u16),
    /// The connection could not be established (refused, unreachable, connect timeout).
    ConnectFailed,
    /// The upstream closed or reset before or while sending the response.
    Reset,
    /// The per-try or route timeout fired before the response.
    Timeout,
}

/// Counters kept by the cluster state itself (the rest live in the breaker and detector).
#[derive(Clone, Copy, Debug, Default)]
struct OwnStats {
    ejections_total: u64,
    ejections_overflow: u64,
    ejections_5xx: u64,
    ejections_gateway: u64,
    ejections_local: u64,
    lb_healthy_panic: u64,
    none_healthy: u64,
}

/// Upstream state of one cluster: its hosts, balancer, outlier detector and circuit breaker.
#[derive(Clone, Debug)]
pub struct ClusterState {
    config: Arc<config::Cluster>,
    addresses: Vec<SocketAddr>,
    weights: Vec<u32>,
    active: Vec<u32>,
    balancer: Balancer,
    /// Priority levels and localities (Istio's `localityLbSetting`); `None`: one level, every
    /// host pooled in `balancer`.
    tiers: Option<Tiers>,
    outlier: Option<OutlierDetector>,
    breaker: CircuitBreaker,
    /// The eligible set must be recomputed before the next pick (ejections changed).
    dirty: bool,
    /// Panic mode as of the last recomputation.
    panic: bool,
    stats: OwnStats,
}

impl ClusterState {
    pub fn new(cluster: Arc<config::Cluster>, now: Instant) -> Self {
        let hosts = cluster.endpoints.len();
        let addresses = cluster.endpoints.iter().map(|e| e.address).collect();
        // Istio weights are >= 1; a 0 from elsewhere is read as 1 rather than "never".
        let weights = cluster.endpoints.iter().map(|e| e.weight.max(1)).collect();
        let outlier = cluster
            .outlier
            .as_ref()
            .map(|o| OutlierDetector::new(o, hosts, now));
        let tiers = cluster
            .locality
            .as_ref()
            .map(|layout| Tiers::new(layout, cluster.lb, hosts));
        ClusterState {
            balancer: Balancer::new(cluster.lb, hosts),
            tiers,
            breaker: CircuitBreaker::new(cluster.pool.clone()),
            addresses,
            weights,
            active: vec![0; hosts],
            outlier,
            config: cluster,
            dirty: true,
            panic: false,
            stats: OwnStats::default(),
        }
    }

    pub fn config(&self) -> &Arc<config::Cluster> {
        &self.config
    }

    /// After a config swap: keep per-host outlier state, ejections and active-request counts of
    /// hosts (matched by address) that still exist, the breaker's live counters and all stats.
    /// Duplicate addresses are matched in order of appearance.
    pub fn carry_over(&mut self, old: &ClusterState) {
        let mut by_address: std::collections::BTreeMap<SocketAddr, Vec<usize>> =
            std::collections::BTreeMap::new();
        for (i, addr) in old.addresses.iter().enumerate().rev() {
            by_address.entry(*addr).or_default().push(i);
        }
        let old_of: Vec<Option<usize>> = self
            .addresses
            .iter()
            .map(|addr| by_address.get_mut(addr).and_then(Vec::pop))
            .collect();
        for (active, old_host) in self.active.iter_mut().zip(&old_of) {
            if let Some(j) = old_host {
                *active = old.active.get(*j).copied().unwrap_or(0);
            }
        }
        if let (Some(new), Some(prev)) = (self.outlier.as_mut(), old.outlier.as_ref()) {
            new.carry_over(prev, &old_of);
        }
        self.breaker.carry_over(&old.breaker);
        self.stats = old.stats;
        self.dirty = true;
    }

    #[inline]
    pub fn host_count(&self) -> usize {
        self.addresses.len()
    }

    /// The address of `host`; `0.0.0.0:0` for an index that is not a host of this cluster
    /// (a caller bug, caught by a debug assertion).
    pub fn host_address(&self, host: usize) -> SocketAddr {
        debug_assert!(host < self.addresses.len(), "host {host} out of range");
        self.addresses
            .get(host)
            .copied()
            .unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
    }

    /// The index of the first host with this address (to map a host across config snapshots).
    pub fn host_index(&self, address: SocketAddr) -> Option<usize> {
        self.addresses.iter().position(|a| *a == address)
    }

    /// Requests in flight to `host` as counted by `request_started`/`request_finished`.
    pub fn active_requests(&self, host: usize) -> u32 {
        self.active.get(host).copied().unwrap_or(0)
    }

    /// Recompute the eligible set and panic mode after ejections changed.
    fn refresh(&mut self, rng: &mut EngineRng) {
        let hosts = self.addresses.len();
        let outlier = self.outlier.as_ref();
        let ejected = outlier.map_or(0, OutlierDetector::ejected_count);
        let available = hosts.saturating_sub(ejected);
        let min_health = self
            .config
            .outlier
            .as_ref()
            .map_or(0, |o| u64::from(o.min_health_percent.min(100)));
        #[cfg(feature = "mutants")]
        let min_health = if crate::mutants::route().panic_threshold_ignored {
            0
        } else {
            min_health
        };
        if let Some(tiers) = self.tiers.as_mut() {
            let is_healthy = |h: usize| !outlier.is_some_and(|o| o.is_ejected(h));
            tiers.refresh(
                rng,
                &is_healthy,
                min_health,
                &self.weights,
                &self.active,
                &self.addresses,
            );
            self.dirty = false;
            return;
        }
        self.panic = single_level_panic(available, hosts, min_health);
        let panic = self.panic;
        let eligible = (0..hosts).filter(|&h| panic || !outlier.is_some_and(|o| o.is_ejected(h)));
        self.balancer
            .rebuild(rng, eligible, &self.weights, &self.active, &self.addresses);
        self.dirty = false;
    }

    /// Pick a host by the cluster's `LbPolicy` among available (not ejected) hosts, weighted by
    /// endpoint weight; `avoid` lists hosts to skip if any other is available (retries prefer
    /// other hosts, Envoy's `previous_hosts` predicate). Panic mode (`min_health_percent`): when
    /// the available share is below it, pick among ALL hosts and return `panic: true`. With
    /// `min_health_percent` 0 (Istio's default) and no available host → `Err(NoHealthyUpstream)`.
    pub fn pick(
        &mut self,
        rng: &mut EngineRng,
        avoid: &[usize],
    ) -> Result<HostPick, NoHealthyUpstream> {
        self.pick_hashed(rng, avoid, None)
    }

    /// The consistent-hash key of this cluster, when its policy hashes (ring hash, Maglev).
    pub fn hash_key(&self) -> Option<&config::HashKey> {
        match self.config.lb {
            config::LbPolicy::RingHash { .. } | config::LbPolicy::Maglev { .. } => {
                self.config.hash_key.as_ref()
            }
            _ => None,
        }
    }

    /// [`Self::pick`] with the request's consistent-hash value (see [`hash_policy`]); only the
    /// ring hash and Maglev policies look at it.
    pub fn pick_hashed(
        &mut self,
        rng: &mut EngineRng,
        avoid: &[usize],
        hash: Option<u64>,
    ) -> Result<HostPick, NoHealthyUpstream> {
        if self.dirty {
            self.refresh(rng);
        }
        let picked = match self.tiers.as_mut() {
            Some(tiers) => {
                let hashing = matches!(
                    self.config.lb,
                    config::LbPolicy::RingHash { .. } | config::LbPolicy::Maglev { .. }
                );
                let pick = tiers.pick(rng, &self.weights, &self.active, avoid, hash, hashing);
                self.panic = pick.panic;
                pick.host
            }
            None => self
                .balancer
                .pick(rng, &self.weights, &self.active, avoid, hash),
        };
        match picked {
            Some(host) => {
                if self.panic {
                    self.stats.lb_healthy_panic += 1;
                }
                Ok(HostPick {
                    host,
                    panic: self.panic,
                })
            }
            None => {
                self.stats.none_healthy += 1;
                Err(NoHealthyUpstream)
            }
        }
    }

    /// A request to `host` started (least request counts these).
    pub fn request_started(&mut self, host: usize) {
        if let Some(a) = self.active.get_mut(host) {
            *a = a.saturating_add(1);
        }
    }

    /// A request to `host` finished. Saturates at zero: after a config swap a request that
    /// started on the old snapshot may finish here without having been counted.
    pub fn request_finished(&mut self, host: usize) {
        if let Some(a) = self.active.get_mut(host) {
            *a = a.saturating_sub(1);
        }
    }

    /// Feed outlier detection; ejection (if any) happens inline. Returns true if this report
    /// ejected the host.
    ///
    /// Inline: every response reports, most clusters have no outlier detection, and whether
    /// this was inlined across codegen units moved with unrelated changes (~18 instructions).
    #[inline]
    pub fn report(&mut self, now: Instant, host: usize, outcome: Outcome) -> bool {
        let Some(outlier) = self.outlier.as_mut() else {
            return false;
        };
        match outlier.report(now, host, outcome) {
            Verdict::Fine => false,
            Verdict::Overflow(_) => {
                self.stats.ejections_overflow += 1;
                false
            }
            Verdict::Ejected(detector) => {
                self.stats.ejections_total += 1;
                match detector {
                    Detector::Consecutive5xx => self.stats.ejections_5xx += 1,
                    Detector::ConsecutiveGatewayFailure => self.stats.ejections_gateway += 1,
                    Detector::ConsecutiveLocalOriginFailure => self.stats.ejections_local += 1,
                }
                self.dirty = true;
                true
            }
        }
    }

    pub fn is_ejected(&self, host: usize) -> bool {
        self.outlier.as_ref().is_some_and(|o| o.is_ejected(host))
    }

    #[inline]
    pub fn ejected_count(&self) -> usize {
        self.outlier
            .as_ref()
            .map_or(0, OutlierDetector::ejected_count)
    }

    /// When the current ejection of `host` ends (it returns at the first sweep at or after it).
    pub fn ejection_ends(&self, host: usize) -> Option<Instant> {
        self.outlier.as_ref().and_then(|o| o.ejection_ends(host))
    }

    /// The ejection-time multiplier of `host` (Envoy's backoff; 0 when never ejected or decayed).
    pub fn ejection_multiplier(&self, host: usize) -> u32 {
        self.outlier.as_ref().map_or(0, |o| o.multiplier(host))
    }

    /// Per priority level, the percentage of attempts it takes now (`[100]` without levels).
    pub fn priority_loads(&mut self, rng: &mut EngineRng) -> Vec<u32> {
        if self.dirty {
            self.refresh(rng);
        }
        self.tiers
            .as_ref()
            .map_or_else(|| vec![100], |t| t.loads().to_vec())
    }

    /// Whether the last pick was made in panic mode (recomputed when ejections change).
    pub fn in_panic(&self) -> bool {
        self.panic
    }

    /// Next outlier sweep instant, if outlier detection is on and a sweep could change
    /// anything (a host is ejected or a multiplier is still decaying); `None` otherwise, so an
    /// idle cluster never wakes the engine. Ask again after `report` (an ejection arms it).
    pub fn next_timer(&self) -> Option<Instant> {
        self.outlier.as_ref().and_then(OutlierDetector::next_timer)
    }

    /// Run due sweeps (un-eject hosts whose time is up, decay multipliers). Returns the hosts
    /// un-ejected, in index order per sweep.
    pub fn on_timer(&mut self, now: Instant) -> Vec<usize> {
        let Some(outlier) = self.outlier.as_mut() else {
            return Vec::new();
        };
        let back = outlier.on_timer(now);
        if !back.is_empty() {
            self.dirty = true;
        }
        back
    }

    /// Switch planted bugs on or off in this cluster's detector and breaker.
    #[cfg(feature = "mutants")]
    pub(crate) fn set_mutations(&mut self, m: crate::mutants::Mutations) {
        if let Some(o) = self.outlier.as_mut() {
            o.mutant_cap_off_by_one = m.ejection_cap_off_by_one;
            o.mutant_threshold_off_by_one = m.outlier_threshold_off_by_one;
            o.mutant_early_return = m.sweep_returns_early;
            o.mutant_never_decays = m.multiplier_never_decays;
            o.mutant_decay_ignores_guard = m.decay_ignores_return_guard;
            o.mutant_ignores_max = m.ejection_ignores_max;
            o.mutant_length_before_increment = m.ejection_length_before_increment;
            o.mutant_success_keeps_streak = m.success_keeps_5xx_streak;
            o.mutant_threshold_one_early = m.outlier_threshold_one_early;
            o.mutant_split_counts_local = m.split_still_counts_local_as_5xx;
        }
        self.breaker.mutant_late_check = m.pool_limit_after_increment;
        self.balancer.set_mutations(m);
        if let Some(t) = self.tiers.as_mut() {
            t.set_mutations(m);
        }
    }

    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    pub fn breaker_mut(&mut self) -> &mut CircuitBreaker {
        &mut self.breaker
    }

    /// A snapshot of the cluster's counters (taken by value: they live in several parts).
    pub fn stats(&self) -> ClusterStats {
        let o = self.breaker.overflow();
        ClusterStats {
            ejections_total: self.stats.ejections_total,
            ejections_active: self.ejected_count() as u64,
            ejections_overflow: self.stats.ejections_overflow,
            ejections_consecutive_5xx: self.stats.ejections_5xx,
            ejections_consecutive_gateway_failure: self.stats.ejections_gateway,
            ejections_consecutive_local_origin_failure: self.stats.ejections_local,
            cx_overflow: o.cx_overflow,
            pending_overflow: o.pending_overflow,
            rq_overflow: o.rq_overflow,
            retry_overflow: o.retry_overflow,
            lb_healthy_panic: self.stats.lb_healthy_panic,
            none_healthy: self.stats.none_healthy,
        }
    }
}

/// Panic mode of a cluster without priority levels: Envoy's `recalculatePerPriorityPanic` for
/// its one level. The level is in panic when its health, `min(100, 140 % × available /
/// hosts)`, is below 100 *and* the available share is below `min_health` (`isHostSetInPanic`):
/// the overprovisioning factor (Envoy's default, which pilot never changes) means a cluster
/// with at least ~72 % of its hosts available is never in panic, whatever the threshold, so
/// `minHealthPercent: 100` does not spread load over the ejected hosts of a mostly healthy
/// cluster. With nothing available and threshold 0 there is no panic (no healthy upstream).
fn single_level_panic(available: usize, hosts: usize, min_health: u64) -> bool {
    let (available, hosts) = (available as u64, hosts as u64);
    debug_assert!(
        available <= hosts,
        "more hosts available than the cluster has"
    );
    let factor = u64::from(crate::locality::DEFAULT_OVERPROVISIONING_FACTOR);
    let below_full_health = factor * available < 100 * hosts;
    #[cfg(feature = "mutants")]
    let below_full_health =
        below_full_health || crate::mutants::route().panic_without_overprovisioning;
    below_full_health && available * 100 < min_health * hosts
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tiers_tests;
