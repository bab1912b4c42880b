//! A gateway port of `AUTO_PASSTHROUGH` servers (Istio's east-west gateway): the TLS
//! ClientHello's SNI names the destination cluster itself, `outbound_.<port>_.<subset>_.<host>`,
//! and the bytes are relayed without termination, with no VirtualService at all.
//!
//! pilot's builtAutoPassthroughFilterChains (pilot/pkg/networking/core/gateway.go) gives
//! every service the proxy sees, that is not `MESH_EXTERNAL` and whose host is one of the
//! servers' `hosts` (`service.Hostname.SubsetOf(host)`), one filter chain per non-UDP port
//! matched on the SNI `model.BuildDNSSrvSubsetKey(outbound, "", host, port)`, and one more per
//! subset of the host's DestinationRule, each forwarding to the SNI-DNAT cluster of that
//! name. Those clusters hold the endpoints of `outbound|<port>|<subset>|<host>` but no
//! transport socket: the client's own TLS (a sidecar's mTLS) reaches the destination's
//! sidecar untouched (cluster_builder's SniDnatClusterMode). So here each chain is a
//! [`TcpRoute`] with that SNI, and each cluster a copy of the mesh cluster, renamed, with
//! [`UpstreamTls::Disable`]. A ClientHello with any other server name, or none, matches no
//! chain: the engine closes the connection and logs it (`NR`), as Envoy does with no filter
//! chain.
//!
//! Each chain also requires one of Istio's mTLS ALPNs ([`ISTIO_MTLS_ALPNS`], pilot's
//! `allIstioMtlsALPNs` as the chain's `applicationProtocols`): with plaintext endpoints left
//! out, only a mesh client's mTLS can pass, so nobody reaches a cluster through the gateway
//! without it. A ClientHello with the right SNI but none of them matches no chain and is
//! closed (NR).

use std::collections::BTreeSet;

use trellis_engine::config::{Cluster, TcpDestination, TcpRoute, UpstreamTls};

use super::merge::ServerPort;
use crate::diag::Diagnostic;
use crate::istio::service_entry::Location;
use crate::istio::ResourceSet;
use crate::translate::catalog::{cluster_name, Catalog};
use crate::translate::hosts::{host_covers, resolve};
use crate::translate::tcp::TcpOrigin;
use crate::translate::Translation;

/// A port of `AUTO_PASSTHROUGH` servers and `PASSTHROUGH` ones (an east-west gateway that
/// also passes some TLS through by SNI): its AUTO_PASSTHROUGH servers and its other servers,
/// each as a port of its own mode, `None` for a kind it lacks. pilot builds each server's
/// chains on the one listener (buildGatewayTCPBasedFilterChains: builtAutoPassthroughFilterChains
/// for the former, createGatewayTCPFilterChainOpts for the latter) and Envoy picks among them
/// by the ClientHello's SNI, as the engine does among the listener's L4 chains.
pub fn split<'a>(port: &ServerPort<'a>) -> (Option<ServerPort<'a>>, Option<ServerPort<'a>>) {
    use super::tls::{self, ServerMode};
    let (auto, other): (Vec<_>, Vec<_>) = (port.servers.iter().cloned())
        .partition(|m| tls::mode(m.server) == ServerMode::AutoPassthrough);
    let own = |servers: Vec<_>, mode: ServerMode| {
        (!servers.is_empty()).then(|| ServerPort {
            number: port.number,
            bind: port.bind.clone(),
            servers,
            mode,
            certificates: Vec::new(),
            route_name: None,
        })
    };
    let other_mode = match port.mode {
        ServerMode::AutoPassthrough => ServerMode::Passthrough,
        ref mode => mode.clone(),
    };
    (
        own(auto, ServerMode::AutoPassthrough),
        own(other, other_mode),
    )
}

/// pilot's `allIstioMtlsALPNs`, the list the engine's inbound sniffer matches too.
pub use trellis_engine::transport::sniff::ISTIO_MTLS_ALPNS;

/// `model.BuildDNSSrvSubsetKey(TrafficDirectionOutbound, subset, host, port)`.
pub fn sni_key(host: &str, port: u16, subset: Option<&str>) -> String {
    format!("outbound_.{port}_.{}_.{host}", subset.unwrap_or(""))
}

/// `model.ParseSubsetKey` for the SNI form: `(port, subset, host)`, the subset `None` when
/// empty; `None` when `sni` is not an outbound key.
pub fn parse_sni_key(sni: &str) -> Option<(u16, Option<&str>, &str)> {
    let rest = sni.strip_prefix("outbound_.")?;
    let (port, rest) = rest.split_once("_.")?;
    let (subset, host) = rest.split_once("_.")?;
    let port = port.parse().ok()?;
    (!host.is_empty()).then_some((port, (!subset.is_empty()).then_some(subset), host))
}

/// Whether `route` is an AUTO_PASSTHROUGH chain: its one SNI is an outbound key, and both its
/// name and its one cluster are that key.
pub fn is_chain(route: &TcpRoute) -> bool {
    match (route.sni_hosts.as_slice(), route.destinations.as_slice()) {
        ([sni], [only]) => {
            *sni == route.name && only.cluster == route.name && parse_sni_key(sni).is_some()
        }
        _ => false,
    }
}

/// The chains of `port` served on `listener`, adding their SNI-DNAT clusters to `out`.
pub fn chains(
    port: &ServerPort<'_>,
    listener: &str,
    catalog: &Catalog<'_>,
    resources: &ResourceSet,
    out: &mut Translation,
    diags: &mut Vec<Diagnostic>,
) -> Vec<(TcpRoute, TcpOrigin)> {
    let external = mesh_external_hosts(resources);
    let mut taken = BTreeSet::new();
    let mut chains = Vec::new();
    for service in &catalog.services {
        if external.contains(&service.host) {
            continue;
        }
        // The first server whose hosts take the service (TLSServerInfo's SNIHosts: the
        // hosts without their namespace part).
        let Some(server) = port.servers.iter().find(|m| {
            (m.server.hosts.iter())
                .map(|h| h.rsplit_once('/').map_or(h.as_str(), |(_, h)| h))
                .any(|h| host_covers(&h.to_ascii_lowercase(), &service.host))
        }) else {
            continue;
        };
        let subsets: Vec<Option<&str>> = std::iter::once(None)
            .chain(
                (catalog.rule_for(&service.host).into_iter())
                    .flat_map(|r| r.spec.subsets.iter().map(|s| Some(s.name.as_str()))),
            )
            .collect();
        for service_port in &service.ports {
            let udp =
                (service_port.protocol.as_deref()).is_some_and(|p| p.eq_ignore_ascii_case("UDP"));
            if udp {
                continue;
            }
            for &subset in &subsets {
                let sni = sni_key(&service.host, service_port.number, subset);
                if !taken.insert(sni.clone()) {
                    continue;
                }
                if !add_cluster(out, &sni, &service.host, service_port.number, subset) {
                    continue;
                }
                let route = TcpRoute {
                    name: sni.clone(),
                    listener: Some(listener.to_string()),
                    sni_hosts: vec![sni.clone()],
                    application_protocols: ISTIO_MTLS_ALPNS.map(String::from).to_vec(),
                    destinations: vec![TcpDestination {
                        cluster: sni.clone(),
                        weight: 1,
                    }],
                    ..TcpRoute::default()
                };
                let origin = TcpOrigin {
                    virtual_service: None,
                    rule: None,
                    service: server.gateway.clone(),
                };
                chains.push((route, origin));
            }
        }
    }
    if chains.is_empty() {
        diags.push(Diagnostic::warning(format!(
            "gateway port {}: its AUTO_PASSTHROUGH servers' hosts take no service; its connections are closed",
            port.number
        )));
        chains.push(super::l4::blackhole(port.number, listener));
    }
    chains
}

/// The SNI-DNAT cluster `sni`: the mesh cluster of (host, port, subset) renamed, without TLS
/// (added once per translation). `false` when there is no such mesh cluster.
fn add_cluster(
    out: &mut Translation,
    sni: &str,
    host: &str,
    port: u16,
    subset: Option<&str>,
) -> bool {
    if out.config.clusters.iter().any(|c| c.name == sni) {
        return true;
    }
    let mesh = cluster_name(host, port, subset);
    let Some(cluster) = out.config.clusters.iter().find(|c| c.name == mesh) else {
        return false;
    };
    let dnat = Cluster {
        name: sni.to_string(),
        tls: UpstreamTls::Disable,
        ..cluster.clone()
    };
    out.config.clusters.push(dnat);
    if let Some(origin) = out.clusters.get(&mesh).cloned() {
        out.clusters.insert(sni.to_string(), origin);
    }
    true
}

/// Hosts of ServiceEntries that are `MESH_EXTERNAL` (the default location): pilot skips
/// them (`service.MeshExternal`).
fn mesh_external_hosts(resources: &ResourceSet) -> BTreeSet<String> {
    (resources.service_entries.iter())
        .filter(|se| se.spec.location != Some(Location::MESH_INTERNAL))
        .flat_map(|se| se.spec.hosts.iter().map(|h| resolve(h, se.namespace())))
        .collect()
}
