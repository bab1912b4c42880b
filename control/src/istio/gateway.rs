//! `networking.istio.io` Gateway and Sidecar: parsed (so their fields are checked and unknown
//! ones reported) but not applied: Trellis runs as a sidecar without ingress gateways yet, and
//! Sidecar scoping is not implemented. The translator says so in a diagnostic.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::common::LabelsSelector;

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct GatewaySpec {
    pub selector: BTreeMap<String, String>,
    pub servers: Vec<Server>,
}

/// Istio `Server`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Server {
    pub port: Option<GatewayPort>,
    pub bind: Option<String>,
    pub hosts: Vec<String>,
    pub tls: Option<serde_yaml::Value>,
    pub default_endpoint: Option<String>,
    pub name: Option<String>,
}

/// Istio `Port` of a Gateway server.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct GatewayPort {
    pub number: u32,
    pub protocol: String,
    pub name: String,
    pub target_port: Option<u32>,
}

/// Istio `Sidecar`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct SidecarSpec {
    pub workload_selector: Option<LabelsSelector>,
    pub ingress: Vec<serde_yaml::Value>,
    pub egress: Vec<serde_yaml::Value>,
    pub inbound_connection_pool: Option<serde_yaml::Value>,
    pub outbound_traffic_policy: Option<serde_yaml::Value>,
}
