//! `networking.istio.io` Gateway and Sidecar.
//!
//! Gateways are served by a gateway proxy (`translate::gateway`); a sidecar ignores them.
//! Sidecar is parsed (so its fields are checked and unknown ones reported) but not applied:
//! Sidecar scoping is not implemented, and the translator says so in a diagnostic.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::common::LabelsSelector;

#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default)]
pub struct GatewaySpec {
    pub selector: BTreeMap<String, String>,
    pub servers: Vec<Server>,
}

/// Istio `Server`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Server {
    pub port: Option<GatewayPort>,
    pub bind: Option<String>,
    pub hosts: Vec<String>,
    pub tls: Option<ServerTls>,
    pub default_endpoint: Option<String>,
    pub name: Option<String>,
}

/// Istio `ServerTLSSettings`: typed so that unknown fields are reported. The gateway
/// translator terminates `SIMPLE`/`MUTUAL` with certificate files and refuses the rest
/// (`translate::gateway::tls`).
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct ServerTls {
    pub https_redirect: bool,
    /// `PASSTHROUGH`, `SIMPLE`, `MUTUAL`, `AUTO_PASSTHROUGH`, `ISTIO_MUTUAL`, `OPTIONAL_MUTUAL`.
    pub mode: Option<String>,
    pub server_certificate: Option<String>,
    pub private_key: Option<String>,
    pub ca_certificates: Option<String>,
    pub ca_crl: Option<String>,
    pub credential_name: Option<String>,
    pub credential_names: Vec<String>,
    pub ca_cert_credential_name: Option<String>,
    pub tls_certificates: Vec<TlsCertificate>,
    pub subject_alt_names: Vec<String>,
    pub verify_certificate_spki: Vec<String>,
    pub verify_certificate_hash: Vec<String>,
    pub min_protocol_version: Option<String>,
    pub max_protocol_version: Option<String>,
    pub cipher_suites: Vec<String>,
    pub insecure_skip_verify: Option<bool>,
}

/// One entry of `ServerTLSSettings.tlsCertificates`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct TlsCertificate {
    pub server_certificate: Option<String>,
    pub private_key: Option<String>,
    pub ca_certificates: Option<String>,
}

/// Istio `Port` of a Gateway server.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct GatewayPort {
    pub number: u32,
    pub protocol: String,
    pub name: String,
    pub target_port: Option<u32>,
}

/// Istio `Sidecar`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct SidecarSpec {
    pub workload_selector: Option<LabelsSelector>,
    #[schemars(with = "Vec<serde_json::Value>")]
    pub ingress: Vec<serde_yaml::Value>,
    #[schemars(with = "Vec<serde_json::Value>")]
    pub egress: Vec<serde_yaml::Value>,
    #[schemars(with = "Option<serde_json::Value>")]
    pub inbound_connection_pool: Option<serde_yaml::Value>,
    #[schemars(with = "Option<serde_json::Value>")]
    pub outbound_traffic_policy: Option<serde_yaml::Value>,
}
