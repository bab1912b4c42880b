//! Sidecar injection, as istio/istio `pkg/config/analysis/analyzers/injection/injection.go`
//! (`injection.Analyzer`): IST0102 NamespaceNotInjected, IST0148
//! NamespaceInjectionEnabledByDefault, IST0123 NamespaceMultipleInjectionLabels and IST0103
//! PodMissingProxy.
//!
//! A workload without its sidecar silently leaves the mesh (no mTLS, no routing), and the
//! usual cause is a namespace label: missing, or several that disagree. Like Istio, only
//! `Namespace` objects and `Pod`s are judged (a Deployment's template is not a pod that ran
//! the injector); `istio-system` and ambient namespaces are not expected to be injected; a pod
//! is missing its proxy only in a namespace labelled `istio-injection=enabled`, unless it opts
//! out (`sidecar.istio.io/inject: "false"`, the label winning over the annotation) or runs on
//! the host network. When the input has the injector's ConfigMap with
//! `sidecarInjectorWebhook.enableNamespacesByDefault: true`, unlabelled namespaces are
//! injected and get IST0148 instead of IST0102.

use super::codes::{
    NAMESPACE_INJECTION_ENABLED_BY_DEFAULT, NAMESPACE_MULTIPLE_INJECTION_LABELS,
    NAMESPACE_NOT_INJECTED, POD_MISSING_PROXY,
};
use super::defaults::ISTIO_NAMESPACE;
use super::input::Inputs;
use super::message::Message;
use super::object::{str_at, Object};

const INJECTION_LABEL: &str = "istio-injection";
const REVISION_LABEL: &str = "istio.io/rev";
const DATAPLANE_MODE_LABEL: &str = "istio.io/dataplane-mode";
const SIDECAR_INJECT: &str = "sidecar.istio.io/inject";

/// Istio's `GetInjectorConfigMapName`.
fn injector_config_map(revision: &str) -> String {
    match revision {
        "" | "default" => "istio-sidecar-injector".to_string(),
        rev => format!("istio-sidecar-injector-{rev}"),
    }
}

/// Istio's `GetEnableNamespacesByDefaultFromInjectedConfigMap`: the JSON `values` key.
fn enables_namespaces_by_default(config_map: &Object) -> bool {
    config_map
        .str_at(&["data", "values"])
        .and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok())
        .and_then(|v| v["sidecarInjectorWebhook"]["enableNamespacesByDefault"].as_bool())
        .unwrap_or(false)
}

/// Run the check over Namespaces and Pods.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    let mut by_default = false;
    let mut injected: Vec<&str> = Vec::new();
    for ns in inputs.objects_of("Namespace") {
        let name = ns.name();
        if name == ISTIO_NAMESPACE {
            continue;
        }
        let labels = ns.labels();
        let injection = labels.get(INJECTION_LABEL);
        let mut istio_labels: Vec<String> = injection
            .map(|v| format!("{INJECTION_LABEL}={v}"))
            .into_iter()
            .collect();
        for key in [REVISION_LABEL, DATAPLANE_MODE_LABEL] {
            if let (Some(v), true) = (labels.get(key), injection.is_none_or(|i| i == "enabled")) {
                istio_labels.push(format!("{key}={v}"));
            }
        }
        if istio_labels.len() > 1 {
            let m = Message::new(
                NAMESPACE_MULTIPLE_INJECTION_LABELS,
                format!(
                    "The namespace has more than one type of injection labels [{}], which may lead to undefined behavior. Make sure only one injection label exists.",
                    istio_labels.join(" ")
                ),
            );
            out.push(inputs.blame(&ns.source, m.field("metadata.labels")));
        }
        if labels.get(DATAPLANE_MODE_LABEL).map(String::as_str) == Some("ambient") {
            continue;
        }
        let revision = labels.get(REVISION_LABEL);
        let wanted = injector_config_map(revision.map_or("", String::as_str));
        if let Some(cm) = inputs.objects_of("ConfigMap").find(|c| c.name() == wanted) {
            by_default = enables_namespaces_by_default(cm);
        }
        if injection.is_none_or(|i| i.is_empty()) && revision.is_none() {
            let m = if by_default {
                Message::new(
                    NAMESPACE_INJECTION_ENABLED_BY_DEFAULT,
                    "is enabled for Istio injection, as Istio is installed with enableNamespacesByDefault as true.",
                )
            } else {
                Message::new(
                    NAMESPACE_NOT_INJECTED,
                    format!("The namespace is not enabled for Istio injection. Run 'kubectl label namespace {name} istio-injection=enabled' to enable it, or 'kubectl label namespace {name} istio-injection=disabled' to explicitly mark it as not needing injection."),
                )
            };
            out.push(inputs.blame(&ns.source, m.field("metadata.name")));
            continue;
        }
        if injection.map(String::as_str) == Some("enabled") {
            injected.push(name);
        }
    }
    for pod in inputs.objects_of("Pod") {
        if !injected.contains(&pod.namespace()) {
            continue;
        }
        let labels = pod.labels();
        let annotations = pod.annotations();
        let inject = labels
            .get(SIDECAR_INJECT)
            .or(annotations.get(SIDECAR_INJECT));
        if inject.is_some_and(|v| v.eq_ignore_ascii_case("false")) {
            continue;
        }
        if pod.at(&["spec", "hostNetwork"]).and_then(|v| v.as_bool()) == Some(true) {
            continue;
        }
        let proxy_image = ["containers", "initContainers"]
            .iter()
            .flat_map(|key| pod.seq_at(&["spec", key]))
            .find(|c| str_at(c, &["name"]) == Some("istio-proxy"))
            .and_then(|c| str_at(c, &["image"]))
            .unwrap_or_default();
        if proxy_image.is_empty() {
            let m = Message::new(
                POD_MISSING_PROXY,
                format!(
                    "The pod {} is missing the Istio proxy. This can often be resolved by restarting or redeploying the workload.",
                    pod.source.qualified_name()
                ),
            );
            out.push(inputs.blame(&pod.source, m.field("spec.containers")));
        }
    }
}

#[cfg(test)]
mod tests {
    //! istio/istio `analyzers_test.go` case `istioInjection` (testdata `injection.yaml`), reduced.
    use crate::analyze::analyze_str;
    use crate::analyze::tests::lines;

    const INPUT: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: default, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: foo, labels: {istio-injection: disabled, istio.io/rev: canary}}
---
apiVersion: v1
kind: Namespace
metadata: {name: bar}
---
apiVersion: v1
kind: Namespace
metadata: {name: amb, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Namespace
metadata: {name: busted, labels: {istio-injection: enabled, istio.io/rev: canary}}
---
apiVersion: v1
kind: Pod
metadata: {name: injected}
spec: {containers: [{name: istio-proxy, image: proxyv2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: plain}
spec: {containers: [{name: server, image: app}]}
---
apiVersion: v1
kind: Pod
metadata: {name: optout, labels: {sidecar.istio.io/inject: "false"}, annotations: {sidecar.istio.io/inject: "true"}}
spec: {containers: [{name: server, image: app}]}
---
apiVersion: v1
kind: Pod
metadata: {name: host}
spec: {hostNetwork: true, containers: [{name: server, image: app}]}
"#;

    #[test]
    fn namespaces_and_pods() {
        let a = analyze_str(INPUT, "i.yaml");
        assert_eq!(
            lines(&a, "IST0102"),
            vec!["Info [IST0102] (Namespace bar) The namespace is not enabled for Istio injection. Run 'kubectl label namespace bar istio-injection=enabled' to enable it, or 'kubectl label namespace bar istio-injection=disabled' to explicitly mark it as not needing injection."]
        );
        assert_eq!(
            lines(&a, "IST0123"),
            vec!["Warning [IST0123] (Namespace busted) The namespace has more than one type of injection labels [istio-injection=enabled istio.io/rev=canary], which may lead to undefined behavior. Make sure only one injection label exists."]
        );
        assert_eq!(
            lines(&a, "IST0103"),
            vec!["Warning [IST0103] (Pod plain.default) The pod default/plain is missing the Istio proxy. This can often be resolved by restarting or redeploying the workload."]
        );
    }

    #[test]
    fn enable_namespaces_by_default_turns_ist0102_into_ist0148() {
        let cm = r#"apiVersion: v1
kind: ConfigMap
metadata: {name: istio-sidecar-injector, namespace: istio-system}
data:
  values: '{"sidecarInjectorWebhook": {"enableNamespacesByDefault": true}}'
---
apiVersion: v1
kind: Namespace
metadata: {name: bar}
"#;
        let a = analyze_str(cm, "i.yaml");
        assert!(lines(&a, "IST0102").is_empty(), "{a}");
        assert_eq!(lines(&a, "IST0148").len(), 1, "{a}");
    }
}
