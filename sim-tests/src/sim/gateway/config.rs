//! The gateway world's configuration the way a user writes it: the Gateway, the
//! VirtualServices, the backends' ServiceEntries and the servers' certificates as Kubernetes
//! Secrets (`credentialName`), all as Istio YAML that the control plane translates for the
//! gateway proxy (`trellis_control::translate::gateway::translate_gateway`, the path
//! `trellis proxy --gateway` takes). Certificates are Ed25519 from the seed (deterministic
//! signatures), valid around simulated instant zero.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    SerialNumber,
};
use trellis_control::jwks_resolver::NoFetch;
use trellis_control::translate::gateway::security::secure_listeners;
use trellis_control::translate::gateway::{translate_gateway, GatewayOptions};
use trellis_control::translate::Registry;
use trellis_engine::config::Config;

use super::spec::{
    Binding, GatewaySpec, GwServer, GwVirtualService, Mode, RuleGateway, Sans, GATEWAYS, HOSTS,
    PREFIXES, SUBSETS,
};
use crate::sim::mtls::ca::{at, ca_err, ed25519_key, CaError, IssuedCert, SimCa, UNIX_BASE};
use crate::sim::mtls::jwt::JwtKeys;

/// The gateway proxy's address: its listeners bind here.
pub const GATEWAY_IP: [u8; 4] = [10, 0, 0, 9];

/// Where backend `k` listens for HTTP.
pub fn backend_addr(k: usize) -> SocketAddr {
    SocketAddr::from(([10, 30, k as u8, 1], 8080))
}

/// Where backend `k` listens for plain TCP (the bytes a terminated TCP chain relays).
pub fn backend_tcp_addr(k: usize) -> SocketAddr {
    SocketAddr::from(([10, 30, k as u8, 1], 9000))
}

/// Where backend `k` listens for TLS (the bytes a passthrough chain relays).
pub fn backend_tls_addr(k: usize) -> SocketAddr {
    SocketAddr::from(([10, 30, k as u8, 1], 8443))
}

/// The DNS name in HTTPS server `s`'s certificate: a client expecting server `s` accepts
/// only it, so a connection served by another server's chain fails its handshake.
pub fn server_san(s: usize) -> String {
    format!("server-{s}.gw.test")
}

/// A certificate and its key, PEM.
#[derive(Clone, Debug)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// The world's certificates: the servers' CA (clients trust its root), one certificate per
/// server (unused for plain-text ones), the clients' CA (MUTUAL servers trust its root) and
/// the clients' certificate, and one from a CA nobody trusts.
pub struct Certificates {
    pub server_root: String,
    pub servers: Vec<Pem>,
    pub client_root: String,
    pub client: Pem,
    pub untrusted: Pem,
    /// The mesh's root, the gateway proxy's workload identity and a client workload's.
    pub mesh: MeshCerts,
    /// The JWT issuers' signing key (one for both issuers) and an impostor's.
    pub jwt: JwtKeys,
}

/// The mesh CA's part: what `ISTIO_MUTUAL` presents and checks.
pub struct MeshCerts {
    pub root_pem: String,
    pub gateway: IssuedCert,
    pub client: IssuedCert,
}

/// The simulated client's DNS name, as its certificate from the clients' CA names it.
pub const CLIENT_DNS: &str = "client.gw.test";

/// The simulated client's SPIFFE id, as its mesh certificate names it.
pub const CLIENT_ID: &str = "spiffe://cluster.local/ns/default/sa/client";

/// The gateway proxy's SPIFFE id, as its `ISTIO_MUTUAL` certificate names it.
pub const GATEWAY_ID: &str = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway";

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    root_pem: String,
    serial: u64,
}

impl Ca {
    fn new(rng: &mut fastrand::Rng, name: &str) -> Result<Ca, CaError> {
        let key = ed25519_key(rng)?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = at(UNIX_BASE.as_secs() - 86_400)?;
        params.not_after = at(UNIX_BASE.as_secs() + 365 * 86_400)?;
        params.serial_number = Some(SerialNumber::from(1u64));
        let root = params.self_signed(&key).map_err(ca_err)?;
        Ok(Ca {
            root_pem: root.pem(),
            issuer: Issuer::new(params, key),
            serial: 1,
        })
    }

    fn issue(&mut self, rng: &mut fastrand::Rng, dns: &str) -> Result<Pem, CaError> {
        let key = ed25519_key(rng)?;
        self.serial += 1;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, dns);
        params.subject_alt_names = vec![SanType::DnsName(dns.try_into().map_err(ca_err)?)];
        params.not_before = at(UNIX_BASE.as_secs() - 3600)?;
        params.not_after = at(UNIX_BASE.as_secs() + 30 * 86_400)?;
        params.serial_number = Some(SerialNumber::from(self.serial));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &self.issuer).map_err(ca_err)?;
        Ok(Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}

impl Certificates {
    pub fn new(seed: u64, servers: usize) -> Result<Certificates, CaError> {
        let mut rng = fastrand::Rng::with_seed(seed ^ 0x6a7e_3a75_cafe_0020);
        let mut server_ca = Ca::new(&mut rng, "simulated gateway CA")?;
        let servers = (0..servers)
            .map(|s| server_ca.issue(&mut rng, &server_san(s)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut client_ca = Ca::new(&mut rng, "simulated clients' CA")?;
        let client = client_ca.issue(&mut rng, CLIENT_DNS)?;
        let untrusted =
            Ca::new(&mut rng, "a CA nobody trusts")?.issue(&mut rng, "rogue.gw.test")?;
        let mut mesh_ca = SimCa::new(seed)?;
        let day = 86_400_000;
        let mesh = MeshCerts {
            root_pem: mesh_ca.root_pem().to_string(),
            gateway: mesh_ca.issue("istio-system", "istio-ingressgateway", 0, day)?,
            client: mesh_ca.issue("default", "client", 0, day)?,
        };
        debug_assert_eq!(mesh.gateway.spiffe, GATEWAY_ID);
        debug_assert_eq!(mesh.client.spiffe, CLIENT_ID);
        Ok(Certificates {
            server_root: server_ca.root_pem,
            servers,
            client_root: client_ca.root_pem,
            client,
            untrusted,
            mesh,
            jwt: JwtKeys::new(seed ^ 0x6a7e_3a75_0000_00a2),
        })
    }
}

/// A YAML block scalar of `text`, indented by `indent` spaces.
fn block(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// The world's Istio and Kubernetes YAML.
pub fn yaml(spec: &GatewaySpec, certs: &Certificates) -> String {
    let mut out = String::new();
    for (g, name) in GATEWAYS.iter().enumerate() {
        if spec.servers.iter().any(|s| s.gateway == g) {
            gateway(&mut out, spec, g, name);
        }
    }
    secrets(&mut out, spec, certs);
    for k in 0..spec.backends {
        let addr = backend_addr(k);
        let labels = if spec.subsets {
            ", labels: {version: v1}"
        } else {
            ""
        };
        let _ = write!(
            out,
            "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: svc-{k}, namespace: istio-system}}\nspec:\n  hosts: [svc-{k}.backend.test]\n  ports: [{{number: 8080, name: http, protocol: HTTP}}, {{number: 8443, name: tls, protocol: TLS}}, {{number: 9000, name: tcp, protocol: TCP}}]\n  resolution: STATIC\n  location: MESH_INTERNAL\n  endpoints: [{{address: {}{labels}}}]\n",
            addr.ip()
        );
        if spec.subsets {
            let subsets: Vec<String> = (SUBSETS.iter())
                .map(|s| format!("{{name: {s}, labels: {{version: {s}}}}}"))
                .collect();
            let _ = write!(
                out,
                "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: svc-{k}, namespace: istio-system}}\nspec:\n  host: svc-{k}.backend.test\n  subsets: [{}]\n",
                subsets.join(", ")
            );
        }
    }
    for (v, vs) in spec.virtual_services.iter().enumerate() {
        virtual_service(&mut out, v, vs);
    }
    for policy in &spec.policies {
        out.push_str("---\n");
        out.push_str(&policy.to_yaml());
    }
    if let Some(jwt) = &spec.jwt {
        out.push_str("---\n");
        out.push_str(&jwt.to_yaml(&certs.jwt));
    }
    out
}

/// `hosts` as a YAML flow list of quoted names.
fn host_list(hosts: &[usize]) -> String {
    let quoted: Vec<String> = hosts.iter().map(|&h| format!("\"{}\"", HOSTS[h])).collect();
    format!("[{}]", quoted.join(", "))
}

/// Gateway `g`'s document: its servers, in spec order.
fn gateway(out: &mut String, spec: &GatewaySpec, g: usize, name: &str) {
    let _ = write!(
        out,
        "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: istio-system}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n"
    );
    for (s, server) in spec.servers.iter().enumerate() {
        if server.gateway != g {
            continue;
        }
        let (protocol, name) = match server.mode {
            Mode::Http | Mode::HttpsRedirect => ("HTTP", format!("http-{s}")),
            Mode::Simple | Mode::Mutual | Mode::OptionalMutual | Mode::IstioMutual => {
                ("HTTPS", format!("https-{s}"))
            }
            Mode::Passthrough | Mode::TlsTcp | Mode::TlsTcpMutual | Mode::AutoPassthrough => {
                ("TLS", format!("tls-{s}"))
            }
        };
        let _ = writeln!(
            out,
            "  - port: {{number: {}, name: {name}, protocol: {protocol}}}\n    hosts: {}",
            server.mode.port(),
            host_list(&server.hosts)
        );
        match server.mode {
            Mode::Http => {}
            Mode::HttpsRedirect => out.push_str("    tls: {httpsRedirect: true}\n"),
            // Its certificate is the proxy's own mesh identity: no files, no Secret
            // (validateTLSOptions refuses them).
            Mode::IstioMutual => {
                let sans = sans_field(server);
                let _ = writeln!(out, "    tls: {{mode: ISTIO_MUTUAL{sans}}}");
            }
            Mode::Passthrough => out.push_str("    tls: {mode: PASSTHROUGH}\n"),
            Mode::AutoPassthrough => out.push_str("    tls: {mode: AUTO_PASSTHROUGH}\n"),
            Mode::Simple
            | Mode::TlsTcp
            | Mode::Mutual
            | Mode::TlsTcpMutual
            | Mode::OptionalMutual => {
                let mode = match server.mode {
                    Mode::Mutual | Mode::TlsTcpMutual => "MUTUAL",
                    Mode::OptionalMutual => "OPTIONAL_MUTUAL",
                    _ => "SIMPLE",
                };
                let sans = sans_field(server);
                let _ = writeln!(
                    out,
                    "    tls: {{mode: {mode}, credentialName: cert-{s}{sans}}}"
                );
            }
        }
    }
}

/// `, subjectAltNames: [...]` for a server that lists them: names in the kind the server's
/// clients carry (a SPIFFE id for `ISTIO_MUTUAL`, a DNS name otherwise).
fn sans_field(server: &GwServer) -> String {
    let (client, other) = if server.mode == Mode::IstioMutual {
        (CLIENT_ID, "spiffe://cluster.local/ns/other/sa/someone")
    } else {
        (CLIENT_DNS, "someone.gw.test")
    };
    match server.sans {
        Sans::Unset => String::new(),
        Sans::IncludingClient => format!(", subjectAltNames: [\"{other}\", \"{client}\"]"),
        Sans::OthersOnly => format!(", subjectAltNames: [\"{other}\"]"),
    }
}

/// The HTTPS servers' certificates as `kubernetes.io/tls` Secrets (`ca.crt`: the clients' CA,
/// for `MUTUAL`).
fn secrets(out: &mut String, spec: &GatewaySpec, certs: &Certificates) {
    for (s, server) in spec.servers.iter().enumerate() {
        if !server.mode.terminates() || server.mode == Mode::IstioMutual {
            continue;
        }
        let pem = &certs.servers[s];
        let _ = write!(
            out,
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: cert-{s}, namespace: istio-system}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
            block(&pem.cert, 4),
            block(&pem.key, 4)
        );
        if server.mode.asks_for_certificates() {
            let _ = write!(out, "  ca.crt: |\n{}", block(&certs.client_root, 4));
        }
    }
}

/// VirtualService `vs-<v>`.
fn virtual_service(out: &mut String, v: usize, vs: &GwVirtualService) {
    let _ = write!(
        out,
        "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs-{v}, namespace: istio-system}}\nspec:\n  hosts: {}\n",
        host_list(&vs.hosts)
    );
    let gateways = match vs.binding {
        Binding::Short(g) => Some(GATEWAYS[g].to_string()),
        Binding::Qualified(g) => Some(format!("istio-system/{}", GATEWAYS[g])),
        Binding::MeshAndGateway(g) => Some(format!("mesh, {}", GATEWAYS[g])),
        Binding::Both => Some(format!("{}, istio-system/{}", GATEWAYS[0], GATEWAYS[1])),
        Binding::MeshOnly => None,
        Binding::OtherGateway => Some("istio-system/other".to_string()),
    };
    if let Some(list) = gateways {
        let _ = writeln!(out, "  gateways: [{list}]");
    }
    out.push_str("  http:\n");
    for rule in &vs.rules {
        let mut conditions = Vec::new();
        if let Some(p) = rule.prefix {
            conditions.push(format!("uri: {{prefix: \"{}\"}}", PREFIXES[p]));
        }
        if let Some(port) = rule.port {
            conditions.push(format!("port: {port}"));
        }
        if !rule.gateways.is_empty() {
            let names: Vec<String> = (rule.gateways.iter())
                .map(|g| match g {
                    RuleGateway::Mesh => "mesh".to_string(),
                    RuleGateway::Short(g) => GATEWAYS[*g].to_string(),
                    RuleGateway::Qualified(g) => format!("istio-system/{}", GATEWAYS[*g]),
                })
                .collect();
            conditions.push(format!("gateways: [{}]", names.join(", ")));
        }
        match rule.source_labels {
            Some(true) => conditions.push("sourceLabels: {istio: ingressgateway}".to_string()),
            Some(false) => conditions.push("sourceLabels: {app: web}".to_string()),
            None => {}
        }
        match rule.source_namespace {
            Some(true) => conditions.push("sourceNamespace: istio-system".to_string()),
            Some(false) => conditions.push("sourceNamespace: default".to_string()),
            None => {}
        }
        if conditions.is_empty() {
            out.push_str("  - route:\n");
        } else {
            let _ = writeln!(
                out,
                "  - match: [{{{}}}]\n    route:",
                conditions.join(", ")
            );
        }
        let _ = writeln!(
            out,
            "    - destination: {{host: svc-{}.backend.test, port: {{number: 8080}}}}",
            rule.backend
        );
    }
    if !vs.tcp_rules.is_empty() {
        out.push_str("  tcp:\n");
    }
    for rule in &vs.tcp_rules {
        let port = rule
            .port
            .map_or(String::new(), |p| format!("match: [{{port: {p}}}]\n    "));
        let _ = writeln!(
            out,
            "  - {port}route:\n    - destination: {{host: svc-{}.backend.test, port: {{number: 9000}}}}",
            rule.backend
        );
    }
    if !vs.tls_rules.is_empty() {
        out.push_str("  tls:\n");
    }
    for rule in &vs.tls_rules {
        let _ = writeln!(
            out,
            "  - match: [{{sniHosts: {}}}]\n    route:\n    - destination: {{host: svc-{}.backend.test, port: {{number: 8443}}}}",
            host_list(&rule.sni_hosts),
            rule.backend
        );
    }
}

/// The gateway proxy's engine configuration, as the control plane translates `yaml`; an
/// error names what the translation refused (a bug in the world or in the translation).
///
/// With `identity` (a world with an `ISTIO_MUTUAL` server) the proxy holds a mesh identity,
/// as a gateway deployed by Istio does.
pub fn translate(
    yaml: &str,
    identity: Option<&IssuedCert>,
    trusted_proxies: u32,
) -> Result<Config, String> {
    let set = trellis_control::istio::parse_str(yaml, "sim-gateway.yaml")
        .map_err(|e| format!("the gateway YAML does not parse: {e}"))?;
    let opts = GatewayOptions {
        labels: BTreeMap::from([
            ("istio".to_string(), "ingressgateway".to_string()),
            ("app".to_string(), super::authz::GATEWAY_APP.to_string()),
        ]),
        bind_address: Some(IpAddr::from(GATEWAY_IP)),
        has_identity: identity.is_some(),
        num_trusted_proxies: trusted_proxies,
        ..GatewayOptions::default()
    };
    let t = translate_gateway(&set, &Registry::default(), &opts);
    let mut config = t.config;
    // What `trellis proxy --gateway` adds: the policies and RequestAuthentications selecting
    // the gateway, on its HTTP and L4 chains.
    let secured = secure_listeners(&mut config, &set, &opts, None, &NoFetch);
    let errors: Vec<String> = (t.diagnostics.iter().chain(&secured))
        .filter(|d| d.severity == trellis_control::diag::Severity::Error)
        .map(|d| d.to_string())
        .collect();
    if !errors.is_empty() {
        return Err(format!(
            "the control plane refused the gateway world: {errors:?}"
        ));
    }
    config.identity = identity.map(|i| i.identity.clone());
    Ok(config)
}
