//! The control plane's Kubernetes objects: namespace, account, least-privilege RBAC,
//! Deployment, Service, the sidecar injector's MutatingWebhookConfiguration, and the CA secret.
//!
//! Shaped after Istio's istio-discovery chart (manifests/charts/istio-control/istio-discovery/
//! templates: deployment.yaml, service.yaml, clusterrole.yaml, mutatingwebhook.yaml) with
//! Trellis's names (`trellis-control` in `trellis-system`) and ports: 15012 for sidecars (the mTLS
//! channel), 443 → 15017 for the webhook, as istiod's. Differences, on purpose:
//!
//! - the ClusterRole grants get/list/watch on exactly the kinds the control plane reads
//!   (`plane::kube` and the Istio kinds; of ConfigMaps, list/watch of the mesh config's name
//!   only), and the two writes it makes: the
//!   `istio-ca-root-cert` ConfigMaps and TokenReviews. Istio's also
//!   patches webhook configurations to inject their `caBundle`; here the CA bundle is
//!   written into the configuration at install time instead (`trellis install`, or Kustomize's
//!   replacement from the `cacerts` secret, see deploy/kustomization.yaml);
//! - the CA is Istio's plug-in CA secret `cacerts` (`trellis ca init` makes the files), from
//!   which the webhook's serving certificate is issued at start-up;
//! - the control plane reads the cluster itself (`--kube`: in-cluster configuration from the
//!   pod's service account, watching Services, EndpointSlices, Pods, Namespaces and the Istio
//!   kinds with the ClusterRole above), as istiod does; the directory source (`--dir`) is for
//!   running outside a cluster.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::ca::PluginFiles;
use crate::plane::mesh_settings::MESH_CONFIG_MAP;

pub const NAMESPACE: &str = "trellis-system";
pub const NAME: &str = "trellis-control";
pub const WEBHOOK_CONFIGURATION: &str = "trellis-sidecar-injector";
/// Istio's plug-in CA secret name.
pub const CA_SECRET: &str = "cacerts";
/// The sidecars' mTLS port and the webhook's container port (istiod's 15012 and 15017).
pub const PLANE_PORT: u16 = 15012;
pub const WEBHOOK_PORT: u16 = 15017;

/// What the manifests are made from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallSettings {
    pub image: String,
    pub image_pull_policy: String,
}

impl Default for InstallSettings {
    fn default() -> Self {
        InstallSettings {
            image: crate::inject::settings::DEFAULT_IMAGE.to_string(),
            image_pull_policy: "IfNotPresent".to_string(),
        }
    }
}

pub fn common_labels() -> Value {
    json!({"app.kubernetes.io/part-of": "trellis"})
}

fn labels() -> Value {
    json!({"app": NAME, "app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "trellis"})
}

pub fn namespace() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": NAMESPACE, "labels": common_labels()},
    })
}

pub fn service_account() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels()},
    })
}

/// Read-only access to what the control plane reads: the Kubernetes kinds of
/// [`crate::plane::kube`], the Istio kinds of [`super::crds`], and WorkloadEntry, which the
/// Kubernetes source (`trellis control --kube`) watches as well. Two writes, each as istiod's
/// ClusterRole has them: the mesh roots' ConfigMap in every namespace (get, create, update
/// of ConfigMaps: `plane::kube_source::root_cert`), and TokenReviews (create), which check
/// the token a sidecar sends with its first certificate request. And list/watch of the one
/// ConfigMap named `istio` (pilot's mesh config; `get` is the rule above's): the source
/// watches it in `istio-system` with a `metadata.name` field selector, which is what lets
/// RBAC authorize a list or watch by `resourceNames`. A ClusterRole rule rather than a Role
/// in `istio-system`, which need not exist when Trellis is installed; istiod's own ClusterRole
/// lists and watches every ConfigMap. Nodes: `list` and `watch` only, for the injection
/// webhook's `ENABLE_NATIVE_SIDECARS=auto`, which reads each node's kubelet version from a
/// watch (`plane::kube_source::nodes`) as istiod's Node informer does for
/// `DetectNativeSidecar` (istiod's ClusterRole grants nodes get, list and watch; the informer
/// needs no `get`).
pub fn cluster_role() -> Value {
    let read = ["get", "list", "watch"];
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": NAME, "labels": labels()},
        "rules": [
            {"apiGroups": [""], "resources": ["namespaces", "pods", "serviceaccounts", "services"], "verbs": read},
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "watch"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "update"]},
            {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [MESH_CONFIG_MAP.1],
             "verbs": ["list", "watch"]},
            {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": read},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
            {"apiGroups": ["networking.istio.io"],
             "resources": ["destinationrules", "gateways", "serviceentries", "sidecars", "virtualservices", "workloadentries"],
             "verbs": read},
            {"apiGroups": ["security.istio.io"],
             "resources": ["authorizationpolicies", "peerauthentications", "requestauthentications"],
             "verbs": read},
        ],
    })
}

pub fn cluster_role_binding() -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": NAME, "labels": labels()},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
        "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}],
    })
}

pub fn deployment(settings: &InstallSettings) -> Value {
    let sidecar_address = format!("{NAME}.{NAMESPACE}.svc:{PLANE_PORT}");
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels()},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": NAME}},
            "template": {
                // The control plane itself never gets a sidecar.
                "metadata": {"labels": {"app": NAME, "sidecar.istio.io/inject": "false"}},
                "spec": {
                    "serviceAccountName": NAME,
                    "containers": [{
                        "name": "control",
                        "image": settings.image,
                        "imagePullPolicy": settings.image_pull_policy,
                        "args": [
                            "control",
                            "--kube",
                            "--listen", format!("0.0.0.0:{PLANE_PORT}"),
                            "--webhook-listen", format!("0.0.0.0:{WEBHOOK_PORT}"),
                            "--ca-dir", "/etc/cacerts",
                            "--image", settings.image,
                            "--sidecar-control-plane", sidecar_address,
                        ],
                        "ports": [
                            {"name": "tcp-plane", "containerPort": PLANE_PORT, "protocol": "TCP"},
                            {"name": "https-webhook", "containerPort": WEBHOOK_PORT, "protocol": "TCP"},
                        ],
                        "readinessProbe": {
                            "httpGet": {"path": "/ready", "port": WEBHOOK_PORT, "scheme": "HTTPS"},
                            "periodSeconds": 3,
                            "timeoutSeconds": 5,
                        },
                        "resources": {
                            "requests": {"cpu": "100m", "memory": "128Mi"},
                            "limits": {"cpu": "1", "memory": "512Mi"},
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "capabilities": {"drop": ["ALL"]},
                            "readOnlyRootFilesystem": true,
                            "runAsNonRoot": true,
                            "runAsUser": 1337,
                            "runAsGroup": 1337,
                        },
                        "volumeMounts": [
                            {"name": "cacerts", "mountPath": "/etc/cacerts", "readOnly": true},
                        ],
                    }],
                    "volumes": [
                        {"name": "cacerts", "secret": {"secretName": CA_SECRET}},
                    ],
                },
            },
        },
    })
}

pub fn service() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels()},
        "spec": {
            "selector": {"app": NAME},
            "ports": [
                {"name": "tcp-plane", "port": PLANE_PORT, "targetPort": PLANE_PORT, "protocol": "TCP"},
                {"name": "https-webhook", "port": 443, "targetPort": WEBHOOK_PORT, "protocol": "TCP"},
            ],
        },
    })
}

fn selector(expressions: Value) -> Value {
    json!({"matchExpressions": expressions})
}

/// The sidecar injector's webhook configuration, with Istio's four selector cases for the
/// default revision (revision label on the namespace or on the pod, `istio-injection=enabled`
/// on the namespace, `sidecar.istio.io/inject=true` on the pod). `ca_bundle`: the PEM root
/// the API server trusts for the webhook (none: left for Kustomize to fill in).
pub fn mutating_webhook_configuration(ca_bundle: Option<&str>) -> Value {
    let not_disabled =
        json!({"key": "sidecar.istio.io/inject", "operator": "NotIn", "values": ["false"]});
    let cases = [
        (
            "rev.namespace",
            selector(json!([
                {"key": "istio.io/rev", "operator": "In", "values": ["default"]},
                {"key": "istio-injection", "operator": "DoesNotExist"},
            ])),
            selector(json!([not_disabled])),
        ),
        (
            "rev.object",
            selector(json!([
                {"key": "istio.io/rev", "operator": "DoesNotExist"},
                {"key": "istio-injection", "operator": "DoesNotExist"},
            ])),
            selector(json!([
                not_disabled,
                {"key": "istio.io/rev", "operator": "In", "values": ["default"]},
            ])),
        ),
        (
            "namespace",
            selector(json!([{"key": "istio-injection", "operator": "In", "values": ["enabled"]}])),
            selector(json!([not_disabled])),
        ),
        (
            "object",
            selector(json!([
                {"key": "istio-injection", "operator": "DoesNotExist"},
                {"key": "istio.io/rev", "operator": "DoesNotExist"},
            ])),
            selector(json!([
                {"key": "sidecar.istio.io/inject", "operator": "In", "values": ["true"]},
                {"key": "istio.io/rev", "operator": "DoesNotExist"},
            ])),
        ),
    ];
    let webhooks: Vec<Value> = cases
        .into_iter()
        .map(|(prefix, namespace_selector, object_selector)| {
            let mut client = json!({"service": {
                "name": NAME, "namespace": NAMESPACE, "path": "/inject", "port": 443}});
            if let (Some(pem), Some(map)) = (ca_bundle, client.as_object_mut()) {
                map.insert(
                    "caBundle".into(),
                    json!(base64::engine::general_purpose::STANDARD.encode(pem)),
                );
            }
            json!({
                "name": format!("{prefix}.sidecar-injector.trellis.dev"),
                "clientConfig": client,
                "namespaceSelector": namespace_selector,
                "objectSelector": object_selector,
                "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "reinvocationPolicy": "Never",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 10,
            })
        })
        .collect();
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": WEBHOOK_CONFIGURATION, "labels": labels()},
        "webhooks": webhooks,
    })
}

/// Istio's plug-in CA secret from the CA files.
pub fn ca_secret(files: &PluginFiles) -> Value {
    let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": CA_SECRET, "namespace": NAMESPACE, "labels": common_labels()},
        "type": "Opaque",
        "data": {
            "ca-cert.pem": encode(&files.ca_cert),
            "ca-key.pem": encode(&files.ca_key),
            "cert-chain.pem": encode(&files.cert_chain),
            "root-cert.pem": encode(&files.root_cert),
        },
    })
}
