//! A request's timers firing: the route timeout, the per-try timeout, the stream idle
//! timeout, and the end of a fault delay or a retry backoff.

use crate::cluster::Outcome;
use crate::time::Instant;

use super::ids::RequestId;
use super::log::ResponseFlag;
use super::request::{Failure, Phase};
use super::Engine;

impl Engine {
    pub(super) fn on_request_timer(&mut self, now: Instant, at: Instant, id: RequestId) {
        let Some(req) = self.requests.get_mut(id) else {
            return;
        };
        if req.timers.wake != Some(at) {
            return;
        }
        req.timers.wake = None;
        if req.timers.deadline.is_some_and(|d| d <= now) {
            req.timers.deadline = None;
            self.route_timeout(now, id);
            return;
        }
        if req.timers.try_deadline.is_some_and(|d| d <= now) {
            req.timers.try_deadline = None;
            self.attempt_failed(now, id, Failure::PerTryTimeout);
            return;
        }
        if req.timers.idle_deadline.is_some_and(|d| d <= now) {
            req.timers.idle_deadline = None;
            self.stream_idle(now, id);
            return;
        }
        let phase = req.phase;
        if phase.resume_at().is_some_and(|d| d <= now) {
            req.set_phase(Phase::Done);
            match phase {
                Phase::FaultDelay { .. } => self.after_delay(now, id),
                Phase::Backoff { .. } => self.begin_attempt(now, id),
                _ => {}
            }
        }
        // Whatever is still pending (route deadline, idle deadline ...) keeps a timer.
        self.arm_request_timer(id);
    }

    /// Nothing moved for `stream_idle_timeout`.
    pub(super) fn stream_idle(&mut self, now: Instant, id: RequestId) {
        self.detach_attempt(now, id, Some(Outcome::Timeout));
        let Some(req) = self.requests.get(id) else {
            return;
        };
        if req.response_started() {
            self.abort_downstream(now, id, ResponseFlag::StreamIdleTimeout);
        } else if !req.body_done() {
            self.local_reply(
                now,
                id,
                408,
                Some(ResponseFlag::StreamIdleTimeout),
                "stream timeout",
                &[],
            );
        } else {
            self.local_reply(
                now,
                id,
                504,
                Some(ResponseFlag::StreamIdleTimeout),
                "stream timeout",
                &[],
            );
        }
    }

    /// The route's `timeout` passed: 504 if nothing was answered yet, else cut the response.
    pub(super) fn route_timeout(&mut self, now: Instant, id: RequestId) {
        self.detach_attempt(now, id, Some(Outcome::Timeout));
        let started = self.requests.get(id).is_some_and(|r| r.response_started());
        if started {
            self.abort_downstream(now, id, ResponseFlag::UpstreamRequestTimeout);
        } else {
            self.local_reply(
                now,
                id,
                504,
                Some(ResponseFlag::UpstreamRequestTimeout),
                "upstream request timeout",
                &[],
            );
        }
    }
}
