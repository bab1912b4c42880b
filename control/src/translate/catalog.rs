//! The services and DestinationRules the translator resolves against: the registry plus the
//! ServiceEntry hosts, and for each service host the one DestinationRule that applies to it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::hosts::{host_covers, resolve};
use super::registry::{Registry, Service, ServiceEndpoint, ServicePort};
use super::routes::DestinationResolver;
use crate::diag::{Diagnostic, IST0101};
use crate::istio::destination_rule::Subset;
use crate::istio::service_entry::Resolution;
use crate::istio::virtual_service::Destination;
use crate::istio::{DestinationRuleSpec, Resource, ResourceSet};

/// Services (registry + ServiceEntries) and the DestinationRule for each.
pub struct Catalog<'a> {
    pub services: Vec<Service>,
    /// Service host → index into `ResourceSet::destination_rules`.
    rule_of: BTreeMap<String, usize>,
    rules: &'a [Resource<DestinationRuleSpec>],
}

/// Envoy's cluster name for a (host, port, subset).
pub fn cluster_name(host: &str, port: u16, subset: Option<&str>) -> String {
    format!("outbound|{port}|{}|{host}", subset.unwrap_or(""))
}

impl<'a> Catalog<'a> {
    pub fn new(
        resources: &'a ResourceSet,
        registry: &Registry,
        diags: &mut Vec<Diagnostic>,
    ) -> Self {
        let mut services = registry.services.clone();
        for se in &resources.service_entries {
            for svc in service_entry_services(se, &registry.dns, diags) {
                if services.iter().any(|s| s.host == svc.host) {
                    diags.push(se.diag(Diagnostic::warning(format!(
                        "host {} is already defined; this ServiceEntry's definition is ignored",
                        svc.host
                    ))));
                } else {
                    services.push(svc);
                }
            }
        }
        let rules = resources.destination_rules.as_slice();
        let mut rule_of = BTreeMap::new();
        for svc in &services {
            // Most specific host wins: exact, then the longest wildcard; file order breaks ties.
            let mut best: Option<(usize, usize)> = None;
            for (i, dr) in rules.iter().enumerate() {
                let host = resolve(&dr.spec.host, dr.namespace());
                if !host_covers(&host, &svc.host) {
                    continue;
                }
                let score = if host == svc.host {
                    usize::MAX
                } else {
                    host.len()
                };
                match best {
                    Some((_, s)) if s > score => {}
                    Some((first, s)) if s == score => {
                        diags.push(dr.diag(Diagnostic::warning(format!(
                            "{} already applies to host {}; this DestinationRule is ignored for it",
                            rules[first].source, svc.host
                        ))))
                    }
                    _ => best = Some((i, score)),
                }
            }
            if let Some((i, _)) = best {
                rule_of.insert(svc.host.clone(), i);
            }
        }
        for dr in rules {
            let host = resolve(&dr.spec.host, dr.namespace());
            if !services.iter().any(|s| host_covers(&host, &s.host)) {
                diags.push(
                    dr.diag(
                        Diagnostic::warning(format!(
                            "host {host} matches no known service; rule unused"
                        ))
                        .field("spec.host"),
                    ),
                );
            }
            let mut seen = std::collections::BTreeSet::new();
            for (i, s) in dr.spec.subsets.iter().enumerate() {
                if !seen.insert(s.name.as_str()) {
                    diags.push(
                        dr.diag(
                            Diagnostic::error(format!(
                                "duplicate subset name {:?}; the first one is used",
                                s.name
                            ))
                            .field(format!("spec.subsets[{i}].name")),
                        ),
                    );
                }
            }
        }
        Catalog {
            services,
            rule_of,
            rules,
        }
    }

    pub fn service(&self, host: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.host == host)
    }

    /// The DestinationRule applying to `host`.
    pub fn rule_for(&self, host: &str) -> Option<&'a Resource<DestinationRuleSpec>> {
        self.rule_of.get(host).and_then(|&i| self.rules.get(i))
    }

    /// The subset `name` of `host`'s DestinationRule, with its index.
    pub fn subset(&self, host: &str, name: &str) -> Option<(usize, &'a Subset)> {
        self.rule_for(host)?
            .spec
            .subsets
            .iter()
            .enumerate()
            .find(|(_, s)| s.name == name)
    }
}

/// Resolves destinations for a request that came on `port` (`None`: on any port).
pub struct AtPort<'c, 'a> {
    pub catalog: &'c Catalog<'a>,
    pub port: Option<u16>,
}

impl DestinationResolver for AtPort<'_, '_> {
    fn cluster_for(
        &self,
        dest: &Destination,
        namespace: &str,
        at: &str,
        diags: &mut Vec<Diagnostic>,
    ) -> Result<String, MissingCluster> {
        self.catalog
            .cluster_at(dest, namespace, at, self.port, diags)
    }
}

/// A destination no cluster serves (unknown host, port or subset), named as pilot names the
/// cluster it routes to anyway (GetDestinationCluster in pilot/pkg/networking/core/route/
/// route.go builds the name without checking it exists). HTTP routes keep it, and Envoy
/// answers 503 NC for requests sent there; TCP routes and mirrors leave it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingCluster(pub String);

impl Catalog<'_> {
    /// Whether `dest` names no port of a service that has several, so that its cluster
    /// depends on the port the request came on (see [`super::ports`]).
    pub fn infers_port(&self, dest: &Destination, namespace: &str) -> bool {
        dest.port.is_none()
            && self
                .service(&resolve(&dest.host, namespace))
                .is_some_and(|s| s.ports.len() > 1)
    }

    /// The cluster for `dest` on a request that came on `listener_port` (`None`: unknown).
    /// Without a destination port, a service with one port uses it, and one with several
    /// uses the request's port (GetDestinationCluster in
    /// pilot/pkg/networking/core/route/route.go), or its first port when that is unknown.
    pub fn cluster_at(
        &self,
        dest: &Destination,
        namespace: &str,
        at: &str,
        listener_port: Option<u16>,
        diags: &mut Vec<Diagnostic>,
    ) -> Result<String, MissingCluster> {
        let host = resolve(&dest.host, namespace);
        let subset = dest.subset.as_deref();
        let report = |what: String, field: String, diags: &mut Vec<Diagnostic>| {
            diags.push(
                Diagnostic::error(format!(
                    "{what}; no cluster serves it: requests routed there are answered 503 (NC), as Envoy answers pilot's route to a missing cluster (TCP routes and mirrors leave it out)"
                ))
                .code(IST0101)
                .field(field),
            );
        };
        // Pilot's name for the cluster it routes to whether or not it exists: the named port,
        // else the request's (0 where that is unknown).
        let missing = |what: String, diags: &mut Vec<Diagnostic>| {
            report(what, at.to_string(), diags);
            let named = dest.port.and_then(|p| u16::try_from(p.number).ok());
            let port = named.or(listener_port).unwrap_or(0);
            MissingCluster(cluster_name(&host, port, subset))
        };
        let Some(svc) = self.service(&host) else {
            return Err(missing(
                format!("referenced host not found: {host:?}"),
                diags,
            ));
        };
        let port = match dest.port.map(|p| p.number) {
            Some(n) => match svc.ports.iter().find(|p| u32::from(p.number) == n) {
                Some(p) => p.number,
                None => {
                    let what = format!("referenced host+port not found: {host}:{n}");
                    return Err(missing(what, diags));
                }
            },
            None => match (svc.ports.as_slice(), listener_port) {
                ([], _) => {
                    return Err(missing(format!("host {host} has no ports"), diags));
                }
                ([only], _) => only.number,
                (_, Some(port)) => port,
                ([first, ..], None) => {
                    diags.push(
                        Diagnostic::info(format!(
                            "{host} has several ports and the destination names none: a request goes to the port it came on, and on a port the VirtualService's hosts do not serve, to {}",
                            first.number
                        ))
                        .field(format!("{at}.port")),
                    );
                    first.number
                }
            },
        };
        if let Some(name) = subset.filter(|name| self.subset(&host, name).is_none()) {
            let what = format!(
                "referenced subset not found: {host} subset {name:?} (no DestinationRule defines it)"
            );
            report(what, format!("{at}.subset"), diags);
            return Err(MissingCluster(cluster_name(&host, port, subset)));
        }
        Ok(cluster_name(&host, port, subset))
    }
}

/// The services a ServiceEntry adds: one per host, with its ports and endpoints.
///
/// With `resolution: DNS` an endpoint named by a hostname stands for every address `dns`
/// holds for it (Envoy's STRICT_DNS cluster), with `DNS_ROUND_ROBIN` for the first one only
/// (LOGICAL_DNS uses the first address of each answer); a DNS ServiceEntry without endpoints
/// makes each host its own endpoint, on the ports' `targetPort` or number
/// (convertServiceEntryToInstances in pilot/pkg/serviceregistry/serviceentry/conversion.go).
fn service_entry_services(
    se: &Resource<crate::istio::ServiceEntrySpec>,
    dns: &BTreeMap<String, Vec<IpAddr>>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Service> {
    let mut ports = Vec::new();
    for (i, p) in se.spec.ports.iter().enumerate() {
        match u16::try_from(p.number) {
            Ok(number) if number > 0 => ports.push(ServicePort {
                number,
                name: p.name.clone(),
                protocol: p.protocol.clone(),
            }),
            _ => diags.push(
                se.diag(
                    Diagnostic::error(format!("port {} out of range; ignored", p.number))
                        .field(format!("spec.ports[{i}].number")),
                ),
            ),
        }
    }
    let resolution = se.spec.resolution.unwrap_or(Resolution::NONE);
    let by_dns = matches!(resolution, Resolution::DNS | Resolution::DNS_ROUND_ROBIN);
    // The addresses a name stands for, as this resolution uses them; reported when none.
    let addresses_of = |name: &str, field: String, diags: &mut Vec<Diagnostic>| -> Vec<IpAddr> {
        let found = dns.get(name).map(Vec::as_slice).unwrap_or_default();
        if found.is_empty() {
            diags.push(se.diag(
                Diagnostic::info(format!(
                    "DNS name {name:?} has no address yet (not resolved, or the lookup failed): no endpoint for it"
                ))
                .field(field),
            ));
        }
        let take = if resolution == Resolution::DNS_ROUND_ROBIN {
            1
        } else {
            found.len()
        };
        found.iter().take(take).copied().collect()
    };
    let mut endpoints = Vec::new();
    for (i, e) in se.spec.endpoints.iter().enumerate() {
        let field = format!("spec.endpoints[{i}].address");
        let addresses = match e.address.parse::<IpAddr>() {
            Ok(address) => vec![address],
            Err(_) if by_dns => addresses_of(&e.address, field, diags),
            Err(_) => {
                diags.push(se.diag(
                    Diagnostic::warning(format!(
                        "endpoint address {:?} is not an IP; names are resolved only with resolution DNS or DNS_ROUND_ROBIN",
                        e.address
                    ))
                    .field(field),
                ));
                continue;
            }
        };
        for address in addresses {
            let mut ep = ServiceEndpoint {
                address,
                ports: BTreeMap::new(),
                default_port: None,
                labels: e.labels.clone(),
                weight: e.weight.filter(|&w| w > 0).unwrap_or(1),
                service_account: None,
                locality: e.locality.clone(),
            };
            for sp in &se.spec.ports {
                if let (Ok(service_port), Some(target)) = (
                    u16::try_from(sp.number),
                    e.ports.get(&sp.name).copied().or(sp.target_port),
                ) {
                    if let Ok(target) = u16::try_from(target) {
                        ep.ports.insert(service_port, target);
                    }
                }
            }
            endpoints.push(ep);
        }
    }
    let hosts_are_endpoints =
        by_dns && se.spec.endpoints.is_empty() && se.spec.workload_selector.is_none();
    let mut out = Vec::new();
    for (i, h) in se.spec.hosts.iter().enumerate() {
        let mut endpoints = endpoints.clone();
        if hosts_are_endpoints && !h.contains('*') {
            for address in addresses_of(h, format!("spec.hosts[{i}]"), diags) {
                let ports = se
                    .spec
                    .ports
                    .iter()
                    .filter_map(|sp| {
                        let number = u16::try_from(sp.number).ok()?;
                        let target = u16::try_from(sp.target_port?).ok()?;
                        Some((number, target))
                    })
                    .collect();
                endpoints.push(ServiceEndpoint {
                    address,
                    ports,
                    default_port: None,
                    labels: BTreeMap::new(),
                    weight: 1,
                    service_account: None,
                    locality: None,
                });
            }
        }
        out.push(Service {
            host: resolve(h, se.namespace()),
            namespace: se.namespace().to_string(),
            ports: ports.clone(),
            endpoints,
        });
    }
    out
}
