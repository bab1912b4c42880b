//! What the engine records about each finished request: Envoy-style response flags and an
//! access-log record, the raw material of telemetry.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::http1::HeadStr;
use crate::time::Instant;

use super::api::ConnId;

/// Why the mesh itself answered or cut a request, as Envoy's `%RESPONSE_FLAGS%` spell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResponseFlag {
    /// UH: no healthy upstream host (503).
    NoHealthyUpstream,
    /// UF: upstream connection failure (503).
    UpstreamConnectionFailure,
    /// UO: upstream overflow, circuit breaker open (503).
    UpstreamOverflow,
    /// UT: upstream request timeout (504).
    UpstreamRequestTimeout,
    /// UC: upstream connection terminated before a full response (503 or 502).
    UpstreamConnectionTermination,
    /// UPE: upstream protocol error, e.g. an unparsable response (502).
    UpstreamProtocolError,
    /// URX: retries or connect attempts exhausted.
    UpstreamRetryLimitExceeded,
    /// NR: no route configured (404).
    NoRouteFound,
    /// NC: the route's cluster does not exist (503): Envoy's router for a route table that
    /// does not validate its clusters, as pilot's never do.
    NoClusterFound,
    /// DI: a fault-injection delay was applied.
    DelayInjected,
    /// FI: a fault-injection abort answered the request.
    FaultInjected,
    /// DPE: downstream protocol error (400/413/414/431/501/505).
    DownstreamProtocolError,
    /// DC: the downstream connection went away before the response was complete.
    DownstreamConnectionTermination,
    /// SI: stream idle / header read timeout (408).
    StreamIdleTimeout,
}

impl ResponseFlag {
    /// Envoy's short code.
    pub fn code(self) -> &'static str {
        match self {
            ResponseFlag::NoHealthyUpstream => "UH",
            ResponseFlag::UpstreamConnectionFailure => "UF",
            ResponseFlag::UpstreamOverflow => "UO",
            ResponseFlag::UpstreamRequestTimeout => "UT",
            ResponseFlag::UpstreamConnectionTermination => "UC",
            ResponseFlag::UpstreamProtocolError => "UPE",
            ResponseFlag::UpstreamRetryLimitExceeded => "URX",
            ResponseFlag::NoRouteFound => "NR",
            ResponseFlag::NoClusterFound => "NC",
            ResponseFlag::DelayInjected => "DI",
            ResponseFlag::FaultInjected => "FI",
            ResponseFlag::DownstreamProtocolError => "DPE",
            ResponseFlag::DownstreamConnectionTermination => "DC",
            ResponseFlag::StreamIdleTimeout => "SI",
        }
    }
}

impl fmt::Display for ResponseFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// One finished request, as an access log would show it.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestLog {
    pub downstream: ConnId,
    /// The client's address (Envoy's `%DOWNSTREAM_REMOTE_ADDRESS%`).
    pub peer: Option<SocketAddr>,
    pub start: Instant,
    pub duration: Duration,
    /// The request method (borrowed for the standard ones; empty if the head never parsed).
    pub method: std::borrow::Cow<'static, str>,
    /// The authority and target as the client sent them (spans of its request head, so a
    /// record holds that head's buffer until it is drained; the drivers drain every turn), the
    /// target's path normalized (`crate::path`) as routing saw it.
    pub authority: HeadStr,
    pub path: HeadStr,
    /// Status sent downstream; 0 if the downstream went away before any response head.
    pub status: u16,
    /// Flags in the order they were raised; empty for a plain proxied response.
    pub flags: Vec<ResponseFlag>,
    /// The route that matched (`Route::name`), if any; shared with the config snapshot.
    pub route: Option<Arc<str>>,
    /// The cluster of the destination picked, shared with the config snapshot.
    pub cluster: Option<Arc<str>>,
    /// The upstream host of the last attempt.
    pub upstream_host: Option<SocketAddr>,
    /// Tries made upstream (1 + retries).
    pub attempts: u32,
    pub request_body_bytes: u64,
    pub response_body_bytes: u64,
}

impl RequestLog {
    /// Flags joined as Envoy prints them (`UF,URX`), `-` when none.
    pub fn flags_string(&self) -> String {
        if self.flags.is_empty() {
            return "-".to_string();
        }
        self.flags
            .iter()
            .map(|f| f.code())
            .collect::<Vec<_>>()
            .join(",")
    }
}
