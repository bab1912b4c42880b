//! The service registry the translator resolves hosts against: what Kubernetes Services and
//! Endpoints (or a proxy config file) say exists. ServiceEntries are added to it during
//! translation.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Every known service. Serializable so the control plane can push a sidecar its part of it
/// (`crate::plane`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Registry {
    pub services: Vec<Service>,
    /// Names resolved outside translation for DNS ServiceEntries (`crate::dns`): name →
    /// IPv4 addresses. The translation makes their endpoints from these.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dns: BTreeMap<String, Vec<IpAddr>>,
}

impl Registry {
    /// The service with this fully-qualified host, if any.
    pub fn service(&self, host: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.host == host)
    }
}

/// One service (a Kubernetes Service or a ServiceEntry host).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Service {
    /// Fully-qualified host, e.g. `reviews.default.svc.cluster.local` or `api.example.com`.
    pub host: String,
    pub namespace: String,
    /// Ports in declaration order.
    pub ports: Vec<ServicePort>,
    pub endpoints: Vec<ServiceEndpoint>,
}

impl Service {
    /// A Kubernetes-style service `name.namespace.svc.cluster.local`.
    pub fn kubernetes(name: &str, namespace: &str, ports: &[u16]) -> Self {
        Service {
            host: format!("{name}.{namespace}.svc.cluster.local"),
            namespace: namespace.to_string(),
            ports: ports
                .iter()
                .map(|&number| ServicePort {
                    number,
                    name: format!("http-{number}"),
                    protocol: Some("HTTP".to_string()),
                })
                .collect(),
            endpoints: Vec::new(),
        }
    }

    /// Builder: add an endpoint.
    pub fn with_endpoint(mut self, endpoint: ServiceEndpoint) -> Self {
        self.endpoints.push(endpoint);
        self
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePort {
    pub number: u16,
    pub name: String,
    pub protocol: Option<String>,
}

/// One workload instance behind a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEndpoint {
    pub address: IpAddr,
    /// Service port → port on this endpoint; a service port not listed maps to
    /// `default_port`, or to the same number when that is `None`.
    #[serde(with = "port_pairs")]
    pub ports: BTreeMap<u16, u16>,
    pub default_port: Option<u16>,
    pub labels: BTreeMap<String, String>,
    /// Load-balancing weight (>= 1).
    pub weight: u32,
    /// The Kubernetes service account the instance runs as, when known (pilot's
    /// `IstioEndpoint.ServiceAccount`, from the pod): the identity mTLS expects of it.
    #[serde(default)]
    pub service_account: Option<String>,
    /// `region/zone/subzone` of the instance (pod locality label, WorkloadEntry or
    /// ServiceEntry endpoint `locality`), for locality load balancing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
}

/// `ports` on the wire as `[[service_port, endpoint_port], ...]`, not a JSON object. The
/// control plane's messages are internally tagged enums (`plane::push::wire`), which serde
/// buffers before it knows the variant; from that buffer a JSON object's keys stay strings,
/// and `"8000"` is no `u16` (serde-rs/serde#1183). A pod-backed endpoint (a Service port
/// mapped to a container port) made every push to a sidecar fail to decode.
mod port_pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(ports: &BTreeMap<u16, u16>, s: S) -> Result<S::Ok, S::Error> {
        let pairs: Vec<(u16, u16)> = ports.iter().map(|(k, v)| (*k, *v)).collect();
        pairs.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<u16, u16>, D::Error> {
        Ok(Vec::<(u16, u16)>::deserialize(d)?.into_iter().collect())
    }
}

impl ServiceEndpoint {
    pub fn new(address: IpAddr, labels: &[(&str, &str)]) -> Self {
        ServiceEndpoint {
            address,
            ports: BTreeMap::new(),
            default_port: None,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            weight: 1,
            service_account: None,
            locality: None,
        }
    }

    /// The port this endpoint listens on for `service_port`.
    pub fn target_port(&self, service_port: u16) -> u16 {
        self.ports
            .get(&service_port)
            .copied()
            .or(self.default_port)
            .unwrap_or(service_port)
    }

    /// Whether the endpoint's labels include every `selector` label (subset selection).
    pub fn selected_by(&self, selector: &BTreeMap<String, String>) -> bool {
        selector.iter().all(|(k, v)| self.labels.get(k) == Some(v))
    }
}
