//! Outlier detection (passive health checking) with Envoy's semantics, as Istio configures it.
//!
//! Every finished upstream attempt is reported with its [`Outcome`]. Three consecutive-error
//! detectors watch each host; a threshold of 0 switches a detector off:
//!
//! * **consecutive 5xx**: any 5xx response. Unless `split_external_local_origin_errors`, local
//!   failures count too: Envoy maps a connect failure or reset to 503 and a timeout to 504.
//! * **consecutive gateway errors**: 502, 503, 504 (and, unsplit, the same local failures). Any
//!   other response, including a 500, resets it.
//! * **consecutive local-origin failures**: only with the split on; then local failures count
//!   here only, and any response from the host (it connected) resets it.
//!
//! A success resets the 5xx and gateway counters. A counter reaching its threshold detects the
//! host as an outlier and it is ejected **inline** (Envoy does it on its main thread a moment
//! later; a sans-IO engine has no reason to wait), unless that would break the cap:
//!
//! * `max_ejection_percent` is never exceeded: a host is ejected only if
//!   `(ejected + 1) × 100 ≤ max_ejection_percent × hosts`. Old Envoy "always ejected at least
//!   one host", so a 3-host cluster with the 10 % default still lost one host
//!   (envoyproxy/envoy#3263); newer Envoy made that opt-in (`always_eject_one_host`). We keep the
//!   cap strict, which makes it an invariant the simulator can check. A refused ejection counts
//!   `ejections_overflow` and resets the counter that fired, so the next full run of errors
//!   tries again.
//! * The ejection lasts `base_ejection_time × multiplier`, capped at `max_ejection_time`. The
//!   multiplier grows by one per ejection (Envoy stops growing it once `base × multiplier` is
//!   past `max + base`, so it stays bounded) and all the host's counters reset.
//! * Every `interval`, counted from the detector's creation, a sweep returns hosts whose time is
//!   up (`ejected_at + ejection_time <= sweep instant`) and decrements the multiplier of every
//!   host that is not ejected and was not returned in the last interval (Envoy's guard: the
//!   sweep that returns a host does not also decay it).
//!
//! Reports about a host that is currently ejected (requests that were in flight when it was
//! ejected) are ignored: Envoy counts them but clears the counters on return, which comes to the
//! same. Success-rate and failure-percentage detectors are not part of Istio's API and are not
//! implemented; Istio's enforcing percentages are 100 %, so detection always enforces.
//!
//! Sweeps that cannot change anything (nothing ejected, every multiplier at zero) are skipped:
//! [`OutlierDetector::next_timer`] is `None` then, so an idle cluster costs no wake-ups. The sweep
//! phase stays anchored at creation. A driver that wakes late gets every due sweep applied at
//! its own instant, in time proportional to the number of ejected hosts, not of sweeps.

use std::time::Duration;

use super::Outcome;
use crate::config::OutlierDetection;
use crate::time::Instant;

/// The shortest sweep interval honoured (Envoy's API requires a positive interval; zero would
/// make the sweep schedule degenerate).
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// Which detector found the host to be an outlier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detector {
    Consecutive5xx,
    ConsecutiveGatewayFailure,
    ConsecutiveLocalOriginFailure,
}

/// What one report led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing to do.
    Fine,
    /// The host was ejected by this detector.
    Ejected(Detector),
    /// The host was detected but `max_ejection_percent` prevented the ejection.
    Overflow(Detector),
}

/// An ongoing ejection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ejection {
    ends: Instant,
}

/// Outlier state of one host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct HostOutlier {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    consecutive_local: u32,
    /// Envoy's ejection-time backoff: how many base times the next ejection lasts, minus one.
    multiplier: u32,
    ejection: Option<Ejection>,
    last_unejected: Option<Instant>,
}

impl HostOutlier {
    fn reset_counters(&mut self) {
        self.consecutive_5xx = 0;
        self.consecutive_gateway = 0;
        self.consecutive_local = 0;
    }
}

/// Which detectors fired on one report.
#[derive(Clone, Copy, Debug, Default)]
struct Fired {
    c5xx: bool,
    gateway: bool,
    local: bool,
}

impl Fired {
    /// The detector credited with the ejection when several fire at once.
    fn detector(self) -> Option<Detector> {
        if self.c5xx {
            Some(Detector::Consecutive5xx)
        } else if self.gateway {
            Some(Detector::ConsecutiveGatewayFailure)
        } else if self.local {
            Some(Detector::ConsecutiveLocalOriginFailure)
        } else {
            None
        }
    }
}

fn reached(counter: u32, threshold: u32) -> bool {
    threshold > 0 && counter >= threshold
}

fn is_gateway_error(status: u16) -> bool {
    matches!(status, 502..=504)
}

/// Outlier detection for the hosts of one cluster (indexed like the cluster's endpoints).
#[derive(Clone, Debug)]
pub(crate) struct OutlierDetector {
    cfg: OutlierDetection,
    interval: Duration,
    created: Instant,
    hosts: Vec<HostOutlier>,
    ejected: usize,
    /// Whether a sweep could change anything (a host ejected or a multiplier above zero).
    busy: bool,
    /// The next sweep instant (stale while not busy; realigned when work appears).
    next_sweep: Instant,
    /// Planted bug (feature `mutants`): the cap check forgets the host about to be ejected.
    #[cfg(feature = "mutants")]
    pub(crate) mutant_cap_off_by_one: bool,
    /// Planted bug (feature `mutants`): consecutive 5xx fires one error late.
    #[cfg(feature = "mutants")]
    pub(crate) mutant_threshold_off_by_one: bool,
    /// Planted bug (feature `mutants`): sweeps return hosts one interval early.
    #[cfg(feature = "mutants")]
    pub(crate) mutant_early_return: bool,
    /// Planted bug (feature `mutants`): sweeps never decay multipliers.
    #[cfg(feature = "mutants")]
    pub(crate) mutant_never_decays: bool,
    /// Planted bug (feature `mutants`): decay ignores the "returned within the last interval"
    /// guard.
    #[cfg(feature = "mutants")]
    pub(crate) mutant_decay_ignores_guard: bool,
    /// Planted bug (feature `mutants`): the ejection length ignores `max_ejection_time`.
    #[cfg(feature = "mutants")]
    pub(crate) mutant_ignores_max: bool,
    /// Planted bug (feature `mutants`): the ejection length uses the multiplier before its
    /// increment.
    #[cfg(feature = "mutants")]
    pub(crate) mutant_length_before_increment: bool,
    /// Planted bug (feature `mutants`): a non-5xx response leaves the 5xx counter alone.
    #[cfg(feature = "mutants")]
    pub(crate) mutant_success_keeps_streak: bool,
    /// Planted bug (feature `mutants`): consecutive 5xx fires one error early.
    #[cfg(feature = "mutants")]
    pub(crate) mutant_threshold_one_early: bool,
    /// Planted bug (feature `mutants`): split local-origin failures still count as 5xx.
    #[cfg(feature = "mutants")]
    pub(crate) mutant_split_counts_local: bool,
}

impl OutlierDetector {
    pub(crate) fn new(cfg: &OutlierDetection, hosts: usize, now: Instant) -> Self {
        let interval = cfg.interval.max(MIN_INTERVAL);
        OutlierDetector {
            cfg: cfg.clone(),
            interval,
            created: now,
            hosts: vec![HostOutlier::default(); hosts],
            ejected: 0,
            busy: false,
            next_sweep: now + interval,
            #[cfg(feature = "mutants")]
            mutant_cap_off_by_one: false,
            #[cfg(feature = "mutants")]
            mutant_threshold_off_by_one: false,
            #[cfg(feature = "mutants")]
            mutant_early_return: false,
            #[cfg(feature = "mutants")]
            mutant_never_decays: false,
            #[cfg(feature = "mutants")]
            mutant_decay_ignores_guard: false,
            #[cfg(feature = "mutants")]
            mutant_ignores_max: false,
            #[cfg(feature = "mutants")]
            mutant_length_before_increment: false,
            #[cfg(feature = "mutants")]
            mutant_success_keeps_streak: false,
            #[cfg(feature = "mutants")]
            mutant_threshold_one_early: false,
            #[cfg(feature = "mutants")]
            mutant_split_counts_local: false,
        }
    }

    fn interval_nanos(&self) -> u64 {
        u64::try_from(self.interval.as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn is_ejected(&self, host: usize) -> bool {
        self.hosts.get(host).is_some_and(|h| h.ejection.is_some())
    }

    #[inline]
    pub(crate) fn ejected_count(&self) -> usize {
        self.ejected
    }

    /// The current ejection-time multiplier of a host (0 for one never ejected or fully decayed).
    pub(crate) fn multiplier(&self, host: usize) -> u32 {
        self.hosts.get(host).map_or(0, |h| h.multiplier)
    }

    /// When the ejection of `host` ends, if it is ejected.
    pub(crate) fn ejection_ends(&self, host: usize) -> Option<Instant> {
        self.hosts
            .get(host)
            .and_then(|h| h.ejection.map(|e| e.ends))
    }

    /// The next sweep, or `None` while no sweep could change anything.
    pub(crate) fn next_timer(&self) -> Option<Instant> {
        self.busy.then_some(self.next_sweep)
    }

    /// Whether one more ejection keeps the ejected share within `max_ejection_percent`.
    fn may_eject_one_more(&self) -> bool {
        let percent = u64::from(self.cfg.max_ejection_percent.min(100));
        let hosts = self.hosts.len() as u64;
        #[cfg(feature = "mutants")]
        if self.mutant_cap_off_by_one {
            return self.ejected as u64 * 100 <= percent * hosts;
        }
        (self.ejected as u64 + 1) * 100 <= percent * hosts
    }

    /// Feed one outcome for `host`; ejects inline when a detector fires and the cap allows.
    pub(crate) fn report(&mut self, now: Instant, host: usize, outcome: Outcome) -> Verdict {
        let cfg = &self.cfg;
        let Some(h) = self.hosts.get_mut(host) else {
            return Verdict::Fine;
        };
        if h.ejection.is_some() {
            return Verdict::Fine;
        }
        let split = cfg.split_external_local_origin_errors;
        let mut fired = Fired::default();
        let status = match outcome {
            Outcome::Response(status) => {
                if split {
                    // The host answered, so the connection worked.
                    h.consecutive_local = 0;
                }
                Some(status)
            }
            Outcome::ConnectFailed | Outcome::Reset if !split => Some(503),
            Outcome::Timeout if !split => Some(504),
            Outcome::ConnectFailed | Outcome::Reset | Outcome::Timeout => None,
        };
        match status {
            None => {
                h.consecutive_local = h.consecutive_local.saturating_add(1);
                fired.local = reached(h.consecutive_local, cfg.consecutive_local_origin_failures);
                #[cfg(feature = "mutants")]
                if self.mutant_split_counts_local {
                    h.consecutive_5xx = h.consecutive_5xx.saturating_add(1);
                    fired.c5xx = reached(h.consecutive_5xx, cfg.consecutive_5xx);
                }
            }
            Some(status) if (500..=599).contains(&status) => {
                if is_gateway_error(status) {
                    h.consecutive_gateway = h.consecutive_gateway.saturating_add(1);
                    fired.gateway = reached(h.consecutive_gateway, cfg.consecutive_gateway_errors);
                } else {
                    h.consecutive_gateway = 0;
                }
                h.consecutive_5xx = h.consecutive_5xx.saturating_add(1);
                fired.c5xx = reached(h.consecutive_5xx, cfg.consecutive_5xx);
                #[cfg(feature = "mutants")]
                if self.mutant_threshold_off_by_one {
                    fired.c5xx = cfg.consecutive_5xx > 0 && h.consecutive_5xx > cfg.consecutive_5xx;
                }
                #[cfg(feature = "mutants")]
                if self.mutant_threshold_one_early {
                    fired.c5xx = reached(h.consecutive_5xx + 1, cfg.consecutive_5xx);
                }
            }
            Some(_) => {
                #[cfg(feature = "mutants")]
                let kept = self
                    .mutant_success_keeps_streak
                    .then_some(h.consecutive_5xx);
                h.consecutive_5xx = 0;
                h.consecutive_gateway = 0;
                #[cfg(feature = "mutants")]
                if let Some(kept) = kept {
                    h.consecutive_5xx = kept;
                }
            }
        }
        let Some(detector) = fired.detector() else {
            return Verdict::Fine;
        };
        if self.may_eject_one_more() {
            self.eject(now, host);
            Verdict::Ejected(detector)
        } else {
            if let Some(h) = self.hosts.get_mut(host) {
                if fired.c5xx {
                    h.consecutive_5xx = 0;
                }
                if fired.gateway {
                    h.consecutive_gateway = 0;
                }
                if fired.local {
                    h.consecutive_local = 0;
                }
            }
            Verdict::Overflow(detector)
        }
    }

    fn eject(&mut self, now: Instant, host: usize) {
        let base = self.cfg.base_ejection_time;
        // Envoy refuses max < base; we read that as "at least one base time".
        let max = self.cfg.max_ejection_time.max(base);
        let Some(h) = self.hosts.get_mut(host) else {
            return;
        };
        let base_n = base.as_nanos();
        #[cfg(feature = "mutants")]
        let before = h.multiplier;
        if base_n.saturating_mul(u128::from(h.multiplier)) < max.as_nanos().saturating_add(base_n) {
            h.multiplier = h.multiplier.saturating_add(1);
        }
        #[allow(unused_mut)]
        let mut multiplier = h.multiplier;
        #[allow(unused_mut)]
        let mut cap = max;
        #[cfg(feature = "mutants")]
        {
            if self.mutant_length_before_increment {
                multiplier = before;
            }
            if self.mutant_ignores_max {
                cap = Duration::MAX;
            }
        }
        let length = base
            .checked_mul(multiplier)
            .unwrap_or(Duration::MAX)
            .min(cap);
        h.ejection = Some(Ejection { ends: now + length });
        h.reset_counters();
        self.ejected += 1;
        if !self.busy {
            self.busy = true;
            self.realign_after(now);
        }
    }

    /// Move a stale `next_sweep` to the first sweep instant after `now` on the original grid.
    fn realign_after(&mut self, now: Instant) {
        if self.next_sweep > now {
            return;
        }
        let iv = self.interval_nanos();
        let behind = now.as_nanos() - self.next_sweep.as_nanos();
        let steps = behind / iv + 1;
        self.next_sweep = Instant::from_nanos(
            self.next_sweep
                .as_nanos()
                .saturating_add(steps.saturating_mul(iv)),
        );
    }

    fn compute_busy(&self) -> bool {
        self.ejected > 0 || self.hosts.iter().any(|h| h.multiplier > 0)
    }

    /// Run every sweep due at or before `now`; returns the hosts that came back, in order.
    pub(crate) fn on_timer(&mut self, now: Instant) -> Vec<usize> {
        let mut back = Vec::new();
        let iv = self.interval_nanos();
        while self.busy && self.next_sweep <= now {
            let next = self.next_sweep.as_nanos();
            let due = (now.as_nanos() - next) / iv + 1;
            // Sweeps before the first return are decay-only and can be applied in bulk.
            let first_return = self
                .hosts
                .iter()
                .filter_map(|h| h.ejection.map(|e| e.ends.as_nanos()))
                .min();
            let quiet = match first_return {
                None => due,
                Some(ends) if ends <= next => 0,
                Some(ends) => due.min((ends - next).div_ceil(iv)),
            };
            if quiet > 0 {
                self.decay(self.next_sweep, quiet);
                self.next_sweep =
                    Instant::from_nanos(next.saturating_add(quiet.saturating_mul(iv)));
            } else {
                let at = self.next_sweep;
                self.return_hosts(at, &mut back);
                self.decay(at, 1);
                self.next_sweep = Instant::from_nanos(next.saturating_add(iv));
            }
            self.busy = self.compute_busy();
            if self.next_sweep == Instant::FAR_FUTURE {
                break;
            }
        }
        back
    }

    /// Un-eject every host whose ejection has ended by the sweep at `at`.
    fn return_hosts(&mut self, at: Instant, back: &mut Vec<usize>) {
        #[allow(unused_mut)]
        let mut cutoff = at;
        #[cfg(feature = "mutants")]
        if self.mutant_early_return {
            cutoff = at + self.interval;
        }
        for (i, h) in self.hosts.iter_mut().enumerate() {
            if h.ejection.is_some_and(|e| e.ends <= cutoff) {
                h.ejection = None;
                h.last_unejected = Some(at);
                h.reset_counters();
                self.ejected = self.ejected.saturating_sub(1);
                back.push(i);
            }
        }
    }

    /// Apply `count` sweeps' worth of multiplier decay, the sweeps being at `first`,
    /// `first + interval`, ... A host decays on a sweep when it is not ejected and was not
    /// returned within the last interval before that sweep.
    fn decay(&mut self, first: Instant, count: u64) {
        #[cfg(feature = "mutants")]
        if self.mutant_never_decays {
            return;
        }
        #[cfg(feature = "mutants")]
        let guard = !self.mutant_decay_ignores_guard;
        #[cfg(not(feature = "mutants"))]
        let guard = true;
        let iv = self.interval_nanos();
        let first = first.as_nanos();
        for h in &mut self.hosts {
            if h.ejection.is_some() || h.multiplier == 0 {
                continue;
            }
            // Sweeps s with s >= last_unejected + interval.
            let skipped = match h.last_unejected {
                Some(u) if guard => {
                    let ok_from = u.as_nanos().saturating_add(iv);
                    if ok_from <= first {
                        0
                    } else {
                        (ok_from - first).div_ceil(iv)
                    }
                }
                _ => 0,
            };
            let decays = count.saturating_sub(skipped);
            let decays = u32::try_from(decays).unwrap_or(u32::MAX);
            h.multiplier = h.multiplier.saturating_sub(decays);
        }
    }

    /// Take the state of hosts that survive a config swap. `old_of[new]` is the index of the
    /// same address in `old`. Ejections beyond the new cap (fewer hosts, lower percentage) end
    /// now, soonest-ending first, so the cap holds from the first instant of the new config.
    pub(crate) fn carry_over(&mut self, old: &OutlierDetector, old_of: &[Option<usize>]) {
        for (new_host, old_host) in self.hosts.iter_mut().zip(old_of) {
            if let Some(state) = old_host.and_then(|j| old.hosts.get(j)) {
                *new_host = *state;
            }
        }
        if old.interval == self.interval {
            // The sweep grid keeps its phase, busy or not: an idle detector's stale
            // `next_sweep` is still on the old grid, and `realign_after` stays on it.
            self.next_sweep = old.next_sweep;
        }
        self.ejected = self.hosts.iter().filter(|h| h.ejection.is_some()).count();
        let percent = u64::from(self.cfg.max_ejection_percent.min(100));
        let allowed =
            usize::try_from(percent * self.hosts.len() as u64 / 100).unwrap_or(usize::MAX);
        if self.ejected > allowed {
            let mut ejected: Vec<(Instant, usize)> = self
                .hosts
                .iter()
                .enumerate()
                .filter_map(|(i, h)| h.ejection.map(|e| (e.ends, i)))
                .collect();
            ejected.sort_unstable();
            let excess = self.ejected - allowed;
            let created = self.created;
            for &(_, i) in ejected.iter().take(excess) {
                if let Some(h) = self.hosts.get_mut(i) {
                    h.ejection = None;
                    h.last_unejected = Some(created);
                    h.reset_counters();
                }
            }
            self.ejected = allowed;
        }
        // A carried phase may hold a sweep that is already due: the next `on_timer` runs it.
        self.busy = self.compute_busy();
    }
}

#[cfg(test)]
#[path = "outlier_tests.rs"]
mod tests;
