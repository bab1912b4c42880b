//! Engine-wide counters (per-cluster counters live in `ClusterState::stats`).

use std::collections::BTreeMap;

use super::log::ResponseFlag;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub downstream_cx_total: u64,
    pub downstream_rq_total: u64,
    /// Requests answered, by status class index (1xx..5xx → 1..5; 0 = no response).
    pub downstream_rq_by_class: [u64; 6],
    pub upstream_cx_total: u64,
    pub upstream_cx_connect_fail: u64,
    pub upstream_rq_total: u64,
    pub upstream_rq_retry: u64,
    pub upstream_rq_retry_overflow: u64,
    pub outlier_returns: u64,
    pub config_applied: u64,
    pub config_rejected: u64,
    /// Connections ended because their transform (TLS) failed or could not be set up.
    pub transport_failures: u64,
    /// Mesh-generated outcomes by response flag.
    pub flags: BTreeMap<ResponseFlag, u64>,
}
