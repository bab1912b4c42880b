//! The load balancer of one cluster: which hosts are eligible, and the policy that picks one.
//!
//! The eligible set (hosts not ejected, or every host in panic mode) changes only when an
//! ejection starts or ends, so it is materialised as a list and each policy builds its
//! structures (a rotating index, an EDF schedule, prefix sums) over it at that moment, as Envoy
//! rebuilds its schedulers on host-set changes. Picking then touches only those structures: no
//! scan of all hosts and no allocation in the common case.
//!
//! `avoid` (Envoy's `previous_hosts` retry predicate) only matters when it leaves at least one
//! eligible host; if it excludes every eligible host it is ignored, as Envoy falls back to the
//! last host it drew after its selection attempts run out.

use std::net::SocketAddr;

use super::least_request::{LeastRequest, DEFAULT_CHOICES};
use super::maglev::Maglev;
use super::random::WeightedRandom;
use super::ring_hash::RingHash;
use super::round_robin::RoundRobin;
use crate::config::LbPolicy;
use crate::rng::EngineRng;

#[derive(Clone, Debug)]
enum Policy {
    RoundRobin(RoundRobin),
    LeastRequest(LeastRequest),
    Random(WeightedRandom),
    RingHash(RingHash),
    Maglev(Maglev),
}

/// Balancer state of one cluster.
#[derive(Clone, Debug)]
pub(crate) struct Balancer {
    policy: Policy,
    eligible: Vec<usize>,
    /// `is_eligible[host]`, to tell quickly whether `avoid` leaves anything.
    is_eligible: Vec<bool>,
}

impl Balancer {
    pub(crate) fn new(lb: LbPolicy, hosts: usize) -> Self {
        let policy = match lb {
            LbPolicy::RoundRobin => Policy::RoundRobin(RoundRobin::default()),
            LbPolicy::LeastRequest { choice_count } => {
                Policy::LeastRequest(LeastRequest::new(choice_count))
            }
            LbPolicy::Default => Policy::LeastRequest(LeastRequest::new(DEFAULT_CHOICES)),
            LbPolicy::Random => Policy::Random(WeightedRandom::default()),
            LbPolicy::RingHash { minimum_ring_size } => {
                Policy::RingHash(RingHash::new(minimum_ring_size))
            }
            LbPolicy::Maglev { table_size } => Policy::Maglev(Maglev::new(table_size)),
        };
        Balancer {
            policy,
            eligible: Vec::with_capacity(hosts),
            is_eligible: vec![false; hosts],
        }
    }

    /// Rebuild over a new eligible set.
    pub(crate) fn rebuild(
        &mut self,
        rng: &mut EngineRng,
        eligible: impl Iterator<Item = usize>,
        weights: &[u32],
        active: &[u32],
        addresses: &[SocketAddr],
    ) {
        self.eligible.clear();
        self.eligible.extend(eligible);
        self.is_eligible.iter_mut().for_each(|e| *e = false);
        for &h in &self.eligible {
            if let Some(e) = self.is_eligible.get_mut(h) {
                *e = true;
            }
        }
        let weight = |h: &usize| weights.get(*h).copied().unwrap_or(1).max(1);
        let uniform = self
            .eligible
            .first()
            .map(weight)
            .is_none_or(|w0| self.eligible.iter().all(|h| weight(h) == w0));
        match &mut self.policy {
            Policy::RoundRobin(rr) => rr.rebuild(rng, &self.eligible, weights, uniform),
            Policy::LeastRequest(lr) => lr.rebuild(rng, &self.eligible, weights, active, uniform),
            Policy::Random(r) => r.rebuild(&self.eligible, weights, uniform),
            Policy::RingHash(r) => r.rebuild(&self.eligible, weights, addresses),
            Policy::Maglev(m) => m.rebuild(&self.eligible, weights, addresses),
        }
    }

    /// Switch the planted balancing bugs on or off.
    #[cfg(feature = "mutants")]
    pub(crate) fn set_mutations(&mut self, m: crate::mutants::Mutations) {
        match &mut self.policy {
            Policy::Random(r) => r.mutant_prefix = m.random_prefix_bound_off_by_one,
            Policy::RoundRobin(rr) => rr.mutant_extra_turn = m.round_robin_extra_turn,
            Policy::LeastRequest(lr) => lr.mutant_busier = m.least_request_prefers_busier,
            Policy::RingHash(_) | Policy::Maglev(_) => {}
        }
    }

    /// Whether `avoid` excludes some but not all eligible hosts.
    fn avoid_matters(&self, avoid: &[usize]) -> bool {
        let mut excluded = 0;
        for (i, &h) in avoid.iter().enumerate() {
            let eligible = self.is_eligible.get(h).copied().unwrap_or(false);
            if eligible && !avoid.get(..i).is_some_and(|before| before.contains(&h)) {
                excluded += 1;
            }
        }
        excluded > 0 && excluded < self.eligible.len()
    }

    /// Pick an eligible host, preferring hosts outside `avoid`. `None` only when nothing is
    /// eligible. The consistent-hash policies pick by `hash` (a random one when the request
    /// gave none, as Envoy does) and ignore `avoid`: pilot drops the previous-hosts retry
    /// predicate on a route with a hash policy (ConvertPolicy in
    /// pilot/pkg/networking/core/route/retry/retry.go), so a retry goes to the same host.
    pub(crate) fn pick(
        &mut self,
        rng: &mut EngineRng,
        weights: &[u32],
        active: &[u32],
        avoid: &[usize],
        hash: Option<u64>,
    ) -> Option<usize> {
        if self.eligible.is_empty() {
            return None;
        }
        #[cfg(feature = "mutants")]
        let hash = hash.filter(|_| !crate::mutants::route().consistent_hash_ignores_key);
        match &self.policy {
            Policy::RingHash(r) => return r.pick(hash.unwrap_or_else(|| rng.next_u64())),
            Policy::Maglev(m) => return m.pick(hash.unwrap_or_else(|| rng.next_u64())),
            _ => {}
        }
        let avoid = if !avoid.is_empty() && self.avoid_matters(avoid) {
            avoid
        } else {
            &[]
        };
        match &mut self.policy {
            Policy::RoundRobin(rr) => rr.pick(&self.eligible, avoid),
            Policy::LeastRequest(lr) => lr.pick(rng, &self.eligible, weights, active, avoid),
            Policy::Random(r) => r.pick(rng, &self.eligible, weights, avoid),
            Policy::RingHash(r) => r.pick(hash.unwrap_or(0)),
            Policy::Maglev(m) => m.pick(hash.unwrap_or(0)),
        }
    }
}
