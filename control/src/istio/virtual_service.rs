//! `networking.istio.io` VirtualService (v1, v1beta1 and v1alpha3 share this shape).
//!
//! HTTP rules are what the sidecar route table is built from; `tls` and `tcp` rules are parsed
//! (so they are not reported as unknown) but the translator reports them as unsupported.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::common::{Headers, Percent, PortSelector, StringMatchSpec};
use super::duration::IstioDuration;

#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct VirtualServiceSpec {
    pub hosts: Vec<String>,
    /// Empty means `mesh` (sidecars only).
    pub gateways: Vec<String>,
    pub http: Vec<HttpRoute>,
    #[schemars(with = "Vec<serde_json::Value>")]
    pub tls: Vec<serde_yaml::Value>,
    #[schemars(with = "Vec<serde_json::Value>")]
    pub tcp: Vec<serde_yaml::Value>,
    pub export_to: Vec<String>,
}

/// One `http[]` rule.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpRoute {
    pub name: Option<String>,
    #[serde(rename = "match")]
    pub matches: Vec<HttpMatchRequest>,
    pub route: Vec<HttpRouteDestination>,
    pub redirect: Option<HttpRedirect>,
    pub direct_response: Option<HttpDirectResponse>,
    pub delegate: Option<Delegate>,
    pub rewrite: Option<HttpRewrite>,
    pub timeout: Option<IstioDuration>,
    pub retries: Option<HttpRetry>,
    pub fault: Option<HttpFaultInjection>,
    pub mirror: Option<Destination>,
    // The CRD schema stays what it was (free-form objects), the value is typed.
    #[schemars(with = "Vec<serde_json::Value>")]
    pub mirrors: Vec<HttpMirrorPolicy>,
    pub mirror_percentage: Option<Percent>,
    pub mirror_percent: Option<u32>,
    #[schemars(with = "Option<serde_json::Value>")]
    pub cors_policy: Option<CorsPolicy>,
    pub headers: Option<Headers>,
}

/// Istio `CorsPolicy` (translated by `translate::cors`).
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct CorsPolicy {
    pub allow_origins: Vec<StringMatchSpec>,
    /// Deprecated: exact origins, used when `allowOrigins` is empty.
    pub allow_origin: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: Option<IstioDuration>,
    pub allow_credentials: Option<bool>,
    /// `UNSPECIFIED`, `FORWARD` or `IGNORE`.
    pub unmatched_preflights: Option<String>,
}

/// Istio `Delegate`: the VirtualService (one without `hosts`) whose rules replace this rule,
/// merged with it (`translate::delegation`).
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default)]
pub struct Delegate {
    pub name: String,
    /// Empty or absent: the root VirtualService's namespace.
    pub namespace: Option<String>,
}

/// Istio `HTTPMatchRequest`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpMatchRequest {
    pub name: Option<String>,
    pub uri: Option<StringMatchSpec>,
    pub scheme: Option<StringMatchSpec>,
    pub method: Option<StringMatchSpec>,
    pub authority: Option<StringMatchSpec>,
    pub headers: BTreeMap<String, StringMatchSpec>,
    pub port: Option<u32>,
    pub source_labels: BTreeMap<String, String>,
    pub gateways: Vec<String>,
    pub query_params: BTreeMap<String, StringMatchSpec>,
    pub ignore_uri_case: bool,
    pub without_headers: BTreeMap<String, StringMatchSpec>,
    pub source_namespace: Option<String>,
    pub stat_prefix: Option<String>,
}

/// Istio `Destination`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default)]
pub struct Destination {
    pub host: String,
    pub subset: Option<String>,
    pub port: Option<PortSelector>,
}

/// Istio `HTTPMirrorPolicy`: one of a rule's `mirrors`, with its own `percentage`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default)]
pub struct HttpMirrorPolicy {
    pub destination: Option<Destination>,
    pub percentage: Option<Percent>,
}

/// Istio `HTTPRouteDestination`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default)]
pub struct HttpRouteDestination {
    pub destination: Destination,
    pub weight: Option<i32>,
    pub headers: Option<Headers>,
}

/// Istio `HTTPRedirect`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpRedirect {
    pub uri: Option<String>,
    pub authority: Option<String>,
    pub port: Option<u32>,
    pub derive_port: Option<String>,
    pub prefix_rewrite: Option<String>,
    pub scheme: Option<String>,
    pub redirect_code: Option<u32>,
}

/// Istio `HTTPDirectResponse`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default)]
pub struct HttpDirectResponse {
    pub status: u32,
    pub body: Option<HttpBody>,
}

/// Istio `HTTPBody`: `string` or base64 `bytes`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default)]
pub struct HttpBody {
    pub string: Option<String>,
    pub bytes: Option<String>,
}

/// Istio `HTTPRewrite`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpRewrite {
    pub uri: Option<String>,
    pub authority: Option<String>,
    pub uri_regex_rewrite: Option<RegexRewrite>,
}

/// Istio `RegexRewrite`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default)]
pub struct RegexRewrite {
    #[serde(rename = "match")]
    pub matches: String,
    pub rewrite: String,
}

/// Istio `HTTPRetry`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpRetry {
    pub attempts: Option<i32>,
    pub per_try_timeout: Option<IstioDuration>,
    pub retry_on: Option<String>,
    pub retry_remote_localities: Option<bool>,
    pub retry_ignore_previous_hosts: Option<bool>,
    pub backoff: Option<IstioDuration>,
}

/// Istio `HTTPFaultInjection`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default)]
pub struct HttpFaultInjection {
    pub delay: Option<FaultDelaySpec>,
    pub abort: Option<FaultAbortSpec>,
}

#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct FaultDelaySpec {
    pub fixed_delay: Option<IstioDuration>,
    pub exponential_delay: Option<IstioDuration>,
    pub percentage: Option<Percent>,
    /// Deprecated integer percentage.
    pub percent: Option<u32>,
}

#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct FaultAbortSpec {
    pub http_status: Option<u32>,
    pub grpc_status: Option<String>,
    pub http2_error: Option<String>,
    pub percentage: Option<Percent>,
}
