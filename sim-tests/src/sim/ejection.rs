//! Outlier-ejection invariants beyond the cap: a host that keeps failing is ejected, a host is
//! ejected only after enough failures, ejections last exactly as long as Envoy's backoff says
//! and end at the first sweep after that, and a host gets no request picked while it is
//! ejected.
//!
//! The driver keeps its own model of every host of every cluster in every sidecar
//! ([`HostWatch`]). The engine's state is read after each call only to **locate** events (that
//! a host was ejected or came back in this call: `is_ejected` flipping, or, while ejected, its
//! ejection end moving, which means it came back and was ejected again within the call); what
//! the ejection should look like comes from the model alone, never from the engine's
//! multiplier:
//!
//! * **Backoff from first principles.** Per host the model keeps Envoy's ejection multiplier,
//!   the instant of the last return and how far decay has been applied. An ejection raises the
//!   multiplier by one (unless `base × multiplier` is already past `max + base`, with `max =
//!   max(max_ejection_time, base)`) and lasts `min(base × multiplier, max)`. Sweeps run every
//!   `interval` on the grid anchored at the engine's creation (time zero), whether or not the
//!   engine skips idle ones; a sweep returns hosts whose end is at or before it, and decrements
//!   (floor 0) the multiplier of every host that is not ejected and did not come back within
//!   the last interval. Decay is applied lazily, from the grid, when the host is next ejected.
//!   An input call at a sweep instant comes after that sweep (the driver fires timers first); a
//!   timer call that ejects a host at a sweep instant may order the sweep either way, so both
//!   multipliers are accepted there.
//! * **Timelines.** On an ejection the engine's `ejection_ends` must equal the model's end, and
//!   the host must come back exactly at the first sweep at or after the model's end: not
//!   earlier, not later (a host still ejected after that sweep is reported once, at the next
//!   look, or at the end of the run).
//! * **Keeps failing → ejected (lower bound).** The driver counts, per host, the consecutive 5xx
//!   response heads it handed to the engine since the host was last ejected or returned (and
//!   the same for gateway errors, 502–504; connect failures count in both unless local-origin
//!   failures are split off, and then in a count of their own that any response resets). The
//!   engine counts every one of those (and more: timeouts and resets count too), and resets its
//!   counter only on a non-5xx response (the driver resets on the same head), on ejection or
//!   return (the driver resets on the same call), or when `max_ejection_percent` refuses an
//!   ejection, which needs the cap to be full at that moment; the driver resets a cluster's
//!   streaks whenever it sees the cap full before or after a call, or a host return inside
//!   one. So the engine's count is never below the driver's, and once the driver's reaches
//!   `consecutive_5xx` (or a count its detector's threshold) with room under the cap, the host
//!   must be ejected by the end of that very call (ejection is inline).
//! * **Ejected with cause (upper bound).** The driver also counts, generously, every failure
//!   the engine could have charged to the host since its last ejection, return or non-5xx
//!   response head: 5xx heads, connect failures, resets and FINs on a connection with a request
//!   outstanding, every abortive close the engine makes of such a connection (per-try, route
//!   and idle timeouts, protocol errors, connect timeouts, downstream cancels), and, before a
//!   timer call, one for every connection still connecting (a timeout of the request waiting
//!   for it closes nothing) and one for every host of a pool-limited cluster with requests in
//!   its pending queue (whose picked host the driver cannot see). Those local-origin failures
//!   count as 5xx and gateway errors, or, split, as local-origin failures only (reset by any
//!   response). An ejection with every enabled detector's count below its threshold
//!   (`consecutive_5xx`, `consecutive_gateway_errors`, `consecutive_local_origin_failures`)
//!   had no cause.
//! * **No new picks while ejected, with pool limits too.** With a pool limit a request picked
//!   before an ejection may wait in the pending queue and go out after it (as in Envoy), so the
//!   exact per-call check of [`super::observe`] does not apply. Instead, when a request head goes
//!   out on a connection to host `h`, its last pick happened after the request started; if `h`
//!   was ejected continuously from before that start until after this call, the pick was made
//!   while `h` was ejected.

use std::collections::BTreeMap;

use trellis_engine::{ConnId, Instant};

use super::backoff_model::{
    backoff, decayed, first_sweep_at_or_after, nanos, room, sweep_interval,
};
use super::check::Invariant;
use super::mesh::Mesh;

/// The driver's model of one host in one sidecar.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct HostWatch {
    pub ejected: bool,
    /// When the current ejection began (meaningful while `ejected`).
    pub ejected_at: Instant,
    /// When the current ejection ends by the model (meaningful while `ejected`).
    pub ends: Instant,
    /// When the engine said it ends: only to locate a return and re-ejection in one call.
    pub engine_ends: Option<Instant>,
    /// Lower bound: consecutive 5xx response heads (and, unsplit, connect failures) delivered
    /// since the last ejection, return or non-5xx head.
    pub streak: u32,
    /// Upper bound: 5xx failures the engine may have charged to the host since then.
    pub may_fail: u32,
    /// The same two bounds for the gateway-error detector (502–504, and unsplit local-origin
    /// failures; any other response resets it).
    pub gw_streak: u32,
    pub may_gw: u32,
    /// The same two bounds for local-origin failures when they are split off (any response
    /// resets them; the lower bound counts connect failures only).
    pub local_streak: u32,
    pub may_local: u32,
    /// Ejections seen so far.
    pub ejections: u32,
    /// Envoy's ejection-time multiplier, by the model, decayed up to `decayed_to`.
    pub multiplier: u32,
    /// Every sweep at or before this instant is applied to `multiplier`.
    pub decayed_to: Instant,
    /// When the host last came back.
    pub last_return: Option<Instant>,
    /// A late return of the current ejection was reported already.
    pub late_reported: bool,
}

/// One host's outlier state as the engine reports it after a call (to locate events only).
#[derive(Clone, Copy, Debug)]
pub(crate) struct HostNow {
    pub ejected: bool,
    pub ends: Option<Instant>,
}

/// Per-call bookkeeping of the outlier model.
#[derive(Debug, Default)]
pub(crate) struct OutlierCalls {
    /// Failures that may reach the engine in the current call: (sidecar, cluster, host).
    pub marks: Vec<(usize, usize, usize)>,
    /// The current call is `handle_timeout`.
    pub timer: bool,
    /// Upstream connections still connecting, to clusters with outlier detection:
    /// (sidecar, connection) → (cluster, endpoint).
    connecting: BTreeMap<(usize, ConnId), (usize, usize)>,
    /// Clusters with outlier detection and a pool limit (made once).
    pooled: Option<Vec<usize>>,
    /// Scratch.
    buf: Vec<(usize, usize)>,
    /// Ejections whose multiplier (by the model) was above one, and whose length the
    /// `max_ejection_time` cap cut: how much of the backoff a run exercised.
    pub multiplied: u64,
    pub capped: u64,
}

impl Mesh<'_> {
    fn host_index(&self, cluster: usize, ep: usize) -> Option<usize> {
        self.cluster_info[cluster]
            .endpoints
            .iter()
            .position(|e| *e == ep)
    }

    /// A local-origin failure of endpoint `ep` (of `cluster`: a connect failure, reset or
    /// timeout) may reach sidecar `sc`'s engine in the coming call: raise the host's upper
    /// bounds (as a 503/504 unsplit, as a local-origin failure split).
    pub(crate) fn note_failure(&mut self, sc: usize, cluster: usize, ep: usize) {
        let split = self.cluster_info[cluster].local.is_some();
        if self.cluster_info[cluster].consecutive_5xx.is_none() {
            return;
        }
        let Some(h) = self.host_index(cluster, ep) else {
            return;
        };
        self.outlier_calls.marks.push((sc, cluster, h));
        let w = &mut self.sidecars[sc].hosts[cluster][h];
        if w.ejected {
            return;
        }
        if split {
            w.may_local = w.may_local.saturating_add(1);
        } else {
            w.may_fail = w.may_fail.saturating_add(1);
            w.may_gw = w.may_gw.saturating_add(1);
        }
    }

    /// A connect of upstream `conn` failed: a local-origin failure the engine certainly
    /// charges to the host (raise the lower bounds too, and check the host is ejected after
    /// the call if a detector's threshold is reached with room under the cap).
    pub(crate) fn note_connect_failed(&mut self, sc: usize, conn: ConnId) {
        let Some(u) = self.sidecars[sc].up.get(&conn) else {
            return;
        };
        let (cluster, ep) = (u.cluster, u.ep);
        self.note_failure(sc, cluster, ep);
        let info = &self.cluster_info[cluster];
        let (Some(cap), Some(c5xx)) = (info.max_ejection_percent, info.consecutive_5xx) else {
            return;
        };
        let (gateway, local) = (info.gateway, info.local);
        let Some(h) = self.host_index(cluster, ep) else {
            return;
        };
        let watches = &mut self.sidecars[sc].hosts[cluster];
        let ejected = watches.iter().filter(|w| w.ejected).count();
        let has_room = room(ejected, watches.len(), cap);
        let w = &mut watches[h];
        if w.ejected {
            return;
        }
        let due = match local {
            Some(threshold) => {
                w.local_streak += 1;
                threshold > 0 && w.local_streak >= threshold
            }
            None => {
                w.streak += 1;
                w.gw_streak += 1;
                (c5xx > 0 && w.streak >= c5xx) || (gateway > 0 && w.gw_streak >= gateway)
            }
        };
        if due && has_room {
            self.must_eject.push((cluster, h, 0));
        }
    }

    /// Something on upstream connection `conn` that the engine may count as a failure of its
    /// host (with `only_busy`: only if a request may be outstanding on it).
    pub(crate) fn note_conn_failure(&mut self, sc: usize, conn: ConnId, only_busy: bool) {
        let Some(u) = self.sidecars[sc].up.get(&conn) else {
            return;
        };
        if only_busy && !u.busy {
            return;
        }
        let (cluster, ep) = (u.cluster, u.ep);
        self.note_failure(sc, cluster, ep);
    }

    /// Sidecar `sc` starts connecting `conn` to endpoint `ep` of `cluster`.
    pub(crate) fn note_connecting(&mut self, sc: usize, conn: ConnId, cluster: usize, ep: usize) {
        if self.cluster_info[cluster].consecutive_5xx.is_some() {
            (self.outlier_calls.connecting).insert((sc, conn), (cluster, ep));
        }
    }

    /// The connect of `conn` finished (either way), or the connection is gone.
    pub(crate) fn note_connect_done(&mut self, sc: usize, conn: ConnId) {
        if !self.outlier_calls.connecting.is_empty() {
            self.outlier_calls.connecting.remove(&(sc, conn));
        }
    }

    /// The engine closes upstream `conn`: abortively with a request outstanding, it gave up an
    /// attempt (timeout, protocol error, connect timeout, cancel), which may count.
    pub(crate) fn note_close(&mut self, sc: usize, conn: ConnId, graceful: bool) {
        if !graceful {
            self.note_conn_failure(sc, conn, true);
        }
    }

    /// Before `handle_timeout` on sidecar `sc`: timeouts of requests waiting for a connection
    /// (connecting, or in a pool's pending queue) are charged to their host without anything
    /// the driver could see, so every such host may fail once more.
    pub(crate) fn before_timer(&mut self, sc: usize) {
        self.outlier_calls.timer = true;
        let mut buf = std::mem::take(&mut self.outlier_calls.buf);
        buf.clear();
        let conns = (sc, ConnId(0))..=(sc, ConnId(u64::MAX));
        buf.extend(self.outlier_calls.connecting.range(conns).map(|(_, v)| *v));
        let pooled = self.outlier_calls.pooled.get_or_insert_with(|| {
            (self.cluster_info.iter().enumerate())
                .filter(|(_, i)| i.consecutive_5xx.is_some() && i.max_connections.is_some())
                .map(|(c, _)| c)
                .collect()
        });
        if !pooled.is_empty() {
            let side = &mut self.sidecars[sc];
            side.resolve_slots(&self.cluster_names);
            for &c in pooled.iter() {
                // Engine state locates where a timeout may land; it predicts nothing.
                let pending = (side.slots.get(c).copied().flatten())
                    .and_then(|slot| side.engine.inspect().cluster_state_at(slot))
                    .is_some_and(|s| s.breaker().pending() > 0);
                if pending {
                    buf.extend(self.cluster_info[c].endpoints.iter().map(|&ep| (c, ep)));
                }
            }
        }
        for &(c, ep) in &buf {
            self.note_failure(sc, c, ep);
        }
        self.outlier_calls.buf = buf;
    }

    /// A response head with `status` from the server of `ep` is about to reach sidecar `sc`'s
    /// engine: count it, and remember to check the host is ejected after the call if this is
    /// its `consecutive_5xx`-th failure in a row with room under the cap.
    pub(crate) fn count_head(&mut self, sc: usize, cluster: usize, ep: usize, status: u16) {
        let info = &self.cluster_info[cluster];
        let (Some(cap), Some(threshold)) = (info.max_ejection_percent, info.consecutive_5xx) else {
            return;
        };
        let gateway = info.gateway;
        let Some(h) = self.host_index(cluster, ep) else {
            return;
        };
        let watches = &mut self.sidecars[sc].hosts[cluster];
        let ejected = watches.iter().filter(|w| w.ejected).count();
        let has_room = room(ejected, watches.len(), cap);
        let w = &mut watches[h];
        if w.ejected {
            return;
        }
        // Any response: the host answered, which resets split local-origin failures.
        w.local_streak = 0;
        w.may_local = 0;
        if matches!(status, 502..=504) {
            w.gw_streak += 1;
            w.may_gw = w.may_gw.saturating_add(1);
        } else {
            w.gw_streak = 0;
            w.may_gw = 0;
        }
        if (500..600).contains(&status) {
            w.streak += 1;
            w.may_fail = w.may_fail.saturating_add(1);
        } else {
            w.streak = 0;
            w.may_fail = 0;
        }
        let due =
            (threshold > 0 && w.streak >= threshold) || (gateway > 0 && w.gw_streak >= gateway);
        let streak = w.streak.max(w.gw_streak);
        if (500..600).contains(&status) {
            self.outlier_calls.marks.push((sc, cluster, h));
        }
        if due && has_room {
            self.must_eject.push((cluster, h, streak));
        }
    }

    /// After an engine call: compare the outlier state of cluster `c` in sidecar `sc` with the
    /// model, check every ejection and return, and update the model.
    pub(crate) fn watch_cluster(&mut self, sc: usize, c: usize, state: &[HostNow]) {
        let info = &self.cluster_info[c];
        let Some(cap) = info.max_ejection_percent else {
            return;
        };
        let interval = info.interval;
        let before_full = {
            let w = &self.sidecars[sc].hosts[c];
            !room(w.iter().filter(|w| w.ejected).count(), w.len(), cap)
        };
        let mut returned = false;
        let known = self.sidecars[sc].hosts[c].len();
        for (h, host) in state.iter().enumerate().take(known) {
            let mut w = self.sidecars[sc].hosts[c][h];
            // Engine state locates events only: the host came back in this call (no longer
            // ejected, or ejected with another end: back and ejected again), or was ejected.
            let back = w.ejected && (!host.ejected || host.ends != w.engine_ends);
            let out = host.ejected && (!w.ejected || back);
            if back {
                returned = true;
                self.host_returned(sc, c, h, &mut w);
            } else if w.ejected && !w.late_reported {
                let due = first_sweep_at_or_after(w.ends, interval);
                if self.now > due {
                    w.late_reported = true;
                    let msg = format!(
                        "sidecar {sc}: host {h} of {} ejected at {} until {} is still ejected at {} \
                         (it should have come back at the sweep at {due})",
                        self.cluster_names[c], w.ejected_at, w.ends, self.now
                    );
                    self.violations
                        .report(Invariant::EjectionTimeline, self.now, msg);
                }
            }
            if out {
                self.host_ejected(sc, c, h, &mut w, host.ends);
            }
            self.sidecars[sc].hosts[c][h] = w;
        }
        // Keeps failing → ejected (only hosts whose streak this call completed).
        let info = &self.cluster_info[c];
        let checks = std::mem::take(&mut self.must_eject);
        let mut rest = Vec::new();
        for (mc, h, streak) in checks {
            if mc != c {
                rest.push((mc, h, streak));
                continue;
            }
            if !state.get(h).is_some_and(|s| s.ejected) && !returned {
                let w = &self.sidecars[sc].hosts[c][h];
                let msg = format!(
                    "sidecar {sc}: host {h} of {} failed {} times in a row ({} 5xx, {} gateway \
                     errors, {} local-origin failures; consecutive_5xx {}, gateway {}, \
                     local-origin {:?}) with room under max_ejection_percent {cap}, not ejected",
                    self.cluster_names[c],
                    streak.max(w.local_streak),
                    w.streak,
                    w.gw_streak,
                    w.local_streak,
                    info.consecutive_5xx.unwrap_or(0),
                    info.gateway,
                    info.local,
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
                w.gw_streak = 0;
                w.local_streak = 0;
            }
        }
    }

    /// Host `h` of cluster `c` came back in this call: exactly at the first sweep at or after
    /// the model's end.
    fn host_returned(&mut self, sc: usize, c: usize, h: usize, w: &mut HostWatch) {
        let due = first_sweep_at_or_after(w.ends, self.cluster_info[c].interval);
        if self.now < due || (self.now > due && !w.late_reported) {
            let msg = format!(
                "sidecar {sc}: host {h} of {} ejected at {} until {} came back at {} \
                 (the first sweep at or after the end is at {due})",
                self.cluster_names[c], w.ejected_at, w.ends, self.now
            );
            self.violations
                .report(Invariant::EjectionTimeline, self.now, msg);
        }
        self.sidecars[sc].watched_ejected -= 1;
        w.ejected = false;
        w.engine_ends = None;
        w.late_reported = false;
        w.last_return = Some(self.now);
        // The sweep that returned it does not decay it (nor do those within an interval).
        w.decayed_to = self.now;
        (w.streak, w.gw_streak, w.local_streak) = (0, 0, 0);
        // Failures after the return within this call count (the engine's counters restart at
        // the return).
        let marks = &self.outlier_calls.marks;
        let again = marks.iter().filter(|m| **m == (sc, c, h)).count();
        let again = u32::try_from(again).unwrap_or(u32::MAX);
        (w.may_fail, w.may_gw, w.may_local) = (again, again, again);
    }

    /// Host `h` of cluster `c` was ejected in this call (the engine says until `engine_end`):
    /// check it had cause and lasts what the model says.
    fn host_ejected(
        &mut self,
        sc: usize,
        c: usize,
        h: usize,
        w: &mut HostWatch,
        engine_end: Option<Instant>,
    ) {
        let info = &self.cluster_info[c];
        let (base, max, interval) = (info.base_ejection, info.max_ejection, info.interval);
        let threshold = info.consecutive_5xx.unwrap_or(0);
        let (gateway, local) = (info.gateway, info.local);
        let now = self.now;
        let ejections = w.ejections + 1;
        // The sweep at `now` (if `now` is on the grid) ran before this call's ejection, unless
        // this is a timer call, where the two may come in either order.
        let (mut m, mut length) = backoff(decayed(w, now, interval), base, max);
        let iv = nanos(sweep_interval(interval));
        let on_grid = now.as_nanos() > 0 && now.as_nanos().is_multiple_of(iv);
        if self.outlier_calls.timer && on_grid {
            let before = Instant::from_nanos(now.as_nanos() - 1);
            let (m_b, length_b) = backoff(decayed(w, before, interval), base, max);
            // Both orders are the model's; the engine's end only says which one happened
            // (locating the order of two events in one call), it never sets the expectation.
            if engine_end == Some(now + length_b) && length_b != length {
                (m, length) = (m_b, length_b);
            }
        }
        let ends = now + length;
        if engine_end != Some(ends) {
            let msg = format!(
                "sidecar {sc}: host {h} of {} ejected at {now} until {engine_end:?}; the model \
                 says until {ends}: ejection #{ejections}, multiplier {m} (base {base:?}, \
                 max {max:?}, interval {interval:?}, last back {:?})",
                self.cluster_names[c], w.last_return
            );
            self.violations
                .report(Invariant::EjectionTimeline, now, msg);
        }
        let caused = (threshold > 0 && w.may_fail >= threshold)
            || (gateway > 0 && w.may_gw >= gateway)
            || local.is_some_and(|l| l > 0 && w.may_local >= l);
        if !caused {
            let msg = format!(
                "sidecar {sc}: host {h} of {} ejected at {now} after at most {} 5xx, {} gateway \
                 errors and {} local-origin failures in a row (consecutive_5xx {threshold}, \
                 gateway {gateway}, local-origin {local:?})",
                self.cluster_names[c], w.may_fail, w.may_gw, w.may_local
            );
            self.violations
                .report(Invariant::EjectedWithoutCause, now, msg);
        }
        if m > 1 {
            self.outlier_calls.multiplied += 1;
        }
        if base.checked_mul(m).is_none_or(|l| l > length) {
            self.outlier_calls.capped += 1;
        }
        self.ejections += 1;
        if let Some(t) = self.timeline.as_mut() {
            t.ejections
                .push((now, format!("sc{sc}/{}/h{h}", self.cluster_names[c])));
        }
        self.sidecars[sc].watched_ejected += 1;
        *w = HostWatch {
            ejected: true,
            ejected_at: now,
            ends,
            engine_ends: engine_end,
            streak: 0,
            may_fail: 0,
            gw_streak: 0,
            may_gw: 0,
            local_streak: 0,
            may_local: 0,
            ejections,
            multiplier: m,
            decayed_to: now,
            last_return: w.last_return,
            late_reported: false,
        };
    }

    /// End of the current engine call: forget its failure marks.
    pub(crate) fn end_outlier_call(&mut self) {
        self.outlier_calls.marks.clear();
        self.outlier_calls.timer = false;
    }

    /// After the run: a host still ejected past the sweep that should have returned it.
    pub(crate) fn final_ejection_checks(&mut self) {
        for sc in 0..self.sidecars.len() {
            if self.sidecars[sc].watched_ejected == 0 {
                continue;
            }
            for c in 0..self.cluster_info.len() {
                let interval = self.cluster_info[c].interval;
                for h in 0..self.sidecars[sc].hosts[c].len() {
                    let w = self.sidecars[sc].hosts[c][h];
                    let due = first_sweep_at_or_after(w.ends, interval);
                    if w.ejected && !w.late_reported && due < self.now {
                        let msg = format!(
                            "sidecar {sc}: host {h} of {} ejected at {} until {} was still \
                             ejected when the run ended at {} (due back at {due})",
                            self.cluster_names[c], w.ejected_at, w.ends, self.now
                        );
                        self.violations
                            .report(Invariant::EjectionTimeline, self.now, msg);
                    }
                }
            }
        }
    }
}
