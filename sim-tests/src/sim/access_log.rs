//! The engine's access-log records, held to the reference model: one record per request,
//! the route the model chose, stream-idle cuts no sooner than the request's own snapshot
//! allows, fault-injection draws, panic mode never answering UH, and the request's end for the
//! retry budget. The record's attempt count is an engine claim, used only to locate requests
//! with attempts the driver could not see.

use std::collections::VecDeque;

use trellis_engine::proxy::{RequestLog, ResponseFlag};

use super::check::Invariant;
use super::mesh::Mesh;
use super::model;
use super::report::Outcome;

impl Mesh<'_> {
    /// An access-log record from sidecar `sc`: compare with the reference model.
    pub(crate) fn on_log(&mut self, sc: usize, log: RequestLog) {
        self.trace.u64(u64::from(log.status));
        self.trace.u64(log.duration.as_nanos() as u64);
        // Which request: the oldest on its downstream connection not logged yet (the sidecar
        // serves a connection's requests one at a time, in order).
        let queue = self.sidecars[sc].log_req.get_mut(&log.downstream);
        let Some(id) = queue.and_then(VecDeque::pop_front) else {
            let msg = format!(
                "sidecar {sc} logged a request on {} that no client request there accounts for (logged twice?)",
                log.downstream
            );
            self.violations.report(Invariant::AccessLog, self.now, msg);
            return;
        };
        if self.sidecars[sc].log_req[&log.downstream].is_empty() {
            self.sidecars[sc].log_req.remove(&log.downstream);
        }
        self.requests[id].logs += 1;
        if self.requests[id].unserved {
            let msg = format!(
                "sidecar {sc} logged request {id} ({} {}), written on {} after the connection was ended: it must not process it (RFC 9112 §9.6)",
                log.method, log.path, log.downstream
            );
            self.violations.report(Invariant::Framing, self.now, msg);
            // The reference model has no route for a request it never expected served.
            return;
        }
        self.att.logged_attempts.insert(id, log.attempts);
        self.note_end_for_budget(id);
        let Some(r) = self.requests.get(id) else {
            return;
        };
        let (service, generation, rule) = (r.service, r.generation, r.rule);
        // A client that read a whole response closes only then: a sidecar that logs the
        // request as cut by that close (DC) was still waiting for more of a response the
        // client had whole, its framing misread (a HEAD's answer taken to have a body).
        let read_whole = matches!(r.outcome, Some(Outcome::Response(_) | Outcome::Mesh(..)));
        if read_whole
            && log
                .flags
                .contains(&ResponseFlag::DownstreamConnectionTermination)
        {
            let msg = format!(
                "request {id}{}: its client read the whole response ({:?}), yet sidecar {sc} logged it as ended by the client's close ({:?})",
                if r.head { " (HEAD)" } else { "" },
                r.outcome,
                log.flags
            );
            self.violations.report(Invariant::Framing, self.now, msg);
        }
        // Cut for idleness: it must have been idle at least as long as its own snapshot's
        // timeout, so at least that long in all (a shorter one is a later snapshot's).
        let idle = r.stream_idle;
        if log.duration < idle && log.flags.contains(&ResponseFlag::StreamIdleTimeout) {
            let msg = format!(
                "request {id} ended for stream idleness (SI) after {:?}, but the snapshot it \
                 started on has stream_idle_timeout {idle:?}",
                log.duration
            );
            self.violations.report(Invariant::ConfigSwap, self.now, msg);
        }
        // Panic mode: a cluster with endpoints and `minHealthPercent` above 0 always has a
        // host to pick (every host counts once the healthy share falls below it), so it never
        // answers "no healthy upstream".
        if log.flags.contains(&ResponseFlag::NoHealthyUpstream) {
            let panics = log.cluster.as_deref().and_then(|name| {
                let c = self.cluster_names.iter().position(|n| n == name)?;
                let info = &self.cluster_info[c];
                let ver = &self.scn.services[info.service].versions[info.version];
                let min = ver.outlier.as_ref().map_or(0, |o| o.min_health_percent);
                (min > 0 && !ver.endpoints.is_empty()).then_some((name, min))
            });
            if let Some((name, min)) = panics {
                let msg = format!(
                    "request {id}: {name} answered no healthy upstream (UH), but its \
                     minHealthPercent {min} puts it in panic mode before that"
                );
                self.violations
                    .report(Invariant::EjectedHostUsed, self.now, msg);
            }
        }
        // Generation 0's names are made once; a pushed generation's on demand (rare).
        let same = match (rule, log.route.as_deref()) {
            (None, got) => got.is_none(),
            (Some(rl), Some(got)) if generation == 0 => got == self.rule_names[service][rl],
            (Some(rl), got) => got == Some(model::rule_name(service, generation, rl).as_str()),
        };
        if !same {
            let expected = rule.map(|rl| model::rule_name(service, generation, rl));
            let msg = format!(
                "request {id}: engine used route {:?}, reference model {expected:?}",
                log.route
            );
            self.violations.report(Invariant::Routing, self.now, msg);
            return;
        }
        // Fault injection draws (Envoy's fault filter: the delay, then the abort, each with its
        // percentage): every logged request of the rule drew the delay; those not cut by
        // their client (DC) drew the abort too.
        if let Some(rl) = rule {
            let fault =
                model::rule_at(self.scn, service, generation, rl).and_then(|r| r.fault.as_ref());
            // An abort answers the status its rule sets (200 for a gRPC one); a rule without
            // an abort never aborts.
            let aborted = log.flags.contains(&ResponseFlag::FaultInjected);
            let want = fault
                .filter(|f| f.abort_percent > 0)
                .map(|f| f.abort_http_status());
            if aborted && want != Some(log.status) {
                let msg = format!(
                    "request {id}: an injected abort (FI) answered {}, the rule's abort is {want:?}",
                    log.status
                );
                self.violations.report(Invariant::Faults, self.now, msg);
            }
            if fault.is_some() {
                let has = |f: ResponseFlag| log.flags.contains(&f);
                let c = self
                    .fault_counts
                    .entry((service, generation, rl))
                    .or_default();
                c[0] += 1;
                c[1] += u64::from(has(ResponseFlag::DelayInjected));
                let aborted = has(ResponseFlag::FaultInjected);
                if aborted || !has(ResponseFlag::DownstreamConnectionTermination) {
                    c[2] += 1;
                    c[3] += u64::from(aborted);
                }
            }
        }
        if let (Some(rl), Some(cluster)) = (rule, &log.cluster) {
            if let Some(&c) = self.cluster_by_name.get(&**cluster) {
                *self
                    .split_counts
                    .entry((service, generation, rl, c))
                    .or_default() += 1;
            }
        }
    }
}
