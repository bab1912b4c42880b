//! The service registry derived from Kubernetes `Service`s, their pods and `EndpointSlice`s,
//! as istiod's Kubernetes controller builds it (pilot/pkg/serviceregistry/kube/controller/).
//!
//! - Host: `<name>.<namespace>.svc.cluster.local`; ports in declaration order, each with its
//!   protocol from `appProtocol`, else the port name's prefix (`http-web` is HTTP), else
//!   unknown (sniffed), and UDP for UDP ports (`ConvertProtocol`, pkg/config/kube/conversion.go).
//! - Endpoints: a Service's own `EndpointSlice`s (label `kubernetes.io/service-name`) when the
//!   directory has any, read as pilot's `updateEndpointCacheForSlice`
//!   (pilot/pkg/serviceregistry/kube/controller/endpointslice.go): not-ready endpoints left
//!   out, FQDN slices unsupported, the pod found by `targetRef` or by IP (a `targetRef` to a
//!   pod that is not there drops the endpoint), ports by service port name. Otherwise what
//!   Kubernetes' EndpointSlice controller would write for the `selector`: every pod of the
//!   namespace whose labels include it and that has an address, each service port at its
//!   `targetPort` (a number, a container port's name, or the service port when absent).
//! - Each endpoint carries its pod's labels (with `security.istio.io/tlsMode` on injected pods)
//!   and service account (`NewEndpointBuilder`, endpoint_builder.go).

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::kube::{IntOrString, Kube, KubeEndpointSlice, KubeObjects, KubeService};
use super::workloads::WorkloadInstance;
use crate::diag::Diagnostic;
use crate::translate::{Registry, Service, ServiceEndpoint, ServicePort};

/// The label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The registry of every Service in `objects`, with endpoints from `instances`.
pub fn derive_registry(
    objects: &KubeObjects,
    instances: &[WorkloadInstance],
    diagnostics: &mut Vec<Diagnostic>,
) -> Registry {
    let mut registry = Registry::default();
    let mut by_namespace: BTreeMap<&str, Vec<&WorkloadInstance>> = BTreeMap::new();
    for w in instances {
        by_namespace
            .entry(w.workload.namespace.as_str())
            .or_default()
            .push(w);
    }
    let mut slices_of: BTreeMap<(&str, &str), Vec<&Kube<KubeEndpointSlice>>> = BTreeMap::new();
    for s in &objects.endpoint_slices {
        if let Some(name) = s.object.metadata.labels.get(SERVICE_NAME_LABEL) {
            slices_of
                .entry((s.source.namespace.as_str(), name.as_str()))
                .or_default()
                .push(s);
        }
    }
    for svc in &objects.services {
        let key = (svc.source.namespace.as_str(), svc.source.name.as_str());
        let pods = by_namespace.get(key.0).map(Vec::as_slice).unwrap_or(&[]);
        let slices = slices_of.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        let Some(service) = derive_service(svc, slices, pods, diagnostics) else {
            continue;
        };
        if registry.service(&service.host).is_some() {
            diagnostics.push(diag(svc, "defined twice; the first definition is used"));
            continue;
        }
        registry.services.push(service);
    }
    for slice in &objects.endpoint_slices {
        let named = slice.object.metadata.labels.get(SERVICE_NAME_LABEL);
        let known = named.is_some_and(|name| {
            objects
                .services
                .iter()
                .any(|s| &s.source.name == name && s.source.namespace == slice.source.namespace)
        });
        if !known {
            diagnostics.push(diag(
                slice,
                &format!("no Service in its namespace is named by its {SERVICE_NAME_LABEL} label; ignored"),
            ));
        }
    }
    registry
}

fn diag<T>(object: &Kube<T>, message: &str) -> Diagnostic {
    Diagnostic::warning(message)
        .file(object.source.file.clone())
        .resource(object.source.to_string())
}

/// One Service, from its EndpointSlices or the pods of its namespace (`pods`).
fn derive_service(
    svc: &Kube<KubeService>,
    slices: &[&Kube<KubeEndpointSlice>],
    pods: &[&WorkloadInstance],
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Service> {
    let spec = &svc.object.spec;
    let namespace = svc.source.namespace.clone();
    if spec.service_type.as_deref() == Some("ExternalName") {
        diagnostics.push(diag(
            svc,
            "ExternalName Services are not supported yet (use a ServiceEntry); skipped",
        ));
        return None;
    }
    let ports: Vec<ServicePort> = spec
        .ports
        .iter()
        .map(|p| ServicePort {
            number: p.port,
            name: p.name.clone().unwrap_or_default(),
            protocol: port_protocol(
                p.port,
                p.name.as_deref().unwrap_or(""),
                p.protocol.as_deref(),
                p.app_protocol.as_deref(),
            ),
        })
        .collect();
    let endpoints = if !slices.is_empty() {
        slices
            .iter()
            .flat_map(|slice| slice_endpoints(slice, svc, pods, diagnostics))
            .collect()
    } else if spec.selector.is_empty() {
        Vec::new()
    } else {
        selected_endpoints(svc, pods, diagnostics)
    };
    Some(Service {
        host: format!("{}.{namespace}.svc.cluster.local", svc.source.name),
        namespace,
        ports,
        endpoints,
    })
}

/// What Kubernetes' EndpointSlice controller writes for a selector, as pilot then reads it.
fn selected_endpoints(
    svc: &Kube<KubeService>,
    instances: &[&WorkloadInstance],
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<ServiceEndpoint> {
    let spec = &svc.object.spec;
    let mut out = Vec::new();
    for &pod in instances {
        debug_assert_eq!(pod.workload.namespace, svc.source.namespace);
        if !pod.workload.matches_labels(&spec.selector) {
            continue;
        }
        let Some(address) = pod.address else {
            continue;
        };
        let mut ports = BTreeMap::new();
        if address.port.is_none() {
            for p in &spec.ports {
                let target = match &p.target_port {
                    None => Some(p.port),
                    Some(IntOrString::Int(n)) => Some(*n),
                    Some(IntOrString::String(name)) => pod.named_ports.get(name).copied(),
                };
                match target {
                    Some(t) => {
                        ports.insert(p.port, t);
                    }
                    None => diagnostics.push(diag(
                        svc,
                        &format!(
                            "pod {} has no container port named {:?} (targetPort of port {}); Kubernetes leaves it out of that port",
                            pod.name,
                            match &p.target_port { Some(IntOrString::String(n)) => n.as_str(), _ => "" },
                            p.port
                        ),
                    )),
                }
            }
            if ports.is_empty() && !spec.ports.is_empty() {
                continue;
            }
        }
        out.push(endpoint_of(address.ip, ports, address.port, Some(pod)));
    }
    out
}

fn endpoint_of(
    ip: IpAddr,
    ports: BTreeMap<u16, u16>,
    default_port: Option<u16>,
    pod: Option<&WorkloadInstance>,
) -> ServiceEndpoint {
    ServiceEndpoint {
        address: ip,
        ports,
        default_port,
        labels: pod.map(|p| p.workload.labels.clone()).unwrap_or_default(),
        weight: 1,
        service_account: pod.map(|p| p.workload.service_account.clone()),
        locality: pod.and_then(|p| p.workload.locality.clone()),
    }
}

/// One EndpointSlice's endpoints for `svc` (pilot's `updateEndpointCacheForSlice`).
fn slice_endpoints(
    slice: &Kube<KubeEndpointSlice>,
    svc: &Kube<KubeService>,
    instances: &[&WorkloadInstance],
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<ServiceEndpoint> {
    let s = &slice.object;
    if s.address_type == "FQDN" {
        diagnostics.push(diag(
            slice,
            "FQDN EndpointSlices are not supported (nor by istiod); ignored",
        ));
        return Vec::new();
    }
    // Service port name → number: slices name the port they serve.
    let mut ports = BTreeMap::new();
    for p in &s.ports {
        let name = p.name.clone().unwrap_or_default();
        let Some(sp) = svc
            .object
            .spec
            .ports
            .iter()
            .find(|sp| sp.name.clone().unwrap_or_default() == name)
        else {
            diagnostics.push(diag(
                slice,
                &format!("port {name:?} is not a port of {}; ignored", svc.source),
            ));
            continue;
        };
        if let Some(port) = p.port {
            ports.insert(sp.port, port);
        }
    }
    let mut out = Vec::new();
    for e in &s.endpoints {
        if e.conditions.ready == Some(false) {
            continue;
        }
        for a in &e.addresses {
            let Ok(ip) = a.parse::<IpAddr>() else {
                diagnostics.push(diag(slice, &format!("address {a:?} is not an IP; ignored")));
                continue;
            };
            let by_ref = e
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"));
            let pod = match by_ref {
                Some(r) => {
                    let ns = r.namespace.as_deref().unwrap_or(&slice.source.namespace);
                    let found = instances.iter().copied().find(|p| {
                        Some(p.name.as_str()) == r.name.as_deref() && p.workload.namespace == ns
                    });
                    if found.is_none() {
                        // pilot: a pod that is expected but not (yet) known drops the endpoint.
                        continue;
                    }
                    found
                }
                None => instances
                    .iter()
                    .copied()
                    .find(|p| p.address.is_some_and(|addr| addr.ip == ip)),
            };
            out.push(endpoint_of(ip, ports.clone(), None, pod));
        }
    }
    out
}

/// Istio's protocol for a Kubernetes service port (`kube.ConvertProtocol`), `None` when
/// unknown (Istio's `UnsupportedProtocol`: sniffed).
pub fn port_protocol(
    port: u16,
    name: &str,
    protocol: Option<&str>,
    app_protocol: Option<&str>,
) -> Option<String> {
    if protocol == Some("UDP") {
        return Some("UDP".into());
    }
    let name = match app_protocol {
        Some("kubernetes.io/h2c") => return Some("HTTP2".into()),
        Some("kubernetes.io/ws") => return Some("HTTP".into()),
        Some("kubernetes.io/wss") => return Some("HTTPS".into()),
        Some(app) => app,
        None => name,
    };
    if name.len() >= 8 && name[..8].eq_ignore_ascii_case("grpc-web") {
        return Some("GRPC-Web".into());
    }
    let prefix = name.split('-').next().unwrap_or("");
    let parsed = match prefix.to_ascii_lowercase().as_str() {
        "tcp" => "TCP",
        "udp" => "UDP",
        "grpc" => "GRPC",
        "http" => "HTTP",
        "http_proxy" => "HTTP_PROXY",
        "http2" => "HTTP2",
        "https" => "HTTPS",
        "tls" => "TLS",
        "mongo" => "Mongo",
        "redis" => "Redis",
        "mysql" => "MySQL",
        _ if [25, 53, 3306, 27017].contains(&port) => "TCP",
        _ => return None,
    };
    Some(parsed.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_as_convert_protocol() {
        assert_eq!(
            port_protocol(80, "http-web", None, None).as_deref(),
            Some("HTTP")
        );
        assert_eq!(
            port_protocol(80, "web", None, Some("http2")).as_deref(),
            Some("HTTP2")
        );
        assert_eq!(
            port_protocol(80, "x", None, Some("kubernetes.io/h2c")).as_deref(),
            Some("HTTP2")
        );
        assert_eq!(
            port_protocol(80, "grpc-web-x", None, None).as_deref(),
            Some("GRPC-Web")
        );
        assert_eq!(
            port_protocol(80, "GRPC", None, None).as_deref(),
            Some("GRPC")
        );
        assert_eq!(port_protocol(80, "web", None, None), None);
        assert_eq!(port_protocol(3306, "", None, None).as_deref(), Some("TCP"));
        assert_eq!(
            port_protocol(80, "http", Some("UDP"), None).as_deref(),
            Some("UDP")
        );
    }
}
