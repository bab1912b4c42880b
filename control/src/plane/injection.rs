//! Which pods have a sidecar, and the label that says so on their endpoints.
//!
//! The directory holds what a user `kubectl apply`s, before Istio's injector has seen it, or
//! what `kubectl get -o yaml` shows after. A pod counts as injected when it already is (an
//! `istio-proxy` container or the injector's `sidecar.istio.io/status` annotation) or when
//! Istio's injector would inject it:
//!
//! - the webhook must be called for it: Istio's `MutatingWebhookConfiguration`
//!   (manifests/charts/istio-control/istio-discovery/templates/mutatingwebhook.yaml, default
//!   revision) calls it for pods in a namespace labelled `istio-injection=enabled`, or
//!   `istio.io/rev=default` without `istio-injection`, unless the pod is labelled
//!   `sidecar.istio.io/inject=false`; and in an unlabelled namespace for pods labelled
//!   `sidecar.istio.io/inject=true` or `istio.io/rev=default`;
//! - then `injectRequired` (pkg/kube/inject/inject.go) skips host-network pods and Kubernetes'
//!   system namespaces, and honours `sidecar.istio.io/inject` (label over annotation) under
//!   the default `enabled` policy.
//!
//! An injected pod carries `security.istio.io/tlsMode: istio` (the injection template,
//! manifests/charts/istio-control/istio-discovery/files/injection-template.yaml, keeps a value
//! the pod already has), and pilot copies the pod's labels onto its endpoints
//! (`NewEndpointBuilder` in pilot/pkg/serviceregistry/kube/controller/endpoint_builder.go;
//! `PodTLSMode` in pilot/pkg/serviceregistry/kube/conversion.go reads the label), which is
//! how a client's sidecar knows to speak mTLS to it.

use std::collections::BTreeMap;

use super::kube::PodSpec;

/// The endpoint label naming its TLS mode (`label.SecurityTlsMode`).
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";
/// `model.IstioMutualTLSModeLabel`.
pub const TLS_MODE_ISTIO: &str = "istio";
/// The injector's record on an injected pod.
pub const SIDECAR_STATUS_ANNOTATION: &str = "sidecar.istio.io/status";
/// Per-pod opt in/out (label, or the older annotation).
pub const INJECT_LABEL: &str = "sidecar.istio.io/inject";
/// The injected container's name.
pub const PROXY_CONTAINER: &str = "istio-proxy";

const NAMESPACE_INJECTION_LABEL: &str = "istio-injection";
const REVISION_LABEL: &str = "istio.io/rev";
const DEFAULT_REVISION: &str = "default";

/// `IgnoredNamespaces` in pkg/kube/inject: never injected.
const IGNORED_NAMESPACES: [&str; 4] = [
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "local-path-storage",
];

/// A pod as the injector sees it.
pub struct PodMeta<'a> {
    pub namespace: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub annotations: &'a BTreeMap<String, String>,
    pub spec: &'a PodSpec,
}

/// Whether the pod has (or would get) a sidecar; `namespace_labels` are its namespace's.
pub fn is_injected(pod: &PodMeta<'_>, namespace_labels: &BTreeMap<String, String>) -> bool {
    already_injected(pod) || (webhook_selects(pod, namespace_labels) && inject_required(pod))
}

/// The pod's labels as the injector leaves them: `security.istio.io/tlsMode: istio` added to
/// an injected pod that does not set it.
pub fn injected_labels(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out = labels.clone();
    out.entry(TLS_MODE_LABEL.to_string())
        .or_insert_with(|| TLS_MODE_ISTIO.to_string());
    out
}

/// Whether the pod already has a sidecar (the injector's status annotation, or an
/// `istio-proxy` container): injecting it again changes nothing.
pub fn already_injected(pod: &PodMeta<'_>) -> bool {
    pod.annotations.contains_key(SIDECAR_STATUS_ANNOTATION)
        || pod
            .spec
            .containers
            .iter()
            .chain(&pod.spec.init_containers)
            .any(|c| c.name == PROXY_CONTAINER)
}

/// The default revision's webhook selectors (see the module docs).
fn webhook_selects(pod: &PodMeta<'_>, namespace: &BTreeMap<String, String>) -> bool {
    let pod_opt = pod.labels.get(INJECT_LABEL).map(String::as_str);
    let pod_rev = pod.labels.get(REVISION_LABEL).map(String::as_str);
    let ns_injection = namespace.get(NAMESPACE_INJECTION_LABEL).map(String::as_str);
    let ns_rev = namespace.get(REVISION_LABEL).map(String::as_str);
    match (ns_injection, ns_rev) {
        (Some("enabled"), _) => pod_opt != Some("false"),
        (Some(_), _) => false,
        (None, Some(rev)) => rev == DEFAULT_REVISION && pod_opt != Some("false"),
        (None, None) => {
            (pod_opt == Some("true") && pod_rev.is_none())
                || (pod_rev == Some(DEFAULT_REVISION) && pod_opt != Some("false"))
        }
    }
}

/// `injectRequired` under the default `enabled` policy with no never/always selectors: what the
/// webhook itself checks once the API server has called it.
pub fn inject_required(pod: &PodMeta<'_>) -> bool {
    if pod.spec.host_network || IGNORED_NAMESPACES.contains(&pod.namespace) {
        return false;
    }
    let choice = pod
        .labels
        .get(INJECT_LABEL)
        .or_else(|| pod.annotations.get(INJECT_LABEL));
    choice.is_none_or(|v| v != "false")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plane::kube::Container;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn injected(ns: &[(&str, &str)], pod: &[(&str, &str)], spec: &PodSpec) -> bool {
        let pod_labels = labels(pod);
        let none = BTreeMap::new();
        let meta = PodMeta {
            namespace: "shop",
            labels: &pod_labels,
            annotations: &none,
            spec,
        };
        is_injected(&meta, &labels(ns))
    }

    #[test]
    fn namespace_and_pod_selectors_as_the_webhook_configuration() {
        let spec = PodSpec::default();
        assert!(injected(&[("istio-injection", "enabled")], &[], &spec));
        assert!(!injected(
            &[("istio-injection", "enabled")],
            &[("sidecar.istio.io/inject", "false")],
            &spec
        ));
        assert!(!injected(
            &[("istio-injection", "disabled")],
            &[("sidecar.istio.io/inject", "true")],
            &spec
        ));
        assert!(injected(&[("istio.io/rev", "default")], &[], &spec));
        assert!(!injected(&[("istio.io/rev", "canary")], &[], &spec));
        assert!(!injected(&[], &[], &spec));
        assert!(injected(&[], &[("sidecar.istio.io/inject", "true")], &spec));
        assert!(injected(&[], &[("istio.io/rev", "default")], &spec));
    }

    #[test]
    fn host_network_pods_are_never_injected_and_injected_pods_always_count() {
        let host = PodSpec {
            host_network: true,
            ..PodSpec::default()
        };
        assert!(!injected(&[("istio-injection", "enabled")], &[], &host));
        let with_proxy = PodSpec {
            containers: vec![Container {
                name: PROXY_CONTAINER.into(),
                ..Container::default()
            }],
            ..PodSpec::default()
        };
        assert!(injected(&[], &[], &with_proxy));
    }

    #[test]
    fn the_tls_mode_label_keeps_a_value_the_pod_sets() {
        assert_eq!(
            injected_labels(&labels(&[("app", "a")])).get(TLS_MODE_LABEL),
            Some(&"istio".to_string())
        );
        assert_eq!(
            injected_labels(&labels(&[(TLS_MODE_LABEL, "disabled")])).get(TLS_MODE_LABEL),
            Some(&"disabled".to_string())
        );
    }
}
