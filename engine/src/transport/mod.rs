//! The byte-transform slot: what sits between a connection's socket bytes and its HTTP codec.
//!
//! A connection carries a [`Transport`]: plain (bytes pass straight through, the common case
//! and the cheapest) or a [`ByteTransform`] such as TLS. The transform is sans-IO like the rest
//! of the engine, in the shape of rustls's buffered `Connection`:
//!
//! ```text
//!   socket bytes ──receive()──▶ transform ──plaintext──▶ codec's receive buffer
//!   codec's out  ──seal()─────▶ transform ──wire bytes─▶ Output::Send
//!                               transform ──wire bytes─▶ Output::Send   (handshake, alerts:
//!                                                                         poll_wire())
//! ```
//!
//! The engine asks a [`TransportFactory`] for a connection's transform when it accepts or opens
//! it, so the choice (mTLS or plaintext, which certificate, which peer identities to expect) is
//! made from configuration and the engine's clock, never by a driver. A transform that fails
//! (a bad record, a refused certificate) ends its connection: the engine reports the error as
//! an [`crate::Event::TransportFailed`], lets the transform's last words (an alert) go out, and
//! treats the connection as reset.
//!
//! [`framed`] holds a small record-layer transform used to prove the slot in tests.

pub mod client_hello;
pub mod framed;
pub mod policy;
pub mod sniff;
pub mod tls;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;

use crate::time::Instant;
use policy::{InboundMode, MeshIdentity, ResolvedUpstreamTls};
use sniff::{ForeignTls, Sniffer, Verdict};

/// Why a transform gave up on its connection. The message names the check that failed, for
/// the one log line a refused peer gets.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct TransformError {
    pub kind: TransformErrorKind,
    pub detail: String,
}

impl TransformError {
    pub fn new(kind: TransformErrorKind, detail: impl Into<String>) -> Self {
        TransformError {
            kind,
            detail: detail.into(),
        }
    }
}

/// The family of a transform failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransformErrorKind {
    /// The peer's bytes are not a valid record of the protocol.
    Protocol,
    /// The handshake failed (no common parameters, wrong protocol).
    Handshake,
    /// The peer's credentials were refused (chain, validity, identity).
    PeerRefused,
    /// No transform could be built for the connection (missing credentials, bad config).
    Setup,
}

impl fmt::Display for TransformErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransformErrorKind::Protocol => "protocol error",
            TransformErrorKind::Handshake => "handshake failed",
            TransformErrorKind::PeerRefused => "peer refused",
            TransformErrorKind::Setup => "transport setup failed",
        })
    }
}

/// A sans-IO byte transform owned by one connection (TLS is the one it exists for).
///
/// Contract, which the engine relies on:
/// - `receive` consumes all of `wire`; plaintext it can release is appended to `plain`, and
///   partial records are held inside.
/// - `seal` accepts all of `plain`; what cannot go out yet (before the handshake completes) is
///   held and released by later `poll_wire` calls, in order.
/// - `poll_wire` appends whatever the transform wants sent (handshake, sealed data, alerts) and
///   is called after every `receive`, `seal` and `close`.
/// - After an error the transform is not fed again; one more `poll_wire` collects its alert.
pub trait ByteTransform: Send {
    /// Bytes from the socket.
    fn receive(
        &mut self,
        now: Instant,
        wire: &[u8],
        plain: &mut BytesMut,
    ) -> Result<(), TransformError>;

    /// Plaintext the codec wrote, to protect and send.
    fn seal(&mut self, plain: &[u8]);

    /// Append the bytes the transform wants written to the socket.
    fn poll_wire(&mut self, wire: &mut BytesMut);

    /// Whether `poll_wire` would append anything.
    fn wants_write(&self) -> bool;

    /// Bytes held inside, not yet released by `poll_wire` (counted in the connection's
    /// backlog, so backpressure sees them).
    fn held(&self) -> usize;

    /// The handshake is done: plaintext flows both ways.
    fn is_established(&self) -> bool;

    /// The peer sent the protocol's close (TLS close_notify): no more plaintext will come.
    fn is_peer_closed(&self) -> bool;

    /// The peer's verified identity once established (a SPIFFE id for mesh TLS).
    fn peer_identity(&self) -> Option<&str>;

    /// The names an RBAC `authenticated` principal is matched against, once established: the
    /// verified client certificate's URI SANs, DNS SANs, then its subject (Envoy's order).
    /// Empty without a client certificate, on the client side, and for transforms without
    /// certificates.
    fn peer_principal_names(&self) -> &[String] {
        &[]
    }

    /// The XFCC element describing the peer's certificate, once established, when the peer
    /// presented one (see [`Transport::client_cert_details`]). Transforms without
    /// certificates have none.
    fn client_cert_details(&self) -> Option<&str> {
        None
    }

    /// The server name (SNI) the client asked for, on a transform that terminated the
    /// client's TLS; `None` when it sent none, or for transforms that do not serve.
    fn server_name(&self) -> Option<&str> {
        None
    }

    /// The route table of the filter chain the client's TLS selected, when that chain has
    /// one of its own (a gateway's HTTPS server); `None`: the listener's.
    fn route_table(&self) -> Option<&str> {
        None
    }

    /// On a gateway port that terminates some servers and passes others through: what the
    /// ClientHello's filter chain decided. `None` while the ClientHello is incomplete.
    fn chain(&self) -> Option<ChainKind> {
        Some(ChainKind::Terminated)
    }

    /// The connection is closing gracefully: queue the protocol's close (TLS close_notify).
    fn close(&mut self);
}

/// What the filter chain a ClientHello selected does with the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainKind {
    /// TLS ends here; the plaintext is the HTTP codec's (or, on a port of L4 chains only,
    /// the chain chosen at accept).
    Terminated,
    /// TLS ends here and the plaintext goes to the L4 chain of the terminating server
    /// ([`policy::Plaintext::Tcp`]), chosen by the SNI the handshake saw.
    TerminatedTcp,
    /// A `PASSTHROUGH` server's chain: the bytes, ClientHello first, pass untouched to an L4
    /// chain chosen by the same SNI.
    PassedThrough,
}

/// What a connection runs between its socket and its codec.
#[derive(Default)]
pub enum Transport {
    /// Bytes pass through untouched.
    #[default]
    Plain,
    /// Bytes go through a transform.
    Transformed(Box<dyn ByteTransform>),
    /// An inbound connection under PERMISSIVE or STRICT whose first bytes have not yet said
    /// whether it is TLS, and if so whether a sidecar's (see [`sniff`]): a sidecar gets
    /// `tls`; a plaintext client becomes [`Transport::Plain`] if plaintext is allowed, and is
    /// refused otherwise; another TLS client is terminated, relayed or refused as
    /// [`ForeignTls`] says.
    Sniffing {
        tls: Box<dyn ByteTransform>,
        sniffer: Sniffer,
        plaintext_allowed: bool,
    },
    /// The transform failed; nothing more is read or written through it. Its last words (an
    /// alert) wait here for the connection's final flush.
    Failed { last_words: BytesMut },
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Plain => f.write_str("Plain"),
            Transport::Transformed(t) => {
                write!(f, "Transformed(established: {})", t.is_established())
            }
            Transport::Failed { .. } => f.write_str("Failed"),
            Transport::Sniffing { .. } => f.write_str("Sniffing"),
        }
    }
}

impl Transport {
    /// Socket bytes in: plaintext appended to `plain`.
    pub fn receive(
        &mut self,
        now: Instant,
        wire: &[u8],
        plain: &mut BytesMut,
    ) -> Result<(), TransformError> {
        match self {
            Transport::Plain => {
                plain.extend_from_slice(wire);
                Ok(())
            }
            Transport::Transformed(t) => t.receive(now, wire, plain),
            Transport::Failed { .. } => Ok(()),
            Transport::Sniffing { sniffer, .. } => match sniffer.receive(wire) {
                None => Ok(()),
                Some(verdict) => self.decide(now, verdict, wire, plain),
            },
        }
    }

    /// The first bytes have spoken: become TLS or plaintext (or refuse), and pass everything
    /// received so far (`wire` is the latest chunk, already among the sniffer's bytes if it
    /// kept any) through.
    fn decide(
        &mut self,
        now: Instant,
        verdict: Verdict,
        wire: &[u8],
        plain: &mut BytesMut,
    ) -> Result<(), TransformError> {
        let Transport::Sniffing {
            tls,
            mut sniffer,
            plaintext_allowed,
        } = std::mem::take(self)
        else {
            unreachable!("decide is called while sniffing");
        };
        let seen = sniffer.take_seen();
        let bytes: &[u8] = if seen.is_empty() { wire } else { &seen };
        #[cfg(feature = "mutants")]
        let plaintext_allowed =
            plaintext_allowed || crate::mutants::route().strict_admits_plaintext;
        let refuse = |this: &mut Transport, detail: &str| {
            *this = Transport::Failed {
                last_words: BytesMut::new(),
            };
            Err(TransformError::new(TransformErrorKind::PeerRefused, detail))
        };
        match verdict {
            Verdict::Terminate => {
                *self = Transport::Transformed(tls);
                self.receive(now, bytes, plain)
            }
            Verdict::Plaintext | Verdict::Foreign(ForeignTls::PassThrough) if plaintext_allowed => {
                plain.extend_from_slice(bytes);
                Ok(())
            }
            Verdict::Plaintext | Verdict::Foreign(ForeignTls::PassThrough) => refuse(
                self,
                "plaintext connection refused: the port requires mTLS (PeerAuthentication STRICT)",
            ),
            Verdict::Foreign(ForeignTls::Refuse) => refuse(
                self,
                "TLS without an Istio ALPN refused: a PERMISSIVE HTTP port terminates only a \
                 sidecar's mTLS (ALPN istio, istio-http/1.1, ...) and takes other clients in \
                 plaintext; no filter chain takes this one",
            ),
            Verdict::Foreign(ForeignTls::Terminate) => {
                unreachable!("a port that terminates every TLS client has no foreign ones")
            }
        }
    }

    /// This connection turned out to be the workload's TCP (an L4 session took it): a TLS
    /// client that is not a sidecar is relayed to it rather than refused.
    pub fn pass_foreign_tls_through(&mut self) {
        if let Transport::Sniffing { sniffer, .. } = self {
            sniffer.pass_foreign_tls_through();
        }
    }

    /// Whether the bytes the codec wrote need a pass through `seal` before going out.
    pub fn is_plain(&self) -> bool {
        matches!(self, Transport::Plain)
    }

    /// Turn what the codec wrote (`plain`, emptied) into what goes on the wire (appended to
    /// `wire`), with any bytes the transform itself wants sent.
    pub fn seal_into(&mut self, plain: &mut BytesMut, wire: &mut BytesMut) {
        match self {
            Transport::Plain => {
                wire.extend_from_slice(plain);
                plain.clear();
            }
            Transport::Transformed(t) => {
                if !plain.is_empty() {
                    t.seal(plain);
                }
                plain.clear();
                t.poll_wire(wire);
            }
            Transport::Failed { last_words } => {
                plain.clear();
                wire.extend_from_slice(last_words);
                last_words.clear();
            }
            // Nothing has been decided: what the codec says (a timeout's 408) goes out as is.
            Transport::Sniffing { .. } => {
                wire.extend_from_slice(plain);
                plain.clear();
            }
        }
    }

    /// Whether the transform has bytes of its own to send (a handshake reply, an alert).
    pub fn wants_write(&self) -> bool {
        match self {
            Transport::Plain | Transport::Sniffing { .. } => false,
            Transport::Transformed(t) => t.wants_write(),
            Transport::Failed { last_words } => !last_words.is_empty(),
        }
    }

    /// Bytes held by the transform that have not reached the driver yet.
    pub fn held(&self) -> usize {
        match self {
            Transport::Plain | Transport::Sniffing { .. } => 0,
            Transport::Transformed(t) => t.held(),
            Transport::Failed { last_words } => last_words.len(),
        }
    }

    /// The peer closed its side of the transform (TLS close_notify): read EOF for the codec.
    pub fn is_peer_closed(&self) -> bool {
        match self {
            Transport::Transformed(t) => t.is_peer_closed(),
            _ => false,
        }
    }

    /// The peer's verified identity, when a transform established one.
    pub fn peer_identity(&self) -> Option<&str> {
        match self {
            Transport::Transformed(t) => t.peer_identity(),
            _ => None,
        }
    }

    /// What RBAC principals are matched against (see
    /// [`ByteTransform::peer_principal_names`]); empty without TLS.
    pub fn peer_principal_names(&self) -> &[String] {
        match self {
            Transport::Transformed(t) => t.peer_principal_names(),
            _ => &[],
        }
    }

    /// The SNI the client sent, on a connection whose TLS this proxy terminated.
    pub fn server_name(&self) -> Option<&str> {
        match self {
            Transport::Transformed(t) => t.server_name(),
            _ => None,
        }
    }

    /// What a gateway connection's filter chain decided ([`ByteTransform::chain`]); a
    /// connection without a transform is never terminated here, so it passes through.
    pub fn chain(&self) -> Option<ChainKind> {
        match self {
            Transport::Transformed(t) => t.chain(),
            _ => Some(ChainKind::PassedThrough),
        }
    }

    /// The route table of the filter chain this connection's TLS selected, if its own.
    pub fn route_table(&self) -> Option<&str> {
        match self {
            Transport::Transformed(t) => t.route_table(),
            _ => None,
        }
    }

    /// Envoy's `x-forwarded-client-cert` element for this connection's client certificate
    /// (`By=…;Hash=…;Subject="…";URI=…`), when the peer presented a verified one.
    pub fn client_cert_details(&self) -> Option<&str> {
        match self {
            Transport::Transformed(t) => t.client_cert_details(),
            _ => None,
        }
    }

    /// Queue the protocol's graceful close.
    pub fn close(&mut self) {
        if let Transport::Transformed(t) = self {
            t.close();
        }
    }

    /// The transform failed: keep its last words for the final flush and stop using it.
    pub fn fail(&mut self) {
        let mut last_words = BytesMut::new();
        if let Transport::Transformed(t) = self {
            t.poll_wire(&mut last_words);
        }
        *self = Transport::Failed { last_words };
    }
}

/// The connection a transform is asked for.
#[derive(Clone, Copy, Debug)]
pub enum Endpoint<'a> {
    /// A client connection accepted on `local` from `peer`, on the named listener, whose
    /// PeerAuthentication mode for the port is `mode`.
    Downstream {
        listener: &'a str,
        peer: SocketAddr,
        local: SocketAddr,
        mode: InboundMode,
        /// A gateway listener's TLS termination, which wins over `mode`.
        terminate: Option<&'a Arc<policy::TerminatedTls>>,
    },
    /// A connection the engine opens to `addr`, a host of `cluster`, protected as `tls` says.
    Upstream {
        cluster: &'a str,
        addr: SocketAddr,
        tls: ResolvedUpstreamTls<'a>,
    },
}

impl Endpoint<'_> {
    /// Whether the configuration asks for nothing but plaintext on this connection.
    pub fn is_plaintext(&self) -> bool {
        matches!(
            self,
            Endpoint::Downstream {
                mode: InboundMode::Disable,
                terminate: None,
                ..
            } | Endpoint::Upstream {
                tls: ResolvedUpstreamTls::Plain,
                ..
            }
        )
    }
}

/// Chooses each connection's transport: plaintext, or a transform built for it.
///
/// The engine calls it once per connection, when accepting or opening it, with its clock and
/// the sidecar's identity from the configuration snapshot. An error refuses the connection
/// (downstream: closed at once; upstream: a connect failure), and is reported as
/// [`crate::Event::TransportFailed`].
pub trait TransportFactory: Send {
    fn transport(
        &mut self,
        now: Instant,
        endpoint: Endpoint<'_>,
        identity: Option<&MeshIdentity>,
    ) -> Result<Transport, TransformError>;
}

/// Plaintext only: the engine's default until a TLS factory is installed. A connection the
/// configuration wants protected is refused (never silently sent in the clear).
#[derive(Clone, Copy, Debug, Default)]
pub struct PlainTransports;

impl TransportFactory for PlainTransports {
    fn transport(
        &mut self,
        _now: Instant,
        endpoint: Endpoint<'_>,
        _identity: Option<&MeshIdentity>,
    ) -> Result<Transport, TransformError> {
        match endpoint {
            Endpoint::Downstream {
                mode: InboundMode::Permissive,
                terminate: None,
                ..
            } => Ok(Transport::Plain),
            e if e.is_plaintext() => Ok(Transport::Plain),
            _ => Err(TransformError::new(
                TransformErrorKind::Setup,
                "the configuration asks for TLS, but this engine has no TLS provider installed",
            )),
        }
    }
}
