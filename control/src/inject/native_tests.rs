//! The native sidecar form of one pod, against Istio's own test data
//! (pkg/kube/inject/testdata/inject/native-sidecar*.yaml and their `.injected` files).

use serde_yaml::{Mapping, Value};

use super::pod::{inject_template, Outcome, Owner, Selection, SkipReason};
use super::settings::InjectSettings;
use crate::plane::injection::SIDECAR_STATUS_ANNOTATION;

fn key(name: &str) -> Value {
    Value::String(name.to_string())
}

/// Inject `yaml` (a pod's `metadata` and `spec`) with the injector's `.NativeSidecars`.
fn inject(yaml: &str, injector_native: bool) -> (Outcome, Mapping, Mapping) {
    let value: Value = serde_yaml::from_str(yaml).expect("test YAML");
    let mut metadata = value["metadata"].as_mapping().cloned().unwrap_or_default();
    let mut spec = value["spec"].as_mapping().cloned().unwrap_or_default();
    let owner = Owner {
        name: "hello".into(),
        api_version: "v1".into(),
        kind: "Pod".into(),
    };
    let outcome = inject_template(
        &mut metadata,
        &mut spec,
        "default",
        &owner,
        Selection::Explicit,
        &InjectSettings::default(),
        injector_native,
    )
    .expect("injects");
    (outcome, metadata, spec)
}

fn names(spec: &Mapping, field: &str) -> Vec<String> {
    spec.get(key(field))
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name")?.as_str().map(str::to_string))
        .collect()
}

fn status(metadata: &Mapping) -> String {
    metadata[&key("annotations")][&key(SIDECAR_STATUS_ANNOTATION)]
        .as_str()
        .expect("status annotation")
        .to_string()
}

/// native-sidecar.yaml: a pod that already has a sidecar of its own among its init containers.
const NATIVE_SIDECAR: &str = r#"
metadata: {name: hello}
spec:
  initContainers:
    - name: other-sidecar
      restartPolicy: Always
      readinessProbe: {httpGet: {port: 3333}}
      image: "fake.docker.io/google-samples/hello-go-gke:1.0"
      ports: [{name: http, containerPort: 80}]
  containers:
    - name: hello
      image: "fake.docker.io/google-samples/hello-go-gke:1.0"
      ports: [{name: http, containerPort: 80}]
"#;

#[test]
fn istios_native_sidecar_testdata_orders_and_records_as_istio() {
    let (outcome, metadata, spec) = inject(NATIVE_SIDECAR, true);
    assert_eq!(outcome, Outcome::Injected);
    // reorderPod's native branch: istio-init, istio-proxy, then the pod's own.
    assert_eq!(
        names(&spec, "initContainers"),
        ["istio-init", "istio-proxy", "other-sidecar"]
    );
    assert_eq!(names(&spec, "containers"), ["hello"]);
    // Istio's status, less the istio-ca-crl volume Trellis does not mount.
    assert_eq!(
        status(&metadata),
        r#"{"initContainers":["istio-init","istio-proxy"],"containers":null,"volumes":["workload-socket","credential-socket","workload-certs","istio-envoy","istio-data","istio-podinfo","istio-token","istiod-ca-cert"],"imagePullSecrets":null,"revision":"default"}"#
    );
    let inits = spec[&key("initContainers")].as_sequence().expect("list");
    let proxy = &inits[1];
    assert_eq!(proxy["restartPolicy"], key("Always"));
    let lifecycle = &proxy["lifecycle"];
    assert!(lifecycle.get("postStart").is_none(), "no postStart hold");
    let drain: Value = serde_yaml::from_str(
        "{exec: {command: [trellis, request, --debug-port=15020, POST, drain]}}",
    )
    .expect("yaml");
    assert_eq!(lifecycle["preStop"], drain, "Istio's preStop drain");
    let startup: Value = serde_yaml::from_str(
        "{httpGet: {path: /healthz/ready, port: 15021}, initialDelaySeconds: 0, periodSeconds: 1, timeoutSeconds: 3, failureThreshold: 600}",
    )
    .expect("yaml");
    assert_eq!(proxy["startupProbe"], startup);
    // The pod's own sidecar has its probe rewritten, and the sidecar runs the original.
    assert_eq!(
        inits[2]["readinessProbe"]["httpGet"],
        serde_yaml::from_str::<Value>("{port: 15020, path: /app-health/other-sidecar/readyz}")
            .expect("yaml")
    );
    let probers = proxy["env"]
        .as_sequence()
        .expect("env")
        .iter()
        .find(|e| e["name"] == key("ISTIO_KUBE_APP_PROBERS"))
        .and_then(|e| e["value"].as_str())
        .expect("ISTIO_KUBE_APP_PROBERS");
    assert_eq!(
        probers,
        r#"{"/app-health/other-sidecar/readyz":{"httpGet":{"port":3333}}}"#
    );
}

#[test]
fn the_annotation_overrides_the_injector_both_ways() {
    // native-sidecar-opt-out.yaml / native-sidecar-opt-in.yaml, each with either setting.
    let opt_out = "metadata: {annotations: {sidecar.istio.io/nativeSidecar: 'false'}}\nspec: {containers: [{name: hello}]}\n";
    let opt_in = "metadata: {annotations: {sidecar.istio.io/nativeSidecar: 'true'}}\nspec: {containers: [{name: hello}]}\n";
    for injector in [true, false] {
        let (_, _, spec) = inject(opt_out, injector);
        assert_eq!(names(&spec, "containers"), ["istio-proxy", "hello"]);
        assert_eq!(names(&spec, "initContainers"), ["istio-init"]);
        let (_, _, spec) = inject(opt_in, injector);
        assert_eq!(names(&spec, "containers"), ["hello"]);
        assert_eq!(
            names(&spec, "initContainers"),
            ["istio-init", "istio-proxy"]
        );
    }
}

#[test]
fn without_interception_the_sidecar_alone_is_an_init_container() {
    // `$noInitContainer` is `and NONE (not $nativeSidecar)`: the native sidecar still needs
    // the initContainers list, with no istio-init in it.
    let none = "metadata: {annotations: {sidecar.istio.io/interceptionMode: NONE}}\nspec: {containers: [{name: hello}]}\n";
    let (_, metadata, spec) = inject(none, true);
    assert_eq!(names(&spec, "initContainers"), ["istio-proxy"]);
    assert!(
        status(&metadata).starts_with(r#"{"initContainers":["istio-proxy"],"containers":null,"#),
        "{}",
        status(&metadata)
    );
}

#[test]
fn a_natively_injected_pod_is_injected_already() {
    let (_, metadata, spec) = inject(NATIVE_SIDECAR, true);
    let mut pod = Mapping::new();
    pod.insert(key("metadata"), Value::Mapping(metadata.clone()));
    pod.insert(key("spec"), Value::Mapping(spec.clone()));
    let text = serde_yaml::to_string(&pod).expect("yaml");
    for injector in [true, false] {
        let (outcome, again_metadata, again_spec) = inject(&text, injector);
        assert_eq!(outcome, Outcome::Skipped(SkipReason::AlreadyInjected));
        assert_eq!(
            (again_metadata, again_spec),
            (metadata.clone(), spec.clone())
        );
    }
    // Recognised by the container alone too, with the status annotation gone.
    let mut bare = metadata;
    if let Some(Value::Mapping(annotations)) = bare.get_mut(key("annotations")) {
        annotations.remove(key(SIDECAR_STATUS_ANNOTATION));
    }
    pod.insert(key("metadata"), Value::Mapping(bare));
    let text = serde_yaml::to_string(&pod).expect("yaml");
    assert_eq!(
        inject(&text, true).0,
        Outcome::Skipped(SkipReason::AlreadyInjected)
    );
}
