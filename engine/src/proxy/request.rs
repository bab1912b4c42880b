//! A request's state: what it is, where it is in its life, and why an attempt failed.
//!
//! The life itself is spread by concern: [`super::routing`] (route, faults, upstream head),
//! [`super::attempt`] (hosts, connections, timeouts, retries) and [`super::reply`]
//! (mesh-generated answers, the end of a request, its access-log record).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use crate::config::{RetryOn, RetryPolicy, Route, RouteAction, WeightedCluster};
use crate::http1::{BodyDecoder, BodyEncoder, RequestHead, Version};
use crate::time::Instant;

use super::ids::{DownstreamId, UpstreamId};
use super::log::ResponseFlag;
use super::snapshot::Snapshot;

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
    Connecting(UpstreamId),
    /// Attached to an upstream connection (request going out / response coming back).
    Upstream(UpstreamId),
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
    pub down: DownstreamId,
    pub snapshot: Arc<Snapshot>,
    pub start: Instant,
    /// The head as it will go upstream (hop-by-hop fields stripped, rewrites applied).
    pub head: RequestHead,
    /// The client's target and authority, kept only if a rewrite changed them (the access log
    /// shows what the client asked for; not copying them otherwise saves two allocations).
    pub original_target: Option<String>,
    pub original_authority: Option<String>,
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
    /// Hosts earlier attempts used (retries avoid them), inline: no allocation per request.
    pub tried_hosts: TriedHosts,
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
    /// Stream idle deadline, pushed back whenever bytes move.
    pub idle_deadline: Option<Instant>,
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
    /// A reused keep-alive connection closed before a single response byte: the upstream most
    /// likely closed it idle just as the request went out (the HTTP/1 race that HTTP/2 reports
    /// as REFUSED_STREAM). Not the host's fault, and safe to retry for idempotent methods.
    StaleConnection,
    PerTryTimeout,
    /// The upstream answered with an unparsable or invalid response.
    ProtocolError,
    /// A response with a status the policy retries on (only used when a retry happens).
    Status(u16),
}

impl Failure {
    pub(crate) fn retriable_under(self, on: &RetryOn) -> bool {
        match self {
            Failure::ConnectFailed => {
                on.connect_failure || on.server_error || on.gateway_error || on.reset
            }
            Failure::Reset => on.reset || on.server_error,
            Failure::StaleConnection => on.refused_stream || on.reset || on.server_error,
            Failure::PerTryTimeout => on.server_error || on.gateway_error || on.reset,
            Failure::ProtocolError => false,
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
        [
            self.deadline,
            self.try_deadline,
            self.resume_at,
            self.idle_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
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
