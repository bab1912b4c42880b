//! What the configuration asks of each connection's transport: the mTLS mode of an inbound
//! listener (Istio's PeerAuthentication), the TLS an upstream cluster is dialled with (a
//! DestinationRule's `trafficPolicy.tls`, or auto mTLS), and the sidecar's own identity.
//!
//! These are plain values in the configuration snapshot, so a reload changes them (new
//! certificates rotate in that way, and the simulator pushes them as it pushes routes), and
//! the engine resolves them to one [`InboundMode`] or [`UpstreamTls`] per connection before
//! asking the [`super::TransportFactory`]. Connections already open keep the transport they
//! started with.

use std::fmt;
use std::sync::Arc;

/// PeerAuthentication's mode on an inbound port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InboundMode {
    /// Plaintext only (`DISABLE`, and the engine's default when no identity is configured).
    #[default]
    Disable,
    /// mTLS and plaintext on the same port, told apart by the first bytes (`PERMISSIVE`,
    /// Istio's default).
    Permissive,
    /// mTLS only: a plaintext client is refused (`STRICT`).
    Strict,
}

impl fmt::Display for InboundMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InboundMode::Disable => "DISABLE",
            InboundMode::Permissive => "PERMISSIVE",
            InboundMode::Strict => "STRICT",
        })
    }
}

/// An inbound listener's mTLS: one mode, and per-port overrides (`portLevelMtls`), keyed by
/// the workload port a connection was meant for (its original destination port, else the
/// listener's own port).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InboundMtls {
    pub mode: InboundMode,
    /// Sorted by port, one entry per port.
    pub ports: Vec<(u16, InboundMode)>,
}

impl InboundMtls {
    /// Every port in one mode.
    pub fn uniform(mode: InboundMode) -> Self {
        InboundMtls {
            mode,
            ports: Vec::new(),
        }
    }

    /// The mode for a connection meant for `port`.
    pub fn mode_for(&self, port: u16) -> InboundMode {
        debug_assert!(
            self.ports.windows(2).all(|w| w[0].0 < w[1].0),
            "per-port modes are sorted and unique"
        );
        match self.ports.binary_search_by_key(&port, |&(p, _)| p) {
            Ok(i) => self.ports[i].1,
            Err(_) => self.mode,
        }
    }
}

/// How an upstream cluster's connections are protected (DestinationRule `tls.mode`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum UpstreamTls {
    /// Plaintext (`DISABLE`, and the default).
    #[default]
    Disable,
    /// Istio's auto mTLS: [`UpstreamTls::IstioMutual`] to endpoints that run a sidecar
    /// ([`crate::config::Endpoint::sidecar`]), plaintext to the others.
    Auto { subject_alt_names: Vec<String> },
    /// Mesh mTLS with the sidecar's own certificate (`ISTIO_MUTUAL`). The peer must present a
    /// SPIFFE id of the trust domain, and one of `subject_alt_names` when any are given.
    /// `sni`: the DestinationRule's `tls.sni`; `None` is pilot's default, the cluster's
    /// `outbound_.<port>_.<subset>_.<host>` ([`mesh_sni`]).
    IstioMutual {
        subject_alt_names: Vec<String>,
        sni: Option<String>,
    },
    /// TLS to a server outside the mesh (`SIMPLE`), or with a client certificate of its own
    /// (`MUTUAL`).
    Origination(Arc<OriginationTls>),
}

impl UpstreamTls {
    /// What one endpoint is dialled with: auto mTLS resolved by whether it runs a sidecar.
    pub fn for_endpoint(&self, sidecar: bool) -> ResolvedUpstreamTls<'_> {
        match self {
            UpstreamTls::Disable => ResolvedUpstreamTls::Plain,
            UpstreamTls::Auto { subject_alt_names } if sidecar => ResolvedUpstreamTls::Mesh {
                subject_alt_names,
                sni: None,
            },
            UpstreamTls::Auto { .. } => ResolvedUpstreamTls::Plain,
            UpstreamTls::IstioMutual {
                subject_alt_names,
                sni,
            } => ResolvedUpstreamTls::Mesh {
                subject_alt_names,
                sni: sni.as_deref(),
            },
            UpstreamTls::Origination(o) => ResolvedUpstreamTls::Origination(o),
        }
    }
}

/// [`UpstreamTls`] for one endpoint, as the transport factory is asked for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResolvedUpstreamTls<'a> {
    Plain,
    /// `sni`: an explicit server name; `None`: the cluster's default ([`mesh_sni`]).
    Mesh {
        subject_alt_names: &'a [String],
        sni: Option<&'a str>,
    },
    Origination(&'a Arc<OriginationTls>),
}

/// The server name a sidecar sends on a mesh mTLS connection to cluster `cluster` when its
/// DestinationRule names none: pilot's `BuildDNSSrvSubsetKey`, which for a cluster named
/// `outbound|<port>|<subset>|<host>` (`BuildSubsetKey`) is `outbound_.<port>_.<subset>_.<host>`
/// (`buildUpstreamTLSSettings`, pilot/pkg/networking/core/cluster_tls.go). An AUTO_PASSTHROUGH
/// gateway routes on exactly this name. `None` for a cluster not named that way (a hand-written
/// config's): no server name is sent, the upstream is dialled by address.
pub fn mesh_sni(cluster: &str) -> Option<String> {
    let mut parts = cluster.split('|');
    let (Some("outbound"), Some(port), Some(subset), Some(host), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    Some(format!("outbound_.{port}_.{subset}_.{host}"))
}

/// `SIMPLE` or `MUTUAL` TLS origination, with the files' contents already read (the engine
/// reads no file).
#[derive(Clone, PartialEq, Eq)]
pub struct OriginationTls {
    /// The server name sent (SNI) and, unless `subject_alt_names` is given, verified.
    pub sni: String,
    /// Accept the server when its certificate names one of these (DNS or URI SANs) instead of
    /// `sni`.
    pub subject_alt_names: Vec<String>,
    /// Trusted roots, PEM (`caCertificates`, else the system's bundle as the control plane
    /// found it).
    pub ca_pem: Option<String>,
    /// `insecureSkipVerify`: no verification of the server at all.
    pub insecure_skip_verify: bool,
    /// For `MUTUAL`: the client certificate chain and key, PEM.
    pub client_cert: Option<ClientCertificate>,
}

/// A certificate chain and its private key, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    pub chain_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for OriginationTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OriginationTls")
            .field("sni", &self.sni)
            .field("subject_alt_names", &self.subject_alt_names)
            .field("ca", &self.ca_pem.as_ref().map(|p| p.len()))
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .field("mutual", &self.client_cert.is_some())
            .finish()
    }
}

/// TLS a gateway listener terminates: Gateway `servers[].tls` in `SIMPLE`, `MUTUAL`,
/// `OPTIONAL_MUTUAL` or `ISTIO_MUTUAL` mode, with the files already read. Each server is one
/// filter chain: the client's SNI picks it as Envoy matches `server_names` (exact name, then
/// the longest `*.suffix`, then a server with host `*`; no match, or no SNI and no `*`
/// server: the connection is closed), and the chosen server's certificate, client
/// requirement, client CA, `subjectAltNames` and pins apply. Servers of one port may differ in
/// mode (pilot builds one `DownstreamTlsContext` per server: `buildGatewayListeners` and
/// `BuildListenerTLSContext`), so whether a client certificate is asked for is decided per
/// chain, after the SNI.
#[derive(Clone, PartialEq, Eq)]
pub struct TerminatedTls {
    /// In the Gateway's server order; never empty.
    pub servers: Vec<ServerCertificate>,
    /// The hosts of each `PASSTHROUGH` server on the same port: filter chains that are not
    /// terminated. A ClientHello whose SNI selects one passes through untouched, to the L4
    /// chain (`tls` route) its SNI selects among the listener's (pilot builds both kinds of
    /// chain on one listener: `buildGatewayTCPBasedFilterChains`).
    pub passthrough: Vec<Vec<String>>,
}

impl TerminatedTls {
    /// Whether a server presents the proxy's mesh identity (`ISTIO_MUTUAL`): the port then
    /// needs the mesh credentials.
    pub fn uses_mesh_identity(&self) -> bool {
        (self.servers.iter()).any(|s| s.clients == ClientCertificates::Mesh)
    }

    /// Whether some connections of the port are not the L4 chains' from their first byte: an
    /// HTTP server's or a passed-through one's. The engine then waits for the ClientHello's
    /// filter chain before it treats a connection as L4.
    pub fn serves_more_than_tcp(&self) -> bool {
        !self.passthrough.is_empty()
            || (self.servers.iter()).any(|s| s.plaintext == Plaintext::Http)
    }
}

/// What a terminating gateway server asks of its clients
/// (Envoy's `require_client_certificate` and validation context, as pilot's
/// `BuildListenerTLSContext` in pilot/pkg/networking/core/listener.go sets them per mode).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ClientCertificates {
    /// `SIMPLE`: no client certificate is requested.
    #[default]
    NotRequested,
    /// `MUTUAL`: a certificate chaining to a server's `caCertificates` is required.
    Required,
    /// `OPTIONAL_MUTUAL`: a certificate is requested, a client without one is accepted, and
    /// one that is presented must chain to a server's `caCertificates`.
    Optional,
    /// `ISTIO_MUTUAL`: the server presents the proxy's own mesh identity
    /// ([`MeshIdentity`], so renewal applies) and requires a client certificate chaining to the
    /// mesh trust bundle, with a SPIFFE id of the trust domain, and one of the server's
    /// `subject_alt_names` when any are given. The verified id is the peer principal that
    /// AuthorizationPolicies match, as on a sidecar's inbound.
    Mesh,
}

/// What a terminating gateway server does with the bytes its TLS decrypts: pilot gives an
/// `HTTPS` server an HTTP connection manager (`createGatewayHTTPFilterChainOpts`) and a `TLS`
/// or TCP server a `tcp_proxy` (`createGatewayTCPFilterChainOpts`), each on its own filter
/// chain of the one listener, so servers of both kinds share a port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Plaintext {
    /// HTTP, routed by the server's route table.
    #[default]
    Http,
    /// Bytes relayed by the L4 chain (`tcp` route) made for this server
    /// ([`crate::config::TcpRoute::terminated`]), chosen by the same SNI.
    Tcp,
}

/// One Gateway server's certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerCertificate {
    /// The server's `hosts` (exact names, `*.suffix` wildcards, or `*`), namespaces dropped.
    pub hosts: Vec<String>,
    /// `serverCertificate`: the certificate first, then intermediates (empty under
    /// [`ClientCertificates::Mesh`]: the mesh identity's chain is presented).
    pub chain_pem: String,
    /// `privateKey` (empty under [`ClientCertificates::Mesh`]).
    pub key_pem: String,
    /// `MUTUAL`/`OPTIONAL_MUTUAL`: the `caCertificates` clients must chain to.
    pub client_ca_pem: Option<String>,
    /// `subjectAltNames`: a client certificate must name one of them (a DNS, URI, email or
    /// IP SAN, as Envoy's `match_subject_alt_names` with exact matchers); empty: any
    /// certificate that chains. Under [`ClientCertificates::Mesh`], the SPIFFE ids accepted.
    pub subject_alt_names: Vec<String>,
    /// The route table of the requests this server terminates (pilot gives each HTTPS server
    /// its own RDS, `https.<port>.<portName>.<gateway>.<namespace>`); `None`: the
    /// listener's.
    pub route_table: Option<String>,
    /// What this server asks of clients (its own `tls.mode`).
    pub clients: ClientCertificates,
    /// What the decrypted bytes are: HTTP requests (an `HTTPS` server) or a byte stream for
    /// the listener's L4 chains (a `TLS` or TCP server with a terminating mode, pilot's
    /// `IsTCPServerWithTLSTermination`).
    pub plaintext: Plaintext,
    /// `MUTUAL`/`OPTIONAL_MUTUAL`: `verifyCertificateSpki` and `verifyCertificateHash`,
    /// decoded; a presented certificate must match one of them when any is given.
    pub pins: super::tls::pin::CertificatePins,
}

impl fmt::Debug for TerminatedTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the keys.
        let servers: Vec<&[String]> = self.servers.iter().map(|s| s.hosts.as_slice()).collect();
        let clients: Vec<&ClientCertificates> = self.servers.iter().map(|s| &s.clients).collect();
        let plaintext: Vec<Plaintext> = self.servers.iter().map(|s| s.plaintext).collect();
        f.debug_struct("TerminatedTls")
            .field("servers (hosts)", &servers)
            .field("clients", &clients)
            .field("plaintext", &plaintext)
            .field("passthrough (hosts)", &self.passthrough)
            .finish()
    }
}

/// The sidecar's own identity: its certificate, key and the mesh's trust bundle, PEM.
///
/// Part of the configuration snapshot so that renewal is a config push: connections opened
/// after it use the new certificate, established ones keep theirs.
#[derive(Clone, PartialEq, Eq)]
pub struct MeshIdentity {
    /// The workload certificate first, then intermediates.
    pub chain_pem: String,
    pub key_pem: String,
    /// Every root the mesh trusts (two during a root rotation).
    pub bundle_pem: String,
    /// Peers must present SPIFFE ids of this trust domain.
    pub trust_domain: String,
}

impl fmt::Debug for MeshIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("MeshIdentity")
            .field("trust_domain", &self.trust_domain)
            .field("chain_bytes", &self.chain_pem.len())
            .field("bundle_bytes", &self.bundle_pem.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_level_modes_override_the_listener_mode() {
        let m = InboundMtls {
            mode: InboundMode::Strict,
            ports: vec![
                (8080, InboundMode::Disable),
                (9090, InboundMode::Permissive),
            ],
        };
        assert_eq!(m.mode_for(8080), InboundMode::Disable);
        assert_eq!(m.mode_for(9090), InboundMode::Permissive);
        assert_eq!(m.mode_for(9080), InboundMode::Strict);
    }

    #[test]
    fn auto_mtls_follows_the_endpoint() {
        let auto = UpstreamTls::Auto {
            subject_alt_names: vec![],
        };
        assert!(matches!(
            auto.for_endpoint(true),
            ResolvedUpstreamTls::Mesh { .. }
        ));
        assert_eq!(auto.for_endpoint(false), ResolvedUpstreamTls::Plain);
        let strict = UpstreamTls::IstioMutual {
            sni: None,
            subject_alt_names: vec![],
        };
        assert!(matches!(
            strict.for_endpoint(false),
            ResolvedUpstreamTls::Mesh { .. }
        ));
    }
}

#[cfg(test)]
mod sni_tests {
    use super::mesh_sni;

    /// pilot's BuildDNSSrvSubsetKey of (outbound, subset, host, port), the SNI of an
    /// ISTIO_MUTUAL cluster without `tls.sni` (cluster_builder.go `defaultSni`).
    #[test]
    fn the_default_mesh_sni_is_pilots() {
        assert_eq!(
            mesh_sni("outbound|9080|v1|reviews.default.svc.cluster.local").as_deref(),
            Some("outbound_.9080_.v1_.reviews.default.svc.cluster.local")
        );
        assert_eq!(
            mesh_sni("outbound|80||httpbin.default.svc.cluster.local").as_deref(),
            Some("outbound_.80_._.httpbin.default.svc.cluster.local")
        );
        assert_eq!(mesh_sni("c"), None);
        assert_eq!(mesh_sni("inbound|9080||"), None);
    }
}
