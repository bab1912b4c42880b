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
    /// Inbound requests that authorization (AuthorizationPolicy, Envoy's RBAC filter) let
    /// through, and those it answered 403 (Envoy's `rbac.allowed` / `rbac.denied`, counted
    /// once per request rather than once per filter).
    pub rbac_allowed: u64,
    pub rbac_denied: u64,
    /// Dry-run (`istio.io/dry-run`) verdicts (Envoy's `rbac.shadow_allowed` / `shadow_denied`).
    pub rbac_shadow_allowed: u64,
    pub rbac_shadow_denied: u64,
    /// Requests an AUDIT policy matched.
    pub rbac_audited: u64,
    /// Inbound requests request authentication (RequestAuthentication, Envoy's `jwt_authn`)
    /// let through, those among them that carried a verified JWT, and those it refused (401,
    /// or 403 for a disallowed audience): Envoy's `jwt_authn.allowed` / `jwt_authn.denied`.
    pub jwt_authn_allowed: u64,
    pub jwt_authn_verified: u64,
    pub jwt_authn_denied: u64,
    /// Mirrored requests (VirtualService `mirror`/`mirrors`, Envoy's shadows; `proxy::mirror`):
    /// sent, whose response was read whole, that failed (connect failure, reset, timeout,
    /// invalid response), abandoned (its body outran the mirror's buffer, or the primary
    /// request ended before its body did), and never sent (unknown cluster, no healthy host,
    /// circuit breaker full).
    pub mirror_rq_total: u64,
    pub mirror_rq_completed: u64,
    pub mirror_rq_failed: u64,
    pub mirror_rq_abandoned: u64,
    pub mirror_rq_dropped: u64,
    /// Mirror responses by status class index (1xx..5xx → 1..5).
    pub mirror_rq_by_class: [u64; 6],
    /// L4 (tcp_proxy) connections taken by a TCP route, upstream connections refused by a
    /// full `maxConnections` on their behalf, and sessions ended by their idle timeout.
    pub downstream_cx_tcp: u64,
    pub upstream_cx_overflow: u64,
    pub tcp_idle_timeouts: u64,
    /// Mesh-generated outcomes by response flag.
    pub flags: BTreeMap<ResponseFlag, u64>,
}
