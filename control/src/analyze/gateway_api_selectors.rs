//! IST0166 IneffectiveSelector: a policy that selects a Kubernetes Gateway API gateway's pods by
//! label, which Istio ignores for those pods (they take policies through `targetRef`).
//!
//! As Istio's `k8sgateway.SelectorAnalyzer` (`pkg/config/analysis/analyzers/k8sgateway/
//! workloadselector.go`): the pods labelled `gateway.networking.k8s.io/gateway-name` are
//! gateway pods; an AuthorizationPolicy, RequestAuthentication, Telemetry or WasmPlugin without
//! `targetRef` whose `selector.matchLabels` all appear on such a pod of its namespace is
//! reported once per pod, naming the gateway.

use super::codes::INEFFECTIVE_SELECTOR;
use super::input::Inputs;
use super::message::Message;
use super::object::{selects, string_map};

const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// (kind, API group prefix) of the policies judged (`policyGVKs`).
const POLICIES: [(&str, &str); 4] = [
    ("AuthorizationPolicy", "security.istio.io/"),
    ("RequestAuthentication", "security.istio.io/"),
    ("Telemetry", "telemetry.istio.io/"),
    ("WasmPlugin", "extensions.istio.io/"),
];

/// Run the check on the policies of [`POLICIES`].
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    let gateway_pods: Vec<_> = inputs
        .workloads
        .iter()
        .filter(|w| w.kind == "Pod" && w.labels.contains_key(GATEWAY_NAME_LABEL))
        .collect();
    if gateway_pods.is_empty() {
        return;
    }
    for (kind, group) in POLICIES {
        for policy in inputs
            .objects_of(kind)
            .filter(|o| o.api_version.starts_with(group))
        {
            let has = |key: &str| policy.at(&["spec", key]).is_some_and(|v| !v.is_null());
            if has("targetRef") || !has("selector") {
                continue;
            }
            let selector = string_map(&policy.value, &["spec", "selector", "matchLabels"]);
            for pod in gateway_pods
                .iter()
                .filter(|p| p.namespace == policy.namespace() && selects(&selector, &p.labels))
            {
                let m = Message::new(
                    INEFFECTIVE_SELECTOR,
                    format!(
                        "Ineffective selector on Kubernetes Gateway {}. Use the TargetRef field instead.",
                        pod.labels[GATEWAY_NAME_LABEL]
                    ),
                );
                out.push(inputs.blame(&policy.source, m));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::analyze::analyze_str;

    /// analyzers_test.go "KubernetesGatewaySelector", over Istio's `k8sgateway-selector.yaml`.
    #[test]
    fn istio_case() {
        let a = analyze_str(
            include_str!("../../tests/analyzer_testdata/k8sgateway-selector.yaml"),
            "k8sgateway-selector.yaml",
        );
        let origins: Vec<String> = a
            .with_code("IST0166")
            .map(|m| m.resource.clone().unwrap_or_default())
            .collect();
        assert_eq!(
            origins,
            vec![
                "AuthorizationPolicy ap-ineffective.default",
                "RequestAuthentication ra-ineffective.default",
                "Telemetry telemetry-ineffective.default",
                "WasmPlugin wasmplugin-ineffective.default",
            ]
        );
        assert!(a.with_code("IST0166").all(|m| m.message
            == "Ineffective selector on Kubernetes Gateway bookinfo-gateway. Use the TargetRef field instead."));
    }
}
