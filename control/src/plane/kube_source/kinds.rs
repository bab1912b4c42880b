//! The kinds the Kubernetes source watches, and what of each object it keeps.
//!
//! Istio's kinds are served at several versions of one stored object
//! (networking.istio.io v1, v1beta1, v1alpha3): watching one version sees every object, so
//! each kind lists its versions in preference order and the source watches the first one the
//! API server serves. Deployments and ServiceAccounts, which the directory source also reads,
//! are not watched: on a cluster the Deployment's pods exist (reading both would count each
//! replica twice), and the API server already refuses a pod naming a missing service account.
//! Of ConfigMaps only one is: `istio-system/istio`, pilot's mesh config.

use kube::api::{Api, ApiResource, DynamicObject};
use serde_json::Value;

use crate::plane::mesh_settings::MESH_CONFIG_MAP;

/// One watched kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchedKind {
    pub kind: &'static str,
    /// Empty for the core group.
    pub group: &'static str,
    /// Served versions to try, preferred first.
    pub versions: &'static [&'static str],
    pub plural: &'static str,
    /// Defined by a CRD that may not be installed (Istio's kinds): a 404 is expected and
    /// means "none yet", not a failure.
    pub custom: bool,
    /// `(namespace, name)`: only this object is watched, in its namespace with a
    /// `metadata.name` field selector (the mesh config's ConfigMap: the control plane needs
    /// no other ConfigMap, and RBAC can then grant list/watch of that name alone).
    pub only: Option<(&'static str, &'static str)>,
}

const NETWORKING: &str = "networking.istio.io";
const NETWORKING_VERSIONS: &[&str] = &["v1", "v1beta1", "v1alpha3"];
const SECURITY: &str = "security.istio.io";
const SECURITY_VERSIONS: &[&str] = &["v1", "v1beta1"];

const fn builtin(kind: &'static str, group: &'static str, plural: &'static str) -> WatchedKind {
    WatchedKind {
        kind,
        group,
        versions: &["v1"],
        plural,
        custom: false,
        only: None,
    }
}

const fn istio(
    kind: &'static str,
    group: &'static str,
    versions: &'static [&'static str],
    plural: &'static str,
) -> WatchedKind {
    WatchedKind {
        kind,
        group,
        versions,
        plural,
        custom: true,
        only: None,
    }
}

/// Every watched kind, in the order their objects enter a snapshot (Kubernetes objects first,
/// as the registry is derived from them, then Istio's in the loader's order).
pub const WATCHED: &[WatchedKind] = &[
    builtin("Namespace", "", "namespaces"),
    builtin("Service", "", "services"),
    builtin("Pod", "", "pods"),
    builtin("EndpointSlice", "discovery.k8s.io", "endpointslices"),
    // pilot's mesh config (`MESH_CONFIG_MAP`): its `mesh` key, read by the snapshot.
    WatchedKind {
        only: Some(MESH_CONFIG_MAP),
        ..builtin("ConfigMap", "", "configmaps")
    },
    istio(
        "VirtualService",
        NETWORKING,
        NETWORKING_VERSIONS,
        "virtualservices",
    ),
    istio(
        "DestinationRule",
        NETWORKING,
        NETWORKING_VERSIONS,
        "destinationrules",
    ),
    istio("Gateway", NETWORKING, NETWORKING_VERSIONS, "gateways"),
    istio(
        "ServiceEntry",
        NETWORKING,
        NETWORKING_VERSIONS,
        "serviceentries",
    ),
    istio("Sidecar", NETWORKING, NETWORKING_VERSIONS, "sidecars"),
    istio(
        "WorkloadEntry",
        NETWORKING,
        NETWORKING_VERSIONS,
        "workloadentries",
    ),
    istio(
        "PeerAuthentication",
        SECURITY,
        SECURITY_VERSIONS,
        "peerauthentications",
    ),
    istio(
        "AuthorizationPolicy",
        SECURITY,
        SECURITY_VERSIONS,
        "authorizationpolicies",
    ),
    istio(
        "RequestAuthentication",
        SECURITY,
        SECURITY_VERSIONS,
        "requestauthentications",
    ),
];

impl WatchedKind {
    /// The API to list and watch this kind with: cluster-wide, or the one object's namespace.
    pub fn api(&self, client: kube::Client, resource: &ApiResource) -> Api<DynamicObject> {
        match self.only {
            Some((namespace, _)) => Api::namespaced_with(client, namespace, resource),
            None => Api::all_with(client, resource),
        }
    }

    /// The field selector that keeps a watch to the one object (`None`: every object).
    pub fn field_selector(&self) -> Option<String> {
        self.only.map(|(_, name)| format!("metadata.name={name}"))
    }

    /// The kind at `version`, as kube's dynamic API addresses it.
    pub fn api_resource(&self, version: &str) -> ApiResource {
        ApiResource {
            group: self.group.to_string(),
            version: version.to_string(),
            api_version: if self.group.is_empty() {
                version.to_string()
            } else {
                format!("{}/{version}", self.group)
            },
            kind: self.kind.to_string(),
            plural: self.plural.to_string(),
        }
    }
}

/// The name every object of the Kubernetes source carries as its "file" in diagnostics and
/// documents (as `<inline>` names resources given as strings).
pub const KUBE_FILE: &str = "<kubernetes>";

/// Metadata the API server rewrites on every write, which the mesh never reads.
const VOLATILE_METADATA: &[&str] = &["managedFields", "resourceVersion", "generation"];

/// The Pod status fields the mesh reads (`super::super::workloads`: the pod's address); the
/// rest (conditions, container statuses) changes with every probe and restart.
const POD_STATUS_KEPT: &[&str] = &["podIP", "podIPs", "phase"];

/// `object` as the snapshot reads it: `apiVersion` and `kind` set (list responses omit them
/// for built-in kinds), and without what changes without changing the mesh: volatile
/// metadata, and `status` (Istio's own status writes would otherwise come back as changes)
/// except a Pod's address. A change to anything left out does not make a new snapshot.
pub fn pruned(resource: &ApiResource, object: &DynamicObject) -> Value {
    let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
    let Some(map) = value.as_object_mut() else {
        return value;
    };
    map.insert(
        "apiVersion".to_string(),
        Value::String(resource.api_version.clone()),
    );
    map.insert("kind".to_string(), Value::String(resource.kind.clone()));
    if let Some(metadata) = map.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in VOLATILE_METADATA {
            metadata.remove(*key);
        }
    }
    let status = map.remove("status");
    if resource.kind == "Pod" {
        if let Some(Value::Object(mut status)) = status {
            status.retain(|key, _| POD_STATUS_KEPT.contains(&key.as_str()));
            map.insert("status".to_string(), Value::Object(status));
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_kinds_prefer_v1_and_core_kinds_have_no_group() {
        let vs = WATCHED.iter().find(|k| k.kind == "VirtualService").unwrap();
        assert_eq!(
            vs.api_resource(vs.versions[0]).api_version,
            "networking.istio.io/v1"
        );
        let pod = WATCHED.iter().find(|k| k.kind == "Pod").unwrap();
        assert_eq!(pod.api_resource("v1").api_version, "v1");
        assert!(!pod.custom);
    }

    #[test]
    fn pruning_keeps_what_the_mesh_reads() {
        let pod: DynamicObject = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "resourceVersion": "7",
                         "managedFields": [{}], "labels": {"app": "x"}},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"podIP": "10.0.0.1", "conditions": [{"type": "Ready"}]}
        }))
        .unwrap();
        let kind = WATCHED.iter().find(|k| k.kind == "Pod").unwrap();
        let value = pruned(&kind.api_resource("v1"), &pod);
        assert_eq!(value["apiVersion"], "v1");
        assert_eq!(value["kind"], "Pod");
        assert_eq!(value["metadata"]["labels"]["app"], "x");
        assert!(value["metadata"].get("resourceVersion").is_none());
        assert!(value["metadata"].get("managedFields").is_none());
        assert_eq!(value["status"], serde_json::json!({"podIP": "10.0.0.1"}));
    }
}
