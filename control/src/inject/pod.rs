//! Injecting one pod template: the decision, then Istio's `injectPod` in order.
//!
//! Istio (pkg/kube/inject/webhook.go, `injectPod` and `postProcessPod`) renders the template,
//! merges it over the pod, rewrites the application probes, applies the template's labels and
//! annotations, puts the containers in order (`reorderPod`: `istio-init` after the user's init
//! containers so they are not captured; `istio-proxy` first when the application waits for it,
//! last otherwise so `kubectl exec` lands in the application) and records what it added in
//! `sidecar.istio.io/status` (`getInjectionStatus`). The same steps run here on the pod's
//! YAML, keeping every key the user wrote where it was.
//!
//! A native sidecar ([`super::native`]) is the `istio-proxy` container in `initContainers`:
//! `reorderPod`'s native branch puts `istio-init` first and `istio-proxy` right after it, ahead
//! of the user's init containers so that they run inside the mesh, and the status records both
//! as init containers and no container (Go marshals the empty list as `null`).

use std::collections::BTreeMap;

use serde_yaml::{Mapping, Value};

use super::native::pod_wants_native;
use super::probes::{rewrite_probes, APP_PROBERS_ENV};
use super::settings::{InjectSettings, PodAnnotations};
use super::template::{self, PodContext, PROXY_CONFIG_ANNOTATION};
use super::InjectError;
use crate::plane::injection::{
    already_injected, inject_required, is_injected, PodMeta, PROXY_CONTAINER,
    SIDECAR_STATUS_ANNOTATION, TLS_MODE_ISTIO, TLS_MODE_LABEL,
};
use crate::plane::kube::PodSpec;

/// Who decided the pod is to be injected before the injector saw it.
#[derive(Clone, Copy, Debug)]
pub enum Selection<'a> {
    /// The API server, by the webhook configuration's selectors: only Istio's
    /// `injectRequired` remains (host network, system namespaces, the pod's opt-out).
    Webhook,
    /// `trellis inject` with the namespace's labels known: the webhook configuration's
    /// selectors apply as in the cluster (`istio-injection=enabled` ...).
    Namespace(&'a BTreeMap<String, String>),
    /// `trellis inject` without them: `istioctl kube-inject`'s rule, every pod that does not
    /// opt out.
    Explicit,
}

/// The workload a pod template belongs to (`DeploymentMeta` and `TypeMeta` in Istio).
#[derive(Clone, Debug, Default)]
pub struct Owner {
    pub name: String,
    pub api_version: String,
    pub kind: String,
}

/// What happened to one pod template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Injected,
    Skipped(SkipReason),
}

/// Why a pod template was left as it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// It has the status annotation or an `istio-proxy` container: injecting twice changes
    /// nothing.
    AlreadyInjected,
    /// Host networking, a system namespace, or `sidecar.istio.io/inject: "false"`.
    InjectionDisabled,
    /// Its namespace is not selected (`istio-injection` / `istio.io/rev`) and it does not opt
    /// in.
    NamespaceNotSelected,
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SkipReason::AlreadyInjected => "it already has a sidecar",
            SkipReason::InjectionDisabled => "sidecar injection is disabled for it",
            SkipReason::NamespaceNotSelected => {
                "its namespace is not labelled istio-injection=enabled"
            }
        })
    }
}

fn key(name: &str) -> Value {
    Value::String(name.to_string())
}

/// A string map of `metadata` (labels, annotations); values must be strings.
fn string_map(metadata: &Mapping, field: &str) -> Result<BTreeMap<String, String>, InjectError> {
    let mut out = BTreeMap::new();
    match metadata.get(key(field)) {
        None | Some(Value::Null) => {}
        Some(Value::Mapping(map)) => {
            for (k, v) in map {
                let (Some(k), Some(v)) = (k.as_str(), v.as_str()) else {
                    return Err(InjectError::Invalid(format!(
                        "metadata.{field}: {k:?}: {v:?} is not a string to string entry"
                    )));
                };
                out.insert(k.to_string(), v.to_string());
            }
        }
        Some(other) => {
            return Err(InjectError::Invalid(format!(
                "metadata.{field} is not a map: {other:?}"
            )))
        }
    }
    Ok(out)
}

/// A mutable sub-mapping, created when absent (or null).
fn mapping_mut<'m>(parent: &'m mut Mapping, field: &str) -> Result<&'m mut Mapping, InjectError> {
    let entry = parent.entry(key(field)).or_insert(Value::Null);
    if entry.is_null() {
        *entry = Value::Mapping(Mapping::new());
    }
    entry
        .as_mapping_mut()
        .ok_or_else(|| InjectError::Invalid(format!("{field} is not a map")))
}

/// A mutable list, created when absent (or null).
fn list_mut<'m>(parent: &'m mut Mapping, field: &str) -> Result<&'m mut Vec<Value>, InjectError> {
    let entry = parent.entry(key(field)).or_insert(Value::Null);
    if entry.is_null() {
        *entry = Value::Sequence(Vec::new());
    }
    entry
        .as_sequence_mut()
        .ok_or_else(|| InjectError::Invalid(format!("spec.{field} is not a list")))
}

fn to_yaml(value: serde_json::Value) -> Result<Value, InjectError> {
    serde_yaml::to_value(value).map_err(|e| InjectError::Internal(e.to_string()))
}

fn names(list: &[Value]) -> Vec<String> {
    list.iter()
        .filter_map(|c| c.get("name")?.as_str().map(str::to_string))
        .collect()
}

/// `trunc 63 | trimAll "-_."` of the template's canonical name.
fn canonical_name(name: &str) -> String {
    let truncated: String = name.chars().take(63).collect();
    truncated
        .trim_matches(|c| c == '-' || c == '_' || c == '.')
        .to_string()
}

/// Whether and why not to inject this pod template.
fn decide(
    metadata: &Mapping,
    spec: &Mapping,
    namespace: &str,
    selection: Selection<'_>,
) -> Result<Option<SkipReason>, InjectError> {
    let labels = string_map(metadata, "labels")?;
    let annotations = string_map(metadata, "annotations")?;
    let typed: PodSpec = serde_yaml::from_value(Value::Mapping(spec.clone()))
        .map_err(|e| InjectError::Invalid(format!("pod spec: {e}")))?;
    let pod = PodMeta {
        namespace,
        labels: &labels,
        annotations: &annotations,
        spec: &typed,
    };
    if already_injected(&pod) {
        return Ok(Some(SkipReason::AlreadyInjected));
    }
    if !inject_required(&pod) {
        return Ok(Some(SkipReason::InjectionDisabled));
    }
    Ok(match selection {
        Selection::Webhook | Selection::Explicit => None,
        Selection::Namespace(ns_labels) => {
            (!is_injected(&pod, ns_labels)).then_some(SkipReason::NamespaceNotSelected)
        }
    })
}

/// Inject the sidecar into a pod template (`metadata` and `spec` of a Pod or of a workload's
/// `template`), in `namespace`, owned by `owner`; `injector_native` is the injector's
/// `.NativeSidecars` for this pod, which the pod's annotation may override.
pub fn inject_template(
    metadata: &mut Mapping,
    spec: &mut Mapping,
    namespace: &str,
    owner: &Owner,
    selection: Selection<'_>,
    settings: &InjectSettings,
    injector_native: bool,
) -> Result<Outcome, InjectError> {
    if let Some(reason) = decide(metadata, spec, namespace, selection)? {
        return Ok(Outcome::Skipped(reason));
    }
    debug_assert!(!metadata.contains_key(key(SIDECAR_STATUS_ANNOTATION)));
    let mut labels = string_map(metadata, "labels")?;
    let annotations = string_map(metadata, "annotations")?;
    super::validate::validate_annotations(&annotations)?;
    let pod_annotations = PodAnnotations(&annotations);
    let status_port = pod_annotations.status_port()?;
    let native = pod_wants_native(&pod_annotations, injector_native);
    let service_account = spec
        .get(key("serviceAccountName"))
        .or_else(|| spec.get(key("serviceAccount")))
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let app_containers: Vec<String> = names(list_mut(spec, "containers")?)
        .into_iter()
        .filter(|n| n != PROXY_CONTAINER)
        .collect();
    let pod_ports: Vec<serde_json::Value> = list_mut(spec, "containers")?
        .iter()
        .filter_map(|c| c.get("ports")?.as_sequence().cloned())
        .flatten()
        .filter_map(|p| serde_json::to_value(p).ok())
        .collect();

    // Labels (the template's `metadata.labels`), each keeping a value the pod already has.
    labels
        .entry(TLS_MODE_LABEL.into())
        .or_insert_with(|| TLS_MODE_ISTIO.into());
    let name = ["app.kubernetes.io/name", "app"]
        .iter()
        .find_map(|l| labels.get(*l).cloned())
        .unwrap_or_else(|| owner.name.clone());
    labels
        .entry("service.istio.io/canonical-name".into())
        .or_insert_with(|| canonical_name(&name));
    let revision = ["app.kubernetes.io/version", "version"]
        .iter()
        .find_map(|l| labels.get(*l).cloned())
        .unwrap_or_else(|| "latest".into());
    labels
        .entry("service.istio.io/canonical-revision".into())
        .or_insert(revision);

    let ctx = PodContext {
        annotations: PodAnnotations(&annotations),
        labels: &labels,
        namespace,
        service_account: &service_account,
        app_containers: app_containers.clone(),
        pod_ports,
        workload_name: &owner.name,
        owner: (!owner.kind.is_empty())
            .then_some((owner.api_version.as_str(), owner.kind.as_str())),
        native,
    };
    let init = template::init_container(settings, &ctx)?;
    let mut proxy = to_yaml(template::proxy_container(settings, &ctx)?)?;
    let new_volumes: Vec<Value> = template::volumes()
        .into_iter()
        .map(to_yaml)
        .collect::<Result<_, _>>()?;
    let proxy_config = template::proxy_config(&ctx, &labels);

    // The pod's labels, in the user's order, then the new ones.
    let label_map = mapping_mut(metadata, "labels")?;
    for (k, v) in &labels {
        if !label_map.contains_key(key(k)) {
            label_map.insert(key(k), key(v));
        }
    }

    // Containers: probes rewritten (init containers first, as Istio), then the sidecar.
    let mut probers = serde_json::Map::new();
    let rewrite = pod_annotations
        .boolean("sidecar.istio.io/rewriteAppHTTPProbers")
        .unwrap_or(settings.rewrite_app_probes);
    if rewrite {
        rewrite_probes(list_mut(spec, "initContainers")?, status_port, &mut probers);
        rewrite_probes(list_mut(spec, "containers")?, status_port, &mut probers);
        // An empty list we created to look in is not the user's.
        if list_mut(spec, "initContainers")?.is_empty() {
            spec.remove(key("initContainers"));
        }
    }
    if !probers.is_empty() {
        let env = proxy
            .get_mut("env")
            .and_then(Value::as_sequence_mut)
            .ok_or_else(|| InjectError::Internal("the proxy container has env".into()))?;
        let value = serde_json::Value::Object(probers).to_string();
        env.push(to_yaml(
            serde_json::json!({"name": APP_PROBERS_ENV, "value": value}),
        )?);
    }
    let mut injected_init: Vec<String> = init
        .iter()
        .map(|_| template::INIT_CONTAINER.into())
        .collect();
    let mut injected_containers = vec![PROXY_CONTAINER.to_string()];
    if native {
        // reorderPod's native branch: istio-init, istio-proxy, then the user's.
        let mut ours = Vec::new();
        if let Some(init) = init {
            ours.push(to_yaml(init)?);
        }
        ours.push(proxy);
        let init_list = list_mut(spec, "initContainers")?;
        init_list.splice(0..0, ours);
        injected_init.push(PROXY_CONTAINER.into());
        injected_containers.clear();
    } else {
        // Istio-init after the user's init containers, so they are not captured.
        if let Some(init) = init {
            list_mut(spec, "initContainers")?.push(to_yaml(init)?);
        }
        let containers = list_mut(spec, "containers")?;
        if settings.hold_application_until_proxy_starts {
            containers.insert(0, proxy);
        } else {
            containers.push(proxy);
        }
    }
    let volume_names = names(&new_volumes);
    list_mut(spec, "volumes")?.extend(new_volumes);

    // Annotations: the template's, then the status record (`getInjectionStatus` of what the
    // template added; Go writes an empty list as null).
    let annotation_map = mapping_mut(metadata, "annotations")?;
    annotation_map.insert(key("istio.io/rev"), key(&settings.revision));
    if let Some(first) = app_containers.first() {
        for name in [
            "kubectl.kubernetes.io/default-logs-container",
            "kubectl.kubernetes.io/default-container",
        ] {
            if !annotation_map.contains_key(key(name)) {
                annotation_map.insert(key(name), key(first));
            }
        }
    }
    if !annotation_map.contains_key(key(PROXY_CONFIG_ANNOTATION)) {
        annotation_map.insert(key(PROXY_CONFIG_ANNOTATION), key(&proxy_config));
    }
    let or_null = |names: Vec<String>| {
        if names.is_empty() {
            serde_json::Value::Null
        } else {
            names.into()
        }
    };
    let status = serde_json::json!({
        "initContainers": or_null(injected_init),
        "containers": or_null(injected_containers),
        "volumes": volume_names,
        "imagePullSecrets": null,
        "revision": settings.revision,
    });
    let status_text = serde_json::to_string(&StatusOrder(&status))
        .map_err(|e| InjectError::Internal(e.to_string()))?;
    annotation_map.insert(key(SIDECAR_STATUS_ANNOTATION), key(&status_text));
    Ok(Outcome::Injected)
}

/// The status annotation's keys in `SidecarInjectionStatus` field order, as Istio writes it.
struct StatusOrder<'a>(&'a serde_json::Value);

impl serde::Serialize for StatusOrder<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(5))?;
        for field in [
            "initContainers",
            "containers",
            "volumes",
            "imagePullSecrets",
            "revision",
        ] {
            map.serialize_entry(field, &self.0[field])?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> (Mapping, Mapping) {
        let value: Value = serde_yaml::from_str(yaml).unwrap();
        let metadata = value["metadata"].as_mapping().cloned().unwrap_or_default();
        let spec = value["spec"].as_mapping().cloned().unwrap_or_default();
        (metadata, spec)
    }

    fn inject(
        yaml: &str,
        settings: &InjectSettings,
    ) -> Result<(Outcome, Mapping, Mapping), InjectError> {
        let (mut metadata, mut spec) = pod(yaml);
        let owner = Owner {
            name: "web".into(),
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
        };
        let outcome = inject_template(
            &mut metadata,
            &mut spec,
            "shop",
            &owner,
            Selection::Explicit,
            settings,
            false,
        )?;
        Ok((outcome, metadata, spec))
    }

    fn container_names(spec: &Mapping, field: &str) -> Vec<String> {
        names(
            spec.get(key(field))
                .and_then(Value::as_sequence)
                .map(Vec::as_slice)
                .unwrap_or_default(),
        )
    }

    const APP: &str = "metadata: {labels: {app: web}}\nspec:\n  initContainers: [{name: migrate}]\n  containers: [{name: web}, {name: log}]\n";

    #[test]
    fn without_hold_the_sidecar_goes_last_and_istio_init_after_the_users_init_containers() {
        let settings = InjectSettings {
            hold_application_until_proxy_starts: false,
            ..InjectSettings::default()
        };
        let (outcome, _, spec) = inject(APP, &settings).unwrap();
        assert_eq!(outcome, Outcome::Injected);
        assert_eq!(
            container_names(&spec, "containers"),
            ["web", "log", "istio-proxy"]
        );
        assert_eq!(
            container_names(&spec, "initContainers"),
            ["migrate", "istio-init"]
        );
        let proxy = &spec[&key("containers")][2];
        assert!(
            proxy.get("lifecycle").is_none(),
            "no postStart wait without hold"
        );
    }

    #[test]
    fn annotations_choose_image_interception_and_resources() {
        let yaml = "metadata:\n  annotations:\n    sidecar.istio.io/proxyImage: registry.local/trellis:dev\n    sidecar.istio.io/interceptionMode: NONE\n    sidecar.istio.io/proxyMemory: 64Mi\nspec:\n  containers: [{name: web}]\n";
        let (_, metadata, spec) = inject(yaml, &InjectSettings::default()).unwrap();
        assert!(
            container_names(&spec, "initContainers").is_empty(),
            "NONE: no init container"
        );
        let proxy = &spec[&key("containers")][0];
        assert_eq!(proxy["image"], key("registry.local/trellis:dev"));
        assert_eq!(proxy["resources"]["requests"]["memory"], key("64Mi"));
        assert!(proxy["resources"].get("limits").is_none());
        let status = metadata[&key("annotations")][&key(SIDECAR_STATUS_ANNOTATION)]
            .as_str()
            .unwrap();
        assert!(
            status.starts_with(r#"{"initContainers":null,"containers":["istio-proxy"]"#),
            "{status}"
        );
        // The labels the template adds, defaults from the owner.
        assert_eq!(
            metadata[&key("labels")][&key("service.istio.io/canonical-name")],
            key("web")
        );
        assert_eq!(
            metadata[&key("labels")][&key("service.istio.io/canonical-revision")],
            key("latest")
        );
    }

    #[test]
    fn the_init_arguments_are_istios_for_its_traffic_annotations_testdata() {
        // Input and expected `istio-iptables` arguments of Istio's
        // pkg/kube/inject/testdata/inject/traffic-annotations.yaml(.injected).
        let yaml = r#"
metadata:
  annotations:
    sidecar.istio.io/proxyCPU: 4000m
    traffic.sidecar.istio.io/includeInboundPorts: "1,2,3"
    traffic.sidecar.istio.io/excludeInboundPorts: "4,5,6"
    traffic.sidecar.istio.io/excludeOutboundPorts: "7,8,9"
    traffic.sidecar.istio.io/includeOutboundIPRanges: "127.0.0.1/24,10.96.0.1/24"
    traffic.sidecar.istio.io/excludeOutboundIPRanges: "10.96.0.2/24,10.96.0.3/24"
  labels: {app: traffic}
spec:
  containers: [{name: traffic, image: "fake.docker.io/google-samples/traffic-go-gke:1.0"}]
"#;
        let (_, _, spec) = inject(yaml, &InjectSettings::default()).unwrap();
        let init = &spec[&key("initContainers")][0];
        let args: Vec<&str> = init["args"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let istio = [
            "istio-iptables",
            "-p",
            "15001",
            "-z",
            "15006",
            "-u",
            "1337",
            "-m",
            "REDIRECT",
            "-i",
            "127.0.0.1/24,10.96.0.1/24",
            "-x",
            "10.96.0.2/24,10.96.0.3/24",
            "-b",
            "1,2,3",
            "-d",
            "15090,15021,4,5,6,15020",
            "-o",
            "7,8,9",
            "--log_output_level=default:info",
        ];
        assert_eq!(args[0], "init", "trellis init in istio-iptables' place");
        assert_eq!(args[1..], istio[1..]);
        let proxy = &spec[&key("containers")][0];
        assert_eq!(
            proxy["resources"],
            serde_yaml::from_str::<Value>("{requests: {cpu: 4000m}}").unwrap()
        );
    }

    #[test]
    fn tproxy_and_bad_labels_are_refused_with_the_reason() {
        let tproxy = "metadata: {annotations: {sidecar.istio.io/interceptionMode: TPROXY}}\nspec: {containers: [{name: a}]}\n";
        let err = inject(tproxy, &InjectSettings::default()).unwrap_err();
        assert!(err.to_string().contains("TPROXY"), "{err}");
        let numeric = "metadata: {labels: {version: 2}}\nspec: {containers: [{name: a}]}\n";
        let err = inject(numeric, &InjectSettings::default()).unwrap_err();
        assert!(err.to_string().contains("metadata.labels"), "{err}");
    }

    #[test]
    fn opted_out_host_network_and_injected_pods_are_left_alone() {
        for (yaml, reason) in [
            ("metadata: {labels: {sidecar.istio.io/inject: 'false'}}\nspec: {containers: [{name: a}]}\n", SkipReason::InjectionDisabled),
            ("spec: {hostNetwork: true, containers: [{name: a}]}\n", SkipReason::InjectionDisabled),
            ("spec: {containers: [{name: a}, {name: istio-proxy}]}\n", SkipReason::AlreadyInjected),
        ] {
            let (outcome, metadata, spec) = inject(yaml, &InjectSettings::default()).unwrap();
            assert_eq!(outcome, Outcome::Skipped(reason));
            assert_eq!(pod(yaml), (metadata, spec), "left as it was");
        }
    }
}
