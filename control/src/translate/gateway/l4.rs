//! A gateway port whose servers are not HTTP: its L4 filter chains, from the VirtualServices'
//! `tcp` and `tls` rules bound to the Gateway (createGatewayTCPFilterChainOpts,
//! buildGatewayNetworkFiltersFromTCPRoutes and buildGatewayNetworkFiltersFromTLSRoutes in
//! pilot/pkg/networking/core/gateway.go):
//!
//! - opaque TCP (no `tls`): the first bound VirtualService whose hosts meet the server's, and
//!   in it the first `tcp` rule with routes whose `match` holds at this server (`port`,
//!   `gateways`: pilot's l4MultiMatch, no match at all holding too), gives the port's one
//!   chain;
//! - TLS terminated here (`SIMPLE`, `MUTUAL`, `OPTIONAL_MUTUAL` or `ISTIO_MUTUAL` on a `TLS`
//!   or TCP server): the same rule choice, one chain per server, matched by the server's
//!   hosts as SNI ([`terminated_chains`]);
//! - `PASSTHROUGH`: every `tls` rule match that holds (l4SingleMatch) gives a chain for its
//!   `sniHosts`, the ClientHello read but never terminated; a match that repeats an SNI host
//!   already taken on the port is skipped (pilot's CheckDuplicates, logged there, reported
//!   here).
//!
//! A port left with no chain gets a catch-all without destinations, so its connections are
//! closed rather than parsed as HTTP (Envoy has no filter chain for them: pilot warns
//! "listener missed network filter").

use trellis_engine::config::TcpRoute;

use super::binding::{bound_gateways, intersect, server_hosts_for};
use super::merge::{MergedServer, ServerPort};
use super::routes::{visible, GatewaySite};
use super::tls::ServerMode;
use crate::diag::Diagnostic;
use crate::istio::{Resource, VirtualServiceSpec};
use crate::translate::hosts;
use crate::translate::tcp::{rule_destinations, TcpOrigin};
use crate::translate::tcp_rules::{self, L4Match, TcpRule, TlsRule};

/// Whether a port of this mode is served by L4 chains rather than a route table.
pub fn is_l4(mode: &ServerMode) -> bool {
    matches!(
        mode,
        ServerMode::Tcp
            | ServerMode::Passthrough
            | ServerMode::AutoPassthrough
            | ServerMode::TlsTcp(_)
    )
}

/// The chains of L4 `port`, served on listener `listener`, with their origins.
pub fn chains(
    port: &ServerPort<'_>,
    listener: &str,
    site: &GatewaySite<'_, '_>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<(TcpRoute, TcpOrigin)> {
    let mut out = Vec::new();
    let mut sni_taken: Vec<String> = Vec::new();
    for merged in &port.servers {
        let bound = bound_to(merged, site);
        if port.mode == ServerMode::Passthrough {
            for vs in bound {
                tls_chains(
                    vs,
                    merged,
                    port,
                    listener,
                    site,
                    &mut sni_taken,
                    &mut out,
                    diags,
                );
            }
        } else if out.is_empty() {
            // One chain without SNI per port: Envoy refuses a second identical match.
            out.extend(
                bound
                    .into_iter()
                    .find_map(|vs| tcp_chain(vs, merged, port, listener, site, diags)),
            );
        }
    }
    if out.is_empty() {
        diags.push(Diagnostic::warning(format!(
            "gateway port {}: no VirtualService {} rule is bound to its servers; its connections are closed",
            port.number,
            if port.mode == ServerMode::Passthrough { "tls" } else { "tcp" }
        )));
        out.push(blackhole(port.number, listener));
    }
    out
}

/// The chains of a port's TLS-terminated TCP servers (`port`: those servers only), on
/// listener `listener`: each server its own chain, as createGatewayTCPFilterChainOpts builds
/// one per terminating server, with the first bound VirtualService's applying `tcp` rule and
/// the server's hosts as its `server_names` (none when a host is `*`: toFilterChainMatch), for
/// connections the listener terminated ([`TcpRoute::terminated`]). A server no rule serves has
/// no chain ("listener missed network filter"); when one lacks it, a terminated catch-all
/// without destinations closes what no other chain takes, rather than parse it as HTTP.
///
/// Returns the chains and, parallel to `port.servers`, whether each server has one: a server
/// without is left out of the listener's terminating chains ([`super::mixed::certificates_in_order`]),
/// so a ClientHello for its hosts goes to whichever other chain takes it, as in Envoy.
pub fn terminated_chains(
    port: &ServerPort<'_>,
    listener: &str,
    site: &GatewaySite<'_, '_>,
    diags: &mut Vec<Diagnostic>,
) -> (Vec<(TcpRoute, TcpOrigin)>, Vec<bool>) {
    let mut out = Vec::new();
    let mut missed = Vec::new();
    let mut served = Vec::new();
    for merged in &port.servers {
        let chain = (bound_to(merged, site).into_iter())
            .find_map(|vs| tcp_chain(vs, merged, port, listener, site, diags));
        served.push(chain.is_some());
        match chain {
            Some((mut route, origin)) => {
                route.sni_hosts = server_names(&merged.server.hosts);
                route.terminated = true;
                out.push((route, origin));
            }
            None => missed.extend(merged.server.hosts.iter().cloned()),
        }
    }
    if !missed.is_empty() {
        diags.push(Diagnostic::warning(format!(
            "gateway port {}: no VirtualService tcp rule is bound to the TLS-terminated server \
             of hosts {missed:?}; it has no filter chain (pilot: \"listener missed network \
             filter\"), and its names go to the port's other chains",
            port.number
        )));
        let (mut route, origin) = blackhole(port.number, listener);
        route.terminated = true;
        out.push((route, origin));
    }
    (out, served)
}

/// A terminating server's `server_names`: its hosts without their namespace part,
/// lower-cased, or none (every name) when one is `*` (GetSNIHostsForServer in
/// pilot/pkg/model/gateway.go, then toFilterChainMatch).
fn server_names(hosts: &[String]) -> Vec<String> {
    let names: Vec<String> = (hosts.iter())
        .map(|h| h.rsplit_once('/').map_or(h.as_str(), |(_, h)| h))
        .map(str::to_ascii_lowercase)
        .collect();
    if names.iter().any(|n| n == "*") {
        return Vec::new();
    }
    names
}

/// A catch-all chain without destinations for a port left with none: its connections are
/// closed rather than parsed as HTTP.
pub fn blackhole(port: u16, listener: &str) -> (TcpRoute, TcpOrigin) {
    (
        TcpRoute {
            name: format!("blackhole:{port}"),
            listener: Some(listener.to_string()),
            ..TcpRoute::default()
        },
        TcpOrigin {
            virtual_service: None,
            rule: None,
            service: String::new(),
        },
    )
}

/// Whether a chain is [`blackhole`]'s: no rule, no service, no destinations.
pub fn is_blackhole(route: &TcpRoute, origin: &TcpOrigin) -> bool {
    origin.virtual_service.is_none()
        && origin.rule.is_none()
        && origin.service.is_empty()
        && route.destinations.is_empty()
}

/// The VirtualServices bound to `merged`'s Gateway whose hosts meet the server's
/// (VirtualServicesForGateway, then pickMatchingGatewayHosts), in precedence order.
fn bound_to<'a>(
    merged: &MergedServer<'_>,
    site: &GatewaySite<'_, 'a>,
) -> Vec<&'a Resource<VirtualServiceSpec>> {
    (site.virtual_services.iter().copied())
        .filter(|vs| visible(vs, site.namespace))
        .filter(|vs| bound_gateways(&vs.spec, vs.namespace()).contains(&merged.gateway))
        .filter(|vs| {
            let server = server_hosts_for(
                &merged.server.hosts,
                merged.gateway_namespace,
                vs.namespace(),
            );
            let vs_hosts: Vec<String> = (vs.spec.hosts.iter())
                .filter(|h| !h.is_empty())
                .map(|h| hosts::resolve(h, vs.namespace()))
                .collect();
            !intersect(&server, &vs_hosts).is_empty()
        })
        .collect()
}

/// l4SingleMatch: the match's `port` unset or the server's, its `gateways` unset or naming
/// this Gateway (resolved in the VirtualService's namespace).
fn holds(m: &L4Match, merged: &MergedServer<'_>, port: u16, vs_namespace: &str) -> bool {
    let port_ok = m.port.is_none_or(|p| p == 0 || p == u32::from(port));
    let gateway_ok = m.gateways.is_empty()
        || (m.gateways.iter())
            .any(|g| super::binding::resolve_gateway_name(g, vs_namespace) == merged.gateway);
    port_ok && gateway_ok
}

fn origin(
    vs: &Resource<VirtualServiceSpec>,
    section: &str,
    i: usize,
    merged: &MergedServer<'_>,
) -> TcpOrigin {
    TcpOrigin {
        virtual_service: Some(format!("{}.{}", vs.source.name, vs.namespace())),
        rule: Some((section.to_string(), i)),
        service: merged.gateway.clone(),
    }
}

/// buildGatewayNetworkFiltersFromTCPRoutes for one VirtualService: its first applying rule.
fn tcp_chain(
    vs: &Resource<VirtualServiceSpec>,
    merged: &MergedServer<'_>,
    port: &ServerPort<'_>,
    listener: &str,
    site: &GatewaySite<'_, '_>,
    diags: &mut Vec<Diagnostic>,
) -> Option<(TcpRoute, TcpOrigin)> {
    let mut bad = Vec::new();
    let rules: Vec<(usize, TcpRule)> = tcp_rules::parse(&vs.spec.tcp, "tcp", &mut bad);
    diags.extend(bad.into_iter().map(|d| vs.diag(d)));
    let (i, rule) = rules.into_iter().find(|(_, r)| {
        let applies = r.matches.is_empty()
            || (r.matches.iter()).any(|m| holds(m, merged, port.number, vs.namespace()));
        applies && !r.route.is_empty()
    })?;
    let at = format!("spec.tcp[{i}]");
    let (destinations, idle_timeout) =
        rule_destinations(site.catalog, vs, &at, &rule.route, port.number, diags);
    let route = TcpRoute {
        name: format!("{}.{}", vs.source.name, vs.namespace()),
        listener: Some(listener.to_string()),
        destinations,
        idle_timeout,
        ..TcpRoute::default()
    };
    Some((route, origin(vs, "tcp", i, merged)))
}

/// buildGatewayNetworkFiltersFromTLSRoutes for one VirtualService: a chain per applying match.
#[allow(clippy::too_many_arguments)]
fn tls_chains(
    vs: &Resource<VirtualServiceSpec>,
    merged: &MergedServer<'_>,
    port: &ServerPort<'_>,
    listener: &str,
    site: &GatewaySite<'_, '_>,
    sni_taken: &mut Vec<String>,
    out: &mut Vec<(TcpRoute, TcpOrigin)>,
    diags: &mut Vec<Diagnostic>,
) {
    let mut bad = Vec::new();
    let rules: Vec<(usize, TlsRule)> = tcp_rules::parse(&vs.spec.tls, "tls", &mut bad);
    diags.extend(bad.into_iter().map(|d| vs.diag(d)));
    for (i, rule) in rules {
        if rule.route.is_empty() {
            continue;
        }
        for (j, m) in rule.matches.iter().enumerate() {
            if !holds(m, merged, port.number, vs.namespace()) {
                continue;
            }
            let sni: Vec<String> = m.sni_hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
            let repeated: Vec<&String> = sni.iter().filter(|h| sni_taken.contains(h)).collect();
            if !repeated.is_empty() {
                diags.push(vs.diag(
                    Diagnostic::warning(format!(
                        "duplicate SNI host names {repeated:?} on gateway port {}; this match is skipped (as pilot)",
                        port.number
                    ))
                    .field(format!("spec.tls[{i}].match[{j}]")),
                ));
                continue;
            }
            sni_taken.extend(sni.iter().cloned());
            let at = format!("spec.tls[{i}]");
            let (destinations, idle_timeout) =
                rule_destinations(site.catalog, vs, &at, &rule.route, port.number, diags);
            let route = TcpRoute {
                name: format!("{}.{}", vs.source.name, vs.namespace()),
                listener: Some(listener.to_string()),
                sni_hosts: sni,
                destinations,
                idle_timeout,
                ..TcpRoute::default()
            };
            out.push((route, origin(vs, "tls", i, merged)));
        }
    }
}
