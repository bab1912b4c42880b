//! `security.istio.io` RequestAuthentication (v1; v1beta1 has the same shape): which JWTs a
//! workload accepts. Types only, as the CRD schema defines them; `translate/request_authn.rs`
//! turns them into the engine's JWT filter (`trellis_engine::authn`).

use serde::Deserialize;

use super::authorization_policy::PolicyTargetReference;
use super::common::WorkloadSelector;
use super::duration::IstioDuration;

#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct RequestAuthenticationSpec {
    pub selector: Option<WorkloadSelector>,
    pub target_ref: Option<PolicyTargetReference>,
    pub target_refs: Vec<PolicyTargetReference>,
    pub jwt_rules: Vec<JwtRule>,
}

/// One accepted issuer and how its tokens are found, verified and passed on.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct JwtRule {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub jwks_uri: Option<String>,
    /// The deprecated snake_case spelling the CRD still accepts.
    #[serde(rename = "jwks_uri")]
    pub jwks_uri_deprecated: Option<String>,
    /// An inline JWKS (JSON text).
    pub jwks: Option<String>,
    pub from_headers: Vec<JwtHeader>,
    pub from_params: Vec<String>,
    pub from_cookies: Vec<String>,
    pub output_payload_to_header: Option<String>,
    pub forward_original_token: bool,
    pub output_claim_to_headers: Vec<ClaimToHeader>,
    pub space_delimited_claims: Vec<String>,
    /// JWKS fetch timeout.
    pub timeout: Option<IstioDuration>,
}

/// Where a token is read from: the header `name`, after `prefix` (e.g. `Bearer `).
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default)]
pub struct JwtHeader {
    pub name: String,
    pub prefix: Option<String>,
}

/// Copy a claim of a verified token into a request header.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default)]
pub struct ClaimToHeader {
    pub header: String,
    pub claim: String,
}
