//! One request's life: routing, fault injection, attempts, retries with jittered backoff,
//! timeouts, mesh-generated answers and the access-log record.
//!
//! Retry rules follow Envoy's `x-envoy-retry-on` as Istio configures them: a failed attempt is
//! retried while `attempts` allows, the route deadline has not passed, the response has not
//! started downstream, the request body could be replayed (it fit the retry buffer), and the
//! cluster's `maxRetries` breaker has room. The next host avoids hosts already tried.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::cluster::{NoHealthyUpstream, Outcome};
use crate::config::{RetryOn, RetryPolicy, Route, RouteAction, WeightedCluster};
use crate::http1::{self, BodyDecoder, BodyEncoder, BodyFraming, RequestHead, Version};
use crate::route::{self, RouteOutcome, RouteRequest};
use crate::time::Instant;

use super::conn::{DownState, Side};
use super::log::{RequestLog, ResponseFlag};
use super::snapshot::Snapshot;
use super::timers::TimerOwner;
use super::Engine;

/// Where in its life a request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for a fault-injection delay to pass.
    FaultDelay,
    /// Waiting out the backoff before the next attempt.
    Backoff,
    /// Queued for a connection of its cluster.
    Pending,
    /// Its connection is being established.
    Connecting(u64),
    /// Attached to an upstream connection (request going out / response coming back).
    Upstream(u64),
    /// Finished (kept only while being torn down).
    Done,
}

/// Indices of the matched route inside the request's snapshot.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RouteRef {
    pub table: usize,
    pub vhost: usize,
    pub route: usize,
    pub dest: usize,
}

pub(crate) struct Request {
    pub down: u64,
    pub snapshot: Arc<Snapshot>,
    pub start: Instant,
    /// The head as it will go upstream (hop-by-hop fields stripped, rewrites applied).
    pub head: RequestHead,
    pub log_method: String,
    pub log_authority: String,
    pub log_path: String,
    pub down_version: Version,
    /// The client allows keep-alive after this request.
    pub down_keep_alive: bool,
    pub route: Option<RouteRef>,
    pub slot: Option<usize>,
    pub phase: Phase,

    // Request body.
    pub decoder: Option<BodyDecoder>,
    pub body_done: bool,
    /// Body bytes received but not yet written to the current attempt.
    pub unsent: VecDeque<Bytes>,
    pub unsent_bytes: usize,
    /// The whole body so far, kept while it fits the retry buffer (None: too big to replay).
    pub replay: Option<Vec<Bytes>>,
    pub replay_bytes: usize,
    pub trailers: http::HeaderMap,
    pub body_in: u64,

    // Attempts.
    pub attempts: u32,
    pub tried_hosts: Vec<usize>,
    pub holds_retry: bool,
    pub holds_request: bool,
    /// The attempt's host: (slot generation, host index, address).
    pub host: Option<(u32, usize, std::net::SocketAddr)>,
    pub encoder: BodyEncoder,
    pub head_sent: bool,
    /// The request body's end (last chunk) was written to the current attempt.
    pub end_sent: bool,

    // Timers.
    pub deadline: Option<Instant>,
    pub try_deadline: Option<Instant>,
    pub resume_at: Option<Instant>,
    pub wake: Option<Instant>,

    // Response.
    pub response_started: bool,
    pub status: u16,
    pub resp_decoder: Option<BodyDecoder>,
    pub resp_encoder: BodyEncoder,
    pub resp_body_out: u64,
    /// The upstream response allows reusing its connection.
    pub upstream_keep_alive: bool,
    pub flags: Vec<ResponseFlag>,
}

/// Why an attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    ConnectFailed,
    /// Closed/reset before a complete response head.
    Reset,
    PerTryTimeout,
    /// The upstream answered with an unparsable or invalid response.
    ProtocolError,
    /// A response with a status the policy retries on (only used when a retry happens).
    Status(u16),
}

impl Failure {
    fn retriable_under(self, on: &RetryOn) -> bool {
        match self {
            Failure::ConnectFailed => {
                on.connect_failure || on.server_error || on.gateway_error || on.reset
            }
            Failure::Reset => on.reset || on.server_error,
            Failure::PerTryTimeout => on.server_error || on.gateway_error,
            Failure::ProtocolError => false,
            Failure::Status(status) => status_retriable(on, status),
        }
    }
}

/// Whether a response status is one `retry_on` retries.
pub(crate) fn status_retriable(on: &RetryOn, status: u16) -> bool {
    (on.server_error && (500..600).contains(&status))
        || (on.gateway_error && matches!(status, 502..=504))
        || (on.retriable_4xx && status == 409)
        || on.retriable_status_codes.contains(&status)
}

impl Request {
    pub fn route_config(&self) -> Option<&Route> {
        let r = self.route?;
        let table = self.snapshot.config.route_tables.get(r.table)?;
        table.virtual_hosts.get(r.vhost)?.routes.get(r.route)
    }

    pub fn destination(&self) -> Option<&WeightedCluster> {
        let r = self.route?;
        match &self.route_config()?.action {
            RouteAction::Forward(dests) => dests.get(r.dest),
            _ => None,
        }
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.route_config()
            .map(|r| r.retries.clone())
            .unwrap_or_else(RetryPolicy::none)
    }

    fn earliest_wake(&self) -> Option<Instant> {
        [self.deadline, self.try_deadline, self.resume_at]
            .into_iter()
            .flatten()
            .min()
    }
}

impl Engine {
    /// A complete request head arrived on `down`; create the request and route it.
    pub(crate) fn start_request(&mut self, now: Instant, down: u64, head: RequestHead) {
        self.stats.downstream_rq_total += 1;
        let snapshot = self.snapshot.clone();
        let (listener, source_labels, port) = match self.conns.get(down) {
            Some(super::conn::Conn {
                side: Side::Down(d),
                ..
            }) => (
                d.listener.clone(),
                d.source_labels.clone(),
                d.original_dst.map(|a| a.port()).unwrap_or(d.local.port()),
            ),
            _ => return,
        };
        let down_keep_alive = head.keep_alive;
        let body_done = matches!(head.framing, BodyFraming::None);
        let decoder = (!body_done).then(|| BodyDecoder::new(head.framing, &self.limits));
        let request = Request {
            down,
            snapshot: snapshot.clone(),
            start: now,
            log_method: head.method.as_str().to_string(),
            log_authority: head.authority.clone(),
            log_path: head.target.clone(),
            down_version: head.version,
            down_keep_alive,
            route: None,
            slot: None,
            phase: Phase::Done,
            decoder,
            body_done,
            unsent: VecDeque::new(),
            unsent_bytes: 0,
            replay: Some(Vec::new()),
            replay_bytes: 0,
            trailers: http::HeaderMap::new(),
            body_in: 0,
            attempts: 0,
            tried_hosts: Vec::new(),
            holds_retry: false,
            holds_request: false,
            host: None,
            encoder: BodyEncoder::new(head.framing),
            head_sent: false,
            end_sent: false,
            deadline: None,
            try_deadline: None,
            resume_at: None,
            wake: None,
            response_started: false,
            status: 0,
            resp_decoder: None,
            resp_encoder: BodyEncoder::new(BodyFraming::None),
            resp_body_out: 0,
            upstream_keep_alive: false,
            flags: Vec::new(),
            head,
        };
        let id = self.requests.insert_with(|_| request);
        if let Some(super::conn::Conn {
            side: Side::Down(d),
            ..
        }) = self.conns.get_mut(down)
        {
            d.state = DownState::Active(id);
            d.head_deadline = None;
            d.idle_deadline = None;
        }

        // Max-Forwards (RFC 9110 §7.6.2) for TRACE and OPTIONS: answer here at zero.
        if let Some(answered) = self.max_forwards(now, id) {
            if answered {
                return;
            }
        } else {
            return;
        }

        let Some((_, table)) = snapshot.listener_named(&listener) else {
            self.local_reply(now, id, 404, Some(ResponseFlag::NoRouteFound), "", &[]);
            return;
        };
        let outcome = {
            let Some(req) = self.requests.get(id) else {
                return;
            };
            let empty = http::HeaderMap::new();
            let rr = RouteRequest {
                authority: &req.head.authority,
                path: &req.head.target,
                method: req.head.method.as_str(),
                scheme: "http",
                headers: if req.head.headers.is_empty() {
                    &empty
                } else {
                    &req.head.headers
                },
                port,
                source_labels: &source_labels,
            };
            match snapshot.router.route(table, &rr) {
                RouteOutcome::Matched(m) => Some((m.vhost_index, m.route_index, m.match_index)),
                RouteOutcome::NoVirtualHost | RouteOutcome::NoRoute { .. } => None,
            }
        };
        let Some((vhost, route_index, match_index)) = outcome else {
            self.local_reply(now, id, 404, Some(ResponseFlag::NoRouteFound), "", &[]);
            return;
        };
        let table_index = table.index();
        let Some(route) = snapshot
            .config
            .route_tables
            .get(table_index)
            .and_then(|t| t.virtual_hosts.get(vhost))
            .and_then(|v| v.routes.get(route_index))
        else {
            self.local_reply(now, id, 404, Some(ResponseFlag::NoRouteFound), "", &[]);
            return;
        };

        match &route.action {
            RouteAction::DirectResponse { status, body } => {
                let body = body.clone().unwrap_or_default();
                self.set_route(id, table_index, vhost, route_index, 0);
                self.local_reply(now, id, *status, None, &body, &[]);
            }
            RouteAction::Redirect(redirect) => {
                self.set_route(id, table_index, vhost, route_index, 0);
                let location = {
                    let Some(req) = self.requests.get(id) else {
                        return;
                    };
                    route::redirect_location(
                        redirect,
                        "http",
                        &req.head.authority,
                        &req.head.target,
                    )
                };
                let status = if redirect.status == 0 {
                    301
                } else {
                    redirect.status
                };
                self.local_reply(now, id, status, None, "", &[("location", &location)]);
            }
            RouteAction::Forward(dests) => {
                let Some(dest_index) = route::pick_weighted(dests, &mut self.rng)
                    .and_then(|d| dests.iter().position(|x| std::ptr::eq(x, d)))
                else {
                    self.local_reply(
                        now,
                        id,
                        503,
                        Some(ResponseFlag::NoHealthyUpstream),
                        "no healthy upstream",
                        &[],
                    );
                    return;
                };
                self.set_route(id, table_index, vhost, route_index, dest_index);
                let rewritten = {
                    let matched = crate::route::Matched {
                        vhost: &snapshot.config.route_tables[table_index].virtual_hosts[vhost],
                        vhost_index: vhost,
                        route,
                        route_index,
                        match_index,
                    };
                    self.requests
                        .get(id)
                        .and_then(|req| snapshot.router.rewrite_path(&matched, &req.head.target))
                };
                let cluster_name = &dests[dest_index].cluster;
                let slot = self.clusters.lookup(cluster_name);
                let Some(req) = self.requests.get_mut(id) else {
                    return;
                };
                req.slot = slot;
                if let Some(path) = rewritten {
                    req.head.target = path;
                }
                prepare_upstream_head(&mut req.head, route, &dests[dest_index], &mut self.rng);
                if slot.is_none() {
                    self.local_reply(
                        now,
                        id,
                        503,
                        Some(ResponseFlag::NoHealthyUpstream),
                        "no healthy upstream",
                        &[],
                    );
                    return;
                }
                self.continue_expect(id);
                if let Some(fault) = route.fault.clone() {
                    if let Some(delay) = &fault.delay {
                        if self.rng.chance_percent(delay.percent) {
                            let Some(req) = self.requests.get_mut(id) else {
                                return;
                            };
                            req.flags.push(ResponseFlag::DelayInjected);
                            req.phase = Phase::FaultDelay;
                            req.resume_at = Some(now + delay.fixed);
                            self.arm_request_timer(id);
                            return;
                        }
                    }
                }
                self.after_delay(now, id);
            }
        }
    }

    fn set_route(&mut self, id: u64, table: usize, vhost: usize, route: usize, dest: usize) {
        if let Some(req) = self.requests.get_mut(id) {
            req.route = Some(RouteRef {
                table,
                vhost,
                route,
                dest,
            });
        }
    }

    /// Envoy answers `Expect: 100-continue` itself once it decided to forward, and does not
    /// pass the expectation upstream.
    fn continue_expect(&mut self, id: u64) {
        let Some(req) = self.requests.get_mut(id) else {
            return;
        };
        if req.head.expect_continue {
            req.head.expect_continue = false;
            let down = req.down;
            if req.down_version == Version::Http11 && !req.body_done {
                self.write(down, b"HTTP/1.1 100 Continue\r\n\r\n");
            }
        }
    }

    /// Handles Max-Forwards on TRACE/OPTIONS. Returns Some(false) to go on routing, Some(true)
    /// when answered here, None when the request is gone.
    fn max_forwards(&mut self, now: Instant, id: u64) -> Option<bool> {
        let req = self.requests.get_mut(id)?;
        let method = req.head.method.clone();
        if method != http::Method::TRACE && method != http::Method::OPTIONS {
            return Some(false);
        }
        let Some(value) = req.head.headers.get("max-forwards") else {
            return Some(false);
        };
        let parsed = value
            .to_str()
            .ok()
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok());
        match parsed {
            None => {
                self.local_reply(
                    now,
                    id,
                    400,
                    Some(ResponseFlag::DownstreamProtocolError),
                    "invalid max-forwards",
                    &[],
                );
                Some(true)
            }
            Some(0) if method == http::Method::OPTIONS => {
                self.local_reply(
                    now,
                    id,
                    200,
                    None,
                    "",
                    &[(
                        "allow",
                        "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE",
                    )],
                );
                Some(true)
            }
            Some(0) => {
                let mut echo = bytes::BytesMut::new();
                http1::encode_request_head(&req.head, &mut echo);
                let echo = String::from_utf8_lossy(&echo).into_owned();
                self.local_reply(
                    now,
                    id,
                    200,
                    None,
                    &echo,
                    &[("content-type", "message/http")],
                );
                Some(true)
            }
            Some(n) => {
                let value = http::HeaderValue::from(n - 1);
                req.head.headers.insert("max-forwards", value);
                Some(false)
            }
        }
    }

    /// After any fault delay: maybe abort, else start the first attempt.
    fn after_delay(&mut self, now: Instant, id: u64) {
        let abort = self.requests.get(id).and_then(|r| {
            r.route_config()
                .and_then(|r| r.fault.as_ref()?.abort.clone())
        });
        if let Some(abort) = abort {
            if self.rng.chance_percent(abort.percent) {
                self.local_reply(
                    now,
                    id,
                    abort.status,
                    Some(ResponseFlag::FaultInjected),
                    "fault filter abort",
                    &[],
                );
                return;
            }
        }
        self.begin_attempt(now, id);
    }

    /// Pick a host and get a connection for the next attempt.
    pub(crate) fn begin_attempt(&mut self, now: Instant, id: u64) {
        let Some(req) = self.requests.get_mut(id) else {
            return;
        };
        req.resume_at = None;
        let Some(slot) = req.slot else {
            return;
        };
        let tried = std::mem::take(&mut req.tried_hosts);
        let Some(s) = self.clusters.slot_mut(slot) else {
            self.local_reply(
                now,
                id,
                503,
                Some(ResponseFlag::NoHealthyUpstream),
                "no healthy upstream",
                &[],
            );
            return;
        };
        if !s.state.breaker_mut().try_start_request() {
            self.overflow(now, id);
            return;
        }
        let pick = s.state.pick(&mut self.rng, &tried);
        let generation = s.generation;
        if let Some(req) = self.requests.get_mut(id) {
            req.tried_hosts = tried;
        }
        let Some(s) = self.clusters.slot_mut(slot) else {
            return;
        };
        let Ok(pick) = pick.map_err(|NoHealthyUpstream| ()) else {
            s.state.breaker_mut().request_done();
            self.local_reply(
                now,
                id,
                503,
                Some(ResponseFlag::NoHealthyUpstream),
                "no healthy upstream",
                &[],
            );
            return;
        };
        let addr = s.state.host_address(pick.host);
        let Some(req) = self.requests.get_mut(id) else {
            return;
        };
        req.holds_request = true;
        req.attempts += 1;
        req.tried_hosts.push(pick.host);
        req.host = Some((generation, pick.host, addr));
        req.head_sent = false;
        req.end_sent = false;
        req.encoder = BodyEncoder::new(req.head.framing);
        if let Some(replay) = &req.replay {
            req.unsent = replay.iter().cloned().collect();
            req.unsent_bytes = req.replay_bytes;
        }
        if req.body_done {
            self.arm_try_timeout(now, id);
        }
        self.stats.upstream_rq_total += 1;
        self.acquire_connection(now, id, slot, pick.host);
    }

    /// The per-try timeout starts once the request is whole and an attempt is under way.
    pub(crate) fn arm_try_timeout(&mut self, now: Instant, id: u64) {
        let Some(req) = self.requests.get_mut(id) else {
            return;
        };
        let per_try = req.route_config().and_then(|r| r.retries.per_try_timeout);
        let route_timeout = req.route_config().and_then(|r| r.timeout);
        if req.deadline.is_none() {
            req.deadline = route_timeout.map(|t| now + t);
        }
        req.try_deadline = per_try.map(|t| now + t);
        self.arm_request_timer(id);
    }

    pub(crate) fn arm_request_timer(&mut self, id: u64) {
        let Some(req) = self.requests.get_mut(id) else {
            return;
        };
        if let Some(at) = req.earliest_wake() {
            if req.wake.is_none_or(|w| at < w) {
                req.wake = Some(at);
                self.timers.schedule(at, TimerOwner::Request(id));
            }
        }
    }

    pub(crate) fn on_request_timer(&mut self, now: Instant, at: Instant, id: u64) {
        let Some(req) = self.requests.get_mut(id) else {
            return;
        };
        if req.wake != Some(at) {
            return;
        }
        req.wake = None;
        if req.deadline.is_some_and(|d| d <= now) {
            req.deadline = None;
            self.route_timeout(now, id);
            return;
        }
        if req.try_deadline.is_some_and(|d| d <= now) {
            req.try_deadline = None;
            self.attempt_failed(now, id, Failure::PerTryTimeout);
            return;
        }
        if req.resume_at.is_some_and(|d| d <= now) {
            req.resume_at = None;
            match req.phase {
                Phase::FaultDelay => self.after_delay(now, id),
                Phase::Backoff => self.begin_attempt(now, id),
                _ => {}
            }
            return;
        }
        self.arm_request_timer(id);
    }

    /// The route's `timeout` passed: 504 if nothing was answered yet, else cut the response.
    fn route_timeout(&mut self, now: Instant, id: u64) {
        self.detach_attempt(now, id, Some(Outcome::Timeout));
        let started = self.requests.get(id).is_some_and(|r| r.response_started);
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

    /// The current attempt failed: retry if the policy allows, else answer for the mesh.
    pub(crate) fn attempt_failed(&mut self, now: Instant, id: u64, failure: Failure) {
        let outcome = match failure {
            Failure::ConnectFailed => Some(Outcome::ConnectFailed),
            Failure::Reset | Failure::ProtocolError => Some(Outcome::Reset),
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
        let retried_out = self.requests.get(id).is_some_and(|r| r.attempts > 1);
        let (status, flag, body) = match failure {
            Failure::ConnectFailed => (
                503,
                ResponseFlag::UpstreamConnectionFailure,
                "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
            ),
            Failure::Reset => (
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
                req.flags.push(ResponseFlag::UpstreamRetryLimitExceeded);
            }
        }
        self.local_reply(now, id, status, Some(flag), body, &[]);
    }

    /// Schedules another attempt if every retry condition holds.
    pub(crate) fn try_retry(&mut self, now: Instant, id: u64, failure: Failure) -> bool {
        let Some(req) = self.requests.get_mut(id) else {
            return false;
        };
        let policy = req.retry_policy();
        let retries_used = req.attempts.saturating_sub(1);
        let replayable = req.replay.is_some();
        let deadline_left = req.deadline.is_none_or(|d| d > now);
        if req.response_started
            || !replayable
            || !deadline_left
            || retries_used >= policy.attempts
            || !failure.retriable_under(&policy.retry_on)
        {
            return false;
        }
        let Some(slot) = req.slot else {
            return false;
        };
        let holds_retry = req.holds_retry;
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
        req.holds_retry = true;
        #[cfg(feature = "mutants")]
        if self.mutations.retry_ignores_deadline {
            // Planted bug: forget the overall deadline; the next attempt re-arms it from now.
            req.deadline = None;
        }
        req.phase = Phase::Backoff;
        req.try_deadline = None;
        req.resume_at = Some(now + backoff);
        self.arm_request_timer(id);
        true
    }

    /// The breaker refused: 503 with the overload marker, as Envoy's `x-envoy-overloaded`.
    pub(crate) fn overflow(&mut self, now: Instant, id: u64) {
        self.local_reply(
            now,
            id,
            503,
            Some(ResponseFlag::UpstreamOverflow),
            "upstream connect error or disconnect/reset before headers. reset reason: overflow",
            &[("x-envoy-overloaded", "true")],
        );
    }

    /// Answer the request from the mesh itself (routing result, fault, or mesh error).
    pub(crate) fn local_reply(
        &mut self,
        now: Instant,
        id: u64,
        status: u16,
        flag: Option<ResponseFlag>,
        body: &str,
        extra: &[(&str, &str)],
    ) {
        self.detach_attempt(now, id, None);
        let Some(req) = self.requests.get_mut(id) else {
            return;
        };
        if req.response_started {
            let flag = flag.unwrap_or(ResponseFlag::UpstreamConnectionTermination);
            self.abort_downstream(now, id, flag);
            return;
        }
        if let Some(flag) = flag {
            req.flags.push(flag);
            *self.stats.flags.entry(flag).or_default() += 1;
        }
        // Keep the connection only if the request was read whole; otherwise its unread body
        // would be taken for the next request.
        let close = !req.down_keep_alive || !req.body_done;
        let mut headers: Vec<(&str, &str)> = extra.to_vec();
        let flags = req
            .flags
            .iter()
            .map(|f| f.code())
            .collect::<Vec<_>>()
            .join(",");
        if flag.is_some() {
            headers.push(("x-trellis-response-flags", &flags));
        }
        let mut out = bytes::BytesMut::new();
        let body = if req.head.method == http::Method::HEAD {
            ""
        } else {
            body
        };
        http1::encode_local_response(status, &headers, body.as_bytes(), close, &mut out);
        req.status = status;
        req.response_started = true;
        req.resp_body_out = body.len() as u64;
        let down = req.down;
        if close {
            if let Some(super::conn::Conn {
                side: Side::Down(d),
                ..
            }) = self.conns.get_mut(down)
            {
                d.close_after_response = true;
            }
        }
        self.write(down, &out);
        self.finish_request(now, id);
    }

    /// Give up the current attempt's upstream resources; `outcome` feeds outlier detection.
    pub(crate) fn detach_attempt(&mut self, now: Instant, id: u64, outcome: Option<Outcome>) {
        let Some(req) = self.requests.get_mut(id) else {
            return;
        };
        let phase = std::mem::replace(&mut req.phase, Phase::Done);
        let host = req.host.take();
        let slot = req.slot;
        let holds_request = std::mem::take(&mut req.holds_request);
        req.try_deadline = None;
        match phase {
            Phase::Pending => {
                if let Some(s) = slot.and_then(|s| self.clusters.slot_mut(s)) {
                    if let Some(pos) = s.pending.iter().position(|&r| r == id) {
                        s.pending.remove(pos);
                        s.state.breaker_mut().pending_removed();
                    }
                }
            }
            Phase::Connecting(up) => {
                // Let the connection finish; it joins the pool for someone else.
                self.unclaim_connecting(up);
            }
            Phase::Upstream(up) => {
                self.close_upstream(now, up, false);
            }
            _ => {}
        }
        if let (Some(slot), Some((generation, host, addr))) = (slot, host) {
            if let Some(s) = self.clusters.slot_mut(slot) {
                let host = if s.generation == generation {
                    Some(host)
                } else {
                    s.host_by_addr(addr)
                };
                if let Some(host) = host {
                    if matches!(phase, Phase::Upstream(_)) {
                        s.state.request_finished(host);
                    }
                    if let Some(outcome) = outcome {
                        s.state.report(now, host, outcome);
                        self.arm_sweep(slot);
                    }
                }
            }
        }
        if holds_request {
            if let Some(s) = slot.and_then(|s| self.clusters.slot_mut(s)) {
                s.state.breaker_mut().request_done();
            }
        }
    }

    /// The response cannot be completed: cut the downstream connection so the client sees a
    /// truncated message rather than a wrong one.
    pub(crate) fn abort_downstream(&mut self, now: Instant, id: u64, flag: ResponseFlag) {
        let Some(req) = self.requests.get_mut(id) else {
            return;
        };
        req.flags.push(flag);
        *self.stats.flags.entry(flag).or_default() += 1;
        let down = req.down;
        self.mark_closing(down, false);
        self.finish_request(now, id);
    }

    /// The request is over: release everything, log it, and let the connection go on.
    pub(crate) fn finish_request(&mut self, now: Instant, id: u64) {
        self.detach_attempt(now, id, None);
        let Some(req) = self.requests.remove(id) else {
            return;
        };
        if req.holds_retry {
            if let Some(s) = req.slot.and_then(|s| self.clusters.slot_mut(s)) {
                s.state.breaker_mut().retry_done();
            }
        }
        let class = (req.status / 100) as usize;
        if let Some(n) = self.stats.downstream_rq_by_class.get_mut(class) {
            *n += 1;
        }
        let cluster = req.destination().map(|d| d.cluster.clone());
        let peer = match self.conns.get(req.down) {
            Some(super::conn::Conn {
                side: Side::Down(d),
                ..
            }) => Some(d.peer),
            _ => None,
        };
        self.logs.push(RequestLog {
            downstream: super::ConnId(req.down),
            peer,
            start: req.start,
            duration: now - req.start,
            method: req.log_method,
            authority: req.log_authority,
            path: req.log_path,
            status: req.status,
            flags: req.flags,
            route: req
                .route
                .and_then(|r| {
                    req.snapshot
                        .config
                        .route_tables
                        .get(r.table)?
                        .virtual_hosts
                        .get(r.vhost)?
                        .routes
                        .get(r.route)
                })
                .map(|r| r.name.clone()),
            cluster,
            upstream_host: req.host.map(|(_, _, a)| a),
            attempts: req.attempts,
            request_body_bytes: req.body_in,
            response_body_bytes: req.resp_body_out,
        });
        self.downstream_request_done(now, req.down, req.body_done);
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

/// Turns the client's head into the upstream head: hop-by-hop fields go, route and destination
/// header edits apply, the authority may be rewritten, and the proxy adds its own fields.
fn prepare_upstream_head(
    head: &mut RequestHead,
    route: &Route,
    dest: &WeightedCluster,
    rng: &mut crate::rng::EngineRng,
) {
    let upgrade = head.upgrade.clone();
    http1::strip_hop_by_hop(&mut head.headers);
    head.upgrade = upgrade;
    head.headers.remove(http::header::EXPECT);
    if let Some(authority) = route.rewrite.as_ref().and_then(|r| r.authority.clone()) {
        head.authority = authority;
    }
    route::apply_header_ops(&route.request_headers, &mut head.headers);
    route::apply_header_ops(&dest.request_headers, &mut head.headers);
    if !head.headers.contains_key("x-request-id") {
        head.headers.insert("x-request-id", request_id(rng));
    }
    if !head.headers.contains_key("x-forwarded-proto") {
        head.headers
            .insert("x-forwarded-proto", http::HeaderValue::from_static("http"));
    }
    // RFC 9110 §7.6.3: a proxy MUST add itself to Via.
    head.headers.append(
        http::header::VIA,
        http::HeaderValue::from_static("1.1 trellis"),
    );
    head.keep_alive = true;
}

/// A UUIDv4-shaped request id from the engine RNG (deterministic under a seed).
fn request_id(rng: &mut crate::rng::EngineRng) -> http::HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bits = u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64());
    // Version 4, variant 10xx, as RFC 9562 lays them out.
    bits = (bits & !(0xf << 76)) | (0x4 << 76);
    bits = (bits & !(0x3 << 62)) | (0x2 << 62);
    let mut out = [0u8; 36];
    let mut nibble = 0;
    for (i, byte) in out.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            *byte = b'-';
            continue;
        }
        let shift = 124 - 4 * nibble;
        *byte = HEX[((bits >> shift) & 0xf) as usize];
        nibble += 1;
    }
    http::HeaderValue::from_bytes(&out).unwrap_or_else(|_| http::HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_uuid_v4_shaped_and_seeded() {
        let mut a = crate::rng::EngineRng::with_seed(5);
        let mut b = crate::rng::EngineRng::with_seed(5);
        let id = request_id(&mut a);
        assert_eq!(id, request_id(&mut b));
        let s = id.to_str().unwrap();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4", "{s}");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"), "{s}");
        assert_eq!(s.matches('-').count(), 4);
    }
}
