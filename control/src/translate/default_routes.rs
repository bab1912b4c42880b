//! Routes for services no VirtualService routes: a service's default route (pilot's
//! `BuildDefaultHTTPOutboundRoute`, per port when it has several), the virtual hosts of
//! services no VirtualService covers, and the fallback routes a VirtualService's virtual host
//! keeps for requests none of its rules applies to.

use std::collections::BTreeSet;

use trellis_engine::config::{
    RetryPolicy, Route, RouteAction, RouteMatch, RouteTable, StringMatch, VirtualHost,
    WeightedCluster,
};

use super::{cluster_name, hosts, Catalog, Service, Translation, VirtualHostOrigin};

/// The ports of the services a VirtualService's hosts cover, in order: the listener ports
/// istiod builds its routes for.
pub fn covered_ports(
    catalog: &Catalog<'_>,
    spec: &crate::istio::VirtualServiceSpec,
    namespace: &str,
) -> Vec<u16> {
    let mut out = Vec::new();
    for host in spec.hosts.iter().filter(|h| !h.is_empty()) {
        let fqdn = hosts::resolve(host, namespace);
        for svc in catalog
            .services
            .iter()
            .filter(|s| hosts::host_covers(&fqdn, &s.host))
        {
            for p in &svc.ports {
                if !out.contains(&p.number) {
                    out.push(p.number);
                }
            }
        }
    }
    out
}

/// A virtual host per service that no VirtualService covers: every request to it goes to its
/// cluster for the request's port (the first port when the port is not one of them).
pub fn build_default_hosts(
    catalog: &Catalog<'_>,
    covered: &BTreeSet<String>,
    client_ns: &str,
    table: &mut RouteTable,
    out: &mut Translation,
) {
    let mut taken: BTreeSet<String> = table
        .virtual_hosts
        .iter()
        .flat_map(|v| v.domains.iter().cloned())
        .collect();
    for svc in &catalog.services {
        if covered.contains(&svc.host) || svc.ports.is_empty() {
            continue;
        }
        let numbers: Vec<u16> = svc.ports.iter().map(|p| p.number).collect();
        let routes = default_routes(svc);
        let domains: Vec<String> = hosts::domains(&svc.host, &numbers, client_ns)
            .into_iter()
            .filter(|d| taken.insert(d.clone()))
            .collect();
        out.virtual_hosts.insert(
            svc.host.clone(),
            VirtualHostOrigin {
                virtual_service: None,
                service: Some(svc.host.clone()),
                rule_indices: (0..routes.len()).collect(),
                rule_names: vec![None; routes.len()],
            },
        );
        table.virtual_hosts.push(VirtualHost {
            name: svc.host.clone(),
            domains,
            routes,
        });
    }
}

/// A service's default routes: to its cluster for the request's port (the first port when the
/// port is not one of them), as pilot's BuildDefaultHTTPOutboundRoute with the default retry
/// policy.
pub fn default_routes(svc: &Service) -> Vec<Route> {
    let route_to = |port: u16, matches: Vec<RouteMatch>| Route {
        name: format!("{}#default", svc.host),
        matches,
        action: RouteAction::Forward(vec![WeightedCluster {
            cluster: cluster_name(&svc.host, port, None),
            weight: 100,
            ..WeightedCluster::default()
        }]),
        retries: RetryPolicy::default(),
        ..Route::default()
    };
    let mut routes = Vec::new();
    if svc.ports.len() > 1 {
        for p in &svc.ports {
            routes.push(route_to(
                p.number,
                vec![RouteMatch {
                    port: Some(p.number),
                    ..RouteMatch::default()
                }],
            ));
        }
    }
    if let Some(first) = svc.ports.first() {
        routes.push(route_to(first.number, Vec::new()));
    }
    routes
}

/// The routes a VirtualService's virtual host falls back to when none of its rules applies to
/// the request's port and client (`Route::fallback`): the default routes of the services its
/// hosts cover, each held to its service's authorities when it covers several.
pub fn fallback_routes(covered: &[&Service], client_ns: &str) -> Vec<Route> {
    let mut out = Vec::new();
    for svc in covered {
        let authority = (covered.len() > 1).then(|| {
            let ports: Vec<u16> = svc.ports.iter().map(|p| p.number).collect();
            let names: Vec<String> = hosts::domains(&svc.host, &ports, client_ns)
                .iter()
                .map(|d| regex::escape(d))
                .collect();
            StringMatch::Regex(names.join("|"))
        });
        for mut route in default_routes(svc) {
            route.fallback = true;
            if let Some(a) = &authority {
                if route.matches.is_empty() {
                    route.matches.push(RouteMatch::default());
                }
                for m in &mut route.matches {
                    m.authority = Some(a.clone());
                }
            }
            out.push(route);
        }
    }
    out
}
