//! IST0109 ConflictingMeshGatewayVirtualServiceHosts: two VirtualServices bound to the mesh
//! (no `gateways`, or `mesh` among them) define the same host in the same scope.
//!
//! As in Istio's analyzer, a host is keyed by its `exportTo` scope and its FQDN (short names
//! expanded in the VirtualService's namespace), printed as `scope/fqdn` (`*/reviews.default...`
//! for the default export to all namespaces); a host in a namespace scope also meets the hosts
//! exported to all namespaces that it matches (wildcards too). Each VirtualService of a
//! conflict gets one message naming all of them (`namespace/name`, sorted, comma separated).
//! Ingress-gateway VirtualServices are merged by Istio, so they never conflict.

use std::collections::{BTreeMap, BTreeSet};

use super::input::Inputs;
use super::message::{Message, CONFLICTING_MESH_GATEWAY_VIRTUAL_SERVICE_HOSTS};
use super::vs_gateways::host_matches;
use crate::translate::hosts::resolve;

/// Istio's export scopes for an `exportTo` list written in `namespace`: `*` alone when it
/// exports to every namespace (empty, or `*` among them), else the namespaces (`.` is the
/// writer's own).
pub fn export_scopes(export_to: &[String], namespace: &str) -> BTreeSet<String> {
    if export_to.is_empty() || export_to.iter().any(|e| e == "*") {
        return BTreeSet::from(["*".to_string()]);
    }
    export_to
        .iter()
        .map(|e| {
            if e == "." {
                namespace.to_string()
            } else {
                e.clone()
            }
        })
        .collect()
}

/// Run the conflict check.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    // (scope, fqdn) → VirtualService indices, one entry per host written.
    let mut by_host: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    let services = &inputs.resources.virtual_services;
    for (index, vs) in services.iter().enumerate() {
        let spec = &vs.spec;
        if !(spec.gateways.is_empty() || spec.gateways.iter().any(|g| g == "mesh")) {
            continue;
        }
        for scope in export_scopes(&spec.export_to, vs.namespace()) {
            for host in &spec.hosts {
                let key = (scope.clone(), resolve(host, vs.namespace()));
                by_host.entry(key).or_default().push(index);
            }
        }
    }
    let mut reported = BTreeSet::new();
    for ((scope, fqdn), list) in &by_host {
        let mut list = list.clone();
        if scope != "*" {
            // A host exported to all namespaces is seen in this scope too, wildcards included.
            for ((other_scope, other), more) in &by_host {
                if other_scope == "*" && host_matches(fqdn, other) {
                    list.extend(more);
                }
            }
        }
        if list.len() < 2 {
            continue;
        }
        let mut names: Vec<String> = list
            .iter()
            .map(|&i| services[i].source.qualified_name())
            .collect();
        names.sort();
        let names = names.join(",");
        for &i in &list {
            if !reported.insert(i) {
                continue;
            }
            let m = Message::new(
                CONFLICTING_MESH_GATEWAY_VIRTUAL_SERVICE_HOSTS,
                format!(
                    "The VirtualServices {names} associated with mesh gateway define the same host {scope}/{fqdn} which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource."
                ),
            );
            out.push(inputs.blame(&services[i].source, m.field("spec.hosts")));
        }
    }
}
