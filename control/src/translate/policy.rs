//! DestinationRule traffic policy → the engine's cluster policy.
//!
//! istiod merges policies in this order, each part (load balancer, connection pool, outlier
//! detection, TLS) that is set replacing the same part wholesale: the rule's `trafficPolicy`,
//! then its `portLevelSettings` for the cluster's port, then the subset's `trafficPolicy`, then
//! the subset's `portLevelSettings`. Where nothing is set, Istio's defaults apply (the `Default`
//! impls of the engine types). Settings Trellis cannot apply are reported, not dropped silently.

use trellis_engine::config::{ConnectionPool, LbPolicy, OutlierDetection};

use crate::diag::Diagnostic;
use crate::istio::destination_rule::{
    ClientTlsSettings, ConnectionPoolSettings, LoadBalancerSettings, OutlierDetectionSpec,
    SimpleLb, Subset, TlsMode, TrafficPolicy,
};
use crate::istio::DestinationRuleSpec;

/// The policy of one (host, port, subset) cluster after merging.
#[derive(Clone, Debug, PartialEq)]
pub struct EffectivePolicy {
    pub lb: LbPolicy,
    pub pool: ConnectionPool,
    pub outlier: Option<OutlierDetection>,
    /// `None`: the rule sets no TLS mode (Istio then uses auto mTLS).
    pub tls_mode: Option<TlsMode>,
}

/// The parts of a traffic policy, each taken from the most specific level that sets it.
#[derive(Default)]
struct Parts<'a> {
    lb: Option<(&'a LoadBalancerSettings, String)>,
    pool: Option<(&'a ConnectionPoolSettings, String)>,
    outlier: Option<(&'a OutlierDetectionSpec, String)>,
    tls: Option<&'a ClientTlsSettings>,
}

impl<'a> Parts<'a> {
    fn apply(&mut self, policy: &'a TrafficPolicy, port: u16, base: &str) {
        if let Some(lb) = &policy.load_balancer {
            self.lb = Some((lb, format!("{base}.loadBalancer")));
        }
        if let Some(pool) = &policy.connection_pool {
            self.pool = Some((pool, format!("{base}.connectionPool")));
        }
        if let Some(o) = &policy.outlier_detection {
            self.outlier = Some((o, format!("{base}.outlierDetection")));
        }
        if let Some(tls) = &policy.tls {
            self.tls = Some(tls);
        }
        for (i, pl) in policy.port_level_settings.iter().enumerate() {
            if pl.port.map(|p| p.number) != Some(u32::from(port)) {
                continue;
            }
            let at = format!("{base}.portLevelSettings[{i}]");
            if let Some(lb) = &pl.load_balancer {
                self.lb = Some((lb, format!("{at}.loadBalancer")));
            }
            if let Some(pool) = &pl.connection_pool {
                self.pool = Some((pool, format!("{at}.connectionPool")));
            }
            if let Some(o) = &pl.outlier_detection {
                self.outlier = Some((o, format!("{at}.outlierDetection")));
            }
            if let Some(tls) = &pl.tls {
                self.tls = Some(tls);
            }
        }
    }
}

/// Merge `rule`'s policy for `port` and `subset` (index into `rule.subsets`). Diagnostics about
/// settings that cannot be applied are pushed without file/resource; the caller adds those.
pub fn effective_policy(
    rule: Option<&DestinationRuleSpec>,
    port: u16,
    subset: Option<(usize, &Subset)>,
    diags: &mut Vec<Diagnostic>,
) -> EffectivePolicy {
    let mut parts = Parts::default();
    if let Some(rule) = rule {
        if let Some(tp) = &rule.traffic_policy {
            parts.apply(tp, port, "spec.trafficPolicy");
        }
    }
    if let Some((i, subset)) = subset {
        if let Some(tp) = &subset.traffic_policy {
            parts.apply(tp, port, &format!("spec.subsets[{i}].trafficPolicy"));
        }
    }
    EffectivePolicy {
        lb: parts
            .lb
            .map(|(lb, at)| lb_policy(lb, &at, diags))
            .unwrap_or_default(),
        pool: parts
            .pool
            .map(|(p, at)| connection_pool(p, &at, diags))
            .unwrap_or_default(),
        outlier: parts.outlier.map(|(o, _)| outlier_detection(o)),
        tls_mode: parts.tls.and_then(|t| t.mode),
    }
}

fn unsupported(diags: &mut Vec<Diagnostic>, field: String, what: &str) {
    diags.push(
        Diagnostic::warning(format!("{what} is not supported by Trellis; ignored")).field(field),
    );
}

fn lb_policy(lb: &LoadBalancerSettings, at: &str, diags: &mut Vec<Diagnostic>) -> LbPolicy {
    if lb.consistent_hash.is_some() {
        unsupported(diags, format!("{at}.consistentHash"), "consistent hashing");
    }
    if lb.locality_lb_setting.is_some() {
        unsupported(
            diags,
            format!("{at}.localityLbSetting"),
            "locality load balancing",
        );
    }
    if lb.warmup_duration_secs.is_some() || lb.warmup.is_some() {
        unsupported(diags, format!("{at}.warmup"), "slow start (warmup)");
    }
    match lb.simple {
        None | Some(SimpleLb::UNSPECIFIED) => LbPolicy::Default,
        Some(SimpleLb::LEAST_CONN) | Some(SimpleLb::LEAST_REQUEST) => {
            LbPolicy::LeastRequest { choice_count: 2 }
        }
        Some(SimpleLb::RANDOM) => LbPolicy::Random,
        Some(SimpleLb::ROUND_ROBIN) => LbPolicy::RoundRobin,
        Some(SimpleLb::PASSTHROUGH) => {
            unsupported(diags, format!("{at}.simple"), "PASSTHROUGH load balancing");
            LbPolicy::Default
        }
    }
}

/// Istio treats 0 as "unset" for connection-pool limits.
fn limit(v: Option<u32>) -> Option<u32> {
    v.filter(|&n| n > 0)
}

fn connection_pool(
    spec: &ConnectionPoolSettings,
    at: &str,
    diags: &mut Vec<Diagnostic>,
) -> ConnectionPool {
    let mut pool = ConnectionPool::default();
    if let Some(tcp) = &spec.tcp {
        if let Some(n) = limit(tcp.max_connections) {
            pool.max_connections = n;
        }
        if let Some(t) = tcp.connect_timeout {
            pool.connect_timeout = t.0;
        }
        if tcp.tcp_keepalive.is_some() {
            unsupported(diags, format!("{at}.tcp.tcpKeepalive"), "TCP keepalive");
        }
        if tcp.max_connection_duration.is_some() {
            unsupported(
                diags,
                format!("{at}.tcp.maxConnectionDuration"),
                "maxConnectionDuration",
            );
        }
        if tcp.idle_timeout.is_some() {
            unsupported(diags, format!("{at}.tcp.idleTimeout"), "TCP idle timeout");
        }
    }
    if let Some(http) = &spec.http {
        if let Some(n) = limit(http.http1_max_pending_requests) {
            pool.max_pending_requests = n;
        }
        if let Some(n) = limit(http.http2_max_requests) {
            pool.max_requests = n;
        }
        if let Some(n) = http.max_requests_per_connection {
            pool.max_requests_per_connection = n;
        }
        if let Some(n) = limit(http.max_retries) {
            pool.max_retries = n;
        }
        if let Some(t) = http.idle_timeout {
            pool.idle_timeout = if t.0.is_zero() { None } else { Some(t.0) };
        }
        if http.h2_upgrade_policy.is_some() {
            unsupported(
                diags,
                format!("{at}.http.h2UpgradePolicy"),
                "HTTP/2 upgrade",
            );
        }
        if http.use_client_protocol.is_some() {
            unsupported(
                diags,
                format!("{at}.http.useClientProtocol"),
                "useClientProtocol",
            );
        }
        if http.max_concurrent_streams.is_some() {
            unsupported(
                diags,
                format!("{at}.http.maxConcurrentStreams"),
                "HTTP/2 streams",
            );
        }
    }
    pool
}

fn outlier_detection(spec: &OutlierDetectionSpec) -> OutlierDetection {
    let mut o = OutlierDetection::default();
    // Deprecated `consecutiveErrors` counts gateway errors only (istio/istio#8846).
    if let Some(n) = spec.consecutive_errors.filter(|&n| n > 0) {
        o.consecutive_5xx = 0;
        o.consecutive_gateway_errors = n;
    }
    if let Some(n) = spec.consecutive_5xx_errors {
        o.consecutive_5xx = n;
    }
    if let Some(n) = spec.consecutive_gateway_errors {
        o.consecutive_gateway_errors = n;
    }
    if let Some(n) = spec.consecutive_local_origin_failures {
        o.consecutive_local_origin_failures = n;
    }
    if let Some(b) = spec.split_external_local_origin_errors {
        o.split_external_local_origin_errors = b;
    }
    if let Some(d) = spec.interval {
        o.interval = d.0;
    }
    if let Some(d) = spec.base_ejection_time {
        o.base_ejection_time = d.0;
    }
    if let Some(n) = spec.max_ejection_percent {
        o.max_ejection_percent = n.min(100);
    }
    if let Some(n) = spec.min_health_percent {
        o.min_health_percent = n.min(100);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn dr(yaml: &str) -> DestinationRuleSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    const RULE: &str = r#"
host: reviews
trafficPolicy:
  loadBalancer: {simple: RANDOM}
  connectionPool:
    tcp: {maxConnections: 100, connectTimeout: 250ms}
    http: {http1MaxPendingRequests: 10, maxRetries: 0}
  outlierDetection: {consecutive5xxErrors: 7, interval: 5s}
  tls: {mode: ISTIO_MUTUAL}
  portLevelSettings:
  - port: {number: 9443}
    loadBalancer: {simple: ROUND_ROBIN}
    tls: {mode: SIMPLE}
subsets:
- name: v1
  labels: {version: v1}
- name: v2
  labels: {version: v2}
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
    connectionPool:
      http: {http2MaxRequests: 3}
"#;

    #[test]
    fn top_level_applies_with_istio_defaults_elsewhere() {
        let rule = dr(RULE);
        let mut d = Vec::new();
        let p = effective_policy(Some(&rule), 9080, Some((0, &rule.subsets[0])), &mut d);
        assert_eq!(p.lb, LbPolicy::Random);
        assert_eq!(p.pool.max_connections, 100);
        assert_eq!(p.pool.connect_timeout, Duration::from_millis(250));
        assert_eq!(p.pool.max_pending_requests, 10);
        assert_eq!(p.pool.max_retries, u32::MAX, "0 means unset");
        let o = p.outlier.unwrap();
        assert_eq!(o.consecutive_5xx, 7);
        assert_eq!(o.interval, Duration::from_secs(5));
        assert_eq!(o.base_ejection_time, Duration::from_secs(30));
        assert_eq!(p.tls_mode, Some(TlsMode::ISTIO_MUTUAL));
        assert!(d.is_empty());
    }

    #[test]
    fn port_level_then_subset_override() {
        let rule = dr(RULE);
        let mut d = Vec::new();
        let p = effective_policy(Some(&rule), 9443, None, &mut d);
        assert_eq!(p.lb, LbPolicy::RoundRobin);
        assert_eq!(p.tls_mode, Some(TlsMode::SIMPLE));
        let p = effective_policy(Some(&rule), 9443, Some((1, &rule.subsets[1])), &mut d);
        assert_eq!(p.lb, LbPolicy::LeastRequest { choice_count: 2 });
        // The subset's connectionPool replaces the whole part: tcp limits go back to defaults.
        assert_eq!(p.pool.max_requests, 3);
        assert_eq!(p.pool.max_connections, u32::MAX);
        assert_eq!(p.tls_mode, Some(TlsMode::SIMPLE));
    }

    #[test]
    fn no_rule_gives_istio_defaults() {
        let p = effective_policy(None, 80, None, &mut Vec::new());
        assert_eq!(p.lb, LbPolicy::Default);
        assert_eq!(p.pool, ConnectionPool::default());
        assert_eq!(p.outlier, None);
        assert_eq!(p.tls_mode, None);
    }

    #[test]
    fn legacy_consecutive_errors_means_gateway_errors() {
        let rule = dr("host: a\ntrafficPolicy:\n  outlierDetection: {consecutiveErrors: 3}\n");
        let p = effective_policy(Some(&rule), 80, None, &mut Vec::new());
        let o = p.outlier.unwrap();
        assert_eq!((o.consecutive_5xx, o.consecutive_gateway_errors), (0, 3));
    }

    #[test]
    fn unsupported_settings_are_reported() {
        let rule = dr(
            "host: a\ntrafficPolicy:\n  loadBalancer:\n    consistentHash: {httpHeaderName: x}\n",
        );
        let mut d = Vec::new();
        let p = effective_policy(Some(&rule), 80, None, &mut d);
        assert_eq!(p.lb, LbPolicy::Default);
        assert_eq!(d.len(), 1);
        assert_eq!(
            d[0].field.as_deref(),
            Some("spec.trafficPolicy.loadBalancer.consistentHash")
        );
    }
}
