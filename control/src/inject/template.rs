//! The injected parts of a pod: Istio's sidecar injection template, rendered for Trellis.
//!
//! Follows manifests/charts/istio-control/istio-discovery/files/injection-template.yaml with
//! the chart's default values (no CNI, REDIRECT interception): the
//! `istio-init` init container programs capture (here `trellis init`, with istio-iptables's
//! flags computed from the `traffic.sidecar.istio.io/*` annotations exactly as the template
//! does), the `istio-proxy` container runs the sidecar (here `trellis proxy`) as UID/GID 1337
//! with a read-only root and no capabilities, with Istio's environment, probes, resources and
//! volumes (the `istio-token` projected token for audience `istio-ca` among them, and the
//! `istio-ca-root-cert` ConfigMap as `istiod-ca-cert`: the sidecar verifies the control
//! plane with the roots and presents the token on the channel).
//!
//! Where Trellis differs, on purpose: the sidecar's own config file (listeners on 15001/15006
//! and who the workload is) travels as the annotation [`PROXY_CONFIG_ANNOTATION`] and reaches
//! the container through the downward API volume the template already mounts
//! (`istio-podinfo`), so no ConfigMap has to exist in the pod's namespace; and
//! `holdApplicationUntilProxyStarts`' postStart hook is `trellis wait-ready` where Istio's is
//! `pilot-agent wait`. The image's entrypoint is `trellis` (Istio's is `pilot-agent`), so the
//! containers give `args` only, as Istio's template does.
//!
//! Native sidecars (the template's `$nativeSidecar`, decided in [`super::native`]): the same
//! `istio-proxy` container with `restartPolicy: Always`, which [`super::pod`] puts in
//! `initContainers` right after `istio-init`. The kubelet then starts the application only
//! once the sidecar's startupProbe (15021 `/healthz/ready`, the same probe as above) passes,
//! so there is no postStart hold (`$holdProxy` is `and hold (not $nativeSidecar)`), and stops
//! the sidecar (SIGTERM: it drains for `--drain-seconds` and exits) once the application has
//! exited. Its preStop hook, Istio's `pilot-agent request --debug-port=15020 POST drain`, is
//! `trellis request --debug-port=15020 POST drain`: when the pod's shutdown begins, the
//! sidecar drains its inbound side (connections close after their next response, the inbound
//! listeners stop accepting after the drain period) while its outbound side keeps serving the
//! application until it exits.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::settings::{exclude_inbound_port, ports, InjectSettings, PodAnnotations};
use super::InjectError;

/// The init container's name (`InitContainerName`).
pub const INIT_CONTAINER: &str = "istio-init";
/// The annotation carrying the sidecar's `trellis proxy --config` file.
pub const PROXY_CONFIG_ANNOTATION: &str = "sidecar.trellis.dev/proxyConfig";
/// Where the downward API puts it.
pub const PROXY_CONFIG_PATH: &str = "/etc/istio/pod/trellis-proxy.yaml";
/// The mesh roots' ConfigMap in every namespace (istiod's `istio-ca-root-cert`, written by
/// `trellis control --kube`), mounted where Istio's template mounts it.
pub const ROOT_CERT_CONFIGMAP: &str = "istio-ca-root-cert";
pub const ROOT_CERT_DIR: &str = "/var/run/secrets/istio";
pub const ROOT_CERT_PATH: &str = "/var/run/secrets/istio/root-cert.pem";
/// The projected service-account token for the `istio-ca` audience.
pub const TOKEN_PATH: &str = "/var/run/secrets/tokens/istio-token";

/// What the template reads of the pod being injected.
pub struct PodContext<'a> {
    pub annotations: PodAnnotations<'a>,
    pub labels: &'a BTreeMap<String, String>,
    pub namespace: &'a str,
    pub service_account: &'a str,
    /// The application containers' names, in order (`$containers` in the template).
    pub app_containers: Vec<String>,
    /// Every container port of the application containers, as JSON (`ISTIO_META_POD_PORTS`).
    pub pod_ports: Vec<Value>,
    /// The owning workload's name (`.DeploymentMeta.Name`), and its `apiVersion`/`kind`.
    pub workload_name: &'a str,
    pub owner: Option<(&'a str, &'a str)>,
    /// The template's `$nativeSidecar` ([`super::native::pod_wants_native`]).
    pub native: bool,
}

/// The template's resource block: the `sidecar.istio.io/proxy*` annotations when any is set,
/// else the chart's `global.proxy.resources`.
fn resources(a: &PodAnnotations<'_>) -> Value {
    let pick = |pairs: [(&str, &str); 2]| {
        let map: serde_json::Map<String, Value> = pairs
            .iter()
            .filter_map(|(key, name)| a.get(name).map(|v| (key.to_string(), json!(v))))
            .collect();
        (!map.is_empty()).then_some(Value::Object(map))
    };
    let requests = pick([
        ("cpu", "sidecar.istio.io/proxyCPU"),
        ("memory", "sidecar.istio.io/proxyMemory"),
    ]);
    let limits = pick([
        ("cpu", "sidecar.istio.io/proxyCPULimit"),
        ("memory", "sidecar.istio.io/proxyMemoryLimit"),
    ]);
    if requests.is_none() && limits.is_none() {
        return json!({
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "2000m", "memory": "1024Mi"},
        });
    }
    let mut out = serde_json::Map::new();
    if let Some(r) = requests {
        out.insert("requests".into(), r);
    }
    if let Some(l) = limits {
        out.insert("limits".into(), l);
    }
    Value::Object(out)
}

/// The interception mode; only REDIRECT is implemented by `trellis init`.
fn interception_mode(a: &PodAnnotations<'_>) -> Result<&'static str, InjectError> {
    match a.get_or("sidecar.istio.io/interceptionMode", "REDIRECT") {
        "REDIRECT" => Ok("REDIRECT"),
        "NONE" => Ok("NONE"),
        other => Err(InjectError::BadAnnotation {
            name: "sidecar.istio.io/interceptionMode".into(),
            value: other.into(),
            why: "Trellis intercepts with REDIRECT (or NONE); TPROXY is not supported".into(),
        }),
    }
}

fn image(settings: &InjectSettings, a: &PodAnnotations<'_>) -> String {
    // The template takes the annotation only when it is a full reference (has a '/').
    match a.get("sidecar.istio.io/proxyImage") {
        Some(custom) if custom.contains('/') => custom.to_string(),
        _ => settings.image.clone(),
    }
}

fn with_pull_policy(mut container: Value, settings: &InjectSettings) -> Value {
    if let (Some(policy), Some(map)) = (&settings.image_pull_policy, container.as_object_mut()) {
        map.insert("imagePullPolicy".into(), json!(policy));
    }
    container
}

/// The `istio-init` container (`None` with `interceptionMode: NONE`, as the template).
pub fn init_container(
    settings: &InjectSettings,
    pod: &PodContext<'_>,
) -> Result<Option<Value>, InjectError> {
    let a = &pod.annotations;
    let mode = interception_mode(a)?;
    if mode == "NONE" {
        return Ok(None);
    }
    let status_port = a.get_or(super::settings::STATUS_PORT, "15020");
    let excluded_inbound = exclude_inbound_port(
        status_port,
        a.get_or("traffic.sidecar.istio.io/excludeInboundPorts", ""),
    );
    let excluded_inbound = if excluded_inbound.is_empty() {
        format!("{},{}", ports::PROMETHEUS, ports::HEALTH)
    } else {
        format!("{},{},{excluded_inbound}", ports::PROMETHEUS, ports::HEALTH)
    };
    let mut args: Vec<String> = vec![
        "init".into(),
        "-p".into(),
        ports::OUTBOUND.to_string(),
        "-z".into(),
        ports::INBOUND.to_string(),
        "-u".into(),
        ports::PROXY_UID.to_string(),
        "-m".into(),
        mode.into(),
        "-i".into(),
        a.get_or("traffic.sidecar.istio.io/includeOutboundIPRanges", "*")
            .into(),
        "-x".into(),
        a.get_or("traffic.sidecar.istio.io/excludeOutboundIPRanges", "")
            .into(),
        "-b".into(),
        a.get_or("traffic.sidecar.istio.io/includeInboundPorts", "*")
            .into(),
        "-d".into(),
        excluded_inbound,
    ];
    for (flag, name) in [
        ("-q", "traffic.sidecar.istio.io/includeOutboundPorts"),
        ("-o", "traffic.sidecar.istio.io/excludeOutboundPorts"),
    ] {
        if let Some(value) = a.get(name) {
            args.extend([flag.to_string(), value.to_string()]);
        }
    }
    let virtual_interfaces = a
        .get("istio.io/reroute-virtual-interfaces")
        .or_else(|| a.get("traffic.sidecar.istio.io/kubevirtInterfaces"));
    if let Some(interfaces) = virtual_interfaces {
        args.extend(["-k".to_string(), interfaces.to_string()]);
    }
    if let Some(interfaces) = a.get("traffic.sidecar.istio.io/excludeInterfaces") {
        args.extend(["-c".to_string(), interfaces.to_string()]);
    }
    args.push(format!(
        "--log_output_level={}",
        a.get_or("sidecar.istio.io/agentLogLevel", "default:info")
    ));
    Ok(Some(with_pull_policy(
        json!({
            "name": INIT_CONTAINER,
            "image": image(settings, a),
            "args": args,
            "resources": resources(a),
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "privileged": false,
                "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
                "readOnlyRootFilesystem": false,
                "runAsGroup": 0,
                "runAsNonRoot": false,
                "runAsUser": 0,
            },
        }),
        settings,
    )))
}

fn field_env(name: &str, path: &str) -> Value {
    json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}})
}

fn resource_env(name: &str, resource: &str) -> Value {
    json!({"name": name, "valueFrom": {"resourceFieldRef": {"resource": resource, "divisor": "1"}}})
}

/// The `istio-proxy` container.
pub fn proxy_container(
    settings: &InjectSettings,
    pod: &PodContext<'_>,
) -> Result<Value, InjectError> {
    let a = &pod.annotations;
    let mode = interception_mode(a)?;
    let pod_ports = Value::Array(pod.pod_ports.clone());
    let mut env = vec![
        json!({"name": "CA_ADDR", "value": settings.control_plane}),
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("INSTANCE_IP", "status.podIP"),
        field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        field_env("HOST_IP", "status.hostIP"),
        resource_env("ISTIO_CPU_LIMIT", "limits.cpu"),
        json!({"name": "ISTIO_META_POD_PORTS", "value": pod_ports.to_string()}),
        json!({"name": "ISTIO_META_APP_CONTAINERS", "value": pod.app_containers.join(",")}),
        json!({"name": "ISTIO_META_CLUSTER_ID", "value": "Kubernetes"}),
        field_env("ISTIO_META_NODE_NAME", "spec.nodeName"),
        json!({"name": "ISTIO_META_INTERCEPTION_MODE", "value": mode}),
    ];
    let workload = pod
        .labels
        .get("service.istio.io/workload-name")
        .map_or(pod.workload_name, String::as_str);
    if !workload.is_empty() {
        env.push(json!({"name": "ISTIO_META_WORKLOAD_NAME", "value": workload}));
    }
    if let Some((api_version, kind)) = pod.owner.filter(|_| !pod.workload_name.is_empty()) {
        env.push(json!({"name": "ISTIO_META_OWNER", "value": format!(
            "kubernetes://apis/{api_version}/namespaces/{}/{}s/{}",
            pod.namespace, kind.to_lowercase(), pod.workload_name)}));
    }
    env.push(json!({"name": "ISTIO_META_MESH_ID", "value": settings.trust_domain}));
    env.push(json!({"name": "TRUST_DOMAIN", "value": settings.trust_domain}));
    let mut container = json!({
        "name": super::PROXY_CONTAINER,
        "image": image(settings, a),
        "ports": [
            {"containerPort": ports::OUTBOUND, "protocol": "TCP", "name": "tcp-outbound"},
            {"containerPort": ports::INBOUND, "protocol": "TCP", "name": "tcp-inbound"},
            {"containerPort": ports::ADMIN, "protocol": "TCP", "name": "http-admin"},
            {"containerPort": ports::STATUS, "protocol": "TCP", "name": "http-agent"},
            {"containerPort": ports::HEALTH, "protocol": "TCP", "name": "status-port"},
            {"containerPort": ports::PROMETHEUS, "protocol": "TCP", "name": "http-envoy-prom"},
        ],
        "args": [
            "proxy",
            "--config", PROXY_CONFIG_PATH,
            "--control-plane", settings.control_plane,
            // The channel is TLS: the control plane's certificate checked against the mesh
            // roots (the istio-ca-root-cert ConfigMap the control plane writes into every
            // namespace, mounted as istiod-ca-cert), and the projected token for the istio-ca
            // audience sent with the first certificate request, checked by a TokenReview, as
            // pilot-agent does (CA_ROOT_CA / the istio-token path of the template).
            "--control-plane-ca", ROOT_CERT_PATH,
            "--control-plane-token", TOKEN_PATH,
            "--node", "$(POD_NAME)",
            "--health-port", ports::HEALTH.to_string(),
            "--admin-port", ports::ADMIN.to_string(),
            "--status-port", ports::STATUS.to_string(),
        ],
        "env": env,
        "resources": resources(a),
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "privileged": false,
            "readOnlyRootFilesystem": true,
            "runAsGroup": ports::PROXY_UID,
            "runAsNonRoot": true,
            "runAsUser": ports::PROXY_UID,
        },
        "volumeMounts": [
            {"name": "workload-socket", "mountPath": "/var/run/secrets/workload-spiffe-uds"},
            {"name": "credential-socket", "mountPath": "/var/run/secrets/credential-uds"},
            {"name": "workload-certs", "mountPath": "/var/run/secrets/workload-spiffe-credentials"},
            {"name": "istiod-ca-cert", "mountPath": ROOT_CERT_DIR},
            {"name": "istio-data", "mountPath": "/var/lib/istio/data"},
            {"name": "istio-envoy", "mountPath": "/etc/istio/proxy"},
            {"name": "istio-token", "mountPath": "/var/run/secrets/tokens"},
            {"name": "istio-podinfo", "mountPath": "/etc/istio/pod"},
        ],
    });
    let map = container
        .as_object_mut()
        .ok_or_else(|| InjectError::Internal("the proxy container is an object".into()))?;
    if a.status_port()? != 0 {
        map.insert(
            "startupProbe".into(),
            json!({
                "httpGet": {"path": "/healthz/ready", "port": ports::HEALTH},
                "initialDelaySeconds": 0, "periodSeconds": 1, "timeoutSeconds": 3,
                "failureThreshold": 600,
            }),
        );
        map.insert("readinessProbe".into(), json!({
            "httpGet": {"path": "/healthz/ready", "port": ports::HEALTH},
            "initialDelaySeconds": a.seconds("readiness.status.sidecar.istio.io/initialDelaySeconds", 0)?,
            "periodSeconds": a.seconds("readiness.status.sidecar.istio.io/periodSeconds", 15)?,
            "timeoutSeconds": 3,
            "failureThreshold": a.seconds("readiness.status.sidecar.istio.io/failureThreshold", 4)?,
        }));
    }
    if pod.native {
        map.insert("restartPolicy".into(), json!("Always"));
        // "preStop is called when the pod starts shutdown. Initialize drain. We will get
        // SIGTERM once applications are torn down."
        let debug_port = format!("--debug-port={}", a.status_port()?);
        map.insert(
            "lifecycle".into(),
            json!({"preStop": {"exec": {"command": ["trellis", "request", debug_port, "POST", "drain"]}}}),
        );
    } else if settings.hold_application_until_proxy_starts {
        map.insert(
            "lifecycle".into(),
            json!({"postStart": {"exec": {"command": ["trellis", "wait-ready"]}}}),
        );
    }
    Ok(with_pull_policy(container, settings))
}

/// The volumes the sidecar mounts (the template's, in its order).
pub fn volumes() -> Vec<Value> {
    vec![
        json!({"name": "workload-socket", "emptyDir": {}}),
        json!({"name": "credential-socket", "emptyDir": {}}),
        json!({"name": "workload-certs", "emptyDir": {}}),
        json!({"name": "istio-envoy", "emptyDir": {"medium": "Memory"}}),
        json!({"name": "istio-data", "emptyDir": {}}),
        json!({"name": "istio-podinfo", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
            {"path": "trellis-proxy.yaml", "fieldRef": {
                "fieldPath": format!("metadata.annotations['{PROXY_CONFIG_ANNOTATION}']")}},
        ]}}),
        json!({"name": "istio-token", "projected": {"sources": [{"serviceAccountToken": {
            "path": "istio-token", "expirationSeconds": 43200, "audience": "istio-ca"}}]}}),
        json!({"name": "istiod-ca-cert", "configMap": {"name": ROOT_CERT_CONFIGMAP}}),
    ]
}

/// The sidecar's `trellis proxy --config` file: capture listeners on all addresses (the
/// inbound one forwards to each connection's original destination) and the workload, whose
/// labels and account select the policies that apply to it. The outbound listener passes
/// unknown destinations through, Istio's default `outboundTrafficPolicy` (ALLOW_ANY, as
/// `DefaultMeshConfig`); a mesh config that says REGISTRY_ONLY wins over it
/// (`plane::mesh_apply`).
pub fn proxy_config(pod: &PodContext<'_>, labels: &BTreeMap<String, String>) -> String {
    let config = json!({
        "listeners": [
            {"name": "outbound", "address": format!("0.0.0.0:{}", ports::OUTBOUND), "direction": "outbound", "passthrough": true},
            {"name": "inbound", "address": format!("0.0.0.0:{}", ports::INBOUND), "direction": "inbound"},
        ],
        "workload": {
            "namespace": pod.namespace,
            "serviceAccount": pod.service_account,
            "labels": labels,
        },
    });
    // serde_json's text is YAML too (flow style), and stays on one line in the annotation.
    config.to_string()
}
