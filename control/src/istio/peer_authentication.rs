//! security.istio.io `PeerAuthentication`: which mTLS mode a workload's inbound ports accept.
//! Shape as `customresourcedefinitions.gen.yaml`; how the scopes combine is in
//! [`crate::translate::peer_authn`].

use std::collections::BTreeMap;

use serde::Deserialize;

use super::common::WorkloadSelector;

/// `PeerAuthentication.spec`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct PeerAuthenticationSpec {
    /// Absent or empty: a namespace-wide policy (mesh-wide in the root namespace).
    pub selector: Option<WorkloadSelector>,
    pub mtls: Option<MutualTls>,
    /// Per workload (container) port; only honoured on workload-level policies.
    pub port_level_mtls: BTreeMap<u32, MutualTls>,
}

/// `PeerAuthentication.MutualTLS`.
#[derive(Clone, Copy, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default)]
pub struct MutualTls {
    pub mode: MtlsModeSpec,
}

/// `PeerAuthentication.MutualTLS.Mode`.
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[derive(
    Clone, Copy, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq, serde::Serialize,
)]
pub enum MtlsModeSpec {
    /// Inherit from the parent scope.
    #[default]
    UNSET,
    DISABLE,
    PERMISSIVE,
    STRICT,
}

impl PeerAuthenticationSpec {
    /// Whether the policy selects workloads (a workload-level policy).
    pub fn has_selector(&self) -> bool {
        self.selector
            .as_ref()
            .is_some_and(|s| !s.match_labels.is_empty())
    }
}
