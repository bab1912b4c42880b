//! Counters of one cluster, named after Envoy's `cluster.<name>.*` stats so telemetry can export
//! them under the names dashboards already know.
//!
//! The counters are kept where they are produced (the breaker counts its overflows, the outlier
//! detector its ejections, the cluster state its balancing events) and [`ClusterStats`] is a
//! plain snapshot assembled from them on demand: a copy of a dozen integers, cheap to take, and
//! with no way for one part to write another part's counter.

/// A snapshot of one cluster's counters. All are cumulative since the cluster was first created
/// (they survive config swaps through `carry_over`), except `ejections_active`, a gauge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClusterStats {
    /// `outlier_detection.ejections_enforced_total`: hosts actually ejected.
    pub ejections_total: u64,
    /// `outlier_detection.ejections_active`: hosts ejected right now.
    pub ejections_active: u64,
    /// `outlier_detection.ejections_overflow`: ejections prevented by `max_ejection_percent`.
    pub ejections_overflow: u64,
    /// Ejections enforced by the consecutive-5xx detector.
    pub ejections_consecutive_5xx: u64,
    /// Ejections enforced by the consecutive-gateway-error detector.
    pub ejections_consecutive_gateway_failure: u64,
    /// Ejections enforced by the consecutive-local-origin-failure detector.
    pub ejections_consecutive_local_origin_failure: u64,
    /// `upstream_cx_overflow`: connections refused by `max_connections`.
    pub cx_overflow: u64,
    /// `upstream_rq_pending_overflow`: requests refused by `max_pending_requests`.
    pub pending_overflow: u64,
    /// `upstream_rq_overflow`: requests refused by `max_requests`.
    pub rq_overflow: u64,
    /// `upstream_rq_retry_overflow`: retries refused by `max_retries`.
    pub retry_overflow: u64,
    /// `lb_healthy_panic`: picks made in panic mode (over all hosts, ignoring ejection).
    pub lb_healthy_panic: u64,
    /// `upstream_cx_none_healthy`: picks that found no host at all.
    pub none_healthy: u64,
}
