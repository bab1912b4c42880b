//! A sidecar's L4 filter chains: for each TCP or TLS port of each service, the VirtualService
//! `tcp[]`/`tls[]` rules that apply to it, else the service's own cluster, as pilot builds
//! them (buildSidecarOutboundTCPFilterChainOpts and buildSidecarOutboundTLSFilterChainOpts in
//! pilot/pkg/networking/core/tls.go; destinations and idle timeout from
//! buildOutboundNetworkFilters in networkfilter.go).
//!
//! What pilot decides per proxy is decided here (matchTCP/matchTLS: `sourceLabels`,
//! `sourceNamespace`, `gateways`, `port` against the service port); what Envoy decides per
//! connection goes into each [`TcpRoute`] (destination port and subnets, SNI). Trellis's
//! registry has no service VIPs, so a service's own chain matches its port alone (and, for
//! TLS, its host name as SNI, as pilot does for a service without an address); two TCP
//! services on one port share it and the first keeps it (reported).

use std::time::Duration;

use trellis_engine::config::{Cidr, TcpDestination, TcpRoute, DEFAULT_TCP_IDLE_TIMEOUT};

use super::catalog::{cluster_name, Catalog};
use super::client::MESH_GATEWAY;
use super::registry::Service;
use super::tcp_rules::{self, l4_of, L4Match, RouteDestination, TcpRule, TlsRule, L4};
use super::workload::Workload;
use crate::diag::Diagnostic;
use crate::istio::{Resource, VirtualServiceSpec};

/// Where a chain came from, for `explain`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TcpOrigin {
    /// `<name>.<namespace>` of the VirtualService, `None` for a service's own chain.
    pub virtual_service: Option<String>,
    /// `tcp` or `tls`, and the rule's index.
    pub rule: Option<(String, usize)>,
    pub service: String,
}

/// The chains of every TCP/TLS service port, for a sidecar of `workload` that sees
/// `visible` (in istiod's order), with where each came from.
pub fn sidecar_tcp_routes(
    visible: &[&Resource<VirtualServiceSpec>],
    catalog: &Catalog<'_>,
    workload: &Workload,
    diags: &mut Vec<Diagnostic>,
) -> Vec<(TcpRoute, TcpOrigin)> {
    // Rules of the VirtualServices bound to sidecars, parsed once.
    let mut parsed = Vec::new();
    for vs in visible {
        if !vs.spec.gateways.is_empty() && !vs.spec.gateways.iter().any(|g| g == MESH_GATEWAY) {
            continue;
        }
        let mut bad = Vec::new();
        let tcp: Vec<(usize, TcpRule)> = tcp_rules::parse(&vs.spec.tcp, "tcp", &mut bad);
        let tls: Vec<(usize, TlsRule)> = tcp_rules::parse(&vs.spec.tls, "tls", &mut bad);
        diags.extend(bad.into_iter().map(|d| vs.diag(d)));
        parsed.push((*vs, tcp, tls));
    }
    let mut out: Vec<(TcpRoute, TcpOrigin)> = Vec::new();
    for svc in &catalog.services {
        for port in &svc.ports {
            let Some(kind) = l4_of(port) else {
                continue;
            };
            let configs: Vec<_> = parsed
                .iter()
                .filter(|(vs, _, _)| {
                    vs.spec.hosts.iter().any(|h| {
                        super::hosts::host_covers(
                            &super::hosts::resolve(h, vs.namespace()),
                            &svc.host,
                        )
                    })
                })
                .collect();
            let ctx = Ctx {
                catalog,
                svc,
                port: port.number,
                workload,
            };
            let chains = match kind {
                L4::Tcp => tcp_chains(&ctx, &configs, diags),
                L4::Tls => tls_chains(&ctx, &configs, diags),
            };
            for (route, origin) in chains {
                let shadowed = out.iter().any(|(r, o)| {
                    r.port == route.port
                        && r.destination_subnets == route.destination_subnets
                        && r.sni_hosts == route.sni_hosts
                        && o.service != origin.service
                });
                if shadowed {
                    diags.push(Diagnostic::info(format!(
                        "port {} of {} is proxied at L4 by another service's chain with the same match (no service addresses to tell them apart); this one is left out",
                        port.number, origin.service
                    )));
                    continue;
                }
                out.push((route, origin));
            }
        }
    }
    out
}

struct Ctx<'c, 'a> {
    catalog: &'c Catalog<'a>,
    svc: &'c Service,
    port: u16,
    workload: &'c Workload,
}

type Parsed<'a> = (
    &'a Resource<VirtualServiceSpec>,
    Vec<(usize, TcpRule)>,
    Vec<(usize, TlsRule)>,
);

/// matchTCP / matchTLS: the static part of a match, for this sidecar on the service port.
fn applies(m: &L4Match, ctx: &Ctx<'_, '_>) -> bool {
    let gateway = m.gateways.is_empty() || m.gateways.iter().any(|g| g == MESH_GATEWAY);
    let labels = ctx.workload.matches_labels(&m.source_labels);
    let port = m.port.is_none_or(|p| p == 0 || p == u32::from(ctx.port));
    let namespace = m
        .source_namespace
        .as_deref()
        .is_none_or(|ns| ns.is_empty() || ns == ctx.workload.namespace);
    gateway && labels && port && namespace
}

/// buildSidecarOutboundTCPFilterChainOpts: rules in order; the first match with no
/// destination subnets (or a rule with no match) is the catch-all and ends the list; matches
/// with subnets only make chains for those subnets; no catch-all: the service's own cluster.
fn tcp_chains(
    ctx: &Ctx<'_, '_>,
    configs: &[&Parsed<'_>],
    diags: &mut Vec<Diagnostic>,
) -> Vec<(TcpRoute, TcpOrigin)> {
    let mut out = Vec::new();
    for (vs, tcp, _) in configs {
        for (i, rule) in tcp {
            if rule.route.is_empty() {
                continue;
            }
            let at = format!("spec.tcp[{i}]");
            let origin = TcpOrigin {
                virtual_service: Some(format!("{}.{}", vs.source.name, vs.namespace())),
                rule: Some(("tcp".into(), *i)),
                service: ctx.svc.host.clone(),
            };
            let mut subnets = Vec::new();
            let mut terminal = rule.matches.is_empty();
            for (j, m) in rule.matches.iter().enumerate() {
                if !applies(m, ctx) {
                    continue;
                }
                if m.destination_subnets.is_empty() {
                    terminal = true;
                    break;
                }
                subnets.extend(cidrs(
                    &m.destination_subnets,
                    &format!("{at}.match[{j}]"),
                    vs,
                    diags,
                ));
            }
            if terminal {
                let route = chain(ctx, vs, &at, &rule.route, Vec::new(), Vec::new(), diags);
                out.push((route, origin));
                return out;
            }
            if !subnets.is_empty() {
                let route = chain(ctx, vs, &at, &rule.route, subnets, Vec::new(), diags);
                out.push((route, origin));
            }
        }
    }
    out.push(default_chain(ctx, Vec::new()));
    out
}

/// buildSidecarOutboundTLSFilterChainOpts: a chain per applying match (its `sniHosts` and
/// subnets), each runtime predicate set once; none at all: the service's own cluster for its
/// host name as SNI.
fn tls_chains(
    ctx: &Ctx<'_, '_>,
    configs: &[&Parsed<'_>],
    diags: &mut Vec<Diagnostic>,
) -> Vec<(TcpRoute, TcpOrigin)> {
    let mut out = Vec::new();
    let mut handled: Vec<(Vec<String>, Vec<String>)> = Vec::new();
    for (vs, _, tls) in configs {
        for (i, rule) in tls {
            if rule.route.is_empty() {
                continue;
            }
            for (j, m) in rule.matches.iter().enumerate() {
                if !applies(m, ctx) {
                    continue;
                }
                let key = (m.sni_hosts.clone(), m.destination_subnets.clone());
                if handled.contains(&key) {
                    continue;
                }
                handled.push(key);
                let at = format!("spec.tls[{i}]");
                let subnets = cidrs(
                    &m.destination_subnets,
                    &format!("{at}.match[{j}]"),
                    vs,
                    diags,
                );
                let sni = m.sni_hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
                let route = chain(ctx, vs, &at, &rule.route, subnets, sni, diags);
                let origin = TcpOrigin {
                    virtual_service: Some(format!("{}.{}", vs.source.name, vs.namespace())),
                    rule: Some(("tls".into(), *i)),
                    service: ctx.svc.host.clone(),
                };
                out.push((route, origin));
            }
        }
    }
    if handled.is_empty() {
        out.push(default_chain(ctx, vec![ctx.svc.host.clone()]));
    }
    out
}

/// The service's own chain: its cluster (on its only port, else this one), no rule.
fn default_chain(ctx: &Ctx<'_, '_>, sni_hosts: Vec<String>) -> (TcpRoute, TcpOrigin) {
    let port = match ctx.svc.ports.as_slice() {
        [only] => only.number,
        _ => ctx.port,
    };
    let cluster = cluster_name(&ctx.svc.host, port, None);
    let route = TcpRoute {
        name: cluster.clone(),
        listener: None,
        port: Some(ctx.port),
        destination_subnets: Vec::new(),
        sni_hosts,
        application_protocols: Vec::new(),
        source_labels: Default::default(),
        destinations: vec![TcpDestination {
            cluster,
            weight: 100,
        }],
        idle_timeout: idle_timeout(ctx.catalog, &ctx.svc.host),
        authorization: None,
        passthrough: false,
        terminated: false,
    };
    let origin = TcpOrigin {
        virtual_service: None,
        rule: None,
        service: ctx.svc.host.clone(),
    };
    (route, origin)
}

/// A rule's chain: its destinations resolved at the service port (GetDestinationCluster), the
/// weight-0 ones left out when there are several. One left with none still takes its
/// connections, as pilot's chain to a missing cluster does: they are closed (UH).
fn chain(
    ctx: &Ctx<'_, '_>,
    vs: &Resource<VirtualServiceSpec>,
    at: &str,
    route: &[RouteDestination],
    subnets: Vec<Cidr>,
    sni_hosts: Vec<String>,
    diags: &mut Vec<Diagnostic>,
) -> TcpRoute {
    let (destinations, idle_timeout) =
        rule_destinations(ctx.catalog, vs, at, route, ctx.port, diags);
    TcpRoute {
        name: format!("{}.{}", vs.source.name, vs.namespace()),
        listener: None,
        port: Some(ctx.port),
        destination_subnets: subnets,
        sni_hosts,
        application_protocols: Vec::new(),
        source_labels: Default::default(),
        destinations,
        idle_timeout,
        authorization: None,
        passthrough: false,
        terminated: false,
    }
}

/// A `tcp`/`tls` rule's `route[]` (never empty) as a chain's destinations, resolved at `port`
/// (GetDestinationCluster), and the chain's idle timeout (buildOutboundNetworkFilters in
/// pilot/pkg/networking/core/networkfilter.go; a gateway's chains too).
pub(crate) fn rule_destinations(
    catalog: &Catalog<'_>,
    vs: &Resource<VirtualServiceSpec>,
    at: &str,
    route: &[RouteDestination],
    port: u16,
    diags: &mut Vec<Diagnostic>,
) -> (Vec<TcpDestination>, Option<Duration>) {
    debug_assert!(!route.is_empty(), "{at}: callers skip rules without routes");
    let ns = vs.namespace();
    let mut local = Vec::new();
    let mut destinations = Vec::new();
    for (k, d) in route.iter().enumerate() {
        let weight = d.weight.unwrap_or(0).max(0) as u32;
        if route.len() > 1 && weight == 0 {
            continue;
        }
        let field = format!("{at}.route[{k}].destination");
        if let Ok(cluster) = catalog.cluster_at(&d.destination, ns, &field, Some(port), &mut local)
        {
            destinations.push(TcpDestination {
                cluster,
                weight: if route.len() == 1 { 100 } else { weight },
            });
        }
    }
    for d in local {
        let d = vs.diag(d);
        if !diags.contains(&d) {
            diags.push(d);
        }
    }
    // pilot takes the idle timeout from the first destination's DestinationRule.
    let idle = route
        .first()
        .map_or(Some(DEFAULT_TCP_IDLE_TIMEOUT), |first| {
            idle_timeout(catalog, &super::hosts::resolve(&first.destination.host, ns))
        });
    (destinations, idle)
}

/// `connectionPool.tcp.idleTimeout` of `host`'s DestinationRule (its top-level policy, as
/// buildOutboundNetworkFiltersWithSingleDestination reads it); 0 disables; unset: Envoy's 1 h.
fn idle_timeout(catalog: &Catalog<'_>, host: &str) -> Option<Duration> {
    let set = catalog
        .rule_for(host)
        .and_then(|r| r.spec.traffic_policy.as_ref())
        .and_then(|p| p.connection_pool.as_ref())
        .and_then(|c| c.tcp.as_ref())
        .and_then(|t| t.idle_timeout);
    match set {
        Some(t) if t.0.is_zero() => None,
        Some(t) => Some(t.0),
        None => Some(DEFAULT_TCP_IDLE_TIMEOUT),
    }
}

fn cidrs(
    subnets: &[String],
    at: &str,
    vs: &Resource<VirtualServiceSpec>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Cidr> {
    let mut out = Vec::new();
    for (k, s) in subnets.iter().enumerate() {
        match Cidr::parse(s) {
            Some(c) => out.push(c),
            None => diags.push(
                vs.diag(
                    Diagnostic::error(format!("{s:?} is not an IP or CIDR; ignored"))
                        .field(format!("{at}.destinationSubnets[{k}]")),
                ),
            ),
        }
    }
    out
}

#[cfg(test)]
#[path = "tcp_tests.rs"]
mod tests;
