//! The L4 world of a seed, as plain data: a sidecar's outbound capture listener with TCP
//! services (VirtualService `tcp` rules: a port, weighted destinations), an HTTP service port
//! that is sniffed, the outbound traffic policy, the echo servers behind every cluster and the
//! client connections.

use serde::{Deserialize, Serialize};

use super::chains::{self, LabelRule, SubnetRule, DESTINATIONS, LABEL_SETS};

/// A TCP service: its port and its `tcp` rule's weighted destinations (cluster, weight), and
/// the rules before it that match `destinationSubnets`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TcpService {
    pub port: u16,
    pub dests: Vec<(usize, u32)>,
    /// `tcp` rules with `destinationSubnets` (each its own filter chain, with those prefix
    /// ranges; `buildSidecarOutboundTCPFilterChainOpts`); empty in most worlds and in scenario
    /// files written before them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnet_rules: Vec<SubnetRule>,
    /// `tcp` rules with `sourceLabels` (indices into [`LABEL_SETS`]), listed before the
    /// service's own rule as a VirtualService lists them (pilot's matchTCP takes the first rule
    /// whose labels the client has).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub label_rules: Vec<LabelRule>,
}

/// An echo server: every chunk it reads comes back `latency_ms` later; after the client's EOF
/// (and its echo) it sends its own, unless it finished first (`fin_after`). `refuse`: nothing listens (connects fail). `reset_after`:
/// it resets its connection once it has read this many bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EchoServer {
    pub latency_ms: u64,
    pub refuse: bool,
    pub reset_after: Option<usize>,
    /// It finishes first: once it has echoed this many bytes it sends its EOF and echoes no
    /// more, still reading what the client sends (a server that answers, then half-closes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fin_after: Option<usize>,
}

/// Where a client connection was headed (its original destination's port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// TCP service `i`'s port.
    Service(usize),
    /// The TLS port ([`TLS_PORT`]), with a ClientHello naming [`SNI_NAMES`]`[i]` (`None`: no
    /// `server_name` extension).
    Tls(Option<usize>),
    /// The HTTP service's port: sniffed, and these bytes are no HTTP.
    HttpPort,
    /// A port no service has.
    Unknown,
}

/// One client connection: chunks of bytes after gaps, then (`eof`) a half-close.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TcpConn {
    pub at_ms: u64,
    pub target: Target,
    /// For a TCP service's port: the address dialled, an index into [`DESTINATIONS`]
    /// (`None`: [`chains::DEFAULT_DST`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<usize>,
    /// The client's labels, an index into [`LABEL_SETS`] (`None`: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<usize>,
    /// `(gap before it in ms, length)`.
    pub chunks: Vec<(u64, usize)>,
    pub eof: bool,
}

/// A VirtualService `tls` rule on the TLS port: `sniHosts` (indices into [`SNI_PATTERNS`])
/// and weighted destinations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TlsRule {
    pub sni_hosts: Vec<usize>,
    pub dests: Vec<(usize, u32)>,
}

/// The `sniHosts` rules draw from: exact names and wildcards of several depths, so that exact
/// beats wildcard and the longer wildcard beats the shorter.
pub const SNI_PATTERNS: [&str; 5] = [
    "a.example.com",
    "*.example.com",
    "*.a.example.com",
    "b.a.example.com",
    "db.internal",
];

/// The server names clients send.
pub const SNI_NAMES: [&str; 6] = [
    "a.example.com",
    "b.a.example.com",
    "c.a.example.com",
    "x.example.com",
    "db.internal",
    "other.org",
];

/// The whole L4 world of one seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TcpSpec {
    pub duration_ms: u64,
    pub services: Vec<TcpService>,
    /// The TLS port's `tls` rules (the chains Envoy matches by `server_names`); empty in
    /// scenario files written before them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_rules: Vec<TlsRule>,
    /// Per cluster, its endpoints.
    pub clusters: Vec<Vec<EchoServer>>,
    /// The echo server at every unknown destination (ALLOW_ANY passes through to it).
    pub original: EchoServer,
    /// `outboundTrafficPolicy.mode: ALLOW_ANY` (else REGISTRY_ONLY).
    pub allow_any: bool,
    /// The `tcp` routes' idle timeout (Envoy's `tcp_proxy` `idle_timeout`); `None`: 1 h.
    pub idle_timeout_ms: Option<u64>,
    pub conns: Vec<TcpConn>,
}

/// The first port of the TCP services; service `i` listens on `TCP_PORT + i`.
pub const TCP_PORT: u16 = 27_017;
/// The HTTP service's port (sniffed).
pub const HTTP_PORT: u16 = 9_080;
/// A port nobody declares.
pub const UNKNOWN_PORT: u16 = 6_379;
/// The TLS service port (`tls` rules, chosen by the ClientHello's server name).
pub const TLS_PORT: u16 = 443;

fn server(r: &mut fastrand::Rng) -> EchoServer {
    EchoServer {
        latency_ms: r.u64(0..=30),
        refuse: r.u8(0..100) < 10,
        reset_after: (r.u8(0..100) < 15).then(|| r.usize(0..=4_000)),
        fin_after: (r.u8(0..100) < 20).then(|| r.usize(0..=4_000)),
    }
}

/// `tls` rules and the connections that send ClientHellos, on a stream of their own (so the
/// rest of the world is as it was): in two thirds of the worlds, 1–3 rules, each pattern of
/// [`SNI_PATTERNS`] on at most one rule (pilot drops a repeated server name), and a third of
/// the connections turned to the TLS port.
fn tls_rules(seed: u64, clusters: usize, conns: &mut [TcpConn]) -> Vec<TlsRule> {
    let mut r = fastrand::Rng::with_seed(seed ^ 0x7c9b_0417_0000_001a);
    if r.u8(0..3) == 0 {
        return Vec::new();
    }
    let mut rules: Vec<TlsRule> = (0..r.usize(1..=3))
        .map(|_| TlsRule {
            sni_hosts: Vec::new(),
            dests: vec![(r.usize(0..clusters), 1)],
        })
        .collect();
    for pattern in 0..SNI_PATTERNS.len() {
        if r.u8(0..100) < 70 {
            let n = rules.len();
            rules[r.usize(0..n)].sni_hosts.push(pattern);
        }
    }
    rules.retain(|rule| !rule.sni_hosts.is_empty());
    for conn in conns.iter_mut() {
        if r.u8(0..3) == 0 {
            conn.target = Target::Tls((r.u8(0..8) != 0).then(|| r.usize(0..SNI_NAMES.len())));
        }
    }
    rules
}

/// `destinationSubnets` rules ([`chains`]) and the addresses connections dial, on a stream of
/// their own: in half the worlds, each service with a chance of rules, and two thirds of the
/// connections to a service dialling one of [`DESTINATIONS`].
fn subnet_rules(seed: u64, clusters: usize, services: &mut [TcpService], conns: &mut [TcpConn]) {
    let mut r = fastrand::Rng::with_seed(seed ^ 0x7c9b_0417_0000_001d);
    if r.bool() {
        return;
    }
    for service in services.iter_mut() {
        if !r.bool() {
            service.subnet_rules = chains::draw_subnet_rules(&mut r, clusters);
        }
    }
    for conn in conns.iter_mut() {
        if matches!(conn.target, Target::Service(_)) && r.u8(0..3) != 0 {
            conn.dst = Some(r.usize(0..DESTINATIONS.len()));
        }
    }
}

/// `sourceLabels` rules ([`chains`]) and the clients' labels, on a stream of their own: in a
/// third of the worlds, each service with a chance of rules, and most connections from a
/// client with labels.
fn label_rules(seed: u64, clusters: usize, services: &mut [TcpService], conns: &mut [TcpConn]) {
    let mut r = fastrand::Rng::with_seed(seed ^ 0x7c9b_0417_0000_001e);
    if r.u8(0..3) != 0 {
        return;
    }
    for service in services.iter_mut() {
        if !r.bool() {
            service.label_rules = chains::draw_label_rules(&mut r, clusters);
        }
    }
    for conn in conns.iter_mut() {
        if r.u8(0..4) != 0 {
            conn.client = Some(r.usize(0..LABEL_SETS.len()));
        }
    }
}

/// The rule a ClientHello naming `name` takes, as Envoy matches `server_names`: an exact name
/// first, then the wildcard with the longest suffix (`*.a.example.com` before
/// `*.example.com`; a wildcard stands for one or more labels); `None`: no rule names it.
pub fn tls_rule_for(rules: &[TlsRule], name: &str) -> Option<usize> {
    let names = |rule: &TlsRule, pattern: &str| {
        (rule.sni_hosts.iter()).any(|&p| SNI_PATTERNS[p] == pattern)
    };
    if let Some(i) = rules.iter().position(|rule| names(rule, name)) {
        return Some(i);
    }
    let mut rest = name;
    while let Some((_, parent)) = rest.split_once('.') {
        let wildcard = format!("*.{parent}");
        if let Some(i) = rules.iter().position(|rule| names(rule, &wildcard)) {
            return Some(i);
        }
        rest = parent;
    }
    None
}

/// A TLS 1.3-style ClientHello record naming `server_name` (RFC 8446 §4.1.2, RFC 6066 §3):
/// what a client's first bytes on the TLS port look like to the sidecar, which only reads it.
pub fn client_hello(server_name: Option<&str>) -> Vec<u8> {
    client_hello_offering(server_name, &[])
}

/// [`client_hello`] offering the ALPN protocols `alpn` (RFC 7301 §3.1) after the name.
pub fn client_hello_offering(server_name: Option<&str>, alpn: &[&str]) -> Vec<u8> {
    let mut extensions = Vec::new();
    if let Some(name) = server_name {
        let name = name.as_bytes();
        let entry_len = 3 + name.len();
        extensions.extend_from_slice(&[0, 0]); // server_name
        extensions.extend_from_slice(&((entry_len + 2) as u16).to_be_bytes());
        extensions.extend_from_slice(&(entry_len as u16).to_be_bytes());
        extensions.push(0); // host_name
        extensions.extend_from_slice(&(name.len() as u16).to_be_bytes());
        extensions.extend_from_slice(name);
    }
    if !alpn.is_empty() {
        let list: Vec<u8> = (alpn.iter())
            .flat_map(|p| std::iter::once(p.len() as u8).chain(p.bytes()))
            .collect();
        extensions.extend_from_slice(&[0, 16]); // application_layer_protocol_negotiation
        extensions.extend_from_slice(&((list.len() + 2) as u16).to_be_bytes());
        extensions.extend_from_slice(&(list.len() as u16).to_be_bytes());
        extensions.extend_from_slice(&list);
    }
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]); // random
    body.push(0); // legacy_session_id
    body.extend_from_slice(&[0, 2, 0x13, 0x01]); // TLS_AES_128_GCM_SHA256
    body.extend_from_slice(&[1, 0]); // null compression
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(&extensions);
    let mut handshake = vec![1];
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![22, 3, 1];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

impl TcpSpec {
    /// The coverage table's rows for this world.
    pub fn coverage_rows(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let targets = |t: Target| self.conns.iter().any(|c| c.target == t);
        if self
            .conns
            .iter()
            .any(|c| matches!(c.target, Target::Service(_)))
        {
            out.push("L4 world: tcp rules with weighted destinations");
        }
        if targets(Target::HttpPort) {
            out.push("L4 world: non-HTTP bytes on a sniffed port");
        }
        if targets(Target::Unknown) || targets(Target::HttpPort) {
            out.push(if self.allow_any {
                "L4 world: undeclared port, ALLOW_ANY (PassthroughCluster)"
            } else {
                "L4 world: undeclared port, REGISTRY_ONLY (BlackHoleCluster)"
            });
        }
        if self
            .conns
            .iter()
            .any(|c| matches!(c.target, Target::Tls(_)))
        {
            out.push("L4 world: tls rules chosen by the ClientHello's server name");
        }
        if self.idle_timeout_ms.is_some() {
            out.push("L4 world: tcp idle timeout of milliseconds");
        }
        if (self.services.iter()).any(|s| !s.subnet_rules.is_empty())
            && self.conns.iter().any(|c| c.dst.is_some())
        {
            out.push("L4 world: tcp rules by destinationSubnets (longest prefix)");
        }
        if (self.services.iter()).any(|s| !s.label_rules.is_empty())
            && self.conns.iter().any(|c| c.client.is_some())
        {
            out.push("L4 world: tcp rules by sourceLabels");
        }
        let servers = || self.clusters.iter().flatten().chain([&self.original]);
        if servers().any(|s| s.fin_after.is_some()) {
            out.push("L4 world: servers that finish first (half-close)");
        }
        if servers().any(|s| s.refuse || s.reset_after.is_some()) {
            out.push("L4 world: servers that reset or refuse");
        }
        out
    }

    /// The L4 world of `seed`, in a fifth of the seeds (a stream of its own).
    pub fn from_seed(seed: u64) -> Option<TcpSpec> {
        let mut r = fastrand::Rng::with_seed(seed ^ 0x7c9b_0417_0000_0019);
        if r.u8(0..100) >= 20 {
            return None;
        }
        let duration_ms = r.u64(500..=3_000);
        let clusters: Vec<Vec<EchoServer>> = (0..r.usize(1..=3))
            .map(|_| (0..r.usize(1..=3)).map(|_| server(&mut r)).collect())
            .collect();
        let services = (0..r.usize(1..=3))
            .map(|i| {
                let n = r.usize(1..=clusters.len());
                let mut dests: Vec<(usize, u32)> = (0..n)
                    .map(|_| (r.usize(0..clusters.len()), [0, 1, 3, 50][r.usize(0..4)]))
                    .collect();
                dests.sort_unstable();
                dests.dedup_by_key(|d| d.0);
                if dests.iter().all(|d| d.1 == 0) {
                    dests[0].1 = 1;
                }
                TcpService {
                    port: TCP_PORT + i as u16,
                    dests,
                    subnet_rules: Vec::new(),
                    label_rules: Vec::new(),
                }
            })
            .collect::<Vec<_>>();
        let idle_timeout_ms = (r.u8(0..100) < 40).then(|| r.u64(20..=500));
        let targets = services.len();
        let n = r.usize(10..=80);
        let mut conns: Vec<TcpConn> = (0..n)
            .map(|_| TcpConn {
                at_ms: r.u64(0..duration_ms),
                target: match r.u8(0..10) {
                    0 => Target::HttpPort,
                    1 => Target::Unknown,
                    _ => Target::Service(r.usize(0..targets)),
                },
                chunks: (0..r.usize(1..=4))
                    .map(|_| {
                        let gap = if r.u8(0..100) < 20 {
                            r.u64(0..=600)
                        } else {
                            r.u64(0..=10)
                        };
                        (gap, r.usize(1..=3_000))
                    })
                    .collect(),
                eof: r.u8(0..100) < 80,
                dst: None,
                client: None,
            })
            .collect();
        conns.sort_by_key(|c| c.at_ms);
        let tls_rules = tls_rules(seed, clusters.len(), &mut conns);
        let mut services = services;
        subnet_rules(seed, clusters.len(), &mut services, &mut conns);
        label_rules(seed, clusters.len(), &mut services, &mut conns);
        Some(TcpSpec {
            tls_rules,
            duration_ms,
            services,
            clusters,
            original: server(&mut r),
            allow_any: r.bool(),
            idle_timeout_ms,
            conns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(patterns: &[&str]) -> TlsRule {
        TlsRule {
            sni_hosts: (patterns.iter())
                .map(|p| SNI_PATTERNS.iter().position(|q| q == p).expect("a pattern"))
                .collect(),
            dests: vec![(0, 1)],
        }
    }

    /// Envoy's `server_names` order: exact, then the longest wildcard (which stands for one
    /// label or more), else nothing.
    #[test]
    fn server_names_match_exact_then_longest_wildcard() {
        let rules = [
            rule(&["*.example.com"]),
            rule(&["*.a.example.com", "db.internal"]),
            rule(&["a.example.com"]),
        ];
        assert_eq!(tls_rule_for(&rules, "a.example.com"), Some(2));
        assert_eq!(tls_rule_for(&rules, "c.a.example.com"), Some(1));
        assert_eq!(tls_rule_for(&rules, "x.example.com"), Some(0));
        assert_eq!(tls_rule_for(&rules, "db.internal"), Some(1));
        assert_eq!(tls_rule_for(&rules, "other.org"), None);
        assert_eq!(tls_rule_for(&rules[..1], "b.a.example.com"), Some(0));
    }

    /// The generated ClientHello is one the sidecar's inspector reads: its name, no ALPN.
    #[test]
    fn the_client_hello_names_its_server() {
        use trellis_engine::proxy::{peek_client_hello as peek, Peek};
        let hello = client_hello(Some("c.a.example.com"));
        assert_eq!(
            peek(&hello),
            Peek::ClientHello {
                sni: Some("c.a.example.com".into()),
                alpn: Vec::new()
            }
        );
        assert_eq!(
            peek(&client_hello(None)),
            Peek::ClientHello {
                sni: None,
                alpn: Vec::new()
            }
        );
    }
}
