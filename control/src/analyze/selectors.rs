//! Workload selectors of one kind of resource (Sidecars, Telemetries) against the pods: which
//! select nothing, which select the same pod, and which namespaces have more than one
//! resource without a selector. The two kinds' analyzers in Istio (`sidecar.SelectorAnalyzer`,
//! `telemetry.SelectorAnalyzer` and `DefaultSelectorAnalyzer`) walk the same way and differ
//! only in their codes, so the walk lives here and the wording in [`super::sidecars`] and
//! [`super::telemetry`].

use std::collections::BTreeMap;

use super::input::{Inputs, Workload};
use super::message::{go_quote, referenced_not_found, Code, Message};
use super::object::selects;
use crate::istio::Source;

/// One resource that may select workloads.
pub struct Selecting<'a> {
    pub source: &'a Source,
    /// `None` (or empty): the whole namespace.
    pub labels: Option<&'a BTreeMap<String, String>>,
}

/// What the walk found, by index into the resources handed in.
#[derive(Default)]
pub struct Selections<'a> {
    /// Resources with a selector that matches no pod of their namespace.
    pub unmatched: Vec<usize>,
    /// Each pod selected by a selector, with every resource selecting it, in input order.
    pub by_pod: Vec<(&'a Workload, Vec<usize>)>,
    /// Namespace → resources there without a selector.
    pub namespace_wide: BTreeMap<String, Vec<usize>>,
}

/// Walk `resources` against the input's pods.
pub fn walk<'a>(inputs: &'a Inputs, resources: &[Selecting<'_>]) -> Selections<'a> {
    let pods = inputs.pods();
    let mut found = Selections::default();
    let mut by_pod: Vec<Vec<usize>> = vec![Vec::new(); pods.len()];
    for (i, r) in resources.iter().enumerate() {
        let Some(labels) = r.labels.filter(|l| !l.is_empty()) else {
            found
                .namespace_wide
                .entry(r.source.namespace.clone())
                .or_default()
                .push(i);
            continue;
        };
        let mut any = false;
        for (p, pod) in pods.iter().enumerate() {
            if pod.namespace == r.source.namespace && selects(labels, &pod.labels) {
                any = true;
                by_pod[p].push(i);
            }
        }
        if !any {
            found.unmatched.push(i);
        }
    }
    found.by_pod = pods
        .into_iter()
        .zip(by_pod)
        .filter(|(_, list)| !list.is_empty())
        .collect();
    found
}

/// `k=v,k2=v2`, as Kubernetes prints a label selector (keys sorted).
pub fn selector_string(labels: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join(",")
}

/// The resources' names, sorted, as Istio's `getNames` lists them (`[a b]`).
pub fn names(resources: &[Selecting<'_>], indices: &[usize]) -> String {
    let mut names: Vec<&str> = indices
        .iter()
        .map(|&i| resources[i].source.name.as_str())
        .collect();
    names.sort_unstable();
    format!("[{}]", names.join(" "))
}

/// IST0101 for every resource whose selector matches no pod; only when the input holds
/// workloads at all (a directory of Istio resources alone says nothing about which pods run).
pub fn report_unmatched(
    inputs: &Inputs,
    resources: &[Selecting<'_>],
    found: &Selections<'_>,
    field: &str,
    out: &mut Vec<Message>,
) {
    if inputs.workloads.is_empty() {
        return;
    }
    for &i in &found.unmatched {
        let labels = resources[i].labels.map(selector_string).unwrap_or_default();
        let m = referenced_not_found("selector", &labels).field(field);
        out.push(inputs.blame(resources[i].source, m));
    }
}

/// Istio's "select the same workload pod" message (`plural`: `Sidecars`, `Telemetries`) for
/// each of `list`.
pub fn report_same_pod(
    inputs: &Inputs,
    resources: &[Selecting<'_>],
    (code, plural): (Code, &str),
    pod: &Workload,
    list: &[usize],
    out: &mut Vec<Message>,
) {
    for &i in list {
        let m = Message::new(
            code,
            format!(
                "The {plural} {} in namespace {} select the same workload pod {}, which can lead to undefined behavior.",
                names(resources, list),
                go_quote(&pod.namespace),
                go_quote(&pod.name)
            ),
        );
        out.push(inputs.blame(resources[i].source, m));
    }
}

/// Istio's "have no workload selector" message for each of `list`, when there are two or more.
pub fn report_namespace_wide(
    inputs: &Inputs,
    resources: &[Selecting<'_>],
    (code, plural): (Code, &str),
    namespace: &str,
    list: &[usize],
    out: &mut Vec<Message>,
) {
    if list.len() < 2 {
        return;
    }
    for &i in list {
        let m = Message::new(
            code,
            format!(
                "The {plural} {} in namespace {} have no workload selector, which can lead to undefined behavior.",
                names(resources, list),
                go_quote(namespace)
            ),
        );
        out.push(inputs.blame(resources[i].source, m));
    }
}
