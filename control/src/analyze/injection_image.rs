//! IST0158 PodsIstioProxyImageMismatchInNamespace: pods of an injected namespace whose
//! `istio-proxy` image is not the one the injector now puts in (they predate an upgrade).
//!
//! As Istio's `injection.ImageAnalyzer` (`pkg/config/analysis/analyzers/injection/
//! injection-image.go`): the proxy image of each `istio-sidecar-injector*` ConfigMap is its JSON
//! `values` key's `global.proxy.image`, prefixed with `global.hub` and suffixed with
//! `:global.tag` unless it holds a `/`. A namespace is injected by `istio-injection: enabled`
//! (the default revision's ConfigMap) or an `istio.io/rev` label (that revision's); each pod
//! there without a `sidecar.istio.io/proxyImage` annotation whose `istio-proxy` container or
//! init container runs another image (or the image with `-<variant>`, the ProxyConfig image
//! type) is named in one message on its Namespace. The variant is the last one set of: the mesh
//! config's `defaultConfig.image.imageType`, ProxyConfig resources (the mesh's root namespace,
//! then the pod's namespace, then a selector-matching one) and the pod's
//! `proxy.istio.io/config` annotation.

use std::collections::BTreeMap;

use super::codes::PODS_ISTIO_PROXY_IMAGE_MISMATCH_IN_NAMESPACE;
use super::input::Inputs;
use super::message::Message;
use super::object::{selects, seq_at, str_at, string_map, Object};

/// Istio's `GetIstioProxyImage`.
fn proxy_image(config_map: &Object) -> String {
    let values = config_map
        .str_at(&["data", "values"])
        .and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok());
    let Some(values) = values else {
        return String::new();
    };
    let global = &values["global"];
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let image = text(&global["proxy"]["image"]);
    if image.contains('/') {
        return image;
    }
    format!("{}/{image}:{}", text(&global["hub"]), text(&global["tag"]))
}

/// `util.GetInjectorConfigMapName`.
fn config_map_name(revision: &str) -> String {
    match revision {
        "" | "default" => "istio-sidecar-injector".to_string(),
        rev => format!("istio-sidecar-injector-{rev}"),
    }
}

/// `image.imageType` of a ProxyConfig-shaped value (empty when unset).
fn image_type(v: &serde_yaml::Value) -> &str {
    str_at(v, &["image", "imageType"]).unwrap_or_default()
}

/// Istio's `EffectiveProxyConfigResolver.ImageType`.
fn variant(inputs: &Inputs, pod: &Object) -> String {
    let root = inputs.mesh.config.root_namespace();
    let mut variant = inputs.mesh.config.image_type().to_string();
    let mut set = |t: &str| {
        if !t.is_empty() {
            variant = t.to_string();
        }
    };
    let configs: Vec<&Object> = inputs
        .objects_of("ProxyConfig")
        .filter(|o| o.api_version.starts_with("networking.istio.io/"))
        .collect();
    let spec = |o: &Object| {
        o.at(&["spec"])
            .map(image_type)
            .unwrap_or_default()
            .to_string()
    };
    for o in configs.iter().filter(|o| o.namespace() == root) {
        set(&spec(o));
    }
    for o in &configs {
        let selector = o.at(&["spec", "selector"]);
        if o.namespace() != root && o.namespace() == pod.namespace() && selector.is_none() {
            set(&spec(o));
        }
    }
    let labels = pod.labels();
    for o in &configs {
        let selector = string_map(&o.value, &["spec", "selector", "matchLabels"]);
        let workload = o.namespace() != root && o.at(&["spec", "selector"]).is_some();
        if workload && o.namespace() == pod.namespace() && selects(&selector, &labels) {
            set(&spec(o));
        }
    }
    if let Some(annotation) = pod.annotations().get("proxy.istio.io/config") {
        if let Ok(pc) = serde_yaml::from_str::<serde_yaml::Value>(annotation) {
            set(image_type(&pc));
        }
    }
    if variant == "default" {
        variant.clear();
    }
    variant
}

/// Run the check over injected namespaces' pods.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    let images: BTreeMap<&str, String> = inputs
        .kube_objects_of("ConfigMap")
        .filter(|c| c.name().starts_with("istio-sidecar-injector"))
        .map(|c| (c.name(), proxy_image(c)))
        .collect();
    if images.is_empty() {
        return;
    }
    // namespace -> (its object, the revision that injects it).
    let mut injected: BTreeMap<&str, (&Object, String)> = BTreeMap::new();
    for ns in inputs.kube_objects_of("Namespace") {
        let labels = ns.labels();
        if let Some(rev) = labels.get("istio.io/rev") {
            injected.insert(ns.name(), (ns, rev.clone()));
        } else if labels
            .get("istio-injection")
            .is_some_and(|v| v == "enabled")
        {
            injected.insert(ns.name(), (ns, "default".to_string()));
        }
    }
    let mut mismatched: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for pod in inputs.kube_objects_of("Pod") {
        let Some((_, rev)) = injected.get(pod.namespace()) else {
            continue;
        };
        let custom = pod
            .annotations()
            .get("sidecar.istio.io/proxyImage")
            .is_some_and(|v| !v.is_empty());
        if custom {
            continue;
        }
        let Some(expected) = images.get(config_map_name(rev).as_str()) else {
            continue;
        };
        let variant = variant(inputs, pod);
        let proxies = ["containers", "initContainers"]
            .iter()
            .flat_map(|k| seq_at(&pod.value, &["spec", k]))
            .filter(|c| str_at(c, &["name"]) == Some("istio-proxy"));
        for c in proxies {
            let image = str_at(c, &["image"]).unwrap_or_default();
            if image != expected && image != format!("{expected}-{variant}") {
                mismatched
                    .entry(pod.namespace())
                    .or_default()
                    .push(pod.name());
            }
        }
    }
    for (ns, mut pods) in mismatched {
        pods.sort_unstable();
        let m = Message::new(
            PODS_ISTIO_PROXY_IMAGE_MISMATCH_IN_NAMESPACE,
            format!(
                "The Istio proxy images of the pods running in the namespace do not match the image defined in the injection configuration (pod names: [{}]). This often happens after upgrading the Istio control-plane and can be fixed by redeploying the pods.",
                pods.join(" ")
            ),
        );
        out.push(inputs.blame(&injected[ns].0.source, m));
    }
}

#[cfg(test)]
mod tests {
    use crate::analyze::tests::lines;
    use crate::analyze::{analyze_resources, Analysis, Inputs};

    fn analyze(files: &[(&str, &str)]) -> Analysis {
        let mut inputs = Inputs::default();
        for (name, text) in files {
            inputs.add_str(text, name);
        }
        analyze_resources(&inputs, "case")
    }

    const PODS: &str =
        include_str!("../../tests/analyzer_testdata/injection-with-mismatched-sidecar.yaml");
    const INJECTOR: &str =
        include_str!("../../tests/analyzer_testdata/common/sidecar-injector-configmap.yaml");

    /// analyzers_test.go "istioInjectionProxyImageMismatch".
    #[test]
    fn istio_case() {
        let a = analyze(&[("pods.yaml", PODS), ("injector.yaml", INJECTOR)]);
        assert_eq!(
            lines(&a, "IST0158"),
            vec![
                "Warning [IST0158] (Namespace enabled-namespace) The Istio proxy images of the pods running in the namespace do not match the image defined in the injection configuration (pod names: [details-v1-pod-old details-v1-pod-old-pre details-v1-pod-old-pre-2 details-v1-pod-old-pre-3]). This often happens after upgrading the Istio control-plane and can be fixed by redeploying the pods.",
                "Warning [IST0158] (Namespace enabled-namespace-native) The Istio proxy images of the pods running in the namespace do not match the image defined in the injection configuration (pod names: [details-v1-pod-old-native]). This often happens after upgrading the Istio control-plane and can be fixed by redeploying the pods.",
            ]
        );
    }

    /// "istioInjectionProxyImageMismatchWithRevisionCanary" and "...Absolute".
    #[test]
    fn revisions_and_absolute_images() {
        let absolute = include_str!(
            "../../tests/analyzer_testdata/sidecar-injector-configmap-absolute-override.yaml"
        );
        let canary = include_str!(
            "../../tests/analyzer_testdata/sidecar-injector-configmap-with-revision-canary.yaml"
        );
        let namespaces = |a: &Analysis| -> Vec<String> {
            a.with_code("IST0158")
                .map(|m| m.resource.clone().unwrap_or_default())
                .collect()
        };
        let a = analyze(&[("pods.yaml", PODS), ("abs.yaml", absolute)]);
        assert_eq!(
            namespaces(&a),
            vec![
                "Namespace enabled-namespace",
                "Namespace enabled-namespace-native"
            ]
        );
        let a = analyze(&[
            ("pods.yaml", PODS),
            ("abs.yaml", absolute),
            ("c.yaml", canary),
        ]);
        assert_eq!(
            namespaces(&a),
            vec![
                "Namespace enabled-namespace",
                "Namespace enabled-namespace-native",
                "Namespace revision-namespace"
            ]
        );
    }

    /// "injectionImageDistrolessNoMeshConfig": nothing.
    #[test]
    fn distroless_without_mesh_config() {
        let pods = include_str!(
            "../../tests/analyzer_testdata/injection-image-distroless-no-meshconfig.yaml"
        );
        let a = analyze(&[("pods.yaml", pods), ("injector.yaml", INJECTOR)]);
        assert!(lines(&a, "IST0158").is_empty(), "{a}");
    }

    /// "injectionImageDistroless": the mesh config's `imageType: distroless` makes the
    /// `-distroless` image expected, so only the pod with the plain image mismatches.
    #[test]
    fn distroless_from_mesh_config() {
        let pods = include_str!("../../tests/analyzer_testdata/injection-image-distroless.yaml");
        let mesh = include_str!("../../tests/analyzer_testdata/common/meshconfig.yaml");
        let mut inputs = Inputs::default();
        inputs.add_str(pods, "pods.yaml");
        inputs.add_str(INJECTOR, "injector.yaml");
        let without = analyze_resources(&inputs, "case");
        inputs.set_mesh_config_str(mesh, "mesh.yaml").unwrap();
        let with = analyze_resources(&inputs, "case");
        let found = |a: &Analysis| -> Vec<String> {
            a.with_code("IST0158")
                .map(|m| m.resource.clone().unwrap_or_default())
                .collect()
        };
        assert_eq!(found(&with), vec!["Namespace enabled-namespace"], "{with}");
        assert_eq!(
            found(&without),
            vec![
                "Namespace enabled-namespace",
                "Namespace enabled-namespace-2"
            ],
            "the -distroless pod mismatches without the mesh config"
        );
    }
}
