//! Which L4 filter chain ([`TcpRoute`]) takes a connection, with Envoy's filter-chain match
//! semantics (`FilterChainManagerImpl::findFilterChain` in
//! source/common/listener_manager/filter_chain_manager_impl.cc): the criteria are narrowed one
//! after the other, the most specific match winning at each step and never backtracking to a
//! less specific one later: destination port (a chain naming the port beats one that names
//! none), destination IP (longest prefix; a chain without prefixes is the least specific),
//! then server name (exact, then the longest `*.` suffix, then a chain without names), then
//! application protocols (`findFilterChainForApplicationProtocols`: the first of the
//! client's ALPN protocols that a chain lists, in the client's order, else a chain that lists
//! none; pilot gives AUTO_PASSTHROUGH chains Istio's mTLS ALPNs).
//! `sourceLabels`, a static predicate pilot evaluates per proxy (matchTCP/matchTLS in
//! pilot/pkg/networking/core/tls.go), filters first; among equals the first chain wins.
//!
//! Data only: no engine state is read or written here (the one draw, [`pick`], takes the
//! engine's RNG as an argument).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::config::{TcpDestination, TcpRoute};

use super::sni::sni_matches;

/// The chains of listener `listener` (`outbound`: whether it is an outbound one) that may take
/// a connection to `dst` from a client with `labels`, before its SNI is known. Empty: the
/// connection is not an L4 one (HTTP, as before).
pub(crate) fn candidates(
    routes: &[TcpRoute],
    (listener, outbound): (&str, bool),
    dst: SocketAddr,
    labels: &BTreeMap<String, String>,
) -> Vec<usize> {
    let applies = |r: &TcpRoute| match &r.listener {
        Some(name) => name == listener,
        None => outbound,
    };
    let mut found: Vec<usize> = routes
        .iter()
        .enumerate()
        .filter(|(_, r)| applies(r) && r.port.is_none_or(|p| p == dst.port()))
        .filter(|(_, r)| {
            #[cfg(feature = "mutants")]
            if crate::mutants::route().tcp_source_labels_ignored {
                return true;
            }
            r.source_labels
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
        })
        .map(|(i, _)| i)
        .collect();
    // Destination port: chains naming it shadow the port-less ones.
    if found.iter().any(|&i| routes[i].port.is_some()) {
        found.retain(|&i| routes[i].port.is_some());
    }
    // Destination IP: keep the longest matching prefix (no prefix at all: length -1).
    let specificity = |r: &TcpRoute| -> Option<i32> {
        if r.destination_subnets.is_empty() {
            return Some(-1);
        }
        (r.destination_subnets.iter())
            .filter(|c| c.contains(dst.ip()))
            .map(|c| i32::from(c.len))
            .max()
    };
    found.retain(|&i| specificity(&routes[i]).is_some());
    #[cfg(feature = "mutants")]
    if crate::mutants::route().tcp_subnets_first_match {
        return found;
    }
    if let Some(best) = found.iter().filter_map(|&i| specificity(&routes[i])).max() {
        found.retain(|&i| specificity(&routes[i]) == Some(best));
    }
    found
}

/// Whether choosing among `found` needs the ClientHello (its server name or its ALPN list).
pub(crate) fn needs_client_hello(routes: &[TcpRoute], found: &[usize]) -> bool {
    (found.iter())
        .any(|&i| !routes[i].sni_hosts.is_empty() || !routes[i].application_protocols.is_empty())
}

/// The chain among `found` for a connection whose ClientHello named `sni` (`None`: no SNI,
/// or not TLS at all) and offered `alpn`. `None`: no chain matches, and Envoy closes the
/// connection.
pub(crate) fn select(
    routes: &[TcpRoute],
    found: &[usize],
    sni: Option<&str>,
    alpn: &[String],
) -> Option<usize> {
    // Rank of a chain for this name: 3 exact, 2 + suffix length for a wildcard (as a fraction
    // of the order), 0 for a chain that names nothing; None when it names others only.
    let rank = |r: &TcpRoute| -> Option<(u8, usize)> {
        if r.sni_hosts.is_empty() {
            return Some((0, 0));
        }
        let sni = sni?;
        (r.sni_hosts.iter())
            .filter(|p| sni_matches(p, sni))
            .map(|p| match p.strip_prefix("*.") {
                #[cfg(feature = "mutants")]
                Some(_) if crate::mutants::route().sni_wildcards_rank_alike => (1, 0),
                Some(suffix) => (1, suffix.len()),
                None => (2, 0),
            })
            .max()
    };
    let best = found.iter().filter_map(|&i| rank(&routes[i])).max()?;
    let named: Vec<usize> = (found.iter().copied())
        .filter(|&i| rank(&routes[i]) == Some(best))
        .collect();
    // Application protocols: no backtracking to another server name either.
    let lists =
        |i: usize, protocol: &str| (routes[i].application_protocols.iter()).any(|p| p == protocol);
    let lists_none = |i: usize| {
        #[cfg(feature = "mutants")]
        if crate::mutants::route().l4_alpn_ignored {
            return true;
        }
        routes[i].application_protocols.is_empty()
    };
    (alpn.iter())
        .find_map(|protocol| named.iter().copied().find(|&i| lists(i, protocol)))
        .or_else(|| (named.iter().copied()).find(|&i| lists_none(i)))
}

/// Which chains could take a connection and which one does: what the engine decides at
/// accept (and after the ClientHello), for route checkers such as `trellis explain`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainChoice {
    /// Indices into `routes` left after the port, address and `sourceLabels` steps; empty:
    /// not an L4 connection (HTTP).
    pub candidates: Vec<usize>,
    /// Whether the choice waits for the ClientHello (its server name or ALPN list).
    pub needs_sni: bool,
    /// The chain taken; `None` with candidates: no chain matches and the connection is closed.
    pub chosen: Option<usize>,
}

/// The engine's choice for a connection to `dst` on `listener` from a client with `labels`
/// whose ClientHello named `sni` (`None`: none, or not TLS) and offered the ALPN protocols
/// `alpn`. `terminated`, on a gateway port whose servers differ: whether the ClientHello's
/// filter chain terminated the connection (only chains of that kind take it,
/// [`TcpRoute::terminated`]); `None` elsewhere.
pub fn choose_chain(
    routes: &[TcpRoute],
    listener: (&str, bool),
    dst: SocketAddr,
    labels: &BTreeMap<String, String>,
    (sni, alpn): (Option<&str>, &[String]),
    terminated: Option<bool>,
) -> ChainChoice {
    let mut found = candidates(routes, listener, dst, labels);
    if let Some(terminated) = terminated {
        found.retain(|&i| routes[i].terminated == terminated);
    }
    if found.is_empty() {
        return ChainChoice::default();
    }
    let needs_sni = needs_client_hello(routes, &found);
    // Without inspection the engine chooses with no name and no protocols at all.
    let alpn = if needs_sni { alpn } else { &[] };
    let chosen = select(routes, &found, sni.filter(|_| needs_sni), alpn);
    ChainChoice {
        candidates: found,
        needs_sni,
        chosen,
    }
}

/// A destination by weight, one uniform draw over the cumulative weights (as
/// `route::weighted` does for HTTP); a single destination draws nothing.
pub(crate) fn pick<'a>(
    dests: &'a [TcpDestination],
    rng: &mut crate::rng::EngineRng,
) -> Option<&'a TcpDestination> {
    if let [only] = dests {
        return (only.weight > 0).then_some(only);
    }
    let total: u64 = dests.iter().map(|d| u64::from(d.weight)).sum();
    if total == 0 {
        return None;
    }
    #[cfg(feature = "mutants")]
    if crate::mutants::route().tcp_weights_ignored {
        return dests.iter().find(|d| d.weight > 0);
    }
    let mut point = rng.below_u64(total);
    for d in dests {
        let w = u64::from(d.weight);
        if point < w {
            return Some(d);
        }
        point -= w;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cidr;

    fn route(name: &str, port: Option<u16>, subnets: &[&str], sni: &[&str]) -> TcpRoute {
        TcpRoute {
            name: name.into(),
            listener: Some("l".into()),
            port,
            destination_subnets: subnets.iter().map(|s| Cidr::parse(s).unwrap()).collect(),
            sni_hosts: sni.iter().map(|s| s.to_string()).collect(),
            ..TcpRoute::default()
        }
    }

    fn pick(routes: &[TcpRoute], dst: &str, sni: Option<&str>) -> Option<String> {
        let found = candidates(routes, ("l", true), dst.parse().unwrap(), &BTreeMap::new());
        select(routes, &found, sni, &[]).map(|i| routes[i].name.clone())
    }

    /// buildSidecarOutboundTCPFilterChainOpts: a `destinationSubnets` rule becomes a chain with
    /// those prefixes ahead of the service's catch-all; Envoy picks the longest prefix, not the
    /// first rule.
    #[test]
    fn the_longest_destination_prefix_wins_over_order() {
        let routes = vec![
            route("any", Some(27017), &[], &[]),
            route("wide", Some(27017), &["10.0.0.0/8"], &[]),
            route("narrow", Some(27017), &["10.1.0.0/16"], &[]),
        ];
        assert_eq!(
            pick(&routes, "10.1.2.3:27017", None).as_deref(),
            Some("narrow")
        );
        assert_eq!(
            pick(&routes, "10.9.2.3:27017", None).as_deref(),
            Some("wide")
        );
        assert_eq!(
            pick(&routes, "192.168.0.1:27017", None).as_deref(),
            Some("any")
        );
        assert_eq!(pick(&routes, "10.1.2.3:80", None), None, "another port");
    }

    /// Envoy's server_names: exact beats wildcard beats none, whatever the order; a hello that
    /// names nothing configured finds no chain when every chain names hosts.
    #[test]
    fn sni_exact_then_longest_wildcard_then_catch_all() {
        let routes = vec![
            route("wild", Some(443), &[], &["*.example.com"]),
            route("wilder", Some(443), &[], &["*.b.example.com"]),
            route("exact", Some(443), &[], &["a.b.example.com"]),
        ];
        let dst = "1.2.3.4:443";
        assert_eq!(
            pick(&routes, dst, Some("a.b.example.com")).as_deref(),
            Some("exact")
        );
        assert_eq!(
            pick(&routes, dst, Some("c.b.example.com")).as_deref(),
            Some("wilder")
        );
        assert_eq!(
            pick(&routes, dst, Some("c.example.com")).as_deref(),
            Some("wild")
        );
        assert_eq!(pick(&routes, dst, Some("example.org")), None);
        assert_eq!(pick(&routes, dst, None), None);
        let mut with_default = routes.clone();
        with_default.push(route("default", Some(443), &[], &[]));
        assert_eq!(
            pick(&with_default, dst, Some("example.org")).as_deref(),
            Some("default")
        );
    }

    /// matchTCP's `port`: a chain naming the port shadows a port-less one, without falling
    /// back to it when a later criterion fails (Envoy never backtracks).
    #[test]
    fn a_port_chain_shadows_portless_ones_without_backtracking() {
        let routes = vec![
            route("portless", None, &[], &[]),
            route("tls", Some(443), &[], &["db.example.com"]),
        ];
        assert_eq!(pick(&routes, "1.2.3.4:443", Some("x.org")), None);
        assert_eq!(
            pick(&routes, "1.2.3.4:444", Some("x.org")).as_deref(),
            Some("portless")
        );
    }

    #[test]
    fn source_labels_must_all_be_present() {
        let mut routes = vec![route("v2-clients", Some(9000), &[], &[])];
        routes[0]
            .source_labels
            .insert("version".into(), "v2".into());
        routes.push(route("others", Some(9000), &[], &[]));
        let dst: SocketAddr = "1.2.3.4:9000".parse().unwrap();
        let mut labels = BTreeMap::new();
        let found = candidates(&routes, ("l", true), dst, &labels);
        assert_eq!(select(&routes, &found, None, &[]), Some(1));
        labels.insert("version".into(), "v2".into());
        let found = candidates(&routes, ("l", true), dst, &labels);
        assert_eq!(
            select(&routes, &found, None, &[]),
            Some(0),
            "first of equals wins"
        );
        assert!(candidates(&routes, ("other", true), dst, &labels).is_empty());
    }

    /// FilterChainManagerImpl::findFilterChainForApplicationProtocols (Envoy
    /// source/common/listener_manager/filter_chain_manager_impl.cc): after the server name,
    /// the first of the client's protocols that a chain lists wins, in the client's order;
    /// else a chain listing none; else nothing, without backtracking to a catch-all name.
    /// pilot's AUTO_PASSTHROUGH chains list allIstioMtlsALPNs
    /// (builtAutoPassthroughFilterChains, pilot/pkg/networking/core/gateway.go).
    #[test]
    fn application_protocols_narrow_after_the_server_name() {
        let mesh = |name: &str, protocols: &[&str]| {
            let mut r = route(name, Some(15443), &[], &["outbound_.80_._.a.local"]);
            r.application_protocols = protocols.iter().map(|p| p.to_string()).collect();
            r
        };
        let routes = vec![
            mesh("istio", &["istio", "istio-peer-exchange"]),
            mesh("h2", &["istio-h2"]),
            route("catch-all", Some(15443), &[], &[]),
        ];
        let dst: SocketAddr = "1.2.3.4:15443".parse().unwrap();
        let found = candidates(&routes, ("l", true), dst, &BTreeMap::new());
        assert!(needs_client_hello(&routes, &found));
        let sni = Some("outbound_.80_._.a.local");
        let offer = |list: &[&str]| -> Vec<String> { list.iter().map(|p| p.to_string()).collect() };
        let choose = |alpn: &[String]| select(&routes, &found, sni, alpn);
        assert_eq!(
            choose(&offer(&["istio-h2", "istio"])),
            Some(1),
            "client order"
        );
        assert_eq!(choose(&offer(&["h2", "istio-peer-exchange"])), Some(0));
        assert_eq!(choose(&offer(&["h2", "http/1.1"])), None, "no mesh ALPN");
        assert_eq!(choose(&[]), None, "no ALPN at all");
        assert_eq!(select(&routes, &found, Some("other"), &[]), Some(2));
        let mut open = routes.clone();
        open.push(route(
            "any-protocol",
            Some(15443),
            &[],
            &["outbound_.80_._.a.local"],
        ));
        let found = candidates(&open, ("l", true), dst, &BTreeMap::new());
        assert_eq!(select(&open, &found, sni, &offer(&["h2"])), Some(3));
    }
}
