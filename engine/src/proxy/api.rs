//! The engine's inputs and outputs: small, explicit values exchanged with a driver.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::config::Config;

/// A connection known to the engine: downstream (accepted by a listener) or upstream (opened by
/// the engine). Ids are assigned by the engine and never reused within one engine's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// A connection a listener accepted, described to [`crate::Engine::accept`].
#[derive(Clone, Debug, PartialEq)]
pub struct Accepted {
    /// The client's address.
    pub peer: SocketAddr,
    /// The local address the connection arrived on (selects the listener).
    pub local: SocketAddr,
    /// Where the client meant to go, when traffic was redirected (SO_ORIGINAL_DST).
    pub original_dst: Option<SocketAddr>,
    /// Labels of the client workload, when known (VirtualService `sourceLabels`).
    pub source_labels: Arc<BTreeMap<String, String>>,
}

impl Accepted {
    /// A plain accepted connection with no original destination and no source labels.
    pub fn new(peer: SocketAddr, local: SocketAddr) -> Self {
        Accepted {
            peer,
            local,
            original_dst: None,
            source_labels: Arc::new(BTreeMap::new()),
        }
    }
}

/// Something that happened, handed to [`crate::Engine::handle`] with the current time.
#[derive(Clone, Debug)]
pub enum Input {
    /// Bytes arrived on a connection.
    Received { conn: ConnId, data: Bytes },
    /// The peer finished sending (read side reached EOF). The write side may still be open.
    ReadClosed { conn: ConnId },
    /// The connection is gone (reset, error, or fully closed). No more output for it is wanted.
    Closed { conn: ConnId },
    /// An upstream connection asked for with [`Output::Connect`] is established.
    Connected { conn: ConnId },
    /// An upstream connection could not be established.
    ConnectFailed { conn: ConnId },
    /// Everything sent on `conn` so far has been written to the socket.
    WriteDrained { conn: ConnId },
    /// A new configuration snapshot. Requests in flight finish on the one they started with.
    Config(Arc<Config>),
    /// Drain listeners, as Envoy's admin `drain_listeners?graceful[&inboundonly]` with the
    /// `immediate` drain strategy Istio gives its sidecars: every HTTP connection of the
    /// drained listeners (all, or the inbound ones) says `connection: close` on its next
    /// response and closes after it; an idle one closes now; one accepted later is treated
    /// the same. L4 sessions and tunnels run to their end. When the listeners stop accepting
    /// is the driver's to decide (after its drain period).
    DrainListeners { inbound_only: bool },
}

/// Something the engine reports that is not an action for the driver: pulled with
/// [`crate::Engine::poll_event`], for the driver to log.
#[derive(Clone, Debug)]
pub enum Event {
    /// A configuration snapshot handed in as [`Input::Config`] was refused whole; the last
    /// good one keeps serving.
    ConfigRejected {
        /// The refused snapshot's `version`.
        version: String,
        error: crate::proxy::ConfigError,
    },
    /// A connection's byte transform (TLS) failed or could not be set up: the connection was
    /// ended (downstream: closed after the transform's alert; upstream: treated as a reset or
    /// a connect failure, which the request's retry policy sees).
    TransportFailed {
        conn: ConnId,
        /// The client's address (downstream) or the upstream host's (upstream).
        peer: SocketAddr,
        upstream: bool,
        error: crate::transport::TransformError,
    },
    /// An inbound request was refused by authorization (AuthorizationPolicy): answered 403
    /// `RBAC: access denied`.
    AuthzDenied {
        conn: ConnId,
        peer: SocketAddr,
        /// Envoy's `%RESPONSE_CODE_DETAILS%`: `rbac_access_denied_matched_policy[<policy>]`,
        /// `none` when an ALLOW policy applies and none matched.
        details: String,
    },
    /// An inbound request was refused by request authentication (RequestAuthentication, Envoy's
    /// `jwt_authn`): answered 401 (403 for a disallowed audience) with the reason as body.
    AuthnDenied {
        conn: ConnId,
        peer: SocketAddr,
        status: crate::authn::Status,
        /// Envoy's `%RESPONSE_CODE_DETAILS%`: `jwt_authn_access_denied{<reason>}`.
        details: String,
    },
    /// An AUDIT AuthorizationPolicy matched an inbound request (Envoy's `access_log_hint`).
    AuthzAudited {
        conn: ConnId,
        peer: SocketAddr,
        /// `ns[<ns>]-policy[<name>]-rule[<i>]`.
        policy: Arc<str>,
    },
}

/// Something the driver must do, pulled with [`crate::Engine::poll_output`].
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Open a TCP connection to `addr`; answer with `Connected` or `ConnectFailed`.
    Connect { conn: ConnId, addr: SocketAddr },
    /// Write these bytes, in order after earlier sends; answer with `WriteDrained` once written.
    Send { conn: ConnId, data: Bytes },
    /// Stop (`false`) or resume (`true`) reading from `conn`: backpressure.
    ReadInterest { conn: ConnId, enabled: bool },
    /// Close the connection once pending sends are written (`graceful`), or reset it now.
    Close { conn: ConnId, graceful: bool },
    /// Half-close: once pending sends are written, shut the write side (send FIN) and keep
    /// reading. Only L4 relays ask for it, when one side finished sending; a `Close` follows.
    Shutdown { conn: ConnId },
}
