//! A request's state: what it is, where it is in its life, and why an attempt failed.
//!
//! Three enums carry the state that used to be a phase and booleans: [`Phase`] (the attempt
//! upstream), [`Inbound`] (the body coming from the client) and [`Outbound`] (the response
//! going back). The life itself is spread by concern: [`super::routing`] (route, faults,
//! upstream head), [`super::attempt`] (hosts, retries), [`super::pool`] (connections) and
//! [`super::reply`] (mesh-generated answers, the end of a request, its access-log record).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use crate::codec::StreamId;
use crate::config::{RetryOn, RetryPolicy, Route, RouteAction, WeightedCluster};
use crate::http1::{BodyDecoder, BodyEncoder, RequestHead, Trailers, Version};
use crate::time::Instant;

use super::ids::{DownstreamId, UpstreamId};
use super::log::ResponseFlag;
use super::snapshot::Snapshot;

/// Where the request's attempt upstream is. (What came in from the client is [`Inbound`],
/// what went back to it [`Outbound`].)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for a fault-injection delay to pass, until `resume_at`.
    FaultDelay { resume_at: Instant },
    /// Waiting out the backoff before the next attempt, until `resume_at`.
    Backoff { resume_at: Instant },
    /// Queued for a connection of its cluster.
    Pending,
    /// Its connection is being established.
    Connecting(UpstreamId),
    /// Attached to an upstream connection: its head went out on it, and body bytes follow as
    /// they arrive (`end_sent`: the body's end, last chunk and trailers, went out too).
    Upstream { up: UpstreamId, end_sent: bool },
    /// No attempt under way: not yet routed, answered by the mesh, between a failed attempt
    /// and its retry's backoff, or finished.
    Done,
}

impl Phase {
    /// When a fault delay or a backoff ends.
    pub fn resume_at(self) -> Option<Instant> {
        match self {
            Phase::FaultDelay { resume_at } | Phase::Backoff { resume_at } => Some(resume_at),
            _ => None,
        }
    }

    /// The upstream connection the current attempt is attached to.
    pub fn upstream(self) -> Option<UpstreamId> {
        match self {
            Phase::Upstream { up, .. } => Some(up),
            _ => None,
        }
    }

    /// Whether `self → next` is a step a request may take.
    pub fn may_become(self, next: Phase) -> bool {
        use Phase::*;
        match (self, next) {
            (_, Done) => true,
            // A retry's backoff starts after the failed attempt was detached.
            (Done, Backoff { .. }) => true,
            (Done, FaultDelay { .. }) => true,
            // A new attempt starts once no attempt is under way (a delay or backoff that ended
            // went back to `Done`).
            (Done, Pending | Connecting(_) | Upstream { .. }) => true,
            // A queued request gets a connection: a pooled or handed-off one, or a new one.
            (Pending, Connecting(_) | Upstream { .. }) => true,
            (Connecting(a), Upstream { up, .. }) => a == up,
            // Only the body's end is sent on the same attempt.
            (
                Upstream {
                    up: a,
                    end_sent: false,
                },
                Upstream {
                    up: b,
                    end_sent: true,
                },
            ) => a == b,
            _ => false,
        }
    }
}

/// The request as it comes in from the client.
pub(crate) enum Inbound {
    /// Body bytes are still to come (the connection's codec reads their framing).
    Reading,
    /// The whole request was read (its trailers, if any, are replayed with every attempt).
    Done { trailers: Trailers },
}

impl Inbound {
    pub fn is_done(&self) -> bool {
        matches!(self, Inbound::Done { .. })
    }
}

/// The response as it goes out to the client.
pub(crate) enum Outbound {
    /// Nothing was sent to the client yet: the request may still be retried or answered.
    NotStarted,
    /// An upstream response's head went out; its body is relayed as decoded from the upstream
    /// and re-encoded for the client by the connection's codec.
    Relaying {
        decoder: BodyDecoder,
        /// The upstream response allows reusing its connection.
        upstream_keep_alive: bool,
    },
    /// A whole answer went out: one the mesh wrote itself, or a 101 that turned the
    /// connection into a tunnel.
    Written,
}

impl Outbound {
    /// Whether any of the response went to the client (no retry, no other answer then).
    pub fn started(&self) -> bool {
        !matches!(self, Outbound::NotStarted)
    }
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
    pub down: DownstreamId,
    /// The request's stream on `down` (its codec's numbering).
    pub stream: StreamId,
    pub snapshot: Arc<Snapshot>,
    pub start: Instant,
    /// The head as it will go upstream (hop-by-hop fields stripped, rewrites applied).
    pub head: RequestHead,
    /// The client's target and authority, kept only if a rewrite changed them (the access log
    /// shows what the client asked for; not copying them otherwise saves two allocations).
    pub original_target: Option<crate::http1::Target>,
    pub original_authority: Option<crate::http1::HeadStr>,
    /// A redirect's `Location`, computed when its route matched: Envoy builds it from the
    /// matched prefix and the listener port, which only the match knows.
    pub redirect_location: Option<String>,
    /// A consistent-hash cookie the balancer generated (`httpCookie` with a `ttl`), set on
    /// the response (Envoy's `downstream_set_cookies_`).
    pub set_cookie: Option<String>,
    /// What the route's CORS policy decided (`super::cors`): an allowed origin the response is
    /// decorated with, or a preflight answer; `None` for most requests.
    pub cors: Option<crate::route::cors::CorsVerdict>,
    pub down_version: Version,
    /// The client allows keep-alive after this request.
    pub down_keep_alive: bool,
    pub route: Option<RouteRef>,
    pub slot: Option<usize>,
    pub phase: Phase,
    /// The body coming from the client and what of it is kept for retries.
    pub body: RequestBody,
    /// The attempts made upstream and what they hold.
    pub tries: Tries,
    pub encoder: BodyEncoder,
    pub timers: RequestTimers,
    /// The answer going back to the client.
    pub response: ResponseState,
    /// Connections of this request's mirrors that still copy its body as it arrives
    /// (`super::mirror`); empty once the body is whole, and for most requests.
    pub mirrors: Vec<UpstreamId>,
}

/// The request body: read from the client, written to the current attempt, kept for replay.
pub(crate) struct RequestBody {
    pub inbound: Inbound,
    /// Body bytes received but not yet written to the current attempt.
    pub unsent: VecDeque<Bytes>,
    pub unsent_bytes: usize,
    /// The whole body so far, kept while it fits the retry buffer (None: too big to replay).
    pub replay: Option<Vec<Bytes>>,
    pub replay_bytes: usize,
    pub body_in: u64,
}

impl RequestBody {
    /// A body to read (`inbound`), nothing received yet.
    pub fn new(inbound: Inbound) -> Self {
        RequestBody {
            inbound,
            unsent: VecDeque::new(),
            unsent_bytes: 0,
            replay: Some(Vec::new()),
            replay_bytes: 0,
            body_in: 0,
        }
    }

    /// Body bytes arrived: queue them for the attempt, and keep them for a retry while the
    /// whole body fits `replay_limit` (past it, the body can no longer be replayed).
    pub fn received(&mut self, data: Bytes, replay_limit: usize) {
        self.body_in += data.len() as u64;
        if let Some(replay) = self.replay.as_mut() {
            if self.replay_bytes + data.len() <= replay_limit {
                replay.push(data.clone());
                self.replay_bytes += data.len();
            } else {
                self.replay = None;
            }
        }
        self.unsent_bytes += data.len();
        self.unsent.push_back(data);
        debug_assert_eq!(
            self.unsent_bytes,
            self.unsent.iter().map(Bytes::len).sum::<usize>(),
            "unsent byte count"
        );
    }
}

/// A request's attempts upstream: how many, which hosts, and the budget they hold.
#[derive(Default)]
pub(crate) struct Tries {
    pub count: u32,
    /// Hosts earlier attempts used (retries avoid them), inline: no allocation per request.
    pub tried_hosts: TriedHosts,
    /// A retry token of the cluster's circuit breaker (`maxRetries`) is held.
    pub holds_retry: bool,
    /// An interim answer (100, 102, 103) came from the upstream: no attempt follows this one,
    /// as Envoy's router resets its retry state on one (`Filter::onUpstream1xxHeaders`).
    pub interim_seen: bool,
    /// A request token of the cluster's circuit breaker (`http2MaxRequests`) is held.
    pub holds_request: bool,
    /// The attempt's host: (slot generation, host index, address); taken when the attempt
    /// lets go of it (its outcome is reported once).
    pub host: Option<(u32, usize, std::net::SocketAddr)>,
    /// The latest attempt's host address, kept for the access log (`%UPSTREAM_HOST%`).
    pub upstream_host: Option<std::net::SocketAddr>,
}

/// A request's deadlines, and the one timer entry armed for the earliest.
#[derive(Default)]
pub(crate) struct RequestTimers {
    /// The route timeout.
    pub deadline: Option<Instant>,
    /// The current attempt's per-try timeout.
    pub try_deadline: Option<Instant>,
    /// Stream idle deadline, pushed back whenever bytes move.
    pub idle_deadline: Option<Instant>,
    pub wake: Option<Instant>,
}

/// The answer as it goes back to the client.
pub(crate) struct ResponseState {
    pub outbound: Outbound,
    pub status: u16,
    pub body_out: u64,
    pub flags: Vec<ResponseFlag>,
}

impl Default for ResponseState {
    fn default() -> Self {
        ResponseState {
            outbound: Outbound::NotStarted,
            status: 0,
            body_out: 0,
            flags: Vec::new(),
        }
    }
}

/// Why an attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    ConnectFailed,
    /// Closed/reset before a complete response head.
    Reset,
    /// A reused keep-alive connection closed before a single response byte: the upstream most
    /// likely closed it idle just as the request went out. Not the host's fault (outlier
    /// detection leaves it out), but retried as any reset is: Envoy's HTTP/1 codec reports it
    /// as a connection termination, never as HTTP/2's REFUSED_STREAM.
    StaleConnection,
    PerTryTimeout,
    /// The upstream answered with an unparsable or invalid response.
    ProtocolError,
    /// A response with a status the policy retries on (only used when a retry happens).
    Status(u16),
}

impl Failure {
    /// Envoy's `RetryStateImpl::wouldRetryFromReset` for failures without a response (any
    /// reset is retried under `reset`, `5xx` and `gateway-error`; `connect-failure` covers a
    /// failed connect only; `refused-stream` an HTTP/2 REFUSED_STREAM only, which HTTP/1 never
    /// gives), and `wouldRetryFromHeaders` for statuses.
    pub(crate) fn retriable_under(self, on: &RetryOn) -> bool {
        #[cfg(feature = "mutants")]
        if crate::mutants::route().refused_stream_covers_resets
            && on.refused_stream
            && matches!(
                self,
                Failure::Reset | Failure::StaleConnection | Failure::ProtocolError
            )
        {
            return true;
        }
        match self {
            Failure::ConnectFailed => {
                on.connect_failure || on.server_error || on.gateway_error || on.reset
            }
            // An unparsable response resets the upstream stream (a protocol error) and a
            // per-try timeout resets it locally: resets like any other.
            Failure::Reset
            | Failure::StaleConnection
            | Failure::PerTryTimeout
            | Failure::ProtocolError => on.reset || on.server_error || on.gateway_error,
            Failure::Status(status) => status_retriable(on, status),
        }
    }
}

/// Whether a response status is one `retry_on` retries.
pub(crate) fn status_retriable(on: &RetryOn, status: u16) -> bool {
    #[cfg(feature = "mutants")]
    if crate::mutants::route().retriable_codes_ignored {
        return (on.server_error && (500..600).contains(&status))
            || (on.gateway_error && matches!(status, 502..=504))
            || (on.retriable_4xx && status == 409);
    }
    (on.server_error && (500..600).contains(&status))
        || (on.gateway_error && matches!(status, 502..=504))
        || (on.retriable_4xx && status == 409)
        || on.retriable_status_codes.contains(&status)
}

impl Request {
    /// The whole request body was read.
    pub fn body_done(&self) -> bool {
        self.body.inbound.is_done()
    }

    /// Part of a response went to the client.
    pub fn response_started(&self) -> bool {
        self.response.outbound.started()
    }

    /// The current attempt's host (see [`Request::host`]), also remembered for the log.
    pub fn set_host(&mut self, generation: u32, host: usize, addr: std::net::SocketAddr) {
        self.tries.host = Some((generation, host, addr));
        self.tries.upstream_host = Some(addr);
    }

    /// Move the attempt to `next`, which must be a step a request may take.
    pub fn set_phase(&mut self, next: Phase) {
        debug_assert!(
            self.phase.may_become(next),
            "request phase {:?} -> {:?}",
            self.phase,
            next
        );
        self.phase = next;
    }

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

    pub(crate) fn earliest_wake(&self) -> Option<Instant> {
        earliest([
            self.timers.deadline,
            self.timers.try_deadline,
            self.phase.resume_at(),
            self.timers.idle_deadline,
        ])
    }
}

/// The earliest of the times that are set, as `times.into_iter().flatten().min()` gives it,
/// by pairs: that iterator chain cost ~60 instructions on every arming of a request's timer.
fn earliest(times: [Option<Instant>; 4]) -> Option<Instant> {
    fn earlier(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, None) => a,
            (None, b) => b,
        }
    }
    let [a, b, c, d] = times;
    earlier(earlier(a, b), earlier(c, d))
}

#[cfg(test)]
mod earliest_tests {
    use super::*;

    /// Pairwise, the same answer as the iterator chain it replaced.
    #[quickcheck_macros::quickcheck]
    fn earliest_agrees_with_flatten_min(times: Vec<Option<u16>>) -> bool {
        let mut four = [None; 4];
        for (slot, t) in four.iter_mut().zip(&times) {
            *slot = t.map(|ms| Instant::from_millis(u64::from(ms % 8)));
        }
        earliest(four) == four.into_iter().flatten().min()
    }
}

/// The hosts a request's attempts have used, without a heap allocation. Past its capacity the
/// oldest entries are forgotten: avoiding the last few hosts is what retries need.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TriedHosts {
    hosts: [usize; 8],
    len: usize,
}

impl TriedHosts {
    pub fn push(&mut self, host: usize) {
        if self.len == self.hosts.len() {
            self.hosts.rotate_left(1);
            self.len -= 1;
        }
        if let Some(slot) = self.hosts.get_mut(self.len) {
            *slot = host;
            self.len += 1;
        }
    }

    pub fn as_slice(&self) -> &[usize] {
        self.hosts.get(..self.len).unwrap_or_default()
    }
}
