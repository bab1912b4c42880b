//! IST0173 DestinationRuleSubsetNotSelectPods and IST0174 UnknownDestinationRuleHost, as
//! istio/istio `pkg/config/analysis/analyzers/destinationrule/subset.go`
//! (`PodNotSelectedAnalyzer`).
//!
//! A subset that selects no pod routes to nothing (Envoy answers 503 UH), and a rule for a
//! host no service has is usually a typo. Like Istio, a subset selects with its labels merged
//! over its service's selector (a Service's `selector`, a ServiceEntry's `workloadSelector`),
//! against pods in any namespace, whose labels are augmented as pilot's `AugmentLabels` does
//! from their Node: `topology.kubernetes.io/region` and `/zone`, `topology.istio.io/subzone`
//! (only under a zone, as `LocalityToString` drops it otherwise) and `kubernetes.io/hostname`.
//! Unlike destination hosts (see [`super`]), a DestinationRule's host is judged even when the
//! input names no service at all, as `Analyze` does (`util.GetDestinationHost` finds nothing,
//! so the rule gets IST0174 and its subsets are not judged): Istio's own case
//! `DestinationRuleWithFakeHost` is a lone DestinationRule, and a Warning per rule does not bury
//! real findings the way an Error per route destination would. Pods are [`Inputs::pods`] (pod
//! templates when the input has no Pods).

use std::collections::BTreeMap;

use super::codes::{DESTINATION_RULE_SUBSET_NOT_SELECT_PODS, UNKNOWN_DESTINATION_RULE_HOST};
use super::input::{Inputs, Workload};
use super::message::Message;
use super::object::selects;
use super::references::{known_hosts, lookup};

const REGION: &str = "topology.kubernetes.io/region";
const ZONE: &str = "topology.kubernetes.io/zone";
const SUBZONE: &str = "topology.istio.io/subzone";
const HOSTNAME: &str = "kubernetes.io/hostname";

/// A pod's labels as pilot's service registry sees them.
fn augmented(
    pod: &Workload,
    nodes: &BTreeMap<String, BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut labels = pod.labels.clone();
    if let Some(node) = nodes.get(&pod.node_name) {
        let get = |k: &str| node.get(k).filter(|v| !v.is_empty());
        let zone = get(ZONE);
        let subzone = zone.and(get(SUBZONE));
        for (key, value) in [(REGION, get(REGION)), (ZONE, zone), (SUBZONE, subzone)] {
            if let Some(v) = value {
                labels.insert(key.to_string(), v.clone());
            }
        }
    }
    if !pod.node_name.is_empty() {
        labels.insert(HOSTNAME.to_string(), pod.node_name.clone());
    }
    labels
}

/// Run the check over every DestinationRule.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    let known = known_hosts(inputs);
    let nodes: BTreeMap<String, BTreeMap<String, String>> = inputs
        .objects_of("Node")
        .map(|n| (n.name().to_string(), n.labels()))
        .collect();
    let pods: Vec<BTreeMap<String, String>> = inputs
        .pods()
        .into_iter()
        .map(|p| augmented(p, &nodes))
        .collect();
    for dr in &inputs.resources.destination_rules {
        let host = &dr.spec.host;
        let Some(service) = lookup(&known, host, dr.namespace(), &dr.spec.export_to) else {
            let m = Message::new(
                UNKNOWN_DESTINATION_RULE_HOST,
                format!("The host {host} defined in the DestinationRule does not match any services in the mesh."),
            );
            out.push(inputs.blame(&dr.source, m.field("spec.host")));
            continue;
        };
        for (i, subset) in dr.spec.subsets.iter().enumerate() {
            let mut selector = service.selector.clone();
            selector.extend(subset.labels.clone());
            if !pods.iter().any(|labels| selects(&selector, labels)) {
                let m = Message::new(
                    DESTINATION_RULE_SUBSET_NOT_SELECT_PODS,
                    format!(
                        "The Subset {} defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).",
                        subset.name
                    ),
                );
                out.push(inputs.blame(&dr.source, m.field(format!("spec.subsets[{i}]"))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! istio/istio `analyzers_test.go` cases `DestinationRuleWithFakeHost`,
    //! `DestinationRuleSubsetsNotSelectPods`, `DestinationRuleSubsetsWithTopologyLabels` and
    //! `DestinationRuleEmptyTopologyLabels`, reduced.
    use crate::analyze::analyze_str;
    use crate::analyze::tests::lines;

    const SERVICE_AND_POD: &str = r#"apiVersion: v1
kind: Service
metadata: {name: httpbin}
spec:
  selector: {app: httpbin}
  ports: [{name: http, port: 8000}]
---
apiVersion: v1
kind: Pod
metadata: {name: p, labels: {app: httpbin, version: v1}}
spec: {nodeName: n1}
---
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {topology.kubernetes.io/region: us-west-1, topology.kubernetes.io/zone: ""}}
"#;

    fn with_rule(host: &str, subsets: &str) -> String {
        format!(
            "{SERVICE_AND_POD}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: dr}}\nspec:\n  host: {host}\n  subsets: {subsets}\n"
        )
    }

    #[test]
    fn subsets_select_with_the_service_selector_and_node_topology() {
        let text = with_rule(
            "httpbin.default.svc.cluster.local",
            "[{name: v1, labels: {version: v1}}, {name: west, labels: {topology.kubernetes.io/region: us-west-1}}, {name: v3, labels: {version: v3}}, {name: nozone, labels: {topology.kubernetes.io/zone: \"\"}}, {name: host, labels: {kubernetes.io/hostname: n1}}]",
        );
        let a = analyze_str(&text, "d.yaml");
        assert_eq!(
            lines(&a, "IST0173"),
            vec![
                "Error [IST0173] (DestinationRule dr.default) The Subset nozone defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).",
                "Error [IST0173] (DestinationRule dr.default) The Subset v3 defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).",
            ]
        );
        assert!(lines(&a, "IST0174").is_empty(), "{a}");
    }

    /// istio/istio analyzers_test.go case `DestinationRuleWithFakeHost`: a lone DestinationRule,
    /// no Service in the input, still gets IST0174 from `PodNotSelectedAnalyzer.Analyze`.
    #[test]
    fn a_rule_is_judged_without_any_service_in_the_input() {
        let text = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: fake-host, namespace: default}\nspec:\n  host: fake-svc.default.svc.cluster.local\n  subsets: [{name: v1, labels: {version: v1}}]\n";
        let a = analyze_str(text, "d.yaml");
        assert_eq!(
            lines(&a, "IST0174"),
            vec!["Warning [IST0174] (DestinationRule fake-host.default) The host fake-svc.default.svc.cluster.local defined in the DestinationRule does not match any services in the mesh."]
        );
        assert!(lines(&a, "IST0173").is_empty(), "{a}");
    }

    #[test]
    fn unknown_host() {
        let a = analyze_str(&with_rule("fake-svc", "[]"), "d.yaml");
        assert_eq!(
            lines(&a, "IST0174"),
            vec!["Warning [IST0174] (DestinationRule dr.default) The host fake-svc defined in the DestinationRule does not match any services in the mesh."]
        );
    }
}
