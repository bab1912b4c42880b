//! IST0146 ImageAutoWithoutInjectionWarning and IST0147 ImageAutoWithoutInjectionError: an
//! `istio-proxy` container with `image: auto` (the gateway-injection idiom) that no injection
//! webhook will fill in.
//!
//! `auto` is a placeholder the injector replaces; without injection the pod pulls an image
//! named `auto` and never starts. As Istio's `injection.ImageAutoAnalyzer`
//! (`pkg/config/analysis/analyzers/injection/image-auto.go`): a Pod that still has it was not
//! injected, so it is an error; a Deployment's template is a warning unless some webhook of a
//! MutatingWebhookConfiguration whose name ends in `istio.io` selects it (its
//! `namespaceSelector` the namespace's labels, when the Namespace is in the input, and its
//! `objectSelector` the template's labels).

use std::collections::BTreeMap;

use super::codes::{IMAGE_AUTO_WITHOUT_INJECTION_ERROR, IMAGE_AUTO_WITHOUT_INJECTION_WARNING};
use super::input::Inputs;
use super::label_selector::matches;
use super::message::{Code, Message};
use super::object::{seq_at, str_at, string_map, Object};

/// Whether the pod spec at `spec` has `istio-proxy` with `image: auto`.
fn has_auto_image(o: &Object, spec: &[&str]) -> bool {
    let path: Vec<&str> = spec.iter().copied().chain(["containers"]).collect();
    seq_at(&o.value, &path).iter().any(|c| {
        str_at(c, &["name"]) == Some("istio-proxy") && str_at(c, &["image"]) == Some("auto")
    })
}

fn message(code: Code, kind: &str, name: &str) -> Message {
    Message::new(
        code,
        format!("{kind} {name} contains `image: auto` but does not match any Istio injection webhook selectors."),
    )
}

/// Run the check on Pods and Deployments.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    for pod in inputs.kube_objects_of("Pod") {
        if has_auto_image(pod, &["spec"]) {
            let m = message(IMAGE_AUTO_WITHOUT_INJECTION_ERROR, "Pod", pod.name());
            out.push(inputs.blame(&pod.source, m));
        }
    }
    let webhooks: Vec<&serde_yaml::Value> = inputs
        .kube_objects_of("MutatingWebhookConfiguration")
        .flat_map(|c| seq_at(&c.value, &["webhooks"]))
        .filter(|w| str_at(w, &["name"]).is_some_and(|n| n.ends_with("istio.io")))
        .collect();
    for d in inputs.kube_objects_of("Deployment") {
        if !has_auto_image(d, &["spec", "template", "spec"]) {
            continue;
        }
        let ns_labels: BTreeMap<String, String> = inputs
            .kube_objects_of("Namespace")
            .find(|ns| ns.name() == d.namespace())
            .map(Object::labels)
            .unwrap_or_default();
        let pod_labels = string_map(&d.value, &["spec", "template", "metadata", "labels"]);
        let injected = webhooks.iter().any(|w| {
            matches(w.get("namespaceSelector"), &ns_labels)
                && matches(w.get("objectSelector"), &pod_labels)
        });
        if !injected {
            let m = message(IMAGE_AUTO_WITHOUT_INJECTION_WARNING, "Deployment", d.name());
            out.push(inputs.blame(&d.source, m));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::analyze::analyze_str;
    use crate::analyze::tests::lines;

    /// analyzers_test.go "Detect `image: auto` in non-injected pods".
    #[test]
    fn istio_case() {
        let text = include_str!("../../tests/analyzer_testdata/image-auto.yaml");
        let a = analyze_str(text, "image-auto.yaml");
        assert_eq!(
            lines(&a, "IST0147"),
            vec!["Error [IST0147] (Pod injected-pod.default) Pod injected-pod contains `image: auto` but does not match any Istio injection webhook selectors."]
        );
        assert_eq!(
            lines(&a, "IST0146"),
            vec!["Warning [IST0146] (Deployment non-injected-gateway-deployment.not-injected) Deployment non-injected-gateway-deployment contains `image: auto` but does not match any Istio injection webhook selectors."]
        );
        // In the injected namespace the namespace webhook selects it.
        let moved = text.replace("namespace: not-injected", "namespace: injected");
        assert!(lines(&analyze_str(&moved, "x.yaml"), "IST0146").is_empty());
    }
}
