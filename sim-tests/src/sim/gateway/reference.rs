//! What pilot builds for the gateway world and what Envoy then does with each request, written
//! from their code (istio/istio `pilot/pkg/networking/core/gateway.go`,
//! `pilot/pkg/networking/core/route/route.go`, `pkg/config/host/name.go`; envoyproxy/envoy
//! `source/common/listener_manager/filter_chain_manager_impl.cc` and
//! `source/common/router/config_impl.cc`), not from Trellis's translation.
//!
//! - **Listeners and chains.** A port no server has refuses connections. On port 443 the
//!   filter chains are [`super::chains`]'s: a terminating server's, a passthrough `tls`
//!   rule's, or an `AUTO_PASSTHROUGH` server's per cluster; nothing matching closes the
//!   connection. A `MUTUAL` chain refuses a client without a certificate. A sidecar's mTLS
//!   (an east-west client) accepts only a mesh identity, so any terminating chain but an
//!   `ISTIO_MUTUAL` one fails its handshake.
//! - **Route configurations.** Port 80's servers share one (`http.80`), whichever Gateway
//!   lists them; each HTTPS server has its own (`https.443.<port name>.<gateway>.istio-system`).
//!   For each server in order (the Gateways merged by name, each one's servers in order), each
//!   VirtualService bound to *that server's* Gateway (`GatewayNameForServer`), in precedence
//!   order (name order here), contributes its routes to a virtual
//!   host per host of `serverHosts ∩ vsHosts` (`Names.Intersection`: of two names where one is
//!   a subset of the other, the narrower), appended when the host already has one
//!   (`buildGatewayHTTPRouteConfig`). A VirtualService's routes at a port
//!   (`BuildHTTPRoutesForVirtualService`): its rules in order, a rule whose `port` is another
//!   or that does not apply at the server's Gateway (`sourceMatchHTTP`: its `gateways`, else
//!   its `sourceLabels` and `sourceNamespace`) skipped, stopping after the first catch-all;
//!   none at all and it contributes nothing.
//!   Catch-all routes go last in each virtual host (`SortVHostRoutes`). A server with
//!   `httpsRedirect` marks the virtual hosts it touches `require_tls: ALL`, and gives each of
//!   its hosts without one a virtual host of its own with no routes but that mark. No
//!   virtual host at all: a blackhole `*` with no routes.
//! - **Envoy's routing.** The virtual host by `Host` lower-cased without its port
//!   (`ignore_port_in_host_matching`): exact domain, then the longest `*` suffix (the `*`
//!   standing for one character or more), then `*`; none: 404. A plain-text request to a
//!   `require_tls: ALL` host: 301 to `https://<Host as sent><path>`. Else the first route
//!   whose prefix the path starts with; none: 404.

use std::net::IpAddr;

use super::authz::{self, HttpAsked, PeerNames, Who, CLIENT_IP};
use super::chains::{chain_for, port_has_chains, Chain};
use super::config::{CLIENT_DNS, CLIENT_ID};
use super::edge;
use super::hosts::subset_of;
use super::jwt::{self, Authn};
use super::spec::{
    AutoClient, ClientCert, GatewaySpec, GwRequest, GwRule, Mode, RuleGateway, Sans, HOSTS,
    HTTPS_PORT, NAMES, PATHS, PREFIXES,
};
use crate::sim::mtls::jwt::JwtKeys;

/// What a client should see of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    /// Nothing listens on the port: the connect is refused.
    NoListener,
    /// No filter chain serves the ClientHello: closed, no handshake.
    NoChain,
    /// Server `s` asks for a certificate and the client's will not do (none for `MUTUAL`, one
    /// no trusted CA issued for `MUTUAL` and `OPTIONAL_MUTUAL`): refused in the handshake.
    ClientRefused(usize),
    /// A passthrough chain takes it: backend `k`'s TLS port gets the bytes as sent.
    Passthrough(usize),
    /// `TLS` server `server` terminates it and relays the plaintext to `backend`'s TCP port.
    TcpRelay { server: usize, backend: usize },
    /// An `AUTO_PASSTHROUGH` chain relays the bytes as sent to backend `backend`'s `port`.
    AutoRelay { backend: usize, port: u16 },
    /// An `AUTO_PASSTHROUGH` chain whose cluster has no endpoint: closed, nothing relayed
    /// (Envoy's tcp_proxy finds no healthy upstream).
    AutoNoEndpoints,
    /// A sidecar's mTLS meets terminating server `s`, whose certificate is no mesh
    /// identity: the client refuses it in the handshake.
    ClientRejects(usize),
    /// `TLS` server `server` terminates it, then the gateway's network RBAC denies it: closed
    /// at its first bytes, nothing relayed.
    TcpDenied { server: usize },
    /// A passthrough chain takes it and the network RBAC denies it: nothing relayed.
    PassthroughDenied,
    /// Served through server `chain`'s filter chain (`None`: port 80), answered so.
    Served {
        chain: Option<usize>,
        answer: Answer,
    },
}

/// The HTTP answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Forwarded to backend `k`.
    Backend(usize),
    /// 404: no virtual host, or no route in it.
    NotFound,
    /// 301 to this `Location`.
    Redirect(String),
    /// 403 from the gateway's HTTP RBAC filter, before any route is looked at.
    Denied,
    /// Refused by the JWT filter (401, or 403 for an audience), before RBAC and routing.
    JwtRejected(u16),
}

/// One route of a virtual host: its prefix (`None`: every path) and backend.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RefRoute {
    prefix: Option<&'static str>,
    backend: usize,
}

impl RefRoute {
    fn is_catch_all(&self) -> bool {
        self.prefix.is_none_or(|p| p == "/")
    }
}

/// One virtual host: its one domain, routes, and whether it requires TLS.
#[derive(Clone, Debug, Default)]
struct Vhost {
    domain: String,
    routes: Vec<RefRoute>,
    require_tls: bool,
}

/// Whether `rule` applies at the servers of Gateway `g` (pilot's `sourceMatchHTTP`): named
/// gateways decide alone when there are any (its `sourceLabels` then go unchecked); otherwise
/// its `sourceLabels` must be the proxy's and its `sourceNamespace` the proxy's namespace.
fn applies_at(rule: &GwRule, g: usize) -> bool {
    if !rule.gateways.is_empty() {
        return (rule.gateways.iter())
            .any(|r| matches!(r, RuleGateway::Short(x) | RuleGateway::Qualified(x) if *x == g));
    }
    rule.source_labels != Some(false) && rule.source_namespace != Some(false)
}

/// `Names.Intersection`: for each pair where one is a subset of the other, the narrower, in
/// the order met, once each.
fn intersection(server: &[&'static str], vs: &[&'static str]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for &h in server {
        for &o in vs {
            let narrower = if subset_of(h, o) {
                h
            } else if subset_of(o, h) {
                o
            } else {
                continue;
            };
            if !out.contains(&narrower) {
                out.push(narrower);
            }
        }
    }
    out
}

/// The route configuration of `servers` (indices of the spec's servers, in order).
fn route_config(spec: &GatewaySpec, servers: &[usize]) -> Vec<Vhost> {
    let mut vhosts: Vec<Vhost> = Vec::new();
    for &s in servers {
        let server = &spec.servers[s];
        let redirect = server.mode == Mode::HttpsRedirect;
        let port = server.mode.port();
        let server_hosts: Vec<&'static str> = server.hosts.iter().map(|&h| HOSTS[h]).collect();
        let bound = (spec.virtual_services.iter()).filter(|v| v.binding.binds(server.gateway));
        for vs in bound {
            let vs_hosts: Vec<&'static str> = vs.hosts.iter().map(|&h| HOSTS[h]).collect();
            let shared = intersection(&server_hosts, &vs_hosts);
            if shared.is_empty() {
                continue;
            }
            let mut routes = Vec::new();
            for rule in &vs.rules {
                if rule.port.is_some_and(|p| p != port) || !applies_at(rule, server.gateway) {
                    continue;
                }
                let route = RefRoute {
                    prefix: rule.prefix.map(|p| PREFIXES[p]),
                    backend: rule.backend,
                };
                let last = route.is_catch_all();
                routes.push(route);
                if last {
                    break;
                }
            }
            if routes.is_empty() {
                continue;
            }
            for host in shared {
                let domain = host.to_ascii_lowercase();
                match vhosts.iter_mut().find(|v| v.domain == domain) {
                    Some(v) => {
                        v.routes.extend(routes.iter().cloned());
                        v.require_tls |= redirect;
                    }
                    None => vhosts.push(Vhost {
                        domain,
                        routes: routes.clone(),
                        require_tls: redirect,
                    }),
                }
            }
        }
        if redirect {
            for host in &server_hosts {
                let domain = host.to_ascii_lowercase();
                match vhosts.iter_mut().find(|v| v.domain == domain) {
                    Some(v) => v.require_tls = true,
                    None => vhosts.push(Vhost {
                        domain,
                        routes: Vec::new(),
                        require_tls: true,
                    }),
                }
            }
        }
    }
    for v in &mut vhosts {
        let (rest, last): (Vec<RefRoute>, Vec<RefRoute>) =
            v.routes.drain(..).partition(|r| !r.is_catch_all());
        v.routes = rest.into_iter().chain(last).collect();
    }
    vhosts
}

/// Envoy's virtual host for `host` (lower-cased, port stripped): exact, the longest `*`
/// suffix with at least one character before it, then `*`.
fn find_vhost<'v>(vhosts: &'v [Vhost], host: &str) -> Option<&'v Vhost> {
    if let Some(v) = vhosts.iter().find(|v| v.domain == host) {
        return Some(v);
    }
    let wildcard = (vhosts.iter())
        .filter_map(|v| {
            let suffix = v.domain.strip_prefix('*')?;
            (!suffix.is_empty() && host.len() > suffix.len() && host.ends_with(suffix))
                .then_some((suffix.len(), v))
        })
        .max_by_key(|(len, _)| *len);
    if let Some((_, v)) = wildcard {
        return Some(v);
    }
    vhosts.iter().find(|v| v.domain == "*")
}

/// The HTTP answer of the route configuration of `servers` to `req`, whose target the filters
/// before the router left as `target`.
fn answer(
    spec: &GatewaySpec,
    servers: &[usize],
    req: &GwRequest,
    tls: bool,
    target: &str,
) -> Answer {
    let vhosts = route_config(spec, servers);
    let host = NAMES[req.host].to_ascii_lowercase();
    let path = PATHS[req.path];
    let Some(vhost) = find_vhost(&vhosts, &host) else {
        return Answer::NotFound;
    };
    if vhost.require_tls && !tls {
        return Answer::Redirect(format!("https://{}{target}", req.host_field()));
    }
    (vhost.routes.iter())
        .find(|r| r.prefix.is_none_or(|p| path.starts_with(p)))
        .map_or(Answer::NotFound, |r| Answer::Backend(r.backend))
}

/// The names of `req`'s client certificate that the RBAC filters of server `server`'s chain
/// see (`None`: port 80's plain text): only a certificate the server asked for and accepted.
fn peer_names(spec: &GatewaySpec, server: Option<usize>, req: &GwRequest) -> PeerNames {
    let Some(s) = server else {
        return PeerNames::new();
    };
    let accepted = match spec.servers[s].mode {
        Mode::Mutual | Mode::OptionalMutual | Mode::TlsTcpMutual => req.cert == ClientCert::Trusted,
        Mode::IstioMutual => req.cert == ClientCert::Mesh,
        _ => false,
    };
    match req.cert {
        _ if !accepted => PeerNames::new(),
        // A DNS SAN and the subject (CN) from the clients' CA; the mesh's: a URI SAN only.
        ClientCert::Trusted => vec![CLIENT_DNS.to_string(), format!("CN={CLIENT_DNS}")],
        ClientCert::Mesh => vec![CLIENT_ID.to_string()],
        ClientCert::None | ClientCert::Untrusted => PeerNames::new(),
    }
}

/// The HTTP answer of the route configuration of `servers` to `req` on server `chain`'s
/// filter chain (`None`: port 80's): the JWT filter first (401, 403), then the gateway's RBAC
/// (403), then the router.
fn http_answer(
    spec: &GatewaySpec,
    chain: Option<usize>,
    servers: &[usize],
    req: &GwRequest,
    keys: &JwtKeys,
) -> Answer {
    let authn = jwt::authenticate(jwt::applied(spec, req), req.token.as_ref());
    let claims = match authn {
        Authn::Rejected(status) => return Answer::JwtRejected(status),
        Authn::Anonymous => None,
        Authn::Verified { iss, sub, .. } => Some((iss, sub)),
    };
    let asked = HttpAsked {
        method: req.method(),
        path: PATHS[req.path],
        authority: &req.host_field(),
    };
    let names = peer_names(spec, chain, req);
    let who = Who {
        peer_names: &names,
        remote_ip: edge::client_address(spec.trusted_proxies, req, IpAddr::from(CLIENT_IP)),
        claims,
    };
    if !authz::allows(&spec.policies, &who, Some(&asked)) {
        return Answer::Denied;
    }
    let target = edge::target_after(req, keys, &authn);
    answer(spec, servers, req, chain.is_some(), &target)
}

/// What a client should see of `req`.
pub fn expected(spec: &GatewaySpec, req: &GwRequest, keys: &JwtKeys) -> Expected {
    // pilot merges the Gateways in order, each one's servers in order.
    let mut on_port: Vec<usize> = (0..spec.servers.len())
        .filter(|&s| spec.servers[s].mode.port() == req.port)
        .collect();
    on_port.sort_by_key(|&s| spec.servers[s].gateway);
    if on_port.is_empty() {
        return Expected::NoListener;
    }
    if req.port != HTTPS_PORT {
        return Expected::Served {
            chain: None,
            answer: http_answer(spec, None, &on_port, req, keys),
        };
    }
    if !port_has_chains(spec) {
        return Expected::NoListener;
    }
    // L4 chains see no HTTP: the client's address is the peer's, and no JWT is read.
    let l4_allows = |server: Option<usize>| {
        let names = peer_names(spec, server, req);
        let who = Who {
            peer_names: &names,
            remote_ip: IpAddr::from(CLIENT_IP),
            claims: None,
        };
        authz::allows(&spec.policies, &who, None)
    };
    let sidecar = matches!(req.auto, Some(a) if a.client == AutoClient::Sidecar);
    let chain = match chain_for(spec, req.sni_name().as_deref(), req.alpn()) {
        None => return Expected::NoChain,
        Some(Chain::Passthrough(_)) if !l4_allows(None) => return Expected::PassthroughDenied,
        Some(Chain::Passthrough(backend)) => return Expected::Passthrough(backend),
        Some(Chain::Auto {
            backend,
            port,
            endpoints,
        }) => {
            return if endpoints {
                Expected::AutoRelay { backend, port }
            } else {
                Expected::AutoNoEndpoints
            };
        }
        // Only `ISTIO_MUTUAL` presents a mesh identity a sidecar accepts.
        Some(Chain::Terminating(s) | Chain::TerminatedTcp { server: s, .. })
            if sidecar && spec.servers[s].mode != Mode::IstioMutual =>
        {
            return Expected::ClientRejects(s);
        }
        // A MUTUAL server's handshake fails without a certificate from `caCertificates`
        // before a byte is relayed.
        Some(Chain::TerminatedTcp { server, backend }) => {
            let tcp_server = &spec.servers[server];
            let wrong = req.cert != ClientCert::Trusted || tcp_server.sans == Sans::OthersOnly;
            if tcp_server.mode == Mode::TlsTcpMutual && wrong {
                return Expected::ClientRefused(server);
            }
            if !l4_allows(Some(server)) {
                return Expected::TcpDenied { server };
            }
            return Expected::TcpRelay { server, backend };
        }
        Some(Chain::Terminating(s)) => s,
    };
    // A certificate must chain to the roots the server checks with: `caCertificates` (the
    // clients' CA) for MUTUAL and OPTIONAL_MUTUAL, the mesh's for ISTIO_MUTUAL.
    // A certificate the roots vouch for must also name one of the server's subjectAltNames
    // when it lists any (OPTIONAL_MUTUAL: when one is presented).
    let sans_refuse = spec.servers[chain].sans == Sans::OthersOnly;
    let refused = match spec.servers[chain].mode {
        Mode::Mutual => req.cert != ClientCert::Trusted || sans_refuse,
        Mode::OptionalMutual => match req.cert {
            ClientCert::None => false,
            ClientCert::Trusted => sans_refuse,
            ClientCert::Untrusted | ClientCert::Mesh => true,
        },
        Mode::IstioMutual => req.cert != ClientCert::Mesh || sans_refuse,
        _ => false,
    };
    if refused {
        return Expected::ClientRefused(chain);
    }
    Expected::Served {
        chain: Some(chain),
        answer: http_answer(spec, Some(chain), &[chain], req, keys),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// pilot's `TestNamesIntersection` cases (pkg/config/host/names_test.go), in kind.
    #[test]
    fn intersection_keeps_the_narrower_name() {
        assert_eq!(intersection(&["*"], &["a.example.com"]), ["a.example.com"]);
        assert_eq!(
            intersection(&["*.example.com"], &["a.example.com", "c.other.org"]),
            ["a.example.com"]
        );
        assert_eq!(intersection(&["a.example.com"], &["*"]), ["a.example.com"]);
        assert_eq!(intersection(&["*.example.com"], &["*"]), ["*.example.com"]);
        assert_eq!(intersection(&["*"], &["*.example.com"]), ["*.example.com"]);
        assert!(intersection(&["c.other.org"], &["*.example.com"]).is_empty());
    }
}
