//! Telemetry selectors: IST0101 ReferencedResourceNotFound (a `selector` that selects no pod of
//! its namespace), IST0159 ConflictingTelemetryWorkloadSelectors (two Telemetries select the
//! same pod) and IST0160 MultipleTelemetriesWithoutWorkloadSelectors (two Telemetries without
//! a selector in one namespace).
//!
//! As Istio's `telemetry.SelectorAnalyzer` and `telemetry.DefaultSelectorAnalyzer`. Trellis does
//! not model Telemetry, so its `spec.selector.matchLabels` is read from the document. A
//! `selector` with empty `matchLabels` is neither judged nor namespace-wide, as in Istio.

use std::collections::BTreeMap;

use super::codes::{
    CONFLICTING_TELEMETRY_WORKLOAD_SELECTORS, MULTIPLE_TELEMETRIES_WITHOUT_WORKLOAD_SELECTORS,
};
use super::input::Inputs;
use super::message::Message;
use super::object::string_map;
use super::selectors::{report_namespace_wide, report_same_pod, report_unmatched, walk, Selecting};

/// Run the checks.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    let telemetries: Vec<_> = inputs
        .objects_of("Telemetry")
        .filter(|o| o.api_version.starts_with("telemetry.istio.io/"))
        .collect();
    let labels: Vec<(bool, BTreeMap<String, String>)> = telemetries
        .iter()
        .map(|t| {
            let has_selector = t.at(&["spec", "selector"]).is_some_and(|s| !s.is_null());
            (
                has_selector,
                string_map(&t.value, &["spec", "selector", "matchLabels"]),
            )
        })
        .collect();
    let resources: Vec<Selecting<'_>> = telemetries
        .iter()
        .zip(&labels)
        .map(|(t, (_, l))| Selecting {
            source: &t.source,
            labels: Some(l),
        })
        .collect();
    let found = walk(inputs, &resources);
    report_unmatched(inputs, &resources, &found, "spec.selector", out);
    let conflicting = (CONFLICTING_TELEMETRY_WORKLOAD_SELECTORS, "Telemetries");
    for (pod, list) in found.by_pod.iter().filter(|(_, l)| l.len() > 1) {
        report_same_pod(inputs, &resources, conflicting, pod, list, out);
    }
    let mut without: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, (has_selector, _)) in labels.iter().enumerate() {
        if !has_selector {
            let ns = resources[i].source.namespace.as_str();
            without.entry(ns).or_default().push(i);
        }
    }
    let multiple = (
        MULTIPLE_TELEMETRIES_WITHOUT_WORKLOAD_SELECTORS,
        "Telemetries",
    );
    for (ns, list) in &without {
        report_namespace_wide(inputs, &resources, multiple, ns, list, out);
    }
}
