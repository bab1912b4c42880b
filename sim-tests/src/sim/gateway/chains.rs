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
//! - Envoy takes the chain naming the server name exactly, then the one with the longest
//!   `*.suffix` (every suffix from the longest), then the chain without names; none: the
//!   connection is closed. No SNI: only the chain without names.

use super::hosts::overlaps;
use super::spec::{GatewaySpec, Mode, HOSTS};

/// Where a chain sends a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chain {
    /// Terminated by server `s` (an index into the spec's servers).
    Terminating(usize),
    /// Relayed untouched to backend `k`'s TLS port.
    Passthrough(usize),
    /// Terminated by `TLS` server `server`, its plaintext relayed to `backend`'s TCP port.
    TerminatedTcp { server: usize, backend: usize },
}

/// The port's chains, each with its `server_names` (empty: match-all).
fn chains(spec: &GatewaySpec) -> Vec<(Vec<&'static str>, Chain)> {
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
                out.push((names(), Chain::TerminatedTcp { server: s, backend }));
            }
            continue;
        }
        if server.mode.terminates() {
            out.push((names(), Chain::Terminating(s)));
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
                out.push((names, Chain::Passthrough(rule.backend)));
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

/// The chain Envoy picks for a ClientHello naming `sni` (`None`: no `server_name`).
pub fn chain_for(spec: &GatewaySpec, sni: Option<&str>) -> Option<Chain> {
    let all = chains(spec);
    let catch_all = || all.iter().find(|(names, _)| names.is_empty()).map(|c| c.1);
    let Some(sni) = sni else {
        return catch_all();
    };
    let sni = sni.to_ascii_lowercase();
    let named = |name: &str| {
        (all.iter())
            .find(|(names, _)| names.contains(&name))
            .map(|c| c.1)
    };
    if let Some(c) = named(&sni) {
        return Some(c);
    }
    let mut pos = sni[1..].find('.').map(|p| p + 1);
    while let Some(at) = pos.filter(|&at| at < sni.len() - 1) {
        if let Some(c) = named(&format!("*{}", &sni[at..])) {
            return Some(c);
        }
        pos = sni[at + 1..].find('.').map(|p| p + at + 1);
    }
    catch_all()
}

#[cfg(test)]
mod tests {
    use super::super::spec::{Binding, GwServer, GwTlsRule, GwVirtualService};
    use super::*;

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
        let spec = GatewaySpec {
            servers: vec![
                server(Mode::Simple, 3), // *.example.com
                server(Mode::Simple, 2), // x.y.example.com
                server(Mode::Simple, 6), // *
            ],
            virtual_services: Vec::new(),
            backends: 1,
            requests: Vec::new(),
        };
        let t = |s| Some(Chain::Terminating(s));
        assert_eq!(chain_for(&spec, Some("x.y.example.com")), t(1));
        assert_eq!(chain_for(&spec, Some("z.y.example.com")), t(0));
        assert_eq!(chain_for(&spec, Some("q.example.com")), t(0));
        assert_eq!(chain_for(&spec, Some("example.com")), t(2));
        assert_eq!(chain_for(&spec, None), t(2));
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
            servers: vec![
                server(Mode::Simple, 0),      // a.example.com
                server(Mode::Passthrough, 3), // *.example.com
            ],
            // The second rule repeats b.example.com: skipped whole, x.y.example.com too.
            virtual_services: vec![vs(vec![1], 0), vs(vec![1, 2], 1), vs(vec![3], 2)],
            backends: 3,
            requests: Vec::new(),
        };
        assert_eq!(
            chain_for(&spec, Some("a.example.com")),
            Some(Chain::Terminating(0))
        );
        assert_eq!(
            chain_for(&spec, Some("b.example.com")),
            Some(Chain::Passthrough(0))
        );
        assert_eq!(
            chain_for(&spec, Some("x.y.example.com")),
            Some(Chain::Passthrough(2))
        );
        assert_eq!(chain_for(&spec, None), None);
    }
}
