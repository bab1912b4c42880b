//! Outlier-ejection invariants beyond the cap: a host that keeps failing is ejected, ejections
//! last exactly as long as Envoy's backoff says and end at the first sweep after that, and a
//! host gets no request picked while it is ejected.
//!
//! The driver keeps its own view of every host of every cluster in every sidecar
//! ([`HostWatch`]), updated at the end of each engine call from `Engine::cluster_state`, so each
//! check compares the state *before* a call with the state *after* it:
//!
//! * **Keeps failing → ejected.** The driver counts, per host, the consecutive 5xx response
//!   heads it handed to the engine since the host was last ejected or returned. The engine
//!   counts every one of those (and more: timeouts and resets count too), and resets its counter
//!   only on a non-5xx response (the driver resets on the same head), on ejection or return (the
//!   driver resets on the same call), or when `max_ejection_percent` refuses an ejection, which
//!   needs the cap to be full at that moment; the driver resets a cluster's streaks whenever it
//!   sees the cap full before or after a call, or a host return inside one. So the engine's count
//!   is never below the driver's, and once the driver's reaches `consecutive_5xx` with room under
//!   the cap, the host must be ejected by the end of that very call (ejection is inline; the
//!   bound is zero time after the `consecutive_5xx`-th failure, not an interval later).
//! * **Timelines.** A new ejection must end at `ejected_at + min(base × multiplier, max(300 s,
//!   base))`, with `1 ≤ multiplier ≤ ejections so far`; a host must come back no earlier than
//!   that end and no later than the first sweep at or after it (sweeps run every `interval` from
//!   the engine's creation at time zero).
//! * **No new picks while ejected, with pool limits too.** With a pool limit a request picked
//!   before an ejection may wait in the pending queue and go out after it (as in Envoy), so the
//!   exact per-call check of [`super::observe`] does not apply. Instead, when a request head goes
//!   out on a connection to host `h`, its last pick happened after the request started; if `h`
//!   was ejected continuously from before that start until after this call, the pick was made
//!   while `h` was ejected.

use std::time::Duration;

use trellis_engine::Instant;

use super::check::Invariant;
use super::mesh::Mesh;

/// Envoy's default `max_ejection_time`, which the scenario never overrides.
const MAX_EJECTION: Duration = Duration::from_secs(300);

/// The driver's view of one host in one sidecar.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct HostWatch {
    pub ejected: bool,
    /// When the current ejection began (meaningful while `ejected`).
    pub ejected_at: Instant,
    /// When the engine said the current ejection ends.
    pub ends: Instant,
    /// Consecutive 5xx response heads delivered since the last ejection or return.
    pub streak: u32,
    /// Ejections seen so far.
    pub ejections: u32,
}

/// One host's outlier state as the engine reports it after a call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HostNow {
    pub ejected: bool,
    pub ends: Option<Instant>,
    pub multiplier: u32,
}

/// Whether one more ejection fits under the cap.
fn room(ejected: usize, hosts: usize, cap: u32) -> bool {
    (ejected as u64 + 1) * 100 <= u64::from(cap.min(100)) * hosts as u64
}

impl Mesh<'_> {
    /// A response head with `status` from the server of `ep` is about to reach sidecar `sc`'s
    /// engine: count it, and remember to check the host is ejected after the call if this is
    /// its `consecutive_5xx`-th failure in a row with room under the cap.
    pub(crate) fn count_head(&mut self, sc: usize, cluster: usize, ep: usize, status: u16) {
        let info = &self.cluster_info[cluster];
        let (Some(cap), Some(threshold)) = (info.max_ejection_percent, info.consecutive_5xx) else {
            return;
        };
        let Some(h) = info.endpoints.iter().position(|e| *e == ep) else {
            return;
        };
        let watches = &mut self.sidecars[sc].hosts[cluster];
        let ejected = watches.iter().filter(|w| w.ejected).count();
        let has_room = room(ejected, watches.len(), cap);
        let w = &mut watches[h];
        if w.ejected {
            return;
        }
        if !(500..600).contains(&status) {
            w.streak = 0;
            return;
        }
        w.streak += 1;
        if threshold > 0 && w.streak >= threshold && has_room {
            self.must_eject.push((cluster, h, w.streak));
        }
    }

    /// After an engine call: compare the outlier state of cluster `c` in sidecar `sc` with the
    /// driver's view before the call, check every ejection and return, and update the view.
    pub(crate) fn watch_cluster(&mut self, sc: usize, c: usize, state: &[HostNow]) {
        let info = &self.cluster_info[c];
        let Some(cap) = info.max_ejection_percent else {
            return;
        };
        let (base, interval) = (info.base_ejection, info.interval);
        let before_full = {
            let w = &self.sidecars[sc].hosts[c];
            !room(w.iter().filter(|w| w.ejected).count(), w.len(), cap)
        };
        let mut returned = false;
        let known = self.sidecars[sc].hosts[c].len();
        for (h, host) in state.iter().enumerate().take(known) {
            let now_ejected = host.ejected;
            let w = self.sidecars[sc].hosts[c][h];
            if now_ejected && !w.ejected {
                let (mult, ends) = (host.multiplier, host.ends);
                let ejections = w.ejections + 1;
                let length = base
                    .checked_mul(mult)
                    .unwrap_or(Duration::MAX)
                    .min(MAX_EJECTION.max(base));
                let expected = self.now + length;
                if mult == 0 || mult > ejections || ends != Some(expected) {
                    let msg = format!(
                        "sidecar {sc}: host {h} of {} ejected at {} until {ends:?} with multiplier {mult} \
                         (ejection #{ejections}); base {base:?} says until {expected}",
                        self.cluster_names[c], self.now
                    );
                    self.violations
                        .report(Invariant::EjectionTimeline, self.now, msg);
                }
                self.ejections += 1;
                if let Some(t) = self.timeline.as_mut() {
                    t.ejections
                        .push((self.now, format!("sc{sc}/{}/h{h}", self.cluster_names[c])));
                }
                self.sidecars[sc].watched_ejected += 1;
                self.sidecars[sc].hosts[c][h] = HostWatch {
                    ejected: true,
                    ejected_at: self.now,
                    ends: ends.unwrap_or(expected),
                    streak: 0,
                    ejections,
                };
            } else if !now_ejected && w.ejected {
                returned = true;
                let latest = first_sweep_at_or_after(w.ends, interval);
                if self.now < w.ends || self.now > latest {
                    let msg = format!(
                        "sidecar {sc}: host {h} of {} ejected at {} until {} came back at {} \
                         (first sweep after the end: {latest})",
                        self.cluster_names[c], w.ejected_at, w.ends, self.now
                    );
                    self.violations
                        .report(Invariant::EjectionTimeline, self.now, msg);
                }
                self.sidecars[sc].watched_ejected -= 1;
                let w = &mut self.sidecars[sc].hosts[c][h];
                w.ejected = false;
                w.streak = 0;
            }
        }
        // Keeps failing → ejected (only hosts whose streak this call completed).
        let checks = std::mem::take(&mut self.must_eject);
        let mut rest = Vec::new();
        for (mc, h, streak) in checks {
            if mc != c {
                rest.push((mc, h, streak));
                continue;
            }
            if !state.get(h).is_some_and(|s| s.ejected) && !returned {
                let msg = format!(
                    "sidecar {sc}: host {h} of {} answered {streak} 5xx in a row \
                     (consecutive_5xx {}) with room under max_ejection_percent {cap}, not ejected",
                    self.cluster_names[c],
                    info.consecutive_5xx.unwrap_or(0)
                );
                self.violations.report(Invariant::NotEjected, self.now, msg);
            }
        }
        self.must_eject = rest;
        let w = &mut self.sidecars[sc].hosts[c];
        let after_full = !room(w.iter().filter(|w| w.ejected).count(), w.len(), cap);
        if before_full || after_full || returned {
            // The engine may have refused an ejection and reset its counter.
            for w in w.iter_mut() {
                w.streak = 0;
            }
        }
    }

    /// A request head for request `req` goes out to host `h` of cluster `c` in this call: if
    /// the host was ejected before the request started and still is after the call, the
    /// request's last pick (after its start) chose an ejected host.
    pub(crate) fn check_pick(
        &mut self,
        sc: usize,
        c: usize,
        h: usize,
        req: usize,
        state: &[HostNow],
    ) {
        let Some(w) = self.sidecars[sc].hosts[c].get(h).copied() else {
            return;
        };
        let Some(r) = self.requests.get(req) else {
            return;
        };
        if w.ejected && w.ejected_at < r.start && state.get(h).is_some_and(|s| s.ejected) {
            let msg = format!(
                "sidecar {sc}: request {req} (started {}) went to host {h} of {}, \
                 ejected since {} and still ejected",
                r.start, self.cluster_names[c], w.ejected_at
            );
            self.violations
                .report(Invariant::EjectedHostUsed, self.now, msg);
        }
    }
}

/// The first sweep instant (a multiple of `interval` from time zero) at or after `t`.
pub(crate) fn first_sweep_at_or_after(t: Instant, interval: Duration) -> Instant {
    let iv = u64::try_from(interval.max(Duration::from_millis(1)).as_nanos()).unwrap_or(u64::MAX);
    Instant::from_nanos(t.as_nanos().div_ceil(iv).saturating_mul(iv))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_on_the_grid() {
        let iv = Duration::from_millis(100);
        assert_eq!(
            first_sweep_at_or_after(Instant::from_millis(250), iv),
            Instant::from_millis(300)
        );
        assert_eq!(
            first_sweep_at_or_after(Instant::from_millis(300), iv),
            Instant::from_millis(300)
        );
    }

    #[test]
    fn cap_room() {
        assert!(room(0, 5, 20));
        assert!(!room(1, 5, 20));
        assert!(room(0, 1, 100));
        assert!(!room(0, 3, 10));
    }
}
