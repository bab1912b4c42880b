//! The state of one L4 connection (Envoy's `tcp_proxy` session): which chain took it, where
//! its upstream is in its life, the half-close of each direction, its idle deadline and what
//! its access-log record will say. Data only; `tcp` drives it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::time::Instant;

use super::ids::UpstreamId;
use super::log::ResponseFlag;
use super::snapshot::Snapshot;

/// Envoy's tls_inspector gives up waiting for a ClientHello after the listener's
/// `listener_filters_timeout` (15 s) and, as Istio configures it
/// (`continue_on_listener_filters_timeout`), goes on as if no SNI came.
pub(crate) const INSPECT_TIMEOUT: Duration = Duration::from_secs(15);

pub(crate) struct TcpSession {
    /// The configuration the chain was chosen on (kept while the SNI is awaited).
    pub snapshot: Arc<Snapshot>,
    pub phase: TcpPhase,
    pub start: Instant,
    /// The chain's name (`TcpRoute::name`), once chosen.
    pub route: Option<Arc<str>>,
    pub cluster: Option<Arc<str>>,
    pub upstream_host: Option<SocketAddr>,
    /// The ClientHello's server name, when one was read.
    pub sni: Option<String>,
    pub flags: Vec<ResponseFlag>,
    /// Bytes from the client relayed upstream, and from the upstream relayed to the client.
    pub received: u64,
    pub sent: u64,
    /// The chain's `idle_timeout` and the deadline it sets (pushed back by every byte).
    pub idle_timeout: Option<Duration>,
    pub deadline: Option<Instant>,
    /// The client finished sending (its FIN is passed on once its bytes are).
    pub down_eof: bool,
    /// The upstream finished sending.
    pub up_eof: bool,
    /// The chain's network RBAC, until it was checked (on the client's first bytes).
    pub rbac: Option<Arc<crate::authz::Authorization>>,
    /// While the port's protocol is being detected (an inbound capture port of unknown
    /// protocol): what the deadline means if it comes first.
    pub detecting: Option<Detect>,
    /// On a gateway port that terminates some servers and passes others through: the
    /// ClientHello's filter chain has not yet said which this connection is
    /// ([`crate::transport::ChainKind`]).
    pub awaiting_chain: bool,
    /// A redirected connection on a sidecar's outbound listener: when no chain takes it,
    /// the listener's catch-all does (PassthroughCluster or BlackHoleCluster), as Envoy's
    /// default filter chain, instead of closing it.
    pub catch_all: bool,
}

/// What a protocol detection does when its deadline passes before the bytes decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Detect {
    /// MeshConfig `protocolDetectionTimeout` elapsed: TCP, as Envoy's
    /// `continue_on_listener_filters_timeout` goes on with no application protocol.
    ThenTcp,
    /// No detection timeout (Istio's default): the HTTP idle timeout, and the connection is
    /// closed as an idle HTTP one.
    ThenClose,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TcpPhase {
    /// Waiting for the ClientHello; `candidates` are the chains (indices into the snapshot's
    /// `tcp_routes`) still possible.
    Inspecting { candidates: Vec<usize> },
    /// The upstream connection is being established; the client's bytes wait.
    Connecting(UpstreamId),
    /// Bytes flow both ways.
    Relaying(UpstreamId),
    /// The session ended (its record is written); the connection is closing.
    Done,
}

impl TcpSession {
    /// A session waiting for its chain; `inspect`: until the ClientHello comes (or the
    /// inspection times out).
    pub fn new(
        snapshot: Arc<Snapshot>,
        now: Instant,
        candidates: Vec<usize>,
        inspect: bool,
    ) -> Self {
        TcpSession {
            snapshot,
            phase: TcpPhase::Inspecting { candidates },
            start: now,
            route: None,
            cluster: None,
            upstream_host: None,
            sni: None,
            flags: Vec::new(),
            received: 0,
            sent: 0,
            idle_timeout: None,
            deadline: inspect.then(|| now + INSPECT_TIMEOUT),
            down_eof: false,
            up_eof: false,
            rbac: None,
            detecting: None,
            awaiting_chain: false,
            catch_all: false,
        }
    }

    /// The upstream connection, once one was opened and until the session ends.
    pub fn upstream(&self) -> Option<UpstreamId> {
        match self.phase {
            TcpPhase::Connecting(up) | TcpPhase::Relaying(up) => Some(up),
            _ => None,
        }
    }

    /// Bytes moved: the idle deadline starts again.
    pub fn touch(&mut self, now: Instant) {
        #[cfg(feature = "mutants")]
        if crate::mutants::route().tcp_idle_ignores_activity && self.deadline.is_some() {
            return;
        }
        self.deadline = self.idle_timeout.map(|t| now + t);
    }
}
