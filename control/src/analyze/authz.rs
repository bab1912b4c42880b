//! AuthorizationPolicy checks: IST0127 NoMatchingWorkloadsFound (the policy applies to no pod
//! in the mesh) and IST0101 ReferencedResourceNotFound (a `from.source.namespaces` or
//! `notNamespaces` entry that names no namespace).
//!
//! As Istio's `authz.AuthorizationPoliciesAnalyzer`: a policy in the root namespace
//! (`istio-system`, Istio's default; Trellis reads no mesh config) applies mesh-wide, so its
//! selector may match a pod anywhere and without a selector it always applies; elsewhere a
//! selector must match a pod of its namespace, and a selector-less policy needs some pod there.
//! Only pods in the mesh count (see [`pod_in_mesh`]). Workloads are only judged when the input
//! holds any, and namespaces only when it holds `Namespace` objects: a directory of policies
//! alone says nothing about either. Namespace patterns take `*` as prefix or suffix, as Istio.

use std::collections::BTreeMap;

use super::input::{Inputs, Workload};
use super::message::{referenced_not_found, Message, NO_MATCHING_WORKLOADS_FOUND};
use super::object::{selects, seq_at, string_map};
use super::selectors::selector_string;

/// Istio's default root namespace.
pub const ROOT_NAMESPACE: &str = "istio-system";

/// Istio's `PodInMesh` (or ambient): it runs `istio-proxy`, or is labelled or annotated
/// `sidecar.istio.io/inject: "true"`, or (with neither) its namespace is labelled
/// `istio-injection: enabled`. A controller's pod template, which is injected only when it
/// becomes a pod, counts unless it opts out.
pub fn pod_in_mesh(inputs: &Inputs, pod: &Workload) -> bool {
    if pod
        .annotations
        .get("ambient.istio.io/redirection")
        .is_some_and(|v| v == "enabled")
    {
        return true;
    }
    if pod.containers.iter().any(|c| c == "istio-proxy") {
        return true;
    }
    let inject = pod
        .labels
        .get("sidecar.istio.io/inject")
        .or_else(|| pod.annotations.get("sidecar.istio.io/inject"));
    if let Some(v) = inject {
        return v == "true";
    }
    if pod.kind != "Pod" {
        return true;
    }
    inputs
        .objects_of("Namespace")
        .find(|n| n.name() == pod.namespace)
        .is_some_and(|n| {
            n.labels()
                .get("istio-injection")
                .is_some_and(|v| v == "enabled")
        })
}

/// Istio's `namespaceMatch`.
fn namespace_matches(namespace: &str, pattern: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    if let Some(suffix) = pattern.strip_prefix('*') {
        return namespace.ends_with(suffix);
    }
    if let Some(prefix) = pattern.strip_suffix('*') {
        return namespace.starts_with(prefix);
    }
    namespace.eq_ignore_ascii_case(pattern)
}

/// Run the checks on every AuthorizationPolicy.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    let mut in_mesh: BTreeMap<&str, Vec<&Workload>> = BTreeMap::new();
    for pod in inputs.pods() {
        if pod_in_mesh(inputs, pod) {
            in_mesh.entry(pod.namespace.as_str()).or_default().push(pod);
        }
    }
    let namespaces: Vec<&str> = inputs.objects_of("Namespace").map(|n| n.name()).collect();
    let policies = inputs
        .objects_of("AuthorizationPolicy")
        .filter(|o| o.api_version.starts_with("security.istio.io/"));
    for ap in policies {
        let selector = ap
            .at(&["spec", "selector"])
            .filter(|s| !s.is_null())
            .map(|_| string_map(&ap.value, &["spec", "selector", "matchLabels"]));
        let ns = ap.namespace();
        let matched = match &selector {
            _ if inputs.workloads.is_empty() => true,
            None if ns == ROOT_NAMESPACE => true,
            None => in_mesh.get(ns).is_some_and(|l| !l.is_empty()),
            Some(labels) if ns == ROOT_NAMESPACE => in_mesh
                .values()
                .flatten()
                .any(|p| selects(labels, &p.labels)),
            Some(labels) => in_mesh
                .get(ns)
                .is_some_and(|l| l.iter().any(|p| selects(labels, &p.labels))),
        };
        if !matched {
            let shown = selector.as_ref().map(selector_string).unwrap_or_default();
            let m = Message::new(
                NO_MATCHING_WORKLOADS_FOUND,
                format!(
                    "No matching workloads for this resource with the following labels: {shown}"
                ),
            );
            out.push(inputs.blame(&ap.source, m.field("spec.selector")));
        }
        if namespaces.is_empty() {
            continue;
        }
        for (i, rule) in ap.seq_at(&["spec", "rules"]).iter().enumerate() {
            for (j, from) in seq_at(rule, &["from"]).iter().enumerate() {
                for key in ["namespaces", "notNamespaces"] {
                    for (k, pattern) in seq_at(from, &["source", key]).iter().enumerate() {
                        let Some(pattern) = pattern.as_str() else {
                            continue;
                        };
                        if namespaces.iter().any(|n| namespace_matches(n, pattern)) {
                            continue;
                        }
                        let field = format!("spec.rules[{i}].from[{j}].source.{key}[{k}]");
                        let m = referenced_not_found("namespace", pattern).field(field);
                        out.push(inputs.blame(&ap.source, m));
                    }
                }
            }
        }
    }
}
