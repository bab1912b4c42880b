//! References to things that must exist: IST0101 ReferencedResourceNotFound (destination
//! hosts, ports and subsets; gateways are [`super::vs_gateways`]'s), IST0112
//! VirtualServiceDestinationPortSelectorRequired and IST0127 NoMatchingWorkloadsFound.
//!
//! Lookups follow Istio's analyzers: a short host is expanded in the namespace of the resource
//! that wrote it (`reviews` in `default` is `reviews.default.svc.cluster.local`), a dotted host
//! is taken as written. Hosts come from Kubernetes Services (every port) and ServiceEntries
//! (honouring `exportTo`, wildcard hosts last); subsets from DestinationRules for the same host.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::conflicts::export_scopes;
use super::input::Inputs;
use super::message::{
    go_quote, referenced_not_found, Message, NO_MATCHING_WORKLOADS_FOUND,
    VIRTUAL_SERVICE_DESTINATION_PORT_SELECTOR_REQUIRED,
};
use super::object::selects;
use super::selectors::selector_string;
use crate::istio::virtual_service::Destination;
use crate::istio::{Resource, VirtualServiceSpec};
use crate::translate::hosts::resolve;

/// One destination named by a VirtualService.
pub struct NamedDestination<'a> {
    pub destination: Destination,
    /// Field path of the `destination` (or `mirror`).
    pub field: String,
    pub mirror: bool,
    pub vs: &'a Resource<VirtualServiceSpec>,
}

/// A TCP or TLS route: only its destinations matter here.
#[derive(Default, Deserialize)]
#[serde(default)]
struct L4Route {
    route: Vec<L4Destination>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct L4Destination {
    destination: Destination,
}

/// Every destination of `vs`: tcp, tls and http routes, then http mirrors, as Istio lists them.
pub fn destinations(vs: &Resource<VirtualServiceSpec>) -> Vec<NamedDestination<'_>> {
    let mut out = Vec::new();
    let mut push = |destination: Destination, field: String, mirror: bool| {
        out.push(NamedDestination {
            destination,
            field,
            mirror,
            vs,
        })
    };
    for (section, rules) in [("tcp", &vs.spec.tcp), ("tls", &vs.spec.tls)] {
        for (i, rule) in rules.iter().enumerate() {
            let l4: L4Route = serde_yaml::from_value(rule.clone()).unwrap_or_default();
            for (j, d) in l4.route.into_iter().enumerate() {
                push(
                    d.destination,
                    format!("spec.{section}[{i}].route[{j}].destination"),
                    false,
                );
            }
        }
    }
    for (i, rule) in vs.spec.http.iter().enumerate() {
        for (j, d) in rule.route.iter().enumerate() {
            push(
                d.destination.clone(),
                format!("spec.http[{i}].route[{j}].destination"),
                false,
            );
        }
    }
    for (i, rule) in vs.spec.http.iter().enumerate() {
        if let Some(m) = &rule.mirror {
            push(m.clone(), format!("spec.http[{i}].mirror"), true);
        }
        for (j, m) in rule.mirrors.iter().enumerate() {
            if let Some(destination) = &m.destination {
                push(
                    destination.clone(),
                    format!("spec.http[{i}].mirrors[{j}].destination"),
                    true,
                );
            }
        }
    }
    out
}

/// A host the registry knows, with its ports.
pub(super) struct KnownHost {
    host: String,
    ports: Vec<u32>,
    /// The pods behind it: a Service's `selector`, a ServiceEntry's `workloadSelector`.
    pub(super) selector: BTreeMap<String, String>,
    /// Istio's export scopes: `*` for every namespace, else the namespaces that see it.
    scopes: BTreeSet<String>,
}

/// A Service's scopes from its `networking.istio.io/exportTo` annotation (comma separated,
/// `.` for its own namespace; absent: every namespace), as Istio's
/// `getVisibleNamespacesFromExportToAnno`.
fn annotation_scopes(annotation: Option<&String>, namespace: &str) -> BTreeSet<String> {
    match annotation.filter(|a| !a.is_empty()) {
        None => BTreeSet::from(["*".to_string()]),
        Some(a) => a
            .split(',')
            .map(|ns| match ns.trim() {
                "." => namespace.to_string(),
                other => other.to_string(),
            })
            .collect(),
    }
}

pub(super) fn known_hosts(inputs: &Inputs) -> Vec<KnownHost> {
    let mut out = Vec::new();
    for svc in &inputs.services {
        out.push(KnownHost {
            host: resolve(&svc.name, &svc.namespace),
            ports: svc.ports.iter().map(|p| p.port).collect(),
            selector: svc.selector.clone(),
            scopes: annotation_scopes(
                svc.annotations.get("networking.istio.io/exportTo"),
                &svc.namespace,
            ),
        });
    }
    for se in &inputs.resources.service_entries {
        let scopes = export_scopes(&se.spec.export_to, se.namespace());
        for h in &se.spec.hosts {
            out.push(KnownHost {
                host: resolve(h, se.namespace()),
                ports: se.spec.ports.iter().map(|p| p.number).collect(),
                selector: se
                    .spec
                    .workload_selector
                    .as_ref()
                    .map(|w| w.labels.clone())
                    .unwrap_or_default(),
                scopes: scopes.clone(),
            });
        }
    }
    out
}

/// Istio's `GetDestinationHost` for a host written in `namespace` by a resource exported to
/// `export_to`: exact names exported to all, then to the scopes the writer is exported to
/// (its own namespace when it has no `exportTo`), then wildcard ServiceEntry hosts visible
/// from its namespace.
pub(super) fn lookup<'a>(
    known: &'a [KnownHost],
    host: &str,
    namespace: &str,
    export_to: &[String],
) -> Option<&'a KnownHost> {
    let fqdn = resolve(host, namespace);
    let exact = |scope: &str| {
        known
            .iter()
            .find(|k| k.host == fqdn && k.scopes.contains(scope))
    };
    let wanted: Vec<&str> = if export_to.is_empty() {
        vec![namespace]
    } else {
        export_to
            .iter()
            .map(|e| if e == "." { namespace } else { e.as_str() })
            .collect()
    };
    exact("*")
        .or_else(|| wanted.into_iter().find_map(exact))
        .or_else(|| {
            known.iter().find(|k| {
                (k.scopes.contains("*") || k.scopes.contains(namespace))
                    && k.host
                        .strip_prefix('*')
                        .is_some_and(|suffix| host.trim_start_matches('*').ends_with(suffix))
            })
        })
}

/// Run the reference checks.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    check_subsets(inputs, out);
    if inputs.has_registry() {
        check_hosts(inputs, out);
    }
    if !inputs.workloads.is_empty() {
        check_workload_selectors(inputs, out);
    }
}

fn check_subsets(inputs: &Inputs, out: &mut Vec<Message>) {
    let defined: BTreeSet<(String, &str)> = inputs
        .resources
        .destination_rules
        .iter()
        .flat_map(|dr| {
            let host = resolve(&dr.spec.host, dr.namespace());
            dr.spec
                .subsets
                .iter()
                .map(move |s| (host.clone(), s.name.as_str()))
        })
        .collect();
    for vs in &inputs.resources.virtual_services {
        for d in destinations(vs) {
            let Some(subset) = d.destination.subset.as_deref().filter(|s| !s.is_empty()) else {
                continue;
            };
            let host = resolve(&d.destination.host, vs.namespace());
            if defined.contains(&(host, subset)) {
                continue;
            }
            let kind = if d.mirror {
                "mirror+subset in destinationrule"
            } else {
                "host+subset in destinationrule"
            };
            let value = format!("{}+{subset}", d.destination.host);
            out.push(inputs.blame(
                &vs.source,
                referenced_not_found(kind, &value).field(format!("{}.subset", d.field)),
            ));
        }
    }
}

fn check_hosts(inputs: &Inputs, out: &mut Vec<Message>) {
    let known = known_hosts(inputs);
    for vs in &inputs.resources.virtual_services {
        for d in destinations(vs) {
            let host = d.destination.host.as_str();
            let Some(found) = lookup(&known, host, vs.namespace(), &vs.spec.export_to) else {
                let kind = if d.mirror { "mirror host" } else { "host" };
                out.push(inputs.blame(
                    &vs.source,
                    referenced_not_found(kind, host).field(format!("{}.host", d.field)),
                ));
                continue;
            };
            match d.destination.port.map(|p| p.number).filter(|&p| p != 0) {
                None if found.ports.len() > 1 => {
                    let ports: Vec<String> = found.ports.iter().map(u32::to_string).collect();
                    let m = Message::new(
                        VIRTUAL_SERVICE_DESTINATION_PORT_SELECTOR_REQUIRED,
                        format!(
                            "This VirtualService routes to a service {} that exposes multiple ports [{}]. Specifying a port in the destination is required to disambiguate.",
                            go_quote(host),
                            ports.join(" ")
                        ),
                    );
                    out.push(inputs.blame(&vs.source, m.field(d.field.clone())));
                }
                Some(port) if !found.ports.contains(&port) => {
                    out.push(
                        inputs.blame(
                            &vs.source,
                            referenced_not_found("host:port", &format!("{host}:{port}"))
                                .field(format!("{}.port.number", d.field)),
                        ),
                    );
                }
                _ => {}
            }
        }
    }
}

/// DestinationRules whose `workloadSelector` matches no pod in their namespace (Sidecars' are
/// [`super::sidecars`]'s, with Istio's code for them).
fn check_workload_selectors(inputs: &Inputs, out: &mut Vec<Message>) {
    let rules = inputs.resources.destination_rules.iter().map(|d| {
        let labels = d.spec.workload_selector.as_ref().map(|w| &w.match_labels);
        (&d.source, labels, "spec.workloadSelector.matchLabels")
    });
    for (source, labels, field) in rules {
        let Some(labels) = labels.filter(|l| !l.is_empty()) else {
            continue;
        };
        let matched = inputs
            .pods()
            .iter()
            .any(|w| w.namespace == source.namespace && selects(labels, &w.labels));
        if !matched {
            let m = Message::new(
                NO_MATCHING_WORKLOADS_FOUND,
                format!(
                    "No matching workloads for this resource with the following labels: {}",
                    selector_string(labels)
                ),
            );
            out.push(inputs.blame(source, m.field(field)));
        }
    }
}
