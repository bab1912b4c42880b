//! `networking.istio.io` DestinationRule: traffic policy per host, port and subset.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::common::{PortSelector, WorkloadSelector};
use super::duration::IstioDuration;

#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct DestinationRuleSpec {
    pub host: String,
    pub traffic_policy: Option<TrafficPolicy>,
    pub subsets: Vec<Subset>,
    pub export_to: Vec<String>,
    pub workload_selector: Option<WorkloadSelector>,
}

/// Istio `TrafficPolicy`. Each part, when present, replaces the same part of the policy it
/// overrides (port-level over top-level, subset over both), as istiod merges them.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct TrafficPolicy {
    pub load_balancer: Option<LoadBalancerSettings>,
    pub connection_pool: Option<ConnectionPoolSettings>,
    pub outlier_detection: Option<OutlierDetectionSpec>,
    pub tls: Option<ClientTlsSettings>,
    pub port_level_settings: Vec<PortTrafficPolicy>,
    #[schemars(with = "Option<serde_json::Value>")]
    pub tunnel: Option<serde_yaml::Value>,
    #[schemars(with = "Option<serde_json::Value>")]
    pub proxy_protocol: Option<serde_yaml::Value>,
    #[schemars(with = "Option<serde_json::Value>")]
    pub retry_budget: Option<serde_yaml::Value>,
}

/// Istio `TrafficPolicy.PortTrafficPolicy`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct PortTrafficPolicy {
    pub port: Option<PortSelector>,
    pub load_balancer: Option<LoadBalancerSettings>,
    pub connection_pool: Option<ConnectionPoolSettings>,
    pub outlier_detection: Option<OutlierDetectionSpec>,
    pub tls: Option<ClientTlsSettings>,
}

/// Istio `Subset`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Subset {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub traffic_policy: Option<TrafficPolicy>,
}

/// Istio `LoadBalancerSettings.SimpleLB`.
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[derive(Clone, Copy, Debug, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
pub enum SimpleLb {
    UNSPECIFIED,
    LEAST_CONN,
    RANDOM,
    PASSTHROUGH,
    ROUND_ROBIN,
    LEAST_REQUEST,
}

/// Istio `LoadBalancerSettings`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct LoadBalancerSettings {
    pub simple: Option<SimpleLb>,
    pub consistent_hash: Option<ConsistentHashLb>,
    pub locality_lb_setting: Option<LocalityLbSetting>,
    pub warmup_duration_secs: Option<IstioDuration>,
    #[schemars(with = "Option<serde_json::Value>")]
    pub warmup: Option<serde_yaml::Value>,
}

/// Istio `LocalityLoadBalancerSetting` (the mesh default is `enabled: true` with nothing else:
/// failover by region/zone/subzone whenever outlier detection is on).
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct LocalityLbSetting {
    pub distribute: Vec<LocalityDistribute>,
    pub failover: Vec<LocalityFailover>,
    pub failover_priority: Vec<String>,
    pub enabled: Option<bool>,
}

/// `LocalityLoadBalancerSetting.Distribute`: from a locality (`region/zone/subzone`, `*`
/// wildcards), weights (percent) of the upstream localities.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct LocalityDistribute {
    pub from: String,
    pub to: BTreeMap<String, u32>,
}

/// `LocalityLoadBalancerSetting.Failover`: from a region, the region to fail over to.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct LocalityFailover {
    pub from: String,
    pub to: String,
}

/// Istio `LoadBalancerSettings.ConsistentHashLB`: a hash key (one of `httpHeaderName`,
/// `httpCookie`, `useSourceIp`, `httpQueryParameterName`) and the algorithm (`ringHash` or
/// `maglev`; the legacy `minimumRingSize` means ring hash).
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ConsistentHashLb {
    pub http_header_name: Option<String>,
    pub http_cookie: Option<HttpCookie>,
    pub use_source_ip: Option<bool>,
    pub http_query_parameter_name: Option<String>,
    pub ring_hash: Option<RingHashSpec>,
    pub maglev: Option<MaglevSpec>,
    pub minimum_ring_size: Option<u64>,
}

/// `ConsistentHashLB.HTTPCookie`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpCookie {
    pub name: String,
    pub path: Option<String>,
    pub ttl: Option<IstioDuration>,
    pub attributes: Vec<CookieAttribute>,
}

/// `ConsistentHashLB.HTTPCookie.Attribute`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default)]
pub struct CookieAttribute {
    pub name: String,
    pub value: Option<String>,
}

/// `ConsistentHashLB.RingHash`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct RingHashSpec {
    pub minimum_ring_size: Option<u64>,
}

/// `ConsistentHashLB.MagLev`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct MaglevSpec {
    pub table_size: Option<u64>,
}

/// Istio `ConnectionPoolSettings`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default)]
pub struct ConnectionPoolSettings {
    pub tcp: Option<TcpSettings>,
    pub http: Option<HttpSettingsSpec>,
}

#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct TcpSettings {
    pub max_connections: Option<u32>,
    pub connect_timeout: Option<IstioDuration>,
    #[schemars(with = "Option<serde_json::Value>")]
    pub tcp_keepalive: Option<serde_yaml::Value>,
    pub max_connection_duration: Option<IstioDuration>,
    pub idle_timeout: Option<IstioDuration>,
}

#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpSettingsSpec {
    pub http1_max_pending_requests: Option<u32>,
    pub http2_max_requests: Option<u32>,
    pub max_requests_per_connection: Option<u32>,
    pub max_retries: Option<u32>,
    pub idle_timeout: Option<IstioDuration>,
    pub h2_upgrade_policy: Option<String>,
    pub use_client_protocol: Option<bool>,
    pub max_concurrent_streams: Option<u32>,
}

/// Istio `OutlierDetection`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct OutlierDetectionSpec {
    pub split_external_local_origin_errors: Option<bool>,
    pub consecutive_local_origin_failures: Option<u32>,
    pub consecutive_gateway_errors: Option<u32>,
    #[serde(rename = "consecutive5xxErrors")]
    pub consecutive_5xx_errors: Option<u32>,
    /// Deprecated; istiod maps it to gateway errors.
    pub consecutive_errors: Option<u32>,
    pub interval: Option<IstioDuration>,
    pub base_ejection_time: Option<IstioDuration>,
    pub max_ejection_percent: Option<u32>,
    pub min_health_percent: Option<u32>,
}

/// Istio `ClientTLSSettings.TLSmode`.
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[derive(
    Clone, Copy, Debug, Deserialize, schemars::JsonSchema, PartialEq, Eq, serde::Serialize,
)]
pub enum TlsMode {
    DISABLE,
    SIMPLE,
    MUTUAL,
    ISTIO_MUTUAL,
}

/// Istio `ClientTLSSettings`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ClientTlsSettings {
    pub mode: Option<TlsMode>,
    pub client_certificate: Option<String>,
    pub private_key: Option<String>,
    pub ca_certificates: Option<String>,
    pub credential_name: Option<String>,
    pub subject_alt_names: Vec<String>,
    pub sni: Option<String>,
    pub insecure_skip_verify: Option<bool>,
    pub ca_crl: Option<String>,
}
