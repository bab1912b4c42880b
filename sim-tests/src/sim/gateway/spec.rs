//! The gateway world of a seed, as plain data: one Gateway's servers (plain-text HTTP on port
//! 80, some redirecting to HTTPS; HTTPS on port 443, `SIMPLE` or `MUTUAL`), the VirtualServices
//! that may be bound to it, the backends behind them and the requests clients send.

use serde::{Deserialize, Serialize};

/// Host patterns servers and VirtualServices draw from: exact names, wildcards of two
/// domains, and the catch-all, so that intersections (pilot's `Names.Intersection`) and
/// Envoy's exact-before-wildcard rankings are exercised.
pub const HOSTS: [&str; 7] = [
    "a.example.com",
    "b.example.com",
    "x.y.example.com",
    "*.example.com",
    "c.other.org",
    "*.other.org",
    "*",
];

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
            | Mode::TlsTcpMutual => HTTPS_PORT,
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
}

impl GwRequest {
    /// The `Host` field as sent.
    pub fn host_field(&self) -> String {
        let name = NAMES[self.host];
        match self.host_form {
            HostForm::Plain => name.to_string(),
            HostForm::WithPort => format!("{name}:{}", self.port),
            HostForm::Upper => name.to_ascii_uppercase(),
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
    pub requests: Vec<GwRequest>,
}

impl GatewaySpec {
    /// The gateway world of `seed`, in a sixth of the seeds, on a stream of its own (no other
    /// world's draws move).
    pub fn from_seed(seed: u64) -> Option<GatewaySpec> {
        let mut r = fastrand::Rng::with_seed(seed ^ 0x6a7e_3a75_0000_001f);
        if r.u8(0..6) != 0 {
            return None;
        }
        Some(GatewaySpec::draw(&mut r))
    }

    fn draw(r: &mut fastrand::Rng) -> GatewaySpec {
        let mut servers = Vec::new();
        let gateways = if r.u8(0..3) == 0 { 2 } else { 1 };
        for port_tls in [false, true] {
            let count = r.usize(0..=if port_tls { 3 } else { 2 });
            let mut free: Vec<usize> = (0..HOSTS.len()).collect();
            r.shuffle(&mut free);
            for _ in 0..count {
                let take = r.usize(1..=2).min(free.len());
                if take == 0 {
                    break;
                }
                let mut hosts: Vec<usize> = free.drain(..take).collect();
                hosts.sort_unstable();
                let mode = match (port_tls, r.u8(0..6)) {
                    (false, 0) => Mode::HttpsRedirect,
                    (false, _) => Mode::Http,
                    (true, 0) => Mode::Mutual,
                    (true, 1) => Mode::Passthrough,
                    (true, 2) => Mode::TlsTcp,
                    (true, 3) => Mode::OptionalMutual,
                    (true, 4) => Mode::IstioMutual,
                    (true, _) => Mode::Simple,
                };
                // TLS servers that terminate for TCP come in pairs now and then, so that the
                // SNI has two such chains to choose between.
                let last_tcp = servers
                    .last()
                    .is_some_and(|s: &GwServer| s.mode.relays_tcp());
                let mode = if port_tls && last_tcp && r.bool() {
                    Mode::TlsTcp
                } else {
                    mode
                };
                // A third of them ask for client certificates.
                let mode = if mode == Mode::TlsTcp && r.u8(0..3) == 0 {
                    Mode::TlsTcpMutual
                } else {
                    mode
                };
                let gateway = r.usize(0..gateways);
                let sans = match mode {
                    Mode::Mutual
                    | Mode::OptionalMutual
                    | Mode::IstioMutual
                    | Mode::TlsTcpMutual => match r.u8(0..4) {
                        0 => Sans::IncludingClient,
                        1 => Sans::OthersOnly,
                        _ => Sans::Unset,
                    },
                    _ => Sans::Unset,
                };
                servers.push(GwServer {
                    mode,
                    hosts,
                    gateway,
                    sans,
                });
            }
        }
        if servers.is_empty() {
            servers.push(GwServer {
                mode: Mode::Http,
                hosts: vec![r.usize(0..HOSTS.len())],
                gateway: 0,
                sans: Sans::Unset,
            });
        }
        let backends = r.usize(1..=3);
        let mut virtual_services: Vec<GwVirtualService> = (0..r.usize(1..=4))
            .map(|_| draw_virtual_service(r, backends, gateways))
            .collect();
        if servers.iter().any(|s| s.mode == Mode::Passthrough) {
            draw_tls_rules(r, &servers, &mut virtual_services, backends);
        }
        if servers.iter().any(|s| s.mode.relays_tcp()) {
            for vs in virtual_services.iter_mut() {
                if r.u8(0..3) == 0 {
                    continue;
                }
                vs.tcp_rules = (0..r.usize(1..=2))
                    .map(|_| GwTcpRule {
                        port: match r.u8(0..4) {
                            0 => Some(HTTPS_PORT),
                            1 => Some(9443),
                            _ => None,
                        },
                        backend: r.usize(0..backends),
                    })
                    .collect();
            }
        }
        let has_port = |p: u16| servers.iter().any(|s: &GwServer| s.mode.port() == p);
        let (http, https) = (has_port(HTTP_PORT), has_port(HTTPS_PORT));
        let requests = (0..r.usize(10..=40))
            .map(|_| {
                // Mostly to a port a server has; now and then to one nobody serves.
                let tls = match (http, https, r.u8(0..10)) {
                    (_, _, 0) => r.bool(),
                    (true, true, _) => r.bool(),
                    (_, https, _) => https,
                };
                let host = r.usize(0..NAMES.len());
                GwRequest {
                    at_ms: r.u64(0..800),
                    port: if tls { HTTPS_PORT } else { HTTP_PORT },
                    sni: match r.u8(0..10) {
                        0 => None,
                        1..=6 => Some(host),
                        _ => Some(r.usize(0..NAMES.len())),
                    }
                    .filter(|_| tls),
                    cert: match r.u8(0..7) {
                        _ if !tls => ClientCert::None,
                        0..=2 => ClientCert::Trusted,
                        3 | 4 => ClientCert::None,
                        5 => ClientCert::Untrusted,
                        _ => ClientCert::Mesh,
                    },
                    host,
                    host_form: match r.u8(0..6) {
                        0 => HostForm::WithPort,
                        1 => HostForm::Upper,
                        _ => HostForm::Plain,
                    },
                    path: r.usize(0..PATHS.len()),
                }
            })
            .collect();
        GatewaySpec {
            servers,
            virtual_services,
            backends,
            requests,
        }
    }

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

/// A VirtualService: 1–2 hosts (`*` only when bound to gateways alone: istiod refuses it
/// on the mesh), a binding to one of `gateways` Gateways (or both, or none), and 1–4 rules.
fn draw_virtual_service(
    r: &mut fastrand::Rng,
    backends: usize,
    gateways: usize,
) -> GwVirtualService {
    let g = r.usize(0..gateways);
    let binding = match r.u8(0..10) {
        0..=3 => Binding::Short(g),
        4..=5 => Binding::Qualified(g),
        6..=7 => Binding::MeshAndGateway(g),
        8 if gateways == 2 => Binding::Both,
        8 => Binding::MeshOnly,
        _ if r.bool() => Binding::MeshOnly,
        _ => Binding::OtherGateway,
    };
    let mut hosts: Vec<usize> = (0..r.usize(1..=2))
        .map(|_| r.usize(0..HOSTS.len()))
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    if matches!(binding, Binding::MeshAndGateway(_) | Binding::MeshOnly) {
        hosts.retain(|&h| h != STAR);
        if hosts.is_empty() {
            hosts.push(r.usize(0..STAR));
        }
    }
    let rules = (0..r.usize(1..=4))
        .map(|_| GwRule {
            prefix: (r.u8(0..5) != 0).then(|| r.usize(0..PREFIXES.len())),
            port: match r.u8(0..8) {
                0 => Some(HTTP_PORT),
                1 => Some(HTTPS_PORT),
                _ => None,
            },
            gateways: if r.u8(0..5) == 0 {
                (0..r.usize(1..=2))
                    .map(|_| match r.u8(0..3) {
                        0 => RuleGateway::Mesh,
                        1 => RuleGateway::Short(r.usize(0..gateways)),
                        _ => RuleGateway::Qualified(r.usize(0..gateways)),
                    })
                    .collect()
            } else {
                Vec::new()
            },
            source_labels: (r.u8(0..8) == 0).then(|| r.bool()),
            source_namespace: (r.u8(0..8) == 0).then(|| r.bool()),
            backend: r.usize(0..backends),
        })
        .collect();
    GwVirtualService {
        hosts,
        binding,
        rules,
        tls_rules: Vec::new(),
        tcp_rules: Vec::new(),
    }
}

/// `tls` rules for half the VirtualServices, in the worlds with a passthrough server: 1–2
/// rules of 1–2 `sniHosts` each, drawn among the patterns within the VirtualService's hosts
/// (istiod's validation) that no terminating server of port 443 has (Envoy refuses two
/// filter chains with one server name, and pilot only keeps passthrough chains apart).
fn draw_tls_rules(
    r: &mut fastrand::Rng,
    servers: &[GwServer],
    virtual_services: &mut [GwVirtualService],
    backends: usize,
) {
    let terminated: Vec<usize> = (servers.iter())
        .filter(|s| s.mode.terminates())
        .flat_map(|s| s.hosts.iter().copied())
        .collect();
    for vs in virtual_services.iter_mut() {
        if !r.bool() {
            continue;
        }
        let candidates: Vec<usize> = (0..HOSTS.len())
            .filter(|&h| h != STAR && !terminated.contains(&h))
            .filter(|&h| (vs.hosts.iter()).any(|&v| super::hosts::subset_of(HOSTS[h], HOSTS[v])))
            .collect();
        if candidates.is_empty() {
            continue;
        }
        vs.tls_rules = (0..r.usize(1..=2))
            .map(|_| {
                let mut sni_hosts: Vec<usize> = (0..r.usize(1..=2))
                    .map(|_| candidates[r.usize(0..candidates.len())])
                    .collect();
                sni_hosts.sort_unstable();
                sni_hosts.dedup();
                GwTlsRule {
                    sni_hosts,
                    backend: r.usize(0..backends),
                }
            })
            .collect();
    }
}
