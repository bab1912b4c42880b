//! Attempts: picking a host, arming the route and per-try deadlines, and retries with
//! jittered backoff under Envoy's `retry_on` rules. (The timers firing are `timeouts`'; what
//! an attempt held is released by `pool::detach_attempt`.)
//!
//! A failed attempt is retried while `attempts` allows, the route deadline has not passed, the
//! response has not started downstream, the request body could be replayed (it fit the retry
//! buffer), and the cluster's `maxRetries` breaker has room. The next host avoids hosts already
//! tried (Envoy's previous_hosts predicate).

use std::time::Duration;

use crate::cluster::{NoHealthyUpstream, Outcome};
use crate::config::RetryPolicy;
use crate::http1::BodyEncoder;
use crate::time::Instant;

use super::ids::RequestId;
use super::log::ResponseFlag;
use super::pool::Acquired;
use super::request::{Failure, Phase};
use super::timers::TimerOwner;
use super::Engine;

impl Engine {
    /// Pick a host and get a connection for the next attempt.
    pub(crate) fn begin_attempt(&mut self, now: Instant, id: RequestId) {
        let Some(req) = self.requests.get_mut(id) else {
            return;
        };
        let Some(slot) = req.slot else {
            // Only a first attempt can lack a cluster: a retry needs one to have been tried.
            debug_assert_eq!(req.tries.count, 0, "{id}: a retry without a cluster");
            self.cluster_not_found(now, id);
            return;
        };
        #[allow(unused_mut)]
        let mut tried = req.tries.tried_hosts;
        #[cfg(feature = "mutants")]
        if self.mutations.retry_forgets_tried_hosts {
            // Planted bug: the previous-hosts predicate is dropped.
            tried = Default::default();
        }
        let hash = self.consistent_hash(id, slot);
        let Some(s) = self.clusters.slot_mut(slot) else {
            self.no_healthy_upstream(now, id);
            return;
        };
        if !s.state.breaker_mut().try_start_request() {
            self.overflow(now, id);
            return;
        }
        let pick = s.state.pick_hashed(&mut self.rng, tried.as_slice(), hash);
        let generation = s.generation;
        let Ok(pick) = pick.map_err(|NoHealthyUpstream| ()) else {
            s.state.breaker_mut().request_done();
            self.no_healthy_upstream(now, id);
            return;
        };
        let addr = s.state.host_address(pick.host);
        let Some(req) = self.requests.get_mut(id) else {
            return;
        };
        req.tries.holds_request = true;
        req.tries.count += 1;
        req.tries.tried_hosts.push(pick.host);
        req.set_host(generation, pick.host, addr);
        req.encoder = BodyEncoder::new(req.head.framing);
        if let Some(replay) = &req.body.replay {
            // Without a body received (most requests) both lists are empty and stay so:
            // rebuilding the queue then only built an empty one and dropped another.
            if !(replay.is_empty() && req.body.unsent.is_empty()) {
                req.body.unsent = replay.iter().cloned().collect();
            }
            req.body.unsent_bytes = req.body.replay_bytes;
        }
        if req.body_done() {
            self.arm_try_timeout(now, id);
        }
        self.stats.upstream_rq_total += 1;
        #[allow(unused_mut)]
        let mut first = self.requests.get(id).is_some_and(|r| r.tries.count == 1);
        #[cfg(feature = "mutants")]
        if self.mutations.mirror_every_attempt {
            first = true;
        }
        if first {
            // Envoy starts a route's shadows with the first upstream request, never a retry.
            self.start_mirrors(now, id);
        }
        if self.acquire_connection(now, id, slot, pick.host) == Acquired::Overflow {
            // No connection, no room to wait: undo the attempt and answer overflow.
            self.overflow(now, id);
        }
    }

    /// The request's consistent-hash value for the cluster in `slot`, when its policy hashes;
    /// a cookie the hash policy generated is kept for the response (once per request).
    fn consistent_hash(&mut self, id: RequestId, slot: usize) -> Option<u64> {
        let key = self.clusters.slot(slot)?.state.hash_key()?;
        let req = self.requests.get(id)?;
        let down = self.conns.down(req.down)?;
        let input = crate::cluster::hash_policy::HashInput {
            headers: &req.head.headers,
            // The client's target: Envoy hashes before the route rewrites the path.
            target: req.original_target.as_deref().unwrap_or(&req.head.target),
            peer: down.peer,
            local: down.local,
        };
        let hashed = crate::cluster::hash_policy::request_hash(key, &input);
        if let Some(cookie) = hashed.set_cookie {
            if let Some(req) = self.requests.get_mut(id) {
                req.set_cookie.get_or_insert(cookie);
            }
        }
        hashed.hash
    }

    /// The per-try timeout starts once the request is whole and an attempt is under way.
    pub(crate) fn arm_try_timeout(&mut self, now: Instant, id: RequestId) {
        let Some(req) = self.requests.get_mut(id) else {
            return;
        };
        let per_try = req.route_config().and_then(|r| r.retries.per_try_timeout);
        let route_timeout = req.route_config().and_then(|r| r.timeout);
        if req.timers.deadline.is_none() {
            req.timers.deadline = route_timeout.map(|t| now + t);
        }
        req.timers.try_deadline = per_try.map(|t| now + t);
        self.arm_request_timer(id);
    }

    pub(crate) fn arm_request_timer(&mut self, id: RequestId) {
        let Some(req) = self.requests.get_mut(id) else {
            return;
        };
        if let Some(at) = req.earliest_wake() {
            (self.timers).arm(&mut req.timers.wake, at, TimerOwner::Request(id));
        }
    }

    /// Bytes moved for this request: push its stream idle deadline back (by the timeout of
    /// the request's own snapshot, whatever config runs now).
    pub(crate) fn touch(&mut self, now: Instant, id: RequestId) {
        if let Some(req) = self.requests.get_mut(id) {
            #[allow(unused_mut)]
            let mut timeout = req.snapshot.config.http.stream_idle_timeout;
            #[cfg(feature = "mutants")]
            if self.mutations.idle_timeout_from_running_config {
                // Planted bug: the running config's timeout, not the request's snapshot's.
                timeout = self.snapshot.config.http.stream_idle_timeout;
            }
            // Later than the armed wake-up, unless the timeout changed under the request.
            let at = now + timeout;
            req.timers.idle_deadline = Some(at);
            (self.timers).arm(&mut req.timers.wake, at, TimerOwner::Request(id));
        }
    }

    /// The current attempt failed: retry if the policy allows, else answer for the mesh.
    pub(crate) fn attempt_failed(&mut self, now: Instant, id: RequestId, failure: Failure) {
        let outcome = match failure {
            Failure::ConnectFailed => Some(Outcome::ConnectFailed),
            Failure::Reset | Failure::ProtocolError => Some(Outcome::Reset),
            Failure::StaleConnection => None,
            Failure::PerTryTimeout => Some(Outcome::Timeout),
            Failure::Status(_) => None, // already reported when the head arrived
        };
        self.detach_attempt(now, id, outcome);
        if failure == Failure::ConnectFailed {
            self.stats.upstream_cx_connect_fail += 1;
        }
        if self.try_retry(now, id, failure) {
            return;
        }
        let retried_out = self.requests.get(id).is_some_and(|r| r.tries.count > 1);
        let (status, flag, body) = match failure {
            Failure::ConnectFailed => (
                503,
                ResponseFlag::UpstreamConnectionFailure,
                "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
            ),
            Failure::Reset | Failure::StaleConnection => (
                503,
                ResponseFlag::UpstreamConnectionTermination,
                "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
            ),
            Failure::PerTryTimeout => (504, ResponseFlag::UpstreamRequestTimeout, "upstream request timeout"),
            Failure::ProtocolError => (502, ResponseFlag::UpstreamProtocolError, "upstream sent an invalid response"),
            Failure::Status(_) => return, // the caller forwards the response itself
        };
        if retried_out {
            if let Some(req) = self.requests.get_mut(id) {
                req.response
                    .flags
                    .push(ResponseFlag::UpstreamRetryLimitExceeded);
            }
        }
        self.local_reply(now, id, status, Some(flag), body, &[]);
    }

    /// Schedules another attempt if every retry condition holds.
    pub(crate) fn try_retry(&mut self, now: Instant, id: RequestId, failure: Failure) -> bool {
        let Some(req) = self.requests.get_mut(id) else {
            return false;
        };
        let policy = req.retry_policy();
        let retries_used = req.tries.count.saturating_sub(1);
        // Retries follow the route's `retryOn` whatever the method, as Envoy's do: an operator
        // who configured them is RFC 9110 §9.2.2's "means to know" a request may be repeated.
        let replayable = req.body.replay.is_some();
        let deadline_left = req.timers.deadline.is_none_or(|d| d > now);
        #[allow(unused_mut)]
        let mut out_of_retries = retries_used >= policy.attempts;
        #[cfg(feature = "mutants")]
        if self.mutations.retry_one_attempt_too_many {
            // Planted bug: `>` where `>=` belongs.
            out_of_retries = retries_used > policy.attempts;
        }
        #[allow(unused_mut)]
        let mut retriable = failure.retriable_under(&policy.retry_on);
        #[cfg(feature = "mutants")]
        if self.mutations.gateway_error_retries_500 {
            // Planted bug: gateway-error read as 500..=504.
            retriable |=
                matches!(failure, Failure::Status(500..=504)) && policy.retry_on.gateway_error;
        }
        if req.response_started()
            || req.tries.interim_seen
            || !replayable
            || !deadline_left
            || out_of_retries
            || !retriable
        {
            return false;
        }
        let Some(slot) = req.slot else {
            return false;
        };
        let holds_retry = req.tries.holds_retry;
        let Some(s) = self.clusters.slot_mut(slot) else {
            return false;
        };
        if !holds_retry && !s.state.breaker_mut().try_start_retry() {
            self.stats.upstream_rq_retry_overflow += 1;
            return false;
        }
        self.stats.upstream_rq_retry += 1;
        let backoff = retry_backoff(&policy, retries_used, &mut self.rng);
        let Some(req) = self.requests.get_mut(id) else {
            return false;
        };
        req.tries.holds_retry = true;
        #[cfg(feature = "mutants")]
        if self.mutations.retry_ignores_deadline {
            // Planted bug: forget the overall deadline; the next attempt re-arms it from now.
            req.timers.deadline = None;
        }
        req.set_phase(Phase::Backoff {
            resume_at: now + backoff,
        });
        req.timers.try_deadline = None;
        self.arm_request_timer(id);
        #[cfg(feature = "mutants")]
        if self.mutations.config_applies_to_in_flight {
            self.reroute_on_current_snapshot(id);
        }
        true
    }

    /// Planted bug (`config_applies_to_in_flight`): move a request onto the running snapshot,
    /// re-picking its destination from the route at the same position there.
    #[cfg(feature = "mutants")]
    fn reroute_on_current_snapshot(&mut self, id: RequestId) {
        let snapshot = self.snapshot.clone();
        let Some(req) = self.requests.get_mut(id) else {
            return;
        };
        if std::sync::Arc::ptr_eq(&req.snapshot, &snapshot) {
            return;
        }
        req.snapshot = snapshot;
        let dests = match req.route_config().map(|r| &r.action) {
            Some(crate::config::RouteAction::Forward(dests)) => dests.clone(),
            _ => return,
        };
        let Some(dest) = crate::route::pick_weighted(&dests, &mut self.rng)
            .and_then(|d| dests.iter().position(|x| std::ptr::eq(x, d)))
        else {
            return;
        };
        let Some(slot) = self.clusters.lookup(&dests[dest].cluster) else {
            return;
        };
        if let Some(r) = req.route.as_mut() {
            r.dest = dest;
        }
        let old = req.slot.replace(slot);
        if old != Some(slot) && req.tries.holds_retry {
            // The retry budget moves along: the bug is the routing, not the accounting.
            if let Some(s) = old.and_then(|o| self.clusters.slot_mut(o)) {
                s.state.breaker_mut().retry_done();
            }
            req.tries.holds_retry = self
                .clusters
                .slot_mut(slot)
                .is_some_and(|s| s.state.breaker_mut().try_start_retry());
        }
    }
}

/// Fully jittered exponential backoff (Envoy): uniform in [0, min(base·2^n, 10·base)).
fn retry_backoff(
    policy: &RetryPolicy,
    retries_used: u32,
    rng: &mut crate::rng::EngineRng,
) -> Duration {
    let base = policy.backoff_base.as_nanos().max(1) as u64;
    let ceiling = base
        .saturating_mul(1u64 << retries_used.min(16))
        .min(base.saturating_mul(10));
    Duration::from_nanos(rng.below_u64(ceiling.max(1)))
}
