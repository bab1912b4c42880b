//! The gateway world of a seed, drawn: servers, VirtualServices, backends, policies, a
//! RequestAuthentication and requests, from the seed's own streams, so that no other world's
//! draws move.

use super::jwt::{GwJwt, GwJwtRule, GwToken, JwtSelector, Locations, TokenAt, ISSUERS, SUBJECTS};
use super::spec::{
    backend_host, AutoClient, AutoSni, Binding, ClientCert, GatewaySpec, GwRequest, GwRule,
    GwServer, GwTcpRule, GwTlsRule, GwVirtualService, HostForm, Mode, RuleGateway, Sans,
    BACKENDS_WILDCARD, BACKEND_PORTS, HOSTS, HTTPS_PORT, HTTP_PORT, NAMES, PATHS, PREFIXES,
    ROUTED_HOSTS, STAR, SUBSETS,
};

impl GatewaySpec {
    /// The gateway world of `seed`, in a sixth of the seeds, on a stream of its own (no other
    /// world's draws move).
    pub fn from_seed(seed: u64) -> Option<GatewaySpec> {
        let mut r = fastrand::Rng::with_seed(seed ^ 0x6a7e_3a75_0000_001f);
        if r.u8(0..6) != 0 {
            return None;
        }
        let mut spec = GatewaySpec::draw(&mut r);
        // A stream of its own again, so that the worlds drawn before it kept theirs.
        let mut east_west = fastrand::Rng::with_seed(seed ^ 0x6a7e_3a75_0000_00a0);
        if east_west.u8(0..3) == 0 {
            spec.add_auto_passthrough(&mut east_west);
        }
        let mut policies = fastrand::Rng::with_seed(seed ^ 0x6a7e_3a75_0000_00a1);
        if policies.u8(0..5) < 2 {
            spec.policies = super::authz::draw(&mut policies);
            // Half the time a SIMPLE server asks for certificates too, so that more clients'
            // certificates meet the policies' principals.
            let simple = spec.servers.iter_mut().find(|s| s.mode == Mode::Simple);
            if let Some(server) = simple.filter(|_| policies.bool()) {
                server.mode = Mode::OptionalMutual;
            }
        }
        let mut edge = fastrand::Rng::with_seed(seed ^ 0x6a7e_3a75_0000_00a2);
        spec.add_edge(&mut edge);
        Some(spec)
    }

    /// In two fifths of the worlds, `numTrustedProxies` and clients writing
    /// `x-forwarded-for` and `x-forwarded-proto`; in two fifths (independently), a
    /// RequestAuthentication, clients sending tokens, and `requestPrincipals` in the policies.
    fn add_edge(&mut self, r: &mut fastrand::Rng) {
        if r.u8(0..5) < 2 {
            self.trusted_proxies = super::edge::draw_trusted_proxies(r);
            for req in self.requests.iter_mut().filter(|q| q.auto.is_none()) {
                req.forwarded_for = super::edge::draw_forwarded_for(r);
                req.claims_proto = r.u8(0..4) == 0;
            }
        }
        if r.u8(0..5) < 2 {
            self.jwt = Some(draw_jwt(r));
            for req in self.requests.iter_mut().filter(|q| q.auto.is_none()) {
                req.token = draw_token(r);
                req.forges = r.u8(0..4) == 0;
                req.preflight = r.u8(0..8) == 0;
            }
            // A third of the rules' sources name request principals too (ANDed with what
            // they had), and a rule in four gains a source naming only them (ORed).
            for rule in (self.policies.iter_mut()).flat_map(|p| p.rules.iter_mut().flatten()) {
                for source in &mut rule.from {
                    if r.u8(0..3) == 0 {
                        let value = vec![draw_request_principal(r)];
                        if r.u8(0..4) == 0 {
                            source.not_request_principals = value;
                        } else {
                            source.request_principals = value;
                        }
                    }
                }
                if r.u8(0..4) == 0 {
                    rule.from.push(crate::sim::mtls::policy::SourceSpec {
                        request_principals: vec![draw_request_principal(r)],
                        ..Default::default()
                    });
                }
            }
        }
    }

    /// An `AUTO_PASSTHROUGH` server on port 443 (beside whatever else the port has) whose
    /// hosts cover at least one backend, DestinationRule subsets half the time, and east-west
    /// clients naming clusters in their SNI: declared or not, on a port the service has or
    /// not, with a subset defined or not, from a sidecar or a plain TLS client.
    fn add_auto_passthrough(&mut self, r: &mut fastrand::Rng) {
        let on_443: Vec<usize> = (self.servers.iter())
            .filter(|s| s.mode.is_tls())
            .flat_map(|s| s.hosts.iter().copied())
            .collect();
        // pilot skips a server repeating a host of the port (CheckDuplicates): none here. The
        // pool: the backends' wildcard, two backends' names, `*`, and a name covering none.
        let names = BACKENDS_WILDCARD + 1..BACKENDS_WILDCARD + 3;
        let mut pool: Vec<usize> = std::iter::once(BACKENDS_WILDCARD)
            .chain(names)
            .chain([STAR, 0])
            .collect();
        pool.retain(|h| !on_443.contains(h));
        r.shuffle(&mut pool);
        let mut hosts: Vec<usize> = pool.into_iter().take(r.usize(1..=2)).collect();
        let covers = |hosts: &[usize], backends: usize| {
            (0..backends).any(|k| {
                let name = backend_host(k);
                hosts
                    .iter()
                    .any(|&h| super::hosts::subset_of(&name, HOSTS[h]))
            })
        };
        if !covers(&hosts, self.backends) {
            hosts.push(BACKENDS_WILDCARD);
        }
        hosts.sort_unstable();
        hosts.dedup();
        let gateways = self.servers.iter().map(|s| s.gateway).max().unwrap_or(0) + 1;
        self.servers.push(GwServer {
            mode: Mode::AutoPassthrough,
            hosts,
            gateway: r.usize(0..gateways),
            sans: Sans::Unset,
        });
        self.subsets = r.bool();
        for _ in 0..r.usize(3..=12) {
            let auto = AutoSni {
                backend: r.usize(0..=self.backends),
                port: match r.u8(0..8) {
                    0 => 7070,
                    n => BACKEND_PORTS[usize::from(n) % BACKEND_PORTS.len()],
                },
                subset: match r.u8(0..6) {
                    0..=2 => None,
                    _ => Some(r.usize(0..=SUBSETS.len())),
                },
                client: if r.u8(0..4) == 0 {
                    AutoClient::Origination
                } else {
                    AutoClient::Sidecar
                },
            };
            self.requests.push(GwRequest {
                at_ms: r.u64(0..800),
                port: HTTPS_PORT,
                sni: None,
                cert: match auto.client {
                    AutoClient::Sidecar => ClientCert::Mesh,
                    AutoClient::Origination if r.bool() => ClientCert::Trusted,
                    AutoClient::Origination => ClientCert::None,
                },
                host: r.usize(0..NAMES.len()),
                host_form: HostForm::Plain,
                path: r.usize(0..PATHS.len()),
                auto: Some(auto),
                forwarded_for: Vec::new(),
                claims_proto: false,
                token: None,
                forges: false,
                preflight: false,
            });
        }
    }

    fn draw(r: &mut fastrand::Rng) -> GatewaySpec {
        let mut servers = Vec::new();
        let gateways = if r.u8(0..3) == 0 { 2 } else { 1 };
        for port_tls in [false, true] {
            let count = r.usize(0..=if port_tls { 3 } else { 2 });
            let mut free: Vec<usize> = (0..ROUTED_HOSTS).collect();
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
                hosts: vec![r.usize(0..ROUTED_HOSTS)],
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
                    auto: None,
                    forwarded_for: Vec::new(),
                    claims_proto: false,
                    token: None,
                    forges: false,
                    preflight: false,
                }
            })
            .collect();
        GatewaySpec {
            servers,
            virtual_services,
            backends,
            subsets: false,
            policies: Vec::new(),
            trusted_proxies: 0,
            jwt: None,
            requests,
        }
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
        .map(|_| r.usize(0..ROUTED_HOSTS))
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
        let candidates: Vec<usize> = (0..ROUTED_HOSTS)
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

/// The world's RequestAuthentication, in the worlds that have one.
fn draw_jwt(r: &mut fastrand::Rng) -> GwJwt {
    let first = r.usize(0..ISSUERS.len());
    let rules = (0..r.usize(1..=2))
        .map(|i| GwJwtRule {
            issuer: (first + i) % ISSUERS.len(),
            locations: match r.u8(0..4) {
                0 | 1 => Locations::Default,
                2 => Locations::AssertionHeader,
                _ => Locations::TokenParam,
            },
            audiences: r.u8(0..3) == 0,
            forward: r.u8(0..3) == 0,
            payload_header: r.u8(0..3) == 0,
            claim_header: r.u8(0..3) == 0,
        })
        .collect();
    GwJwt {
        selector: match r.u8(0..8) {
            0 => JwtSelector::Everyone,
            1 => JwtSelector::Other,
            _ => JwtSelector::Gateway,
        },
        rules,
    }
}

/// A client's token: none in a quarter of the requests; else mostly from a rule's issuer and
/// valid, sometimes in a place no rule looks, from a stranger, expired, forged, or for
/// another audience.
fn draw_token(r: &mut fastrand::Rng) -> Option<GwToken> {
    if r.u8(0..4) == 0 {
        return None;
    }
    let mut token = GwToken {
        issuer: r.usize(0..ISSUERS.len()),
        sub: r.usize(0..SUBJECTS.len()),
        key_ok: true,
        expired: false,
        audience: Some(true),
        at: match r.u8(0..8) {
            0..=2 => TokenAt::Bearer,
            3 => TokenAt::AccessTokenParam,
            4 | 5 => TokenAt::AssertionHeader,
            _ => TokenAt::TokenParam,
        },
        more_params: r.bool(),
    };
    match r.u8(0..12) {
        0 => token.issuer = ISSUERS.len(),
        1 => token.expired = true,
        2 => token.key_ok = false,
        3 => token.audience = None,
        4 => token.audience = Some(false),
        _ => {}
    }
    Some(token)
}

/// Request principals for policies to name: each issuer's subjects in every form pilot knows.
fn draw_request_principal(r: &mut fastrand::Rng) -> String {
    let pool = [
        "*",
        "https://issuer.sim/alice",
        "https://login.gw.test/bob",
        "https://issuer.sim/*",
        "*/carol",
        "*login.gw.test/alice",
        "https://login.gw.test*",
        "*ob",
        "https://issuer.sim/a*",
    ];
    pool[r.usize(0..pool.len())].to_string()
}
