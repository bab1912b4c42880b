//! Port 443's filter chains and Envoy's choice among them, written from pilot's
//! `buildGatewayTCPBasedFilterChains`, `createGatewayTCPFilterChainOpts` and
//! `buildGatewayNetworkFiltersFromTLSRoutes` (pilot/pkg/networking/core/gateway.go) and Envoy's
//! `findFilterChainForServerName` (source/common/listener_manager/filter_chain_manager_impl.cc).
//!
//! - A terminating server (`SIMPLE`, `MUTUAL`) is one chain whose `server_names` are its
//!   hosts, none (match-all) when one is `*`; so is a `TLS` server that terminates, when a
//!   bound VirtualService has a `tcp` rule for it (the first VirtualService whose hosts meet
//!   the server's with a rule whose `port` holds: `buildGatewayNetworkFiltersFromTCPRoutes`),
//!   and it has no chain otherwise.
//! - A `PASSTHROUGH` server has a chain per `tls` rule match of each VirtualService bound to
//!   its Gateway whose hosts overlap the server's (`pickMatchingGatewayHosts`, `Name.Matches`),
//!   in server then precedence order; its `server_names` are the match's `sniHosts` as written
//!   (not narrowed to the server's hosts). A match naming a host an earlier passthrough chain of
//!   the port already has is skipped whole (`CheckDuplicates` over the port's
//!   `tlsHostsByPort`).
//! - An `AUTO_PASSTHROUGH` server (`builtAutoPassthroughFilterChains`) has, for every mesh
//!   service its hosts cover (`service.Hostname.SubsetOf(host)`; the backends' ServiceEntries
//!   are `MESH_INTERNAL`), a chain per port and per subset of its DestinationRule, named by
//!   the SNI `outbound_.<port>_.<subset>_.<host>` and listing Istio's mTLS ALPNs
//!   (`allIstioMtlsALPNs`); each relays to the endpoints of that cluster.
//! - Envoy takes the chains naming the server name exactly, else those with the longest
//!   `*.suffix` (every suffix from the longest), else those without names; none: the
//!   connection is closed. No SNI: only the chains without names. Among the chains of that one
//!   rank (never backtracking to a less specific name), `findFilterChainForApplicationProtocols`
//!   takes the first protocol of the client's ALPN list that a chain lists, else a chain that
//!   lists none; none: closed.

use super::hosts::overlaps;
use super::spec::{GatewaySpec, Mode, BACKEND_PORTS, HOSTS, SUBSETS};

/// pilot's `allIstioMtlsALPNs` (pilot/pkg/networking/core/listener.go).
pub const ISTIO_MTLS_ALPNS: [&str; 5] = [
    "istio",
    "istio-peer-exchange",
    "istio-http/1.0",
    "istio-http/1.1",
    "istio-h2",
];

/// Where a chain sends a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chain {
    /// Terminated by server `s` (an index into the spec's servers).
    Terminating(usize),
    /// Relayed untouched to backend `k`'s TLS port.
    Passthrough(usize),
    /// Terminated by `TLS` server `server`, its plaintext relayed to `backend`'s TCP port.
    TerminatedTcp { server: usize, backend: usize },
    /// An `AUTO_PASSTHROUGH` chain: relayed untouched to backend `backend`'s `port`, or closed
    /// when the cluster has no endpoint (`endpoints` false: a subset selecting none).
    Auto {
        backend: usize,
        port: u16,
        endpoints: bool,
    },
}

/// One filter chain: its `server_names` (empty: match-all), `application_protocols` (empty:
/// any) and where it sends a connection.
struct FilterChain {
    names: Vec<String>,
    alpn: &'static [&'static str],
    chain: Chain,
}

/// The port's chains.
fn chains(spec: &GatewaySpec) -> Vec<FilterChain> {
    let named = |names: Vec<&'static str>, chain| FilterChain {
        names: names.into_iter().map(String::from).collect(),
        alpn: &[],
        chain,
    };
    // pilot merges the Gateways in order, each one's servers in order.
    let mut servers: Vec<usize> = (0..spec.servers.len())
        .filter(|&s| spec.servers[s].mode.is_tls())
        .collect();
    servers.sort_by_key(|&s| spec.servers[s].gateway);
    let mut out = Vec::new();
    let mut claimed: Vec<&'static str> = Vec::new();
    for s in servers {
        let server = &spec.servers[s];
        let hosts: Vec<&'static str> = server.hosts.iter().map(|&h| HOSTS[h]).collect();
        let names = || {
            if hosts.contains(&"*") {
                Vec::new()
            } else {
                hosts.clone()
            }
        };
        if server.mode.relays_tcp() {
            // No rule, no chain ("listener missed network filter").
            if let Some(backend) = tcp_backend(spec, s) {
                out.push(named(names(), Chain::TerminatedTcp { server: s, backend }));
            }
            continue;
        }
        if server.mode.terminates() {
            out.push(named(names(), Chain::Terminating(s)));
            continue;
        }
        if server.mode == Mode::AutoPassthrough {
            out.extend(auto_passthrough_chains(spec, &hosts));
            continue;
        }
        debug_assert_eq!(server.mode, Mode::Passthrough);
        for vs in &spec.virtual_services {
            let bound = vs.binding.binds(server.gateway);
            let matching = (vs.hosts.iter()).any(|&v| hosts.iter().any(|h| overlaps(h, HOSTS[v])));
            if !bound || !matching {
                continue;
            }
            for rule in &vs.tls_rules {
                let names: Vec<&'static str> = rule.sni_hosts.iter().map(|&h| HOSTS[h]).collect();
                if names.iter().any(|n| claimed.contains(n)) {
                    continue;
                }
                claimed.extend(names.iter().copied());
                out.push(named(names, Chain::Passthrough(rule.backend)));
            }
        }
    }
    out
}

/// The backend of the first `tcp` rule that applies at server `s` (port 443 or no port match)
/// in the first VirtualService bound to its Gateway whose hosts meet the server's
/// (`buildGatewayNetworkFiltersFromTCPRoutes`).
fn tcp_backend(spec: &GatewaySpec, s: usize) -> Option<usize> {
    let server = &spec.servers[s];
    let hosts: Vec<&'static str> = server.hosts.iter().map(|&h| HOSTS[h]).collect();
    (spec.virtual_services.iter())
        .filter(|vs| vs.binding.binds(server.gateway))
        .filter(|vs| (vs.hosts.iter()).any(|&v| hosts.iter().any(|h| overlaps(h, HOSTS[v]))))
        .find_map(|vs| {
            (vs.tcp_rules.iter())
                .find(|rule| rule.port.is_none_or(|p| p == server.mode.port()))
                .map(|rule| rule.backend)
        })
}

/// The chains of an `AUTO_PASSTHROUGH` server with `hosts`: per backend it covers, per port,
/// the service's chain then one per subset (the world's ServiceEntries are all
/// `MESH_INTERNAL`, none of their ports UDP).
fn auto_passthrough_chains(spec: &GatewaySpec, hosts: &[&'static str]) -> Vec<FilterChain> {
    let mut out = Vec::new();
    for backend in 0..spec.backends {
        let host = super::spec::backend_host(backend);
        if !hosts.iter().any(|h| super::hosts::subset_of(&host, h)) {
            continue;
        }
        for port in BACKEND_PORTS {
            let subsets = SUBSETS.iter().filter(|_| spec.subsets);
            for subset in std::iter::once("").chain(subsets.copied()) {
                out.push(FilterChain {
                    names: vec![format!("outbound_.{port}_.{subset}_.{host}")],
                    alpn: &ISTIO_MTLS_ALPNS,
                    chain: Chain::Auto {
                        backend,
                        port,
                        endpoints: subset != "v2",
                    },
                });
            }
        }
    }
    out
}

/// Whether port 443 has any filter chain. pilot omits a listener without chains ("must have
/// more than 0 chains", `MutableGatewayListener::build`, pilot/pkg/networking/core/gateway.go),
/// as Envoy would refuse it ("no filter chains specified", `ListenerImpl::validateFilterChains`):
/// nothing listens on the port.
pub fn port_has_chains(spec: &GatewaySpec) -> bool {
    !chains(spec).is_empty()
}

/// The chain Envoy picks for a ClientHello naming `sni` (`None`: no `server_name`) and
/// offering `alpn`.
pub fn chain_for(spec: &GatewaySpec, sni: Option<&str>, alpn: &[&str]) -> Option<Chain> {
    let all = chains(spec);
    let with_names = |names: &[String]| -> Vec<&FilterChain> {
        all.iter().filter(|c| c.names == names).collect()
    };
    let by_alpn = |rank: Vec<&FilterChain>| -> Option<Chain> {
        (alpn.iter())
            .find_map(|p| rank.iter().find(|c| c.alpn.contains(p)))
            .or_else(|| rank.iter().find(|c| c.alpn.is_empty()))
            .map(|c| c.chain)
    };
    let catch_all = || by_alpn(with_names(&[]));
    let Some(sni) = sni else {
        return catch_all();
    };
    let sni = sni.to_ascii_lowercase();
    let named = |name: &str| -> Vec<&FilterChain> {
        (all.iter())
            .filter(|c| c.names.iter().any(|n| n == name))
            .collect()
    };
    let exact = named(&sni);
    if !exact.is_empty() {
        return by_alpn(exact);
    }
    let mut pos = sni[1..].find('.').map(|p| p + 1);
    while let Some(at) = pos.filter(|&at| at < sni.len() - 1) {
        let wildcard = named(&format!("*{}", &sni[at..]));
        if !wildcard.is_empty() {
            return by_alpn(wildcard);
        }
        pos = sni[at + 1..].find('.').map(|p| p + at + 1);
    }
    catch_all()
}

#[cfg(test)]
mod tests {
    use super::super::spec::{Binding, GwServer, GwTlsRule, GwVirtualService};
    use super::*;

    /// A world of these servers on one backend, with nothing else.
    fn spec_of(servers: Vec<GwServer>) -> GatewaySpec {
        GatewaySpec {
            servers,
            virtual_services: Vec::new(),
            backends: 1,
            subsets: false,
            policies: Vec::new(),
            trusted_proxies: 0,
            jwt: None,
            requests: Vec::new(),
        }
    }

    fn server(mode: Mode, host: usize) -> GwServer {
        GwServer {
            mode,
            hosts: vec![host],
            gateway: 0,
            sans: super::super::spec::Sans::Unset,
        }
    }

    /// Envoy's server-name match: exact, then every wildcard from the longest suffix, then
    /// the chain without names.
    #[test]
    fn chains_rank_exact_then_longest_wildcard_then_catch_all() {
        let spec = spec_of(vec![
            server(Mode::Simple, 3), // *.example.com
            server(Mode::Simple, 2), // x.y.example.com
            server(Mode::Simple, 6), // *
        ]);
        let t = |s| Some(Chain::Terminating(s));
        assert_eq!(chain_for(&spec, Some("x.y.example.com"), &[]), t(1));
        assert_eq!(chain_for(&spec, Some("z.y.example.com"), &[]), t(0));
        assert_eq!(chain_for(&spec, Some("q.example.com"), &[]), t(0));
        assert_eq!(chain_for(&spec, Some("example.com"), &[]), t(2));
        assert_eq!(chain_for(&spec, None, &[]), t(2));
    }

    /// A passthrough server's chains name the `tls` rules' `sniHosts`, the first claim of a
    /// name winning; they rank with the terminating chains by name alone.
    #[test]
    fn passthrough_chains_are_the_tls_rules_first_claim_winning() {
        let vs = |sni: Vec<usize>, backend| GwVirtualService {
            hosts: vec![3], // *.example.com
            binding: Binding::Short(0),
            rules: Vec::new(),
            tls_rules: vec![GwTlsRule {
                sni_hosts: sni,
                backend,
            }],
            tcp_rules: Vec::new(),
        };
        let spec = GatewaySpec {
            // The second rule repeats b.example.com: skipped whole, x.y.example.com too.
            virtual_services: vec![vs(vec![1], 0), vs(vec![1, 2], 1), vs(vec![3], 2)],
            backends: 3,
            ..spec_of(vec![
                server(Mode::Simple, 0),      // a.example.com
                server(Mode::Passthrough, 3), // *.example.com
            ])
        };
        assert_eq!(
            chain_for(&spec, Some("a.example.com"), &[]),
            Some(Chain::Terminating(0))
        );
        assert_eq!(
            chain_for(&spec, Some("b.example.com"), &[]),
            Some(Chain::Passthrough(0))
        );
        assert_eq!(
            chain_for(&spec, Some("x.y.example.com"), &[]),
            Some(Chain::Passthrough(2))
        );
        assert_eq!(chain_for(&spec, None, &[]), None);
    }

    /// An AUTO_PASSTHROUGH server's chains name each covered service's clusters and ask for
    /// Istio's mTLS ALPNs (pilot's builtAutoPassthroughFilterChains); Envoy's
    /// findFilterChainForApplicationProtocols never falls back to a less specific server name,
    /// so a plain client naming a cluster is closed even beside a `*` server.
    #[test]
    fn auto_passthrough_chains_ask_for_istio_alpns_without_backtracking() {
        let spec = GatewaySpec {
            backends: 2,
            subsets: true,
            ..spec_of(vec![
                server(Mode::AutoPassthrough, 8), // svc-0.backend.test
                server(Mode::Simple, 6),          // *
            ])
        };
        let sidecar: &[&str] = &["istio", "trellis-http/1.1"];
        let relay = |port, endpoints| {
            Some(Chain::Auto {
                backend: 0,
                port,
                endpoints,
            })
        };
        let sni = "outbound_.8443_._.svc-0.backend.test";
        assert_eq!(chain_for(&spec, Some(sni), sidecar), relay(8443, true));
        assert_eq!(chain_for(&spec, Some(sni), &["http/1.1"]), None);
        assert_eq!(chain_for(&spec, Some(sni), &[]), None);
        let v1 = "outbound_.9000_.v1_.svc-0.backend.test";
        assert_eq!(chain_for(&spec, Some(v1), sidecar), relay(9000, true));
        let v2 = "outbound_.8080_.v2_.svc-0.backend.test";
        assert_eq!(chain_for(&spec, Some(v2), sidecar), relay(8080, false));
        // Not covered by the server's hosts, or no such port: the `*` server's chain.
        let other = "outbound_.8443_._.svc-1.backend.test";
        assert_eq!(
            chain_for(&spec, Some(other), sidecar),
            Some(Chain::Terminating(1))
        );
        let port = "outbound_.7070_._.svc-0.backend.test";
        assert_eq!(
            chain_for(&spec, Some(port), sidecar),
            Some(Chain::Terminating(1))
        );
    }

    /// A port whose servers yield no filter chain (a PASSTHROUGH server without `tls` rules, a
    /// TLS-terminated TCP server without `tcp` rules, an AUTO_PASSTHROUGH server covering no
    /// service) has no listener: pilot omits it (`MutableGatewayListener::build`).
    #[test]
    fn a_port_without_chains_has_no_listener() {
        let bare = spec_of(vec![
            server(Mode::Passthrough, 0),
            server(Mode::TlsTcp, 1),
            server(Mode::AutoPassthrough, 4), // c.other.org: covers no backend
        ]);
        assert!(!port_has_chains(&bare));
        assert!(port_has_chains(&spec_of(vec![server(Mode::Simple, 0)])));
        assert!(port_has_chains(&spec_of(vec![server(
            Mode::AutoPassthrough,
            7
        )])));
    }
}
