//! Sidecar selectors: IST0101 ReferencedResourceNotFound (a `workloadSelector` that selects no
//! pod of its namespace), IST0110 ConflictingSidecarWorkloadSelectors (two Sidecars select the
//! same pod), IST0111 MultipleSidecarsWithoutWorkloadSelectors (two namespace-wide Sidecars in
//! one namespace) and IST0167 IneffectivePolicy (the Sidecar only applies to ambient-mode
//! workloads, which have no sidecar).
//!
//! As Istio's `sidecar.SelectorAnalyzer`. Selectors are only judged when the input holds
//! workloads (see [`Inputs::pods`]): a directory of Istio resources alone says nothing about
//! which pods run.

use std::collections::BTreeSet;

use super::codes::{
    CONFLICTING_SIDECAR_WORKLOAD_SELECTORS, INEFFECTIVE_POLICY,
    MULTIPLE_SIDECARS_WITHOUT_WORKLOAD_SELECTORS,
};
use super::input::{Inputs, Workload};
use super::message::Message;
use super::selectors::{report_namespace_wide, report_same_pod, report_unmatched, walk, Selecting};

/// The annotation the ambient CNI puts on pods it redirects.
const AMBIENT_REDIRECTION: &str = "ambient.istio.io/redirection";

/// Istio's `PodInAmbientMode`.
pub fn pod_in_ambient(pod: &Workload) -> bool {
    pod.annotations
        .get(AMBIENT_REDIRECTION)
        .is_some_and(|v| v == "enabled")
}

/// Istio's `NamespaceInAmbientMode`: labelled `istio.io/dataplane-mode: ambient`, and not
/// also for sidecar injection.
pub fn namespace_in_ambient(inputs: &Inputs, namespace: &str) -> bool {
    inputs
        .objects_of("Namespace")
        .filter(|n| n.name() == namespace)
        .any(|n| {
            let labels = n.labels();
            labels.get("istio-injection").is_none_or(|v| v != "enabled")
                && labels.get("istio.io/rev").is_none_or(|v| v.is_empty())
                && labels
                    .get("istio.io/dataplane-mode")
                    .is_some_and(|v| v == "ambient")
        })
}

/// Run the checks.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    let sidecars = &inputs.resources.sidecars;
    let resources: Vec<Selecting<'_>> = sidecars
        .iter()
        .map(|s| Selecting {
            source: &s.source,
            labels: s.spec.workload_selector.as_ref().map(|w| &w.labels),
        })
        .collect();
    let found = walk(inputs, &resources);
    report_unmatched(inputs, &resources, &found, "spec.workloadSelector", out);
    let mut ineffective = BTreeSet::new();
    let mut report_ineffective = |i: usize, why: &str, out: &mut Vec<Message>| {
        if ineffective.insert(i) {
            let m = Message::new(
                INEFFECTIVE_POLICY,
                format!("The policy has no impact: {why}, the policy has no impact."),
            );
            out.push(inputs.blame(resources[i].source, m));
        }
    };
    let conflicting = (CONFLICTING_SIDECAR_WORKLOAD_SELECTORS, "Sidecars");
    for (pod, list) in &found.by_pod {
        if pod_in_ambient(pod) {
            for &i in list {
                report_ineffective(i, "selected workload is in ambient mode", out);
            }
        } else if list.len() > 1 {
            report_same_pod(inputs, &resources, conflicting, pod, list, out);
        }
    }
    let multiple = (MULTIPLE_SIDECARS_WITHOUT_WORKLOAD_SELECTORS, "Sidecars");
    for (ns, list) in &found.namespace_wide {
        if namespace_in_ambient(inputs, ns) {
            for &i in list {
                report_ineffective(i, "namespace is in ambient mode", out);
            }
        } else {
            report_namespace_wide(inputs, &resources, multiple, ns, list, out);
        }
    }
}
