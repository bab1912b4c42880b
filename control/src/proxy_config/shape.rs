//! The proxy config file's shape as serde reads it ([`super`] documents the format): plain
//! data, turned into an engine config by the loader beside it.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::gateway::GatewaySpec;
use super::http_settings::HttpSpec;
use super::ports::PortSpec;
use super::security;
use crate::istio::duration::IstioDuration;
use crate::translate::Workload;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct FileShape {
    pub(super) listeners: Vec<ListenerSpec>,
    pub(super) services: Vec<ServiceSpec>,
    pub(super) http: HttpSpec,
    pub(super) istio: IstioSpec,
    pub(super) gateway: Option<GatewaySpec>,
    pub(super) workload: WorkloadSpec,
    pub(super) identity: security::IdentitySpec,
}

/// `workload:`: who the sidecar's workload is, for the policies that select it.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct WorkloadSpec {
    pub(super) namespace: Option<String>,
    pub(super) service_account: Option<String>,
    pub(super) labels: BTreeMap<String, String>,
    /// `region/zone/subzone` (locality load balancing).
    pub(super) locality: Option<String>,
}

impl WorkloadSpec {
    pub(super) fn workload(&self) -> Workload {
        let d = Workload::default();
        Workload {
            namespace: self.namespace.clone().unwrap_or(d.namespace),
            service_account: self.service_account.clone().unwrap_or(d.service_account),
            labels: self.labels.clone(),
            locality: self.locality.clone(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListenerSpec {
    #[serde(default)]
    pub(super) name: Option<String>,
    pub(super) address: String,
    #[serde(default)]
    pub(super) direction: DirectionSpec,
    #[serde(default)]
    pub(super) passthrough: bool,
    #[serde(default)]
    pub(super) route_table: Option<String>,
    /// Inbound only: the workload address this listener stands in front of.
    #[serde(default)]
    pub(super) forward_to: Option<String>,
    /// Inbound with `forwardTo: IP:PORT`: the workload port's protocol, Istio's names (`TCP`,
    /// `TLS`, `MONGO` ...); a non-HTTP one proxies connections as bytes (`inbound_l4`).
    #[serde(default)]
    pub(super) protocol: Option<String>,
    /// Inbound with `forwardTo: IP`, and outbound: MeshConfig `protocolDetectionTimeout` for
    /// the ports it sniffs (default: none, as Istio's `0s`).
    #[serde(default)]
    pub(super) protocol_detection_timeout: Option<IstioDuration>,
}

#[derive(Debug, Default, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum DirectionSpec {
    #[default]
    Outbound,
    Inbound,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ServiceSpec {
    pub(super) host: String,
    pub(super) namespace: Option<String>,
    pub(super) ports: Vec<PortSpec>,
    pub(super) endpoints: Vec<EndpointSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct EndpointSpec {
    /// `IP` or `IP:PORT` (the port then serves every service port).
    pub(super) address: String,
    /// Service port → endpoint port.
    pub(super) ports: BTreeMap<u16, u16>,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) weight: Option<u32>,
    /// The workload's service account: its SPIFFE id is what ISTIO_MUTUAL expects.
    pub(super) service_account: Option<String>,
    /// `region/zone/subzone` (locality load balancing; default: the locality label).
    pub(super) locality: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct IstioSpec {
    pub(super) paths: Vec<String>,
    pub(super) resources: Vec<serde_yaml::Value>,
}
