//! `security.istio.io` AuthorizationPolicy (v1; v1beta1 has the same shape): which requests a
//! workload accepts. Fields follow `customresourcedefinitions.gen.yaml` exactly; what they mean
//! is in `translate/authz.rs`.

use serde::Deserialize;

use super::common::WorkloadSelector;

#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct AuthorizationPolicySpec {
    /// Workloads the policy applies to (absent: every workload of its namespace, or of the
    /// mesh in the root namespace).
    pub selector: Option<WorkloadSelector>,
    /// Gateway-API targets (waypoints, gateways). Not for sidecars: reported, not applied.
    pub target_ref: Option<PolicyTargetReference>,
    pub target_refs: Vec<PolicyTargetReference>,
    /// Absent or empty: the policy has no rules (an ALLOW without rules denies everything, a
    /// DENY/AUDIT without rules matches nothing). A `null` entry is skipped, as pilot does.
    pub rules: Vec<Option<Rule>>,
    /// ALLOW when absent.
    pub action: Option<AuthorizationAction>,
    /// For CUSTOM: the extension provider.
    pub provider: Option<ExtensionProvider>,
}

#[allow(clippy::upper_case_acronyms)]
#[derive(
    Clone, Copy, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq, PartialOrd, Ord,
)]
pub enum AuthorizationAction {
    #[default]
    ALLOW,
    DENY,
    AUDIT,
    CUSTOM,
}

/// `istio.type.v1beta1.PolicyTargetReference`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct PolicyTargetReference {
    pub group: Option<String>,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
}

/// `AuthorizationPolicy.ExtensionProvider`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default)]
pub struct ExtensionProvider {
    pub name: String,
}

/// A rule matches when every present part matches: any `from`, any `to`, every `when`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default)]
pub struct Rule {
    pub from: Vec<RuleFrom>,
    pub to: Vec<RuleTo>,
    pub when: Vec<Condition>,
}

#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default)]
pub struct RuleFrom {
    pub source: Option<Source>,
}

#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default)]
pub struct RuleTo {
    pub operation: Option<Operation>,
}

/// Who sends the request.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct Source {
    pub principals: Vec<String>,
    pub not_principals: Vec<String>,
    pub request_principals: Vec<String>,
    pub not_request_principals: Vec<String>,
    pub namespaces: Vec<String>,
    pub not_namespaces: Vec<String>,
    pub service_accounts: Vec<String>,
    pub not_service_accounts: Vec<String>,
    pub trust_domains: Vec<String>,
    pub not_trust_domains: Vec<String>,
    pub ip_blocks: Vec<String>,
    pub not_ip_blocks: Vec<String>,
    pub remote_ip_blocks: Vec<String>,
    pub not_remote_ip_blocks: Vec<String>,
}

/// What the request asks for.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct Operation {
    pub hosts: Vec<String>,
    pub not_hosts: Vec<String>,
    /// Port numbers as strings (the CRD's type).
    pub ports: Vec<String>,
    pub not_ports: Vec<String>,
    pub methods: Vec<String>,
    pub not_methods: Vec<String>,
    pub paths: Vec<String>,
    pub not_paths: Vec<String>,
}

/// `when`: an attribute key and the values it must (`values`) or must not (`notValues`) have.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct Condition {
    pub key: String,
    pub values: Vec<String>,
    pub not_values: Vec<String>,
}
