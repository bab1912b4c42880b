//! Workload instances (pods) from `Pod`s and `Deployment`s: who each one is (namespace,
//! service account, labels: a [`Workload`]), whether it has a sidecar, and where it listens.
//!
//! Addresses. A Pod's is its `status.podIP`, as on a cluster. Nothing runs a Deployment's pods
//! in a directory, so their addresses are written on the pod template as the annotation
//! [`ADDRESSES_ANNOTATION`]: `"10.0.0.5, 10.0.0.6"`, one entry per replica. For a mesh on
//! loopback, where every workload shares `127.0.0.1`, an entry may carry a port,
//! `127.0.0.1:9081`: that replica then serves every service port on that one port (the
//! registry's `ServiceEndpoint::default_port`). The annotation also works on a Pod, where it
//! wins over `status.podIP`. A Deployment without it still gives one instance with no address,
//! so its sidecar has an identity, but no endpoints.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use super::injection::{injected_labels, is_injected, PodMeta};
use super::kube::{KubeObjects, PodSpec};
use crate::diag::Diagnostic;
use crate::istio::{ObjectMeta, Source};
use crate::translate::Workload;

/// The pod-template (or pod) annotation listing replica addresses, `IP` or `IP:PORT`.
pub const ADDRESSES_ANNOTATION: &str = "trellis.dev/addresses";

/// Where a workload instance listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstanceAddress {
    pub ip: IpAddr,
    /// When set, the instance serves every port here (a loopback mesh).
    pub port: Option<u16>,
}

/// One pod (or one replica of a Deployment).
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadInstance {
    /// The `Pod` or `Deployment` it comes from.
    pub source: Source,
    /// The pod's name; a Deployment's replicas are `<deployment>-<index>`.
    pub name: String,
    /// Namespace, service account and labels (with `security.istio.io/tlsMode` when injected).
    pub workload: Workload,
    pub injected: bool,
    pub address: Option<InstanceAddress>,
    /// Container port name → number, for `targetPort` by name.
    pub named_ports: BTreeMap<String, u16>,
}

/// Every workload instance, in file order (Pods, then Deployments' replicas).
pub fn workload_instances(
    objects: &KubeObjects,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<WorkloadInstance> {
    let namespace_labels: BTreeMap<&str, &BTreeMap<String, String>> = objects
        .namespaces
        .iter()
        .map(|n| (n.object.metadata.name.as_str(), &n.object.metadata.labels))
        .collect();
    let empty = BTreeMap::new();
    let mut out = Vec::new();
    let mut add = |source: &Source, meta: &ObjectMeta, spec: &PodSpec, names: Vec<Named>| {
        let ns = source.namespace.as_str();
        let pod = PodMeta {
            namespace: ns,
            labels: &meta.labels,
            annotations: &meta.annotations,
            spec,
        };
        let injected = is_injected(&pod, namespace_labels.get(ns).copied().unwrap_or(&empty));
        let labels = if injected {
            injected_labels(&meta.labels)
        } else {
            meta.labels.clone()
        };
        let service_account = spec
            .service_account_name
            .clone()
            .or_else(|| spec.service_account.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".to_string());
        let named_ports = spec
            .containers
            .iter()
            .flat_map(|c| &c.ports)
            .filter_map(|p| Some((p.name.clone()?, p.container_port)))
            .collect();
        for named in names {
            out.push(WorkloadInstance {
                source: source.clone(),
                name: named.name,
                workload: Workload {
                    namespace: ns.to_string(),
                    service_account: service_account.clone(),
                    labels: labels.clone(),
                    locality: crate::translate::locality::locality_from_labels(&meta.labels),
                },
                injected,
                address: named.address,
                named_ports: BTreeMap::clone(&named_ports),
            });
        }
    };
    for pod in &objects.pods {
        let meta = &pod.object.metadata;
        let written = annotated_addresses(meta, &pod.source, diagnostics);
        let address = match written.as_slice() {
            [] => pod
                .object
                .status
                .pod_ip
                .as_deref()
                .and_then(|ip| parse_address(ip, &pod.source, "status.podIP", diagnostics)),
            [one] => Some(*one),
            [first, ..] => {
                diagnostics.push(pod_diag(
                    &pod.source,
                    "a Pod has one address; the first is used",
                ));
                Some(*first)
            }
        };
        let names = vec![Named {
            name: pod.source.name.clone(),
            address,
        }];
        add(&pod.source, meta, &pod.object.spec, names);
    }
    for deploy in &objects.deployments {
        let template = &deploy.object.spec.template;
        let addresses = annotated_addresses(&template.metadata, &deploy.source, diagnostics);
        let names = if addresses.is_empty() {
            vec![Named {
                name: deploy.source.name.clone(),
                address: None,
            }]
        } else {
            addresses
                .into_iter()
                .enumerate()
                .map(|(i, a)| Named {
                    name: format!("{}-{i}", deploy.source.name),
                    address: Some(a),
                })
                .collect()
        };
        add(&deploy.source, &template.metadata, &template.spec, names);
    }
    out
}

struct Named {
    name: String,
    address: Option<InstanceAddress>,
}

fn pod_diag(source: &Source, message: &str) -> Diagnostic {
    Diagnostic::warning(message)
        .file(source.file.clone())
        .resource(source.to_string())
}

fn annotated_addresses(
    meta: &ObjectMeta,
    source: &Source,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<InstanceAddress> {
    let Some(list) = meta.annotations.get(ADDRESSES_ANNOTATION) else {
        return Vec::new();
    };
    let field = format!("annotations.{ADDRESSES_ANNOTATION}");
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter_map(|entry| parse_address(entry, source, &field, diagnostics))
        .collect()
}

fn parse_address(
    text: &str,
    source: &Source,
    field: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<InstanceAddress> {
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Some(InstanceAddress {
            ip: sa.ip(),
            port: Some(sa.port()),
        });
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(InstanceAddress { ip, port: None });
    }
    diagnostics
        .push(pod_diag(source, &format!("{text:?} is not IP or IP:PORT; ignored")).field(field));
    None
}
