//! The workload a sidecar stands in front of: its namespace, service account and labels.
//!
//! Istio's security resources (PeerAuthentication, AuthorizationPolicy, RequestAuthentication)
//! select workloads, not services: a policy applies to the sidecar whose workload it selects.
//! A sidecar learns who it is from its pod (Kubernetes source) or from the proxy config file's
//! `workload:` section; this type is what translation asks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::istio::DEFAULT_NAMESPACE;

/// Istio's default root namespace: policies there without a selector apply mesh-wide.
pub const ROOT_NAMESPACE: &str = "istio-system";

/// Istio's default trust domain.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// Who a sidecar's workload is (serializable: a sidecar names itself so to the control plane).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub namespace: String,
    /// Kubernetes service account: the `sa` of the workload's SPIFFE id.
    pub service_account: String,
    /// Pod labels, which policy `selector.matchLabels` match against.
    pub labels: BTreeMap<String, String>,
    /// Where the workload runs, `region/zone/subzone` (locality load balancing); when absent,
    /// the `topology.istio.io/locality` (or legacy `istio-locality`) label says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            namespace: DEFAULT_NAMESPACE.to_string(),
            service_account: "default".to_string(),
            labels: BTreeMap::new(),
            locality: None,
        }
    }
}

impl Workload {
    /// A workload in `namespace` with these labels and the `default` service account.
    pub fn new(namespace: &str, labels: &[(&str, &str)]) -> Self {
        Workload {
            namespace: namespace.to_string(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Workload::default()
        }
    }

    /// `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
    pub fn spiffe_id(&self, trust_domain: &str) -> String {
        format!(
            "spiffe://{trust_domain}/ns/{}/sa/{}",
            self.namespace, self.service_account
        )
    }

    /// Whether a `selector.matchLabels` selects this workload: every label given is present
    /// with the same value (an empty or absent selector selects every workload).
    pub fn matches_labels(&self, match_labels: &BTreeMap<String, String>) -> bool {
        match_labels
            .iter()
            .all(|(k, v)| self.labels.get(k) == Some(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_id_and_selection() {
        let w = Workload {
            namespace: "bookinfo".into(),
            service_account: "bookinfo-reviews".into(),
            labels: [("app".to_string(), "reviews".to_string())].into(),
            locality: None,
        };
        assert_eq!(
            w.spiffe_id(DEFAULT_TRUST_DOMAIN),
            "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews"
        );
        assert!(w.matches_labels(&BTreeMap::new()));
        assert!(w.matches_labels(&[("app".to_string(), "reviews".to_string())].into()));
        assert!(!w.matches_labels(&[("app".to_string(), "ratings".to_string())].into()));
        assert!(!w.matches_labels(&[("version".to_string(), "v1".to_string())].into()));
    }
}
