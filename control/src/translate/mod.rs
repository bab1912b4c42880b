//! Istio resources + a service registry → one engine [`Config`] snapshot.
//!
//! The shape is what istiod sends a sidecar, flattened:
//! - a [`Cluster`] per (service host, port) and per (host, port, subset), named like Envoy's
//!   `outbound|9080|v1|reviews.default.svc.cluster.local`, with the subset's endpoints and the
//!   DestinationRule policy merged in istiod's order (see [`policy`]);
//! - one route table, [`OUTBOUND_ROUTE_TABLE`], with a virtual host per VirtualService that
//!   applies to the mesh (domains: every spelling of its hosts) and a default virtual host per
//!   service no VirtualService covers.
//!
//! Problems never stop translation: they become [`Diagnostic`]s next to the result, and the
//! rest of the configuration is still produced. [`Translation`] also records where each virtual
//! host and cluster came from, which `explain` shows.

pub mod authz;
pub mod catalog;
pub mod client;
pub mod consistent_hash;
pub mod cors;
pub mod default_routes;
pub mod delegation;
pub mod fault;
pub mod gateway;
pub mod hosts;
pub mod inbound_capture;
pub mod inbound_protocols;
pub mod locality;
pub mod matches;
pub mod mirrors;
pub mod outbound_capture;
pub mod peer_authn;
pub mod policy;
pub mod ports;
pub mod registry;
pub mod request_authn;
pub mod routes;
pub mod tcp;
pub mod tcp_rules;
pub mod upstream_tls;
pub mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

use serde::Serialize;
use trellis_engine::config::{Cluster, Config, Endpoint, Route, RouteTable, VirtualHost};

pub use authz::{authorization_for, tcp_authorization_for, AuthzTranslation};
pub use catalog::{cluster_name, Catalog};
use default_routes::{build_default_hosts, covered_ports, fallback_routes};
pub use gateway::{translate_gateway, GatewayOptions};
pub use policy::EffectivePolicy;
pub use registry::{Registry, Service, ServiceEndpoint, ServicePort};
pub use request_authn::{authentication_for, AuthnTranslation};
pub use workload::Workload;

use crate::diag::Diagnostic;
use crate::istio::destination_rule::{Subset, TlsMode};
use crate::istio::{ResourceSet, Source};

/// The route table every translated snapshot has.
pub const OUTBOUND_ROUTE_TABLE: &str = "outbound";

/// Where a virtual host came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VirtualHostOrigin {
    /// The VirtualService, or `None` for a service's default virtual host.
    pub virtual_service: Option<Source>,
    /// For a default virtual host, the service host.
    pub service: Option<String>,
    /// For each route of the virtual host, the index of the `http[]` rule it came from.
    pub rule_indices: Vec<usize>,
    /// For each route, the rule's `name` if it has one.
    pub rule_names: Vec<Option<String>>,
}

/// Where a cluster came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClusterOrigin {
    pub host: String,
    pub port: u16,
    pub subset: Option<String>,
    /// The DestinationRule whose policy applies.
    pub destination_rule: Option<Source>,
    /// The subset's label selector.
    pub subset_labels: BTreeMap<String, String>,
    /// DestinationRule `tls.mode` (`None` = unset: Istio's auto mTLS).
    pub tls_mode: Option<TlsMode>,
}

/// The result of translation.
#[derive(Clone, Debug, PartialEq)]
pub struct Translation {
    pub config: Config,
    /// Everything the loader and the translator noticed, in order.
    pub diagnostics: Vec<Diagnostic>,
    /// Virtual host name → origin.
    pub virtual_hosts: BTreeMap<String, VirtualHostOrigin>,
    /// Cluster name → origin.
    pub clusters: BTreeMap<String, ClusterOrigin>,
    /// Parallel to `config.tcp_routes`: where each L4 chain came from.
    pub tcp_routes: Vec<tcp::TcpOrigin>,
    /// A sidecar's: the protocol of each port its services have, for its outbound capture
    /// listener ([`outbound_capture`]); empty for a gateway.
    pub outbound_ports: BTreeMap<u16, trellis_engine::config::PortProtocol>,
}

/// Translate `resources` against `registry` for a sidecar of the default workload (namespace
/// `default`, no labels): see [`translate_for`].
pub fn translate(resources: &ResourceSet, registry: &Registry) -> Translation {
    translate_for(resources, registry, &Workload::default())
}

/// Translate `resources` against `registry` for the sidecar of `workload`, as istiod generates
/// one sidecar's config: the VirtualServices exported to its namespace, the `match` entries
/// whose `sourceLabels`/`sourceNamespace` hold for it, and the short host names its namespace
/// resolves (see [`client`] and [`hosts::domains`]).
pub fn translate_for(
    resources: &ResourceSet,
    registry: &Registry,
    workload: &Workload,
) -> Translation {
    let place = ProxyPlace::of(&workload.labels, workload.locality.as_deref());
    let (catalog, mut out, mut diags) = with_clusters(resources, registry, &place);
    let mut table = RouteTable {
        name: OUTBOUND_ROUTE_TABLE.to_string(),
        validate_clusters: false,
        virtual_hosts: Vec::new(),
    };
    let virtual_services = delegation::merge_delegates(&resources.virtual_services, &mut diags);
    let covered = build_virtual_service_hosts(
        &virtual_services,
        &catalog,
        workload,
        &mut table,
        &mut out,
        &mut diags,
    );
    build_default_hosts(
        &catalog,
        &covered,
        &workload.namespace,
        &mut table,
        &mut out,
    );
    out.config.route_tables.push(table);
    out.outbound_ports = outbound_capture::outbound_ports(&catalog.services);
    // L4: the TCP and TLS ports of every service, by the `tcp`/`tls` rules that apply.
    let ordered = precedence_order(&virtual_services);
    let visible = client::visible_in(&ordered, &workload.namespace);
    for (route, origin) in tcp::sidecar_tcp_routes(&visible, &catalog, workload, &mut diags) {
        out.config.tcp_routes.push(route);
        out.tcp_routes.push(origin);
    }
    for gw in &resources.gateways {
        diags.push(gw.diag(Diagnostic::info(
            "Gateways are served by a gateway proxy (`trellis proxy --gateway`), not by a sidecar",
        )));
    }
    for sc in &resources.sidecars {
        diags.push(sc.diag(Diagnostic::warning(
            "Sidecar scoping is not implemented; every service is visible",
        )));
    }
    out.config.version = version_of(&out.config);
    out.diagnostics = diags;
    out
}

/// What a sidecar and a gateway proxy share: the catalog, and a translation holding every
/// cluster, with the diagnostics so far.
fn with_clusters<'a>(
    resources: &'a ResourceSet,
    registry: &Registry,
    place: &ProxyPlace,
) -> (Catalog<'a>, Translation, Vec<Diagnostic>) {
    let mut diags = resources.diagnostics.clone();
    let catalog = Catalog::new(resources, registry, &mut diags);
    let mut out = Translation {
        config: Config::default(),
        diagnostics: Vec::new(),
        virtual_hosts: BTreeMap::new(),
        clusters: BTreeMap::new(),
        tcp_routes: Vec::new(),
        outbound_ports: BTreeMap::new(),
    };
    build_clusters(resources, &catalog, place, &mut out, &mut diags);
    (catalog, out, diags)
}

/// Where the proxy a translation is for runs: its locality and its labels with the topology
/// labels pilot adds (`AugmentLabels`), for locality load balancing.
pub(crate) struct ProxyPlace {
    locality: locality::Locality,
    labels: BTreeMap<String, String>,
}

impl ProxyPlace {
    /// From the proxy's labels and its configured locality (which wins over the labels').
    pub(crate) fn of(labels: &BTreeMap<String, String>, configured: Option<&str>) -> Self {
        let text = configured
            .map(str::to_string)
            .or_else(|| locality::locality_from_labels(labels))
            .unwrap_or_default();
        let locality = locality::Locality::parse(&text);
        ProxyPlace {
            labels: locality::augmented_labels(labels, &locality),
            locality,
        }
    }
}

fn build_clusters(
    resources: &ResourceSet,
    catalog: &Catalog<'_>,
    place: &ProxyPlace,
    out: &mut Translation,
    diags: &mut Vec<Diagnostic>,
) {
    for svc in &catalog.services {
        let rule = catalog.rule_for(&svc.host);
        let accounts = upstream_tls::service_accounts(&svc.endpoints, &svc.namespace);
        for port in &svc.ports {
            let mut variants: Vec<Option<(usize, &Subset)>> = vec![None];
            if let Some(rule) = rule {
                let mut seen = BTreeSet::new();
                for (i, s) in rule.spec.subsets.iter().enumerate() {
                    if seen.insert(s.name.as_str()) {
                        variants.push(Some((i, s)));
                    }
                }
            }
            for subset in variants {
                let mut local = Vec::new();
                let policy = policy::effective_policy(
                    rule.map(|r| &r.spec),
                    port.number,
                    subset,
                    &mut local,
                );
                // Translated as if the proxy has a mesh identity, as every Istio sidecar
                // does; a proxy without one turns auto mTLS off (see `without_identity`).
                let destination = upstream_tls::Destination {
                    host: &svc.host,
                    namespace: &svc.namespace,
                    service_accounts: &accounts,
                };
                let tls = upstream_tls::upstream_tls(
                    policy.tls.as_ref(),
                    &destination,
                    resources,
                    true,
                    &mut local,
                );
                if let Some(rule) = rule {
                    // Report each unsupported setting once per rule, not once per cluster.
                    for d in local {
                        let d = rule.diag(d);
                        if !diags.contains(&d) {
                            diags.push(d);
                        }
                    }
                }
                let selector = subset.map(|(_, s)| s.labels.clone()).unwrap_or_default();
                let selected: Vec<&ServiceEndpoint> = svc
                    .endpoints
                    .iter()
                    .filter(|e| e.selected_by(&selector))
                    .collect();
                let sites: Vec<locality::EndpointSite<'_>> = selected
                    .iter()
                    .map(|e| locality::EndpointSite {
                        locality: e.locality.as_deref(),
                        labels: &e.labels,
                        weight: e.weight,
                    })
                    .collect();
                let proxy = locality::ProxySite {
                    locality: place.locality.clone(),
                    labels: &place.labels,
                };
                let layout = locality::layout(
                    policy.locality.as_ref(),
                    policy.outlier.is_some(),
                    &proxy,
                    &sites,
                );
                let endpoints = selected
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| layout.as_ref().is_none_or(|l| l.keep[*i]))
                    .map(|(_, e)| Endpoint {
                        sidecar: upstream_tls::endpoint_has_sidecar(&e.labels),
                        address: std::net::SocketAddr::new(e.address, e.target_port(port.number)),
                        weight: e.weight.max(1),
                        labels: e.labels.clone(),
                    })
                    .collect();
                let subset_name = subset.map(|(_, s)| s.name.clone());
                let name = cluster_name(&svc.host, port.number, subset_name.as_deref());
                out.clusters.insert(
                    name.clone(),
                    ClusterOrigin {
                        host: svc.host.clone(),
                        port: port.number,
                        subset: subset_name.clone(),
                        destination_rule: rule.map(|r| r.source.clone()),
                        subset_labels: selector,
                        tls_mode: policy.tls_mode,
                    },
                );
                out.config.clusters.push(Cluster {
                    tls,
                    name,
                    service: svc.host.clone(),
                    subset: subset_name,
                    endpoints,
                    lb: policy.lb,
                    hash_key: policy.hash_key,
                    outlier: policy.outlier,
                    pool: policy.pool,
                    locality: layout.map(|l| l.lb),
                });
            }
        }
    }
}

/// Adds a virtual host per mesh VirtualService; returns the service hosts they cover.
fn build_virtual_service_hosts(
    virtual_services: &[crate::istio::Resource<crate::istio::VirtualServiceSpec>],
    catalog: &Catalog<'_>,
    workload: &Workload,
    table: &mut RouteTable,
    out: &mut Translation,
    diags: &mut Vec<Diagnostic>,
) -> BTreeSet<String> {
    let mut claimed: BTreeMap<String, String> = BTreeMap::new();
    let mut covered = BTreeSet::new();
    let client_ns = workload.namespace.as_str();
    let ordered = precedence_order(virtual_services);
    let visible = client::visible_in(&ordered, client_ns);
    for vs in ordered
        .iter()
        .filter(|v| !visible.iter().any(|w| std::ptr::eq(**v, *w)))
    {
        diags.push(vs.diag(Diagnostic::info(format!(
            "not exported to namespace {client_ns:?} (exportTo); not in this sidecar's route table"
        ))));
    }
    for vs in visible {
        let spec = &vs.spec;
        if !spec.gateways.is_empty() && !spec.gateways.iter().any(|g| g == client::MESH_GATEWAY) {
            diags.push(vs.diag(Diagnostic::info(
                "bound to gateways only (no `mesh` in spec.gateways); not in the sidecar route table",
            )));
            continue;
        }
        // The rules as they apply to this client; a VirtualService left with none gives this
        // sidecar no virtual host, so its hosts get their default routes or another
        // VirtualService's (buildSidecarVirtualHostsForVirtualService returns nothing when
        // BuildHTTPRoutesForVirtualService finds no route).
        let rules: Vec<(usize, crate::istio::virtual_service::HttpRoute)> = spec
            .http
            .iter()
            .enumerate()
            .filter_map(|(i, r)| client::rule_for_client(r, workload).map(|r| (i, r)))
            .collect();
        if rules.is_empty() && !spec.http.is_empty() {
            diags.push(vs.diag(Diagnostic::info(format!(
                "no rule applies to this sidecar's workload (namespace {client_ns:?}; sourceLabels, sourceNamespace, gateways); not in its route table"
            ))));
            continue;
        }
        let name = format!("{}.{}", vs.source.name, vs.namespace());
        let mut domains = Vec::new();
        for (i, host) in spec.hosts.iter().enumerate() {
            if host.is_empty() {
                diags.push(
                    vs.diag(Diagnostic::error("empty host").field(format!("spec.hosts[{i}]"))),
                );
                continue;
            }
            let fqdn = hosts::resolve(host, vs.namespace());
            let ports: Vec<u16> = catalog
                .service(&fqdn)
                .map(|s| s.ports.iter().map(|p| p.number).collect())
                .unwrap_or_default();
            for svc in &catalog.services {
                if hosts::host_covers(&fqdn, &svc.host) {
                    covered.insert(svc.host.clone());
                }
            }
            for d in hosts::domains(&fqdn, &ports, client_ns) {
                match claimed.get(&d) {
                    Some(owner) if owner != &name => {
                        diags.push(vs.diag(
                            Diagnostic::warning(format!("domain {d:?} is already routed by VirtualService {owner}; ignored here"))
                                .field(format!("spec.hosts[{i}]")),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        claimed.insert(d.clone(), name.clone());
                        domains.push(d);
                    }
                }
            }
        }
        if domains.is_empty() {
            continue;
        }
        let mut local = Vec::new();
        let mut routes = Vec::new();
        let mut origin = VirtualHostOrigin {
            virtual_service: Some(vs.source.clone()),
            service: None,
            rule_indices: Vec::new(),
            rule_names: Vec::new(),
        };
        let listener_ports = covered_ports(catalog, spec, vs.namespace());
        for (i, rule) in &rules {
            let (i, rule) = (*i, rule);
            let copies = ports::per_port_copies(
                (&vs.source.name, vs.namespace()),
                i,
                rule,
                catalog,
                &listener_ports,
            );
            for route in copies.into_iter().filter(|r| engine_accepts(r).is_ok()) {
                routes.push(route);
                origin.rule_indices.push(i);
                origin.rule_names.push(rule.name.clone());
            }
            if let Some(route) = routes::translate_rule(
                &vs.source.name,
                vs.namespace(),
                i,
                rule,
                &catalog::AtPort {
                    catalog,
                    port: None,
                },
                &mut local,
            ) {
                if let Err(e) = engine_accepts(&route) {
                    local.push(
                        Diagnostic::error(format!("rule left out: the router rejects it: {e}"))
                            .field(format!("spec.http[{i}]")),
                    );
                    continue;
                }
                routes.push(route);
                origin.rule_indices.push(i);
                origin.rule_names.push(rule.name.clone());
            }
        }
        let mine: Vec<&Service> = catalog
            .services
            .iter()
            .filter(|s| {
                spec.hosts
                    .iter()
                    .filter(|h| !h.is_empty())
                    .any(|h| hosts::host_covers(&hosts::resolve(h, vs.namespace()), &s.host))
            })
            .collect();
        // A rule that applies on every port and to every client hides any fallback.
        let always_applies = routes.iter().any(|r| {
            r.matches.is_empty()
                || r.matches
                    .iter()
                    .any(|m| m.port.is_none() && m.source_labels.is_empty())
        });
        let fallback = if always_applies {
            Vec::new()
        } else {
            fallback_routes(&mine, client_ns)
        };
        for route in fallback {
            // Reported one past the last rule: it comes from no rule of the VirtualService.
            origin.rule_indices.push(spec.http.len());
            origin.rule_names.push(Some(route.name.clone()));
            routes.push(route);
        }
        diags.extend(local.into_iter().map(|d| vs.diag(d)));
        out.virtual_hosts.insert(name.clone(), origin);
        table.virtual_hosts.push(VirtualHost {
            name,
            domains,
            routes,
        });
    }
    covered
}

/// VirtualServices in the order istiod gives a sidecar (configCompareByCreationTime in
/// pilot/pkg/model/config.go, applied by sortMergedVirtualServicesByCreationTime in
/// pilot/pkg/model/virtualservice_controller.go): oldest `creationTimestamp` first (none counts
/// as the oldest, like Go's zero time), then name, then namespace. The first to claim a domain
/// keeps it (dedupeDomains in pilot/pkg/networking/core/httproute.go). RFC 3339 timestamps in
/// one form (`...Z`, as the API server writes them) compare as strings.
/// Gateways are listed in the same order.
pub(crate) fn precedence_order<S>(
    vss: &[crate::istio::Resource<S>],
) -> Vec<&crate::istio::Resource<S>> {
    let created = |vs: &crate::istio::Resource<S>| match &vs.meta.creation_timestamp {
        Some(serde_yaml::Value::String(t)) => t.clone(),
        _ => String::new(),
    };
    let mut out: Vec<_> = vss.iter().collect();
    out.sort_by_cached_key(|vs| {
        (
            created(vs),
            vs.source.name.clone(),
            vs.namespace().to_string(),
        )
    });
    out
}

/// Whether the engine's router compiles `route` (header names and values, redirect parts,
/// rewrites, weights), checked per rule so one bad rule is reported and left out instead of
/// making the whole snapshot unusable.
fn engine_accepts(route: &Route) -> Result<(), trellis_engine::route::RouteError> {
    let probe = Config {
        route_tables: vec![RouteTable {
            name: OUTBOUND_ROUTE_TABLE.to_string(),
            validate_clusters: false,
            virtual_hosts: vec![VirtualHost {
                name: "probe".to_string(),
                domains: vec!["probe".to_string()],
                routes: vec![route.clone()],
            }],
        }],
        ..Config::default()
    };
    trellis_engine::route::Router::new(std::sync::Arc::new(probe)).map(|_| ())
}

/// A stable version label: a hash of the snapshot's content.
fn version_of(config: &Config) -> String {
    let mut h = std::hash::DefaultHasher::new();
    format!("{config:?}").hash(&mut h);
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod istio_semantics_tests;

#[cfg(test)]
mod mirrors_tests;

#[cfg(test)]
mod client_tests;

#[cfg(test)]
mod dns_tests;
