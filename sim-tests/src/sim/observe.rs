//! Checks run after every engine call (ejection cap, ejected hosts getting new requests, pool
//! limits) and after the run (every request ended exactly once, logs, weights, leaks).
//!
//! "Ejected hosts get no new requests" needs care to be exact: a host is flagged only if it
//! was ejected *before* the engine call that dispatched to it (a pick and an ejection in the
//! same call may legitimately come in either order), and only for clusters without a
//! connection-pool limit, where every dispatch is a fresh pick (with a limit, a request picked
//! before the ejection may wait in the pending queue and go out after it, as in Envoy); clusters
//! with a limit get the pick-window check of [`super::ejection`], which also holds the other
//! ejection invariants (keeps failing → ejected, ejection timelines).
//! Pool limits are checked on the driver's own count of open sockets at the end of each call,
//! since inside one call a close is flushed after the connect that reused its budget.
//!
//! Outlier state can only change inside a call that ends an attempt (an input on one of the
//! cluster's upstream connections) or runs timers (per-try timeouts, sweeps), so after an
//! input only the clusters involved are scanned, and after a timer call all of them.

use super::check::Invariant;
use super::ejection::HostNow;
use super::mesh::Mesh;
use super::priority::up_mask;

impl Mesh<'_> {
    pub(crate) fn observe(&mut self, sc: usize) {
        let mut pools = std::mem::take(&mut self.touched_pools);
        for &c in &pools {
            let Some(max) = self.cluster_info[c].max_connections else {
                continue;
            };
            let open = self.sidecars[sc].open[c];
            if open > max {
                let msg = format!(
                    "sidecar {sc} holds {open} connections to {} (maxConnections {max})",
                    self.cluster_names[c]
                );
                self.violations.report(Invariant::PoolLimit, self.now, msg);
            }
        }
        pools.clear();
        self.touched_pools = pools;
        // The buffers are handed back at the end (cleared), so a call allocates nothing.
        let mut dispatches = std::mem::take(&mut self.dispatches);
        let mut scan = std::mem::take(&mut self.scan);
        if std::mem::take(&mut self.scan_all) {
            scan.clear();
            scan.extend(0..self.cluster_info.len());
        } else {
            scan.extend(dispatches.iter().map(|(c, _)| *c));
            scan.sort_unstable();
            scan.dedup();
        }
        self.sidecars[sc].resolve_slots(&self.cluster_names);
        let mut picks = std::mem::take(&mut self.picks);
        let mut buf = std::mem::take(&mut self.host_buf);
        let any_pending = !self.must_eject.is_empty();
        // No host ejected in the driver's view before the call nor in the engine after it, and
        // no ejection due: every cluster would be skipped below, so skip the loop (the common
        // case after a timer call, when the loop covers every cluster; for the one or two
        // clusters of an input the loop is cheaper than the engine-wide count).
        let side = &self.sidecars[sc];
        if scan.len() > 4
            && !any_pending
            && side.watched_ejected == 0
            && side.engine.inspect().ejected_host_count() == 0
        {
            scan.clear();
        }
        for &c in &scan {
            let Some(cap) = self.cluster_info[c].max_ejection_percent else {
                continue;
            };
            let side = &self.sidecars[sc];
            let Some(state) = (side.slots.get(c).copied().flatten())
                .and_then(|slot| side.engine.inspect().cluster_state_at(slot))
            else {
                continue;
            };
            let hosts = state.host_count();
            let ejected_now = state.ejected_count();
            let was_any = side.hosts[c].iter().any(|w| w.ejected);
            // The common case after a timer call: nothing ejected before or after, nothing
            // to check.
            if ejected_now == 0
                && !was_any
                && !(any_pending && self.must_eject.iter().any(|m| m.0 == c))
            {
                continue;
            }
            buf.clear();
            buf.extend((0..hosts).map(|h| HostNow {
                ejected: state.is_ejected(h),
                ends: state.ejection_ends(h),
            }));
            if ejected_now as u64 * 100 > u64::from(cap) * hosts as u64 {
                let msg = format!(
                    "sidecar {sc}: {ejected_now} of {hosts} hosts of {} ejected, max_ejection_percent {cap}",
                    self.cluster_names[c]
                );
                self.violations
                    .report(Invariant::EjectionCap, self.now, msg);
            }
            let unlimited = self.cluster_info[c].max_connections.is_none();
            // Panic mode (`minHealthPercent`) lets the balancer use ejected hosts.
            let up_before = up_mask(self.sidecars[sc].hosts[c].iter().map(|w| w.ejected));
            let up_now = up_mask(buf.iter().map(|n| n.ejected));
            let panic_after = self.any_panic(c, up_now);
            let panic = self.any_panic(c, up_before) || panic_after;
            let now = self.now;
            let watch = &mut self.sidecars[sc].panic[c];
            if panic || watch.0 {
                watch.1 = Some(now);
            }
            watch.0 = panic_after;
            if unlimited && was_any && !panic {
                for &(dc, ep) in &dispatches {
                    if dc != c {
                        continue;
                    }
                    let Some(h) = self.cluster_info[c].endpoints.iter().position(|e| *e == ep)
                    else {
                        continue;
                    };
                    let before = self.sidecars[sc].hosts[c].get(h).is_some_and(|w| w.ejected);
                    if before && buf.get(h).is_some_and(|n| n.ejected) {
                        let msg = format!(
                            "sidecar {sc} sent a new request to host {h} of {} while it was ejected",
                            self.cluster_names[c]
                        );
                        self.violations
                            .report(Invariant::EjectedHostUsed, self.now, msg);
                    }
                }
            }
            if was_any {
                for &(pc, ep, req) in &picks {
                    if pc != c {
                        continue;
                    }
                    if let Some(h) = self.cluster_info[c].endpoints.iter().position(|e| *e == ep) {
                        self.check_pick(sc, c, h, req, &buf);
                    }
                }
            }
            self.watch_cluster(sc, c, &buf);
        }
        self.must_eject.clear();
        self.end_outlier_call();
        self.host_buf = buf;
        scan.clear();
        self.scan = scan;
        dispatches.clear();
        self.dispatches = dispatches;
        picks.clear();
        self.picks = picks;
    }

    /// Fault injection follows its percentages: a binomial test (as a two-cell chi-square at
    /// `stats::FALSE_ALARM`) per rule for the delay and the abort, exact at 0 % and 100 %.
    fn check_fault_draws(&mut self) {
        let counts: Vec<_> = self.fault_counts.iter().map(|(k, v)| (*k, *v)).collect();
        for ((s, g, r), [n_delay, delays, n_abort, aborts]) in counts {
            let Some(fault) =
                super::model::rule_at(self.scn, s, g, r).and_then(|r| r.fault.clone())
            else {
                continue;
            };
            let delay_p = if fault.delay_percent > 0 {
                fault.delay_percent
            } else {
                0
            };
            let abort_p = if fault.abort_percent > 0 {
                fault.abort_percent
            } else {
                0
            };
            for (what, percent, n, hits) in [
                ("delay", delay_p, n_delay, delays),
                ("abort", abort_p, n_abort, aborts),
            ] {
                let p = f64::from(percent.min(100)) / 100.0;
                let bad = match percent {
                    0 => hits > 0,
                    100.. => hits != n,
                    _ => super::stats::chi_square(&[hits, n - hits], &[p, 1.0 - p]).is_some_and(
                        |(stat, df)| {
                            super::stats::chi_square_p(stat, df) < super::stats::FALSE_ALARM
                        },
                    ),
                };
                if bad {
                    let msg = format!(
                        "rule {}: fault {what} at {percent}% hit {hits} of {n} requests",
                        super::model::rule_name(s, g, r)
                    );
                    self.violations.report(Invariant::Faults, self.now, msg);
                }
            }
        }
    }

    /// After the run: every request ended exactly once with one access-log record; nothing is
    /// left inside the engines; weighted splits converged.
    pub(crate) fn final_checks(&mut self) {
        self.final_ejection_checks();
        let unfinished: Vec<usize> = (0..self.requests.len())
            .filter(|&i| self.requests[i].end.is_none())
            .collect();
        if let Some(&first) = unfinished.first() {
            let r = &self.requests[first];
            let msg = format!(
                "{} requests never ended, first {first} (service {}, started {})",
                unfinished.len(),
                r.service,
                r.start
            );
            self.violations.report(Invariant::EndsOnce, self.now, msg);
        }
        for i in 0..self.requests.len() {
            let r = &self.requests[i];
            let logs = r.logs;
            // One record for a request the sidecar had in hand; a request pipelined behind one
            // that never finished may never have been read (at most one); one written after
            // its connection was ended, none (reported where it came).
            let expected = match (r.unserved, r.ended_first) {
                (true, _) => 0..=u32::MAX,
                (false, true) => 1..=1,
                (false, false) => 0..=1,
            };
            if r.end.is_some() && !expected.contains(&logs) {
                let msg = format!(
                    "request {i} ended ({:?}) with {logs} access-log records",
                    r.outcome
                );
                self.violations.report(Invariant::AccessLog, self.now, msg);
            }
        }
        if unfinished.is_empty() {
            for sc in 0..self.sidecars.len() {
                let (_, requests) = self.sidecars[sc].engine.live();
                if requests != 0 {
                    let msg = format!(
                        "sidecar {sc} still holds {requests} requests after every client left"
                    );
                    self.violations.report(Invariant::Leak, self.now, msg);
                }
            }
        }
        self.check_fault_draws();
        // Weighted splits, per rule of each generation (a request counts for the generation
        // it started on, whichever sidecar it went through): a destination of weight 0 next
        // to positive ones never gets a request (exact), and the positive ones follow their
        // weights (chi-square at `stats::FALSE_ALARM`, added to the run's aggregate too).
        let mut per_rule: std::collections::BTreeMap<(usize, usize, usize), u64> =
            Default::default();
        for (&(s, g, r, _), &n) in &self.split_counts {
            *per_rule.entry((s, g, r)).or_default() += n;
        }
        for (&(s, g, r), &total) in &per_rule {
            let Some(rule) = super::model::rule_at(self.scn, s, g, r) else {
                continue;
            };
            if rule.dests.len() < 2 || !rule.forwards() {
                continue;
            }
            let mut observed = Vec::new();
            let mut weights = Vec::new();
            for &(v, w) in &rule.dests {
                let Some(c) = self
                    .cluster_info
                    .iter()
                    .position(|ci| ci.service == s && ci.version == v)
                else {
                    continue;
                };
                let hits = self.split_counts.get(&(s, g, r, c)).copied().unwrap_or(0);
                if w == 0 {
                    if hits > 0 {
                        let msg = format!(
                            "rule {}: {} has weight 0 and got {hits} of {total} requests",
                            super::model::rule_name(s, g, r),
                            self.cluster_names[c]
                        );
                        self.violations.report(Invariant::Weights, self.now, msg);
                    }
                    continue;
                }
                observed.push(hits);
                weights.push(f64::from(w));
            }
            let Some((stat, df)) = super::stats::chi_square(&observed, &weights) else {
                continue;
            };
            self.split_aggregate.add(stat, df);
            let p = super::stats::chi_square_p(stat, df);
            if p < super::stats::FALSE_ALARM {
                let msg = format!(
                    "rule {}: {total} requests split {observed:?} over weights {weights:?} \
                     (chi-square {stat:.1}, {df} df, p = {p:.2e} < {:e})",
                    super::model::rule_name(s, g, r),
                    super::stats::FALSE_ALARM
                );
                self.violations.report(Invariant::Weights, self.now, msg);
            }
        }
    }
}
