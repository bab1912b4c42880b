//! `networking.istio.io` ServiceEntry: hosts (usually outside the cluster) added to the
//! registry, with their ports and, for `STATIC`/`DNS` resolution, explicit endpoints.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::common::LabelsSelector;

#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ServiceEntrySpec {
    pub hosts: Vec<String>,
    pub addresses: Vec<String>,
    pub ports: Vec<ServicePortSpec>,
    pub location: Option<Location>,
    pub resolution: Option<Resolution>,
    pub endpoints: Vec<WorkloadEntrySpec>,
    pub workload_selector: Option<LabelsSelector>,
    pub export_to: Vec<String>,
    pub subject_alt_names: Vec<String>,
}

/// Istio `ServicePort`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct ServicePortSpec {
    pub number: u32,
    pub protocol: Option<String>,
    pub name: String,
    pub target_port: Option<u32>,
}

#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[derive(Clone, Copy, Debug, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
pub enum Location {
    MESH_EXTERNAL,
    MESH_INTERNAL,
}

#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[derive(Clone, Copy, Debug, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
pub enum Resolution {
    NONE,
    STATIC,
    DNS,
    DNS_ROUND_ROBIN,
}

/// Istio `WorkloadEntry` as used inline in `endpoints[]`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct WorkloadEntrySpec {
    pub address: String,
    /// Port name → endpoint port.
    pub ports: BTreeMap<String, u32>,
    pub labels: BTreeMap<String, String>,
    pub network: Option<String>,
    pub locality: Option<String>,
    pub weight: Option<u32>,
    pub service_account: Option<String>,
}
