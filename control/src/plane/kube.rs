//! The Kubernetes objects the directory source reads beside Istio's: `Service`, `Pod`,
//! `Deployment`, `EndpointSlice`, `Namespace` and `ServiceAccount`, typed as far as the mesh
//! interprets them.
//!
//! As for Istio kinds (`crate::istio::loader`), every key of the parts we interpret that the
//! type does not know is reported as a warning with its field path. The workload's own parts
//! of a pod spec (images, volumes, resources, probes ...) and of a controller spec (strategy,
//! revision history ...) are valid Kubernetes the mesh has no business with: they are accepted
//! without a word (`other` maps), so a real manifest loads without noise.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::diag::{ConfigError, Diagnostic};
use crate::istio::loader::format_path;
use crate::istio::{ObjectMeta, Source};

/// A value Kubernetes does not constrain here and we do not interpret.
type Opaque = Option<serde_yaml::Value>;

/// `v1 Service`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct KubeService {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: ServiceSpec,
    pub status: Opaque,
}

/// `ServiceSpec`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Pods whose labels include all of these back the service; empty: a selectorless service
    /// whose endpoints are written as EndpointSlices.
    pub selector: BTreeMap<String, String>,
    pub ports: Vec<KubeServicePort>,
    /// `ClusterIP` (default), `NodePort`, `LoadBalancer`, `ExternalName`.
    #[serde(rename = "type")]
    pub service_type: Option<String>,
    #[serde(rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    #[serde(rename = "clusterIPs")]
    pub cluster_ips: Vec<String>,
    pub external_name: Option<String>,
    pub publish_not_ready_addresses: Option<bool>,
    pub session_affinity: Opaque,
    pub session_affinity_config: Opaque,
    pub ip_families: Opaque,
    pub ip_family_policy: Opaque,
    pub internal_traffic_policy: Opaque,
    pub external_traffic_policy: Opaque,
    pub external_i_ps: Opaque,
    #[serde(rename = "loadBalancerIP")]
    pub load_balancer_ip: Opaque,
    pub load_balancer_source_ranges: Opaque,
    pub load_balancer_class: Opaque,
    pub allocate_load_balancer_node_ports: Opaque,
    pub health_check_node_port: Opaque,
    pub traffic_distribution: Opaque,
}

/// `ServicePort`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct KubeServicePort {
    pub name: Option<String>,
    pub port: u16,
    pub target_port: Option<IntOrString>,
    /// `TCP` (default), `UDP`, `SCTP`.
    pub protocol: Option<String>,
    pub app_protocol: Option<String>,
    pub node_port: Opaque,
}

/// Kubernetes `IntOrString`, as `targetPort` is written: a number or a container port's name.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum IntOrString {
    Int(u16),
    String(String),
}

/// `v1 Pod`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct KubePod {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: PodSpec,
    pub status: PodStatus,
}

/// The part of `PodSpec` the mesh reads; the rest is the workload's (see the module docs).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct PodSpec {
    pub service_account_name: Option<String>,
    /// Deprecated alias of `serviceAccountName`, still honoured by Kubernetes.
    pub service_account: Option<String>,
    pub containers: Vec<Container>,
    pub init_containers: Vec<Container>,
    pub host_network: bool,
    pub node_name: Option<String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_yaml::Value>,
}

/// A container: its name (`istio-proxy` marks an injected pod) and named ports (`targetPort`
/// by name resolves against them).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    pub ports: Vec<ContainerPort>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_yaml::Value>,
}

/// `ContainerPort`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerPort {
    pub name: Option<String>,
    pub container_port: u16,
    pub protocol: Option<String>,
    pub host_port: Opaque,
    #[serde(rename = "hostIP")]
    pub host_ip: Opaque,
}

/// `PodStatus`: the pod's address, once the kubelet has started it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(rename = "podIP")]
    pub pod_ip: Option<String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_yaml::Value>,
}

/// `apps/v1 Deployment` (StatefulSets and the like would read the same way).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct KubeDeployment {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: DeploymentSpec,
    pub status: Opaque,
}

/// `DeploymentSpec`: the pod template is what the mesh reads.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct DeploymentSpec {
    pub replicas: Option<u32>,
    pub selector: Opaque,
    pub template: PodTemplate,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_yaml::Value>,
}

/// `PodTemplateSpec`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct PodTemplate {
    pub metadata: ObjectMeta,
    pub spec: PodSpec,
}

/// `discovery.k8s.io/v1 EndpointSlice`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct KubeEndpointSlice {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    /// `IPv4`, `IPv6` or `FQDN`.
    pub address_type: String,
    pub endpoints: Vec<SliceEndpoint>,
    pub ports: Vec<SlicePort>,
}

/// One endpoint of a slice.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct SliceEndpoint {
    pub addresses: Vec<String>,
    pub conditions: SliceConditions,
    pub target_ref: Option<ObjectReference>,
    pub node_name: Opaque,
    pub zone: Opaque,
    pub hostname: Opaque,
    pub hints: Opaque,
    pub deprecated_topology: Opaque,
}

/// `EndpointConditions`: absent means true.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct SliceConditions {
    pub ready: Option<bool>,
    pub serving: Option<bool>,
    pub terminating: Option<bool>,
}

/// `ObjectReference` (an endpoint's pod).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ObjectReference {
    pub kind: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub uid: Opaque,
    pub resource_version: Opaque,
    pub api_version: Opaque,
}

/// `EndpointPort`: a service port's name and the port the endpoints serve it on.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct SlicePort {
    pub name: Option<String>,
    pub port: Option<u16>,
    pub protocol: Option<String>,
    pub app_protocol: Option<String>,
}

/// `v1 Namespace`: its labels decide sidecar injection.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct KubeNamespace {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: Opaque,
    pub status: Opaque,
}

/// `v1 ServiceAccount`: a pod may only name one that exists.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct KubeServiceAccount {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub secrets: Opaque,
    pub image_pull_secrets: Opaque,
    pub automount_service_account_token: Opaque,
}

/// One Kubernetes object read, with where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Kube<T> {
    pub source: Source,
    pub object: T,
}

/// Every Kubernetes object of the kinds above read from a set of files, in file order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KubeObjects {
    pub services: Vec<Kube<KubeService>>,
    pub pods: Vec<Kube<KubePod>>,
    pub deployments: Vec<Kube<KubeDeployment>>,
    pub endpoint_slices: Vec<Kube<KubeEndpointSlice>>,
    pub namespaces: Vec<Kube<KubeNamespace>>,
    pub service_accounts: Vec<Kube<KubeServiceAccount>>,
}

/// Whether `(apiVersion, kind)` is one of the kinds read here.
pub fn is_kube_kind(api_version: &str, kind: &str) -> bool {
    matches!(
        (api_version, kind),
        ("v1", "Service" | "Pod" | "Namespace" | "ServiceAccount")
            | ("apps/v1", "Deployment")
            | ("discovery.k8s.io/v1", "EndpointSlice")
    )
}

impl KubeObjects {
    /// Read one document already known (by [`is_kube_kind`]) to be of a kind read here;
    /// unknown fields become warnings in `diagnostics`.
    pub fn read_document(
        &mut self,
        value: serde_yaml::Value,
        source: Source,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Result<(), ConfigError> {
        match source.kind.as_str() {
            "Service" => self.services.push(typed(value, source, diagnostics)?),
            "Pod" => self.pods.push(typed(value, source, diagnostics)?),
            "Deployment" => self.deployments.push(typed(value, source, diagnostics)?),
            "EndpointSlice" => self
                .endpoint_slices
                .push(typed(value, source, diagnostics)?),
            "Namespace" => self.namespaces.push(typed(value, source, diagnostics)?),
            "ServiceAccount" => self
                .service_accounts
                .push(typed(value, source, diagnostics)?),
            other => {
                debug_assert!(false, "read_document called for kind {other}");
            }
        }
        Ok(())
    }
}

/// Deserialize `value` into `T`, reporting unknown fields and failing with the field path on a
/// wrong type or value (the same contract as the Istio loader).
fn typed<T: DeserializeOwned>(
    value: serde_yaml::Value,
    source: Source,
    diagnostics: &mut Vec<Diagnostic>,
) -> Result<Kube<T>, ConfigError> {
    let mut unknown = Vec::new();
    let result: Result<T, _> = {
        let mut record = |path: serde_ignored::Path<'_>| unknown.push(format_path(&path));
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut record))
    };
    let object = result.map_err(|e| ConfigError::Invalid {
        file: source.file.clone(),
        line: None,
        resource: source.to_string(),
        field: e.path().to_string(),
        message: e.inner().to_string(),
    })?;
    for field in unknown {
        diagnostics.push(
            Diagnostic::warning("unknown field, ignored")
                .file(source.file.clone())
                .resource(source.to_string())
                .field(field),
        );
    }
    Ok(Kube { source, object })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, kind: &str) -> (KubeObjects, Vec<Diagnostic>) {
        let value: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
        let mut objects = KubeObjects::default();
        let mut diags = Vec::new();
        let source = Source {
            file: "t.yaml".into(),
            kind: kind.into(),
            namespace: "default".into(),
            name: "x".into(),
        };
        objects.read_document(value, source, &mut diags).unwrap();
        (objects, diags)
    }

    #[test]
    fn service_ports_and_target_ports_by_number_or_name() {
        let (o, d) = read(
            "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  selector: {app: x}\n  ports:\n  - {name: http, port: 80, targetPort: 8080}\n  - {name: grpc-a, port: 90, targetPort: grpc, appProtocol: grpc}\n  typo: 1\n",
            "Service",
        );
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].field.as_deref(), Some("spec.typo"));
        let spec = &o.services[0].object.spec;
        assert_eq!(spec.ports[0].target_port, Some(IntOrString::Int(8080)));
        assert_eq!(
            spec.ports[1].target_port,
            Some(IntOrString::String("grpc".into()))
        );
    }

    #[test]
    fn pod_spec_fields_of_the_workload_are_accepted_silently() {
        let (o, d) = read(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: x, labels: {app: x}}\nspec:\n  serviceAccountName: sa\n  containers:\n  - name: app\n    image: nginx\n    ports: [{name: http, containerPort: 8080}]\n    resources: {}\n  volumes: []\nstatus: {podIP: 10.0.0.1, phase: Running}\n",
            "Pod",
        );
        assert!(d.is_empty(), "{d:?}");
        let pod = &o.pods[0].object;
        assert_eq!(pod.spec.service_account_name.as_deref(), Some("sa"));
        assert_eq!(pod.spec.containers[0].ports[0].container_port, 8080);
        assert_eq!(pod.status.pod_ip.as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn wrong_type_names_the_field() {
        let value: serde_yaml::Value = serde_yaml::from_str(
            "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: http}]}\n",
        )
        .unwrap();
        let source = Source {
            file: "t.yaml".into(),
            kind: "Service".into(),
            namespace: "default".into(),
            name: "x".into(),
        };
        let err = KubeObjects::default()
            .read_document(value, source, &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("spec.ports[0].port"), "{err}");
    }
}
