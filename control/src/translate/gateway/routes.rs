//! One merged gateway port → its route table: a virtual host per host that a bound
//! VirtualService and a server of the port both name, with that VirtualService's rules as they
//! apply at the Gateway (buildGatewayHTTPRouteConfig in pilot/pkg/networking/core/gateway.go).
//!
//! Unlike a sidecar's table, there are no default routes for services: a request whose host no
//! bound VirtualService serves on this port gets 404 NR, as at an Istio ingress gateway.

use std::collections::BTreeMap;

use trellis_engine::config::{
    Redirect, Route, RouteAction, RouteMatch, RouteTable, StringMatch, VirtualHost,
};
use trellis_engine::transport::policy::ServerCertificate;

use super::binding::{bound_gateways, intersect, rule_at_gateway, server_hosts_for, RuleSite};
use super::merge::{https_route_name, MergedServer, ServerPort};
use crate::diag::Diagnostic;
use crate::istio::virtual_service::HttpRoute;
use crate::istio::{Resource, VirtualServiceSpec};
use crate::translate::catalog::{AtPort, Catalog};
use crate::translate::{engine_accepts, hosts, routes, Translation, VirtualHostOrigin};

/// What every route table of one gateway proxy is built from.
pub struct GatewaySite<'c, 'a> {
    pub catalog: &'c Catalog<'a>,
    /// VirtualServices in istiod's precedence order.
    pub virtual_services: Vec<&'a Resource<VirtualServiceSpec>>,
    pub labels: &'c BTreeMap<String, String>,
    pub namespace: &'c str,
}

/// One VirtualService's routes at one Gateway, with where each came from.
#[derive(Clone, Default)]
struct VsRoutes {
    routes: Vec<Route>,
    origin: Vec<(usize, Option<String>)>,
}

/// The route table of `port`; records each virtual host's origin in `out`.
pub fn route_table(
    port: &ServerPort<'_>,
    site: &GatewaySite<'_, '_>,
    out: &mut Translation,
    diags: &mut Vec<Diagnostic>,
) -> RouteTable {
    let mut cache: BTreeMap<(String, usize), VsRoutes> = BTreeMap::new();
    // Host → (virtual host, its first VirtualService), in first-seen order.
    let mut vhosts: Vec<(VirtualHost, VirtualHostOrigin)> = Vec::new();
    // The hosts whose virtual host requires TLS (a server's `httpsRedirect`).
    let mut require_tls: Vec<String> = Vec::new();
    for merged in &port.servers {
        for (vi, vs) in site.virtual_services.iter().enumerate() {
            if !visible(vs, site.namespace)
                || !bound_gateways(&vs.spec, vs.namespace()).contains(&merged.gateway)
            {
                continue;
            }
            let server_hosts = server_hosts_for(
                &merged.server.hosts,
                merged.gateway_namespace,
                vs.namespace(),
            );
            let vs_hosts: Vec<String> = vs
                .spec
                .hosts
                .iter()
                .filter(|h| !h.is_empty())
                .map(|h| hosts::resolve(h, vs.namespace()))
                .collect();
            let shared = intersect(&server_hosts, &vs_hosts);
            if shared.is_empty() {
                continue;
            }
            let built = cache
                .entry((merged.gateway.clone(), vi))
                .or_insert_with(|| {
                    let rule_site = RuleSite {
                        gateway: &merged.gateway,
                        port: u32::from(port.number),
                        labels: site.labels,
                        namespace: site.namespace,
                    };
                    vs_routes(vs, &rule_site, site.catalog, diags)
                })
                .clone();
            if built.routes.is_empty() {
                continue;
            }
            let redirect = redirects_to_https(merged.server);
            for host in shared {
                // Virtual hosts are keyed by the lower-cased name, as pilot's vHostDedupMap.
                let host = host.to_ascii_lowercase();
                if redirect && !require_tls.contains(&host) {
                    require_tls.push(host.clone());
                }
                match vhosts
                    .iter_mut()
                    .find(|(v, _)| v.domains.first() == Some(&host))
                {
                    Some((v, origin)) => {
                        v.routes.extend(built.routes.iter().cloned());
                        origin.rule_indices.extend(built.origin.iter().map(|o| o.0));
                        origin
                            .rule_names
                            .extend(built.origin.iter().map(|o| o.1.clone()));
                    }
                    None => vhosts.push((
                        VirtualHost {
                            name: format!("{host}:{}", port.number),
                            domains: vec![host],
                            routes: built.routes.clone(),
                        },
                        VirtualHostOrigin {
                            virtual_service: Some(vs.source.clone()),
                            service: None,
                            rule_indices: built.origin.iter().map(|o| o.0).collect(),
                            rule_names: built.origin.iter().map(|o| o.1.clone()).collect(),
                        },
                    )),
                }
            }
        }
        if redirects_to_https(merged.server) {
            // Each of the server's hosts requires TLS, with a virtual host of its own when no
            // VirtualService gave it one (buildGatewayHTTPRouteConfig's second loop).
            for host in &merged.server.hosts {
                let host = host.rsplit('/').next().unwrap_or(host).to_ascii_lowercase();
                if !require_tls.contains(&host) {
                    require_tls.push(host.clone());
                }
                if vhosts.iter().any(|(v, _)| v.domains.first() == Some(&host)) {
                    continue;
                }
                vhosts.push((
                    VirtualHost {
                        name: format!("{host}:{}", port.number),
                        domains: vec![host],
                        routes: Vec::new(),
                    },
                    VirtualHostOrigin {
                        virtual_service: None,
                        service: None,
                        rule_indices: Vec::new(),
                        rule_names: Vec::new(),
                    },
                ));
            }
        }
    }
    for (vhost, origin) in &mut vhosts {
        if vhost
            .domains
            .first()
            .is_some_and(|d| require_tls.contains(d))
        {
            // Envoy answers every plain-text request of a `require_tls: ALL` host with the
            // redirect before it looks at the routes.
            let redirect = https_redirect();
            vhost.routes = redirect.routes;
            origin.rule_indices = redirect.origin.iter().map(|o| o.0).collect();
            origin.rule_names = redirect.origin.into_iter().map(|o| o.1).collect();
        }
    }
    let mut table = RouteTable {
        name: port.route_table_name(),
        validate_clusters: false,
        virtual_hosts: Vec::new(),
    };
    if vhosts.is_empty() {
        // "Empty route list will cause Envoy to 404 NR any requests".
        table.virtual_hosts.push(VirtualHost {
            name: format!("blackhole:{}", port.number),
            domains: vec!["*".to_string()],
            routes: Vec::new(),
        });
        return table;
    }
    for (mut vhost, mut origin) in vhosts {
        sort_catch_all_last(&mut vhost.routes, &mut origin);
        out.virtual_hosts
            .insert(format!("{}/{}", table.name, vhost.name), origin);
        table.virtual_hosts.push(vhost);
    }
    table
}

/// A terminated HTTPS port: one route table per route name, as pilot names its RDS
/// ([`super::merge::https_route_name`]; buildGatewayListeners gives each server its own filter
/// chain and HTTP connection manager): a protocol-HTTPS server's own, so a VirtualService bound
/// to one server's hosts is not reachable through another server's chain; servers of protocol
/// HTTP with TLS share `http.<port>`. Returns the tables and the port's certificates, each
/// naming its server's table.
pub fn https_route_tables(
    port: &ServerPort<'_>,
    site: &GatewaySite<'_, '_>,
    out: &mut Translation,
    diags: &mut Vec<Diagnostic>,
) -> (Vec<RouteTable>, Vec<ServerCertificate>) {
    debug_assert_eq!(
        port.servers.len(),
        port.certificates.len(),
        "every server of a terminated port has its certificate"
    );
    // Route name → the servers it serves, in server order.
    let mut groups: Vec<(String, Vec<MergedServer<'_>>)> = Vec::new();
    let mut certificates = port.certificates.clone();
    for (merged, certificate) in port.servers.iter().zip(certificates.iter_mut()) {
        let name = https_route_name(port.number, merged.server, &merged.gateway, &port.bind);
        certificate.route_table = Some(name.clone());
        match groups.iter_mut().find(|(n, _)| *n == name) {
            Some((_, servers)) => servers.push(merged.clone()),
            None => groups.push((name, vec![merged.clone()])),
        }
    }
    let tables = (groups.into_iter())
        .map(|(name, servers)| {
            let own = ServerPort {
                number: port.number,
                bind: port.bind.clone(),
                servers,
                mode: port.mode.clone(),
                certificates: Vec::new(),
                route_name: Some(name),
            };
            route_table(&own, site, out, diags)
        })
        .collect();
    (tables, certificates)
}

/// A plain-text server with `tls.httpsRedirect`: istiod sets `require_tls: ALL` on every
/// virtual host it touches, those a VirtualService gave its hosts and one of its own for each
/// host without (buildGatewayHTTPRouteConfig), so Envoy answers every request for them with
/// a 301 to `https://<Host><path>` instead of routing it.
fn redirects_to_https(server: &crate::istio::gateway::Server) -> bool {
    server.tls.as_ref().is_some_and(|t| t.https_redirect)
        && super::tls::mode(server) == super::tls::ServerMode::Http
}

/// The one route of a virtual host that requires TLS.
fn https_redirect() -> VsRoutes {
    VsRoutes {
        routes: vec![Route {
            name: "https-redirect".to_string(),
            action: RouteAction::Redirect(Redirect {
                status: 301,
                require_tls: true,
                ..Redirect::default()
            }),
            ..Route::default()
        }],
        origin: vec![(0, Some("tls.httpsRedirect".to_string()))],
    }
}

/// Whether a VirtualService is visible to a gateway proxy in `namespace` (its `exportTo`, as
/// initVirtualServices and VirtualServicesForGateway in pilot/pkg/model/push_context.go):
/// unset or `*` is everyone, `.` its own namespace, `~` no one.
pub(super) fn visible(vs: &Resource<VirtualServiceSpec>, namespace: &str) -> bool {
    let export = &vs.spec.export_to;
    export.is_empty()
        || export
            .iter()
            .any(|e| e == "*" || e == namespace || (e == "." && vs.namespace() == namespace))
}

/// The routes of `vs` at one Gateway: one per `match` entry that applies there (pilot builds an
/// Envoy route per match), stopping after the first catch-all (BuildHTTPRoutesForVirtualService
/// in pilot/pkg/networking/core/route/route.go).
fn vs_routes(
    vs: &Resource<VirtualServiceSpec>,
    site: &RuleSite<'_>,
    catalog: &Catalog<'_>,
    diags: &mut Vec<Diagnostic>,
) -> VsRoutes {
    let mut out = VsRoutes::default();
    let resolver = AtPort {
        catalog,
        port: None,
    };
    let mut local = Vec::new();
    'rules: for (i, rule) in vs.spec.http.iter().enumerate() {
        let Some(applied) = rule_at_gateway(rule, vs.namespace(), site) else {
            continue;
        };
        let singles: Vec<HttpRoute> = if applied.matches.is_empty() {
            vec![applied]
        } else {
            applied
                .matches
                .iter()
                .map(|m| HttpRoute {
                    matches: vec![m.clone()],
                    ..applied.clone()
                })
                .collect()
        };
        for single in &singles {
            let mut found = Vec::new();
            let route = routes::translate_rule(
                &vs.source.name,
                vs.namespace(),
                i,
                single,
                &resolver,
                &mut found,
            );
            for d in found {
                if !local.contains(&d) {
                    local.push(d);
                }
            }
            let Some(route) = route else { continue };
            if let Err(e) = engine_accepts(&route) {
                local.push(
                    Diagnostic::error(format!("rule left out: the router rejects it: {e}"))
                        .field(format!("spec.http[{i}]")),
                );
                continue;
            }
            let catch_all = is_catch_all(&route);
            out.routes.push(route);
            out.origin.push((i, rule.name.clone()));
            if catch_all {
                break 'rules;
            }
        }
    }
    diags.extend(local.into_iter().map(|d| vs.diag(d)));
    out
}

/// A route that matches every request: no condition but a `/` prefix or `.*` regex on the path
/// (IsCatchAllRoute in pilot/pkg/networking/core/route/route.go; method, authority and scheme
/// are header matches in Envoy).
fn is_catch_all(route: &Route) -> bool {
    let catch_all = |m: &RouteMatch| {
        let path = match &m.uri {
            None => true,
            Some(StringMatch::Prefix(p)) => p == "/",
            Some(StringMatch::Regex(r)) => r == ".*",
            Some(StringMatch::Exact(_)) => false,
        };
        path && m.headers.is_empty()
            && m.without_headers.is_empty()
            && m.query_params.is_empty()
            && m.method.is_none()
            && m.authority.is_none()
            && m.scheme.is_none()
    };
    route.matches.is_empty() || route.matches.iter().any(catch_all)
}

/// Catch-all routes after the others, each group in its order (SortVHostRoutes in
/// pilot/pkg/networking/core/route/route.go): when two VirtualServices share a host, the
/// first's catch-all does not hide the second's specific rules.
fn sort_catch_all_last(routes: &mut Vec<Route>, origin: &mut VirtualHostOrigin) {
    let mut rest = Vec::new();
    let mut last = Vec::new();
    let rows = routes
        .drain(..)
        .zip(origin.rule_indices.drain(..))
        .zip(origin.rule_names.drain(..));
    for row in rows {
        if is_catch_all(&row.0 .0) {
            last.push(row);
        } else {
            rest.push(row);
        }
    }
    for ((route, index), name) in rest.into_iter().chain(last) {
        routes.push(route);
        origin.rule_indices.push(index);
        origin.rule_names.push(name);
    }
}
