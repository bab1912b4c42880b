//! The gateway world of a seed, as plain data: the Gateways' servers (plain-text HTTP on port
//! 80, some redirecting to HTTPS; TLS on port 443, terminated, passed through by `tls` rules or
//! by the SNI alone, `AUTO_PASSTHROUGH`), the VirtualServices that may be bound to them, the
//! backends behind them and the requests clients send. [`super::draw`] draws it from a seed.

use serde::{Deserialize, Serialize};

use super::jwt::{GwJwt, GwToken};
use crate::sim::mtls::policy::PolicySpec;

/// Host patterns servers and VirtualServices draw from: exact names, wildcards of two
/// domains, and the catch-all, so that intersections (pilot's `Names.Intersection`) and
/// Envoy's exact-before-wildcard rankings are exercised; after [`ROUTED_HOSTS`] of them, the
/// backends' names, which only `AUTO_PASSTHROUGH` servers list.
pub const HOSTS: [&str; 10] = [
    "a.example.com",
    "b.example.com",
    "x.y.example.com",
    "*.example.com",
    "c.other.org",
    "*.other.org",
    "*",
    "*.backend.test",
    "svc-0.backend.test",
    "svc-1.backend.test",
];

/// How many of [`HOSTS`] routing servers and VirtualServices draw from.
pub const ROUTED_HOSTS: usize = 7;

/// The index in [`HOSTS`] of `*.backend.test`, which every backend's name falls under; backend
/// `k`'s own name follows at `BACKENDS_WILDCARD + 1 + k` (for the first two).
pub const BACKENDS_WILDCARD: usize = ROUTED_HOSTS;

/// Backend `k`'s host, as its ServiceEntry declares it.
pub fn backend_host(k: usize) -> String {
    format!("svc-{k}.backend.test")
}

/// The backends' ports, as their ServiceEntries declare them.
pub const BACKEND_PORTS: [u16; 3] = [8080, 8443, 9000];

/// The subsets of a backend's DestinationRule, where the world has them: `v1` selects its
/// endpoint (labelled `version: v1`), `v2` selects none.
pub const SUBSETS: [&str; 2] = ["v1", "v2"];

/// Istio's mesh client ALPN list as a Trellis sidecar offers it (pilot's `ALPNInMesh` first).
pub const SIDECAR_ALPN: [&str; 2] = ["istio", "trellis-http/1.1"];

/// What the world's other clients offer (TLS origination's `http/1.1`).
pub const ORIGINATION_ALPN: [&str; 1] = ["http/1.1"];
/// The index of `*` in [`HOSTS`].
pub const STAR: usize = 6;

/// The names clients put in `Host` and in the ClientHello's `server_name`.
pub const NAMES: [&str; 7] = [
    "a.example.com",
    "b.example.com",
    "x.y.example.com",
    "q.example.com",
    "c.other.org",
    "d.other.org",
    "z.net",
];

/// The `uri.prefix` matches rules draw from (`/` is a catch-all, as pilot's
/// `IsCatchAllRoute` counts it).
pub const PREFIXES: [&str; 4] = ["/api", "/api/v2", "/static", "/"];

/// The paths clients ask for (`/apix` is matched by the prefix `/api`: Envoy's `prefix` is a
/// string prefix).
pub const PATHS: [&str; 6] = [
    "/",
    "/api",
    "/api/v2/items",
    "/apix",
    "/static/app.css",
    "/other",
];

/// The two ports servers listen on.
pub const HTTP_PORT: u16 = 80;
pub const HTTPS_PORT: u16 = 443;

/// How a server serves its port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Plain-text HTTP on port 80.
    Http,
    /// Plain-text HTTP on port 80 with `tls.httpsRedirect: true`.
    HttpsRedirect,
    /// HTTPS on port 443, `tls.mode: SIMPLE`.
    Simple,
    /// HTTPS on port 443, `tls.mode: MUTUAL` (a client certificate from the clients' CA).
    Mutual,
    /// HTTPS on port 443, `tls.mode: OPTIONAL_MUTUAL`: a client without a certificate is
    /// served, one that presents a certificate must chain to the clients' CA.
    OptionalMutual,
    /// HTTPS on port 443, `tls.mode: ISTIO_MUTUAL`: the gateway presents its own mesh
    /// certificate and requires a client certificate from the mesh's CA.
    IstioMutual,
    /// TLS on port 443, `tls.mode: PASSTHROUGH`: the ClientHello's server name picks a bound
    /// VirtualService's `tls` rule, whose backend gets the encrypted bytes as they came.
    Passthrough,
    /// A `TLS` server on port 443 with `tls.mode: SIMPLE`: terminated here, its plaintext
    /// relayed by the first bound VirtualService's applying `tcp` rule.
    TlsTcp,
    /// [`Mode::TlsTcp`] with `tls.mode: MUTUAL`: the handshake requires a client certificate
    /// from the clients' CA before anything is relayed.
    TlsTcpMutual,
    /// TLS on port 443, `tls.mode: AUTO_PASSTHROUGH` (Istio's east-west gateway): a chain per
    /// port (and subset) of each mesh service its hosts cover, named by the SNI
    /// `outbound_.<port>_.<subset>_.<host>` and asking for Istio's mTLS ALPNs, relays the bytes
    /// untouched to that cluster's endpoints.
    AutoPassthrough,
}

impl Mode {
    pub fn port(self) -> u16 {
        match self {
            Mode::Http | Mode::HttpsRedirect => HTTP_PORT,
            Mode::Simple
            | Mode::Mutual
            | Mode::OptionalMutual
            | Mode::IstioMutual
            | Mode::Passthrough
            | Mode::TlsTcp
            | Mode::TlsTcpMutual
            | Mode::AutoPassthrough => HTTPS_PORT,
        }
    }

    pub fn is_tls(self) -> bool {
        self.port() == HTTPS_PORT
    }

    /// TLS ends here (the server has a certificate).
    pub fn terminates(self) -> bool {
        matches!(
            self,
            Mode::Simple
                | Mode::Mutual
                | Mode::OptionalMutual
                | Mode::IstioMutual
                | Mode::TlsTcp
                | Mode::TlsTcpMutual
        )
    }

    /// A `TLS` server terminated here for TCP (`SIMPLE` or `MUTUAL`).
    pub fn relays_tcp(self) -> bool {
        matches!(self, Mode::TlsTcp | Mode::TlsTcpMutual)
    }

    /// The server checks client certificates against `caCertificates` (its Secret's `ca.crt`).
    pub fn asks_for_certificates(self) -> bool {
        matches!(
            self,
            Mode::Mutual | Mode::OptionalMutual | Mode::TlsTcpMutual
        )
    }
}

/// The Gateways' names, in the order pilot merges them (creation time, then name).
pub const GATEWAYS: [&str; 2] = ["gw", "gw2"];

/// One of a Gateway's `servers`: its mode and hosts (indices into [`HOSTS`]; no pattern on
/// two servers of one port, as pilot's merge would drop the repeat), and which of the
/// [`GATEWAYS`] lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GwServer {
    pub mode: Mode,
    pub hosts: Vec<usize>,
    #[serde(default)]
    pub gateway: usize,
    /// `tls.subjectAltNames` of a server that checks client certificates.
    #[serde(default)]
    pub sans: Sans,
}

/// A server's `tls.subjectAltNames`: a client certificate the CA vouches for must also name
/// one of them (pilot's `ApplyToCommonTLSContext` turns them into exact SAN matchers of the
/// validation context; Envoy refuses the handshake otherwise).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sans {
    /// None listed: any certificate from the CA.
    #[default]
    Unset,
    /// Another name and the simulated client's own (its DNS name, or its SPIFFE id for
    /// `ISTIO_MUTUAL`).
    IncludingClient,
    /// Only a name no simulated client has.
    OthersOnly,
}

/// How a VirtualService names gateways (`spec.gateways`); `g` is an index into [`GATEWAYS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Binding {
    /// `[gw]`: the short name, resolved in the VirtualService's namespace.
    Short(usize),
    /// `[istio-system/gw]`.
    Qualified(usize),
    /// `[mesh, gw]`.
    MeshAndGateway(usize),
    /// `[gw, istio-system/gw2]`: both.
    Both,
    /// No `gateways` (the mesh only): not bound to the gateway.
    MeshOnly,
    /// `[istio-system/other]`: a gateway no server of this proxy belongs to.
    OtherGateway,
}

impl Binding {
    /// Whether the servers of Gateway `g` route with it (pilot's
    /// `VirtualServicesForGateway` for the server's own gateway).
    pub fn binds(self, g: usize) -> bool {
        match self {
            Binding::Short(b) | Binding::Qualified(b) | Binding::MeshAndGateway(b) => b == g,
            Binding::Both => true,
            Binding::MeshOnly | Binding::OtherGateway => false,
        }
    }
}

/// A gateway a rule's `match.gateways` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleGateway {
    /// `mesh`.
    Mesh,
    /// Gateway `g` of [`GATEWAYS`] by its short name (resolved in the VirtualService's
    /// namespace).
    Short(usize),
    /// Gateway `g` as `istio-system/<name>`.
    Qualified(usize),
}

/// One `http` rule: `uri.prefix` (an index into [`PREFIXES`]; `None`: no uri match),
/// `port` (`None`: no port match), `gateways`, `sourceLabels` (`Some(true)`: the gateway
/// proxy's own `istio: ingressgateway`; `Some(false)`: labels it lacks) and `sourceNamespace`
/// (`Some(true)`: the proxy's `istio-system`) — a rule with none of them has no `match` —
/// and the backend it routes to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GwRule {
    pub prefix: Option<usize>,
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<RuleGateway>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_labels: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<bool>,
    pub backend: usize,
}

/// One `tls` rule: `match: [{sniHosts}]` (indices into [`HOSTS`], each a subset of the
/// VirtualService's hosts as istiod's validation requires) and the backend whose TLS port it
/// routes to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GwTlsRule {
    pub sni_hosts: Vec<usize>,
    pub backend: usize,
}

/// One `tcp` rule: `match: [{port}]` (`None`: no match) and the backend whose TCP port it
/// routes to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GwTcpRule {
    pub port: Option<u16>,
    pub backend: usize,
}

/// A VirtualService (named `vs-<index>`, all in `istio-system`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GwVirtualService {
    pub hosts: Vec<usize>,
    pub binding: Binding,
    pub rules: Vec<GwRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_rules: Vec<GwTlsRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp_rules: Vec<GwTcpRule>,
}

/// How a request writes its `Host`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostForm {
    /// The name.
    Plain,
    /// The name and the port it connected to (`a.example.com:443`): Istio's gateways ignore
    /// the port in host matching.
    WithPort,
    /// The name in upper case: domains match case-insensitively.
    Upper,
}

/// A client's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientCert {
    None,
    /// Issued by the clients' CA, which `MUTUAL` and `OPTIONAL_MUTUAL` servers trust.
    Trusted,
    /// Issued by a CA no server trusts.
    Untrusted,
    /// A workload certificate from the mesh's CA (what `ISTIO_MUTUAL` asks for).
    Mesh,
}

/// Which client speaks to an `AUTO_PASSTHROUGH` port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AutoClient {
    /// A sidecar's mesh mTLS: its workload certificate, [`SIDECAR_ALPN`], checking the server
    /// by the mesh's trust domain.
    Sidecar,
    /// Plain TLS origination naming the same SNI, offering [`ORIGINATION_ALPN`] only.
    Origination,
}

/// The cluster an east-west client names in its SNI (pilot's `BuildDNSSrvSubsetKey`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoSni {
    /// `svc-<backend>.backend.test`; `backend` may be past the world's backends (a host no
    /// ServiceEntry declares).
    pub backend: usize,
    /// One of [`BACKEND_PORTS`], or a port the service lacks.
    pub port: u16,
    /// An index into [`SUBSETS`], or past it (a subset no DestinationRule defines); `None`:
    /// no subset.
    pub subset: Option<usize>,
    pub client: AutoClient,
}

impl AutoSni {
    /// The SNI: `outbound_.<port>_.<subset>_.<host>`.
    pub fn name(&self) -> String {
        let subset = match self.subset {
            Some(i) => SUBSETS.get(i).copied().unwrap_or("v3"),
            None => "",
        };
        let host = backend_host(self.backend);
        format!("outbound_.{}_.{subset}_.{host}", self.port)
    }
}

/// One client connection carrying one request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GwRequest {
    pub at_ms: u64,
    pub port: u16,
    /// For port 443: the ClientHello's `server_name` (an index into [`NAMES`]; `None`: none
    /// sent).
    pub sni: Option<usize>,
    /// For port 443: the certificate the client presents when asked.
    pub cert: ClientCert,
    /// `Host`, an index into [`NAMES`].
    pub host: usize,
    pub host_form: HostForm,
    /// An index into [`PATHS`].
    pub path: usize,
    /// An east-west client: its SNI names a cluster (`sni` is not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto: Option<AutoSni>,
    /// `x-forwarded-for` lines the client writes ([`super::edge`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forwarded_for: Vec<String>,
    /// The client sends an `x-forwarded-proto` naming the other scheme than its connection's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub claims_proto: bool,
    /// The JWT the client sends ([`super::jwt`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<GwToken>,
    /// The client writes its own `x-jwt-payload` and `x-jwt-sub`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forges: bool,
    /// A CORS preflight: `OPTIONS` with `origin` and `access-control-request-method`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub preflight: bool,
}

impl GwRequest {
    /// The request's method.
    pub fn method(&self) -> &'static str {
        if self.preflight {
            "OPTIONS"
        } else {
            "GET"
        }
    }

    /// The `Host` field as sent.
    pub fn host_field(&self) -> String {
        let name = NAMES[self.host];
        match self.host_form {
            HostForm::Plain => name.to_string(),
            HostForm::WithPort => format!("{name}:{}", self.port),
            HostForm::Upper => name.to_ascii_uppercase(),
        }
    }

    /// The ClientHello's `server_name`, if any.
    pub fn sni_name(&self) -> Option<String> {
        match &self.auto {
            Some(auto) => Some(auto.name()),
            None => self.sni.map(|n| NAMES[n].to_string()),
        }
    }

    /// The ALPN protocols the client offers, in its order.
    pub fn alpn(&self) -> &'static [&'static str] {
        match self.auto {
            Some(AutoSni {
                client: AutoClient::Sidecar,
                ..
            }) => &SIDECAR_ALPN,
            _ => &ORIGINATION_ALPN,
        }
    }
}

/// The whole gateway world of one seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GatewaySpec {
    pub servers: Vec<GwServer>,
    pub virtual_services: Vec<GwVirtualService>,
    /// How many backends (`svc-<k>.backend.test`, one endpoint each).
    pub backends: usize,
    /// Whether each backend has a DestinationRule with [`SUBSETS`] (its endpoint labelled
    /// `version: v1`).
    #[serde(default)]
    pub subsets: bool,
    /// AuthorizationPolicies in `istio-system` ([`super::authz`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicySpec>,
    /// The gateway's `gatewayTopology.numTrustedProxies` ([`super::edge`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub trusted_proxies: u32,
    /// A RequestAuthentication in `istio-system` ([`super::jwt`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<GwJwt>,
    pub requests: Vec<GwRequest>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl GatewaySpec {
    /// The features a seed's gateway world exercises, for the coverage table.
    pub fn coverage_rows(&self) -> Vec<&'static str> {
        let mut out = vec!["gateway world: servers' hosts and bound VirtualServices"];
        let mode = |m: Mode| self.servers.iter().any(|s| s.mode == m);
        if mode(Mode::Simple) || mode(Mode::Mutual) {
            out.push("gateway world: HTTPS servers chosen by SNI");
        }
        if mode(Mode::Mutual) {
            out.push("gateway world: MUTUAL server");
        }
        if mode(Mode::OptionalMutual) {
            out.push("gateway world: OPTIONAL_MUTUAL server");
        }
        if mode(Mode::IstioMutual) {
            out.push("gateway world: ISTIO_MUTUAL server");
        }
        if self
            .requests
            .iter()
            .any(|r| r.cert == ClientCert::Untrusted)
        {
            out.push("gateway world: client certificates no server trusts");
        }
        if mode(Mode::Passthrough)
            && self
                .virtual_services
                .iter()
                .any(|v| !v.tls_rules.is_empty())
        {
            out.push("gateway world: PASSTHROUGH server with tls rules");
        }
        if self.servers.iter().any(|s| s.sans != Sans::Unset) {
            out.push("gateway world: subjectAltNames on servers checking client certificates");
        }
        if mode(Mode::TlsTcpMutual) {
            out.push("gateway world: TLS-terminated TCP server with MUTUAL");
        }
        if (mode(Mode::TlsTcp) || mode(Mode::TlsTcpMutual))
            && self
                .virtual_services
                .iter()
                .any(|v| !v.tcp_rules.is_empty())
        {
            out.push("gateway world: TLS-terminated TCP server with tcp rules");
        }
        if mode(Mode::AutoPassthrough) {
            out.push("gateway world: AUTO_PASSTHROUGH server (SNI-DNAT chains, Istio mTLS ALPNs)");
        }
        if mode(Mode::AutoPassthrough) && self.subsets {
            out.push("gateway world: AUTO_PASSTHROUGH chains of DestinationRule subsets");
        }
        if !self.policies.is_empty() {
            out.push("gateway world: AuthorizationPolicies on HTTP and L4 chains");
        }
        if self.jwt.as_ref().is_some_and(|j| j.applies()) {
            out.push("gateway world: RequestAuthentication (JWT rules, locations, forwarding)");
        }
        if self.trusted_proxies > 0 && self.requests.iter().any(|r| !r.forwarded_for.is_empty()) {
            out.push("gateway world: numTrustedProxies and client x-forwarded-for");
        }
        if mode(Mode::HttpsRedirect) {
            out.push("gateway world: httpsRedirect");
        }
        let rules = || self.virtual_services.iter().flat_map(|v| &v.rules);
        if rules().any(|r| !r.gateways.is_empty()) {
            out.push("gateway world: rules matching gateways");
        }
        if rules().any(|r| r.source_labels.is_some() || r.source_namespace.is_some()) {
            out.push("gateway world: rules matching sourceLabels or sourceNamespace");
        }
        if self.servers.iter().any(|s| s.gateway != 0) {
            out.push("gateway world: two Gateways merged on one proxy");
        }
        out
    }
}
