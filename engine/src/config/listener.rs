//! A listener: where a proxy accepts connections, and what its connections go through
//! before routing (mTLS, TLS termination, authentication, authorization, edge headers).

use std::net::SocketAddr;
use std::sync::Arc;

use super::InboundMtls;

/// A listening address and how its connections are routed.
#[derive(Clone, Debug, PartialEq)]
pub struct Listener {
    pub name: String,
    /// Where it listens. An accepted connection is matched to the listener whose address equals
    /// its local address (or whose IP is unspecified and port equals).
    pub address: SocketAddr,
    /// Name of the [`RouteTable`](super::RouteTable) used for HTTP requests on this listener.
    pub route_table: String,
    /// Outbound (15001-style, client side) or inbound (15006-style, in front of the workload).
    pub direction: Direction,
    /// When no virtual host matches and the connection has an original destination, forward to
    /// that destination unchanged (Istio's `outboundTrafficPolicy: ALLOW_ANY`). Otherwise 404 NR.
    pub passthrough: bool,
    /// Inbound listeners: PeerAuthentication's mTLS mode, per workload port. Requests that
    /// arrive over mTLS carry the client's certificate to the workload in
    /// `x-forwarded-client-cert` (Envoy's APPEND_FORWARD, as Istio's inbound); on every other
    /// connection that header is removed (Envoy's SANITIZE).
    pub mtls: InboundMtls,
    /// Istio AuthorizationPolicies that select this listener's workload, compiled to Envoy's
    /// RBAC filter chain; evaluated at the start of every request on an inbound listener
    /// (`None`: no policy applies, every request is allowed).
    pub authorization: Option<Arc<crate::authz::Authorization>>,
    /// Gateway listeners with HTTPS servers: the TLS terminated here (server certificates by
    /// SNI); requests on such connections have scheme `https`. `None`: plaintext (or mesh
    /// mTLS, per `mtls`).
    pub tls: Option<Arc<crate::transport::policy::TerminatedTls>>,
    /// Inbound capture (Istio's virtual inbound listener on 15006, fed by `trellis init`): the
    /// workload's address, usually 127.0.0.1. A request no route matches goes to this address
    /// at the connection's original destination port — Istio's inbound passthrough, which
    /// before Istio 1.10 forwarded to 127.0.0.1:PORT as the `inbound|PORT||` clusters did, so
    /// that the proxy's connection to the app stays on loopback and is never captured again.
    /// `None`: passthrough goes to the original destination unchanged (outbound ALLOW_ANY).
    pub local_forward: Option<std::net::IpAddr>,
    /// Inbound capture: the protocol of each workload port (`None`: every connection is HTTP
    /// unless one of the listener's [`super::TcpRoute`]s takes it, as on any listener).
    pub inbound_protocols: Option<Arc<super::InboundProtocols>>,
    /// A sidecar's outbound listener behind capture (15001): how a connection iptables
    /// redirected here is served, by the port the application dialled (HTTP routes, TCP
    /// chains, or Istio's passthrough / black-hole catch-all, never parsed). `None`: every
    /// connection is HTTP unless one of the listener's [`super::TcpRoute`]s takes it, as on
    /// any listener. Connections that were not redirected never consult it.
    pub outbound_capture: Option<Arc<super::OutboundCapture>>,
    /// Istio RequestAuthentications that select this listener's workload, compiled to Envoy's
    /// `jwt_authn` filter; run before authorization on every request of an inbound listener
    /// (`None`: no JWT is looked at, and `requestPrincipals` never match).
    pub authentication: Option<Arc<crate::authn::JwtAuthentication>>,
    /// `Some` on an edge listener (a gateway's): Envoy's `use_remote_address: true`, so the
    /// proxy appends its peer to `x-forwarded-for`, sets `x-forwarded-proto` from the
    /// connection, and decides internal or external ([`crate::proxy`]'s edge headers). `None`
    /// on a sidecar's listeners (`use_remote_address: false`, pilot's sidecar default).
    pub edge: Option<EdgeHeaders>,
}

/// How an edge listener treats forwarding headers: pilot's gateway connection manager
/// (`buildGatewayConnectionManager` in pilot/pkg/networking/core/gateway.go).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EdgeHeaders {
    /// `xff_num_trusted_hops`: proxies in front of this one whose `x-forwarded-for` entries
    /// are trusted (Istio's `gatewayTopology.numTrustedProxies`, default 0: the client is the
    /// connection's peer).
    pub trusted_hops: u32,
    /// What happens to `x-forwarded-client-cert` (Istio's
    /// `gatewayTopology.forwardClientCertDetails`, default SANITIZE_SET on gateways).
    pub forward_client_cert: ForwardClientCert,
}

/// Envoy's `forward_client_cert_details` (`ConnectionManagerUtility::mutateXfccRequestHeader`
/// in source/common/http/conn_manager_utility.cc), as Istio's MeshConfig names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForwardClientCert {
    /// The header is removed.
    Sanitize,
    /// Kept as the client sent it when the client presented a certificate, else removed.
    ForwardOnly,
    /// The client certificate's element is appended (when it presented one, else removed).
    AppendForward,
    /// Replaced by the client certificate's element (when it presented one, else removed):
    /// pilot's default on gateways.
    #[default]
    SanitizeSet,
    /// Kept as the client sent it, always.
    AlwaysForwardOnly,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Direction {
    #[default]
    Outbound,
    Inbound,
}
