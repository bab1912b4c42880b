//! The retry checks, run per request after the run, from the attempts [`super::attempts`]
//! observed: the count bound, `retryOn` (statuses, and resets per Envoy's
//! `wouldRetryFromReset`), must-retry (for a covered status or a covered reset, with attempts,
//! time and a replayable body left), previous hosts and per-try timeouts. Which requests are
//! "troubled" (attempts the driver could not see) is decided in [`super::attempts`].

use std::time::Duration;

use super::attempts::EXACT;
use super::check::Invariant;
use super::mesh::Mesh;
use super::report::Outcome;

impl Mesh<'_> {
    /// After the run: every request's attempts against its route's retry policy.
    pub(crate) fn check_attempts(&mut self) {
        for r in 0..self.requests.len() {
            self.check_request_attempts(r);
        }
    }

    fn check_request_attempts(&mut self, r: usize) {
        let Some(attempts) = self.att.per_req.get(r) else {
            return;
        };
        if attempts.is_empty() {
            return;
        }
        let req = &self.requests[r];
        let Some(rule) = req
            .rule
            .and_then(|rl| super::model::rule_at(self.scn, req.service, req.generation, rl))
        else {
            return;
        };
        let policy = rule.retries.clone();
        let allowed = policy.as_ref().map_or(0, |p| p.attempts);
        let n = attempts.len();
        let mut found: Vec<(Invariant, String)> = Vec::new();
        if n as u64 > 1 + u64::from(allowed) {
            found.push((
                Invariant::Retries,
                format!(
                    "request {r} made {n} attempts; its route ({}) allows {allowed} retries",
                    super::model::rule_name(req.service, req.generation, req.rule.unwrap_or(0))
                ),
            ));
        }
        let retried = |s: u16| policy.as_ref().is_some_and(|p| p.retries_status(s));
        for (k, a) in attempts.iter().enumerate() {
            if let Some((t, s)) = a.status {
                if k + 1 < n && !retried(s) {
                    found.push((
                        Invariant::Retries,
                        format!(
                            "request {r}: attempt {} got {s} at {t}, which retryOn {:?} does not cover, and was retried",
                            k + 1,
                            policy.as_ref().map(retry_on_text)
                        ),
                    ));
                }
            }
        }
        // Resets: a connection reset, closed or answered with garbage before a response head
        // is retried under `reset`, `5xx` and `gateway-error` alone (Envoy's
        // `wouldRetryFromReset`: `refused-stream` only covers an HTTP/2 REFUSED_STREAM,
        // `connect-failure` only a connect that failed).
        let retried_reset = policy
            .as_ref()
            .is_some_and(|p| p.on_reset || p.on_5xx || p.on_gateway_error);
        for (k, a) in attempts.iter().enumerate() {
            if a.interim && k + 1 < n {
                found.push((
                    Invariant::Retries,
                    format!(
                        "request {r}: attempt {} got an interim answer (103) and was retried; Envoy's router resets its retry state on one (Filter::onUpstream1xxHeaders)",
                        k + 1
                    ),
                ));
            }
            if a.answered && a.status.is_none() && k + 1 < n && !retried_reset {
                found.push((
                    Invariant::Retries,
                    format!(
                        "request {r}: attempt {} was reset before a response head, which retryOn {:?} does not cover, and was retried",
                        k + 1,
                        policy.as_ref().map(retry_on_text)
                    ),
                ));
            }
        }
        let troubled = self.troubled(r);
        let req = &self.requests[r];
        let attempts = &self.att.per_req[r];
        let last = &attempts[n - 1];
        // Must retry: the client got the retryable answer of the last attempt although
        // everything allowed another.
        // A retry budget may have been spent by other requests when this one wanted to
        // retry: how much of it was, the driver cannot see (retries in backoff hold a unit
        // unseen), so must-retry is not asked of budgeted clusters.
        let budgeted = (attempts.iter()).any(|a| {
            let info = &self.cluster_info[a.cluster];
            self.scn.services[info.service].versions[info.version]
                .max_retries
                .is_some()
        });
        // Room for another attempt after one that failed at `t`: attempts left, time left
        // before the route's deadline, and a decoded body that fits the retry buffer (64 KiB
        // unless the scenario sets it).
        let buffer = (self.scn.http.as_ref()).map_or(64 * 1024, |h| h.retry_buffer_bytes);
        // After an interim answer no attempt follows (Envoy's `onUpstream1xxHeaders`).
        let room = |t: trellis_engine::Instant| {
            !last.interim
                && (n as u64) < 1 + u64::from(allowed)
                && (rule.timeout_ms).is_none_or(|ms| t < req.start + Duration::from_millis(ms))
                && req.body_len <= buffer as usize
        };
        if let (Some((t, s)), Some(Outcome::Response(got)), false, true) = (
            last.status,
            req.outcome.as_ref(),
            troubled || budgeted,
            EXACT,
        ) {
            if *got == s && retried(s) && room(t) {
                found.push((
                    Invariant::Retries,
                    format!(
                        "request {r}: attempt {n} got {s} at {t}, which retryOn {:?} covers, with {} retries left and time left (started {}, timeout {:?} ms), and {s} went to the client without a retry",
                        policy.as_ref().map(retry_on_text),
                        1 + u64::from(allowed) - n as u64,
                        req.start,
                        rule.timeout_ms
                    ),
                ));
            }
        }
        // Must retry a reset: the last attempt was reset before a head, the client got the
        // reset's own answer (503 UC, or 502 UPE for an unparsable response; a route timeout
        // during the retry's backoff is not a missed retry), and everything allowed another
        // attempt.
        if let (true, None, Some(t), Some(Outcome::Mesh(status, flags)), false, true) = (
            last.answered,
            last.status,
            last.ended,
            req.outcome.as_ref(),
            troubled || budgeted,
            EXACT,
        ) {
            let reset_answer = flags.split(',').any(|f| f == "UC" || f == "UPE");
            if retried_reset && reset_answer && room(t) {
                found.push((
                    Invariant::Retries,
                    format!(
                        "request {r}: attempt {n} was reset before a response head at {t}, which retryOn {:?} covers, with {} retries left and time left (started {}, timeout {:?} ms), and the client got {status} {flags:?} without a retry",
                        policy.as_ref().map(retry_on_text),
                        1 + u64::from(allowed) - n as u64,
                        req.start,
                        rule.timeout_ms
                    ),
                ));
            }
        }
        if !troubled && EXACT {
            if let Some(b) = attempts.iter().find_map(|a| a.avoid_breach.clone()) {
                found.push((Invariant::RetryHosts, b));
            }
        }
        if let Some(per_try) = policy.as_ref().and_then(|p| p.per_try_ms) {
            let per_try = Duration::from_millis(per_try);
            for (k, a) in attempts.iter().enumerate() {
                // Abandoned with nothing back and retried: its per-try timeout (a route
                // timeout, an idle timeout or a client leaving ends the request instead).
                // Troubled requests may have waited for a connection unseen (a pool's
                // pending queue, a slow connect), which the engine counts into the try.
                if let (Some(t), false) = (a.abandoned, troubled) {
                    if k + 1 < attempts.len() && t < a.began_by + per_try {
                        found.push((
                            Invariant::PerTryTimeout,
                            format!(
                                "request {r}: attempt {} (began by {}) abandoned at {t}, before its per-try timeout of {per_try:?}",
                                k + 1,
                                a.began_by
                            ),
                        ));
                    }
                }
                if a.hung {
                    let due = a.last_send + per_try;
                    let ended = [a.ended, a.abandoned, req.end].into_iter().flatten().min();
                    if ended.is_none_or(|e| e > due) {
                        found.push((
                            Invariant::PerTryTimeout,
                            format!(
                                "request {r}: attempt {} hung at its server (head sent {}, last bytes {}) and was still on at {due}, per-try timeout {per_try:?} (ended {ended:?})",
                                k + 1,
                                a.sent,
                                a.last_send
                            ),
                        ));
                    }
                }
            }
        }
        for (inv, msg) in found {
            self.violation(inv, msg);
        }
    }
}

fn retry_on_text(p: &super::scenario::RetrySpec) -> String {
    let mut on = Vec::new();
    for (set, name) in [
        (p.on_5xx, "5xx"),
        (p.on_gateway_error, "gateway-error"),
        (p.on_retriable_4xx, "retriable-4xx"),
        (p.on_connect_failure, "connect-failure"),
        (p.on_reset, "reset"),
        (p.on_refused_stream, "refused-stream"),
    ] {
        if set {
            on.push(name.to_string());
        }
    }
    on.extend(p.status_codes.iter().map(|c| c.to_string()));
    format!("{} (attempts {})", on.join(","), p.attempts)
}
