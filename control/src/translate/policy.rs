//! DestinationRule traffic policy → the engine's cluster policy.
//!
//! istiod's order (MergeSubsetTrafficPolicy and GetPortLevelTrafficPolicy in
//! pilot/pkg/networking/util/util.go, MergeTrafficPolicy in pilot/pkg/model/destination_rule.go):
//! a `portLevelSettings` entry for the cluster's port (the first one) *replaces* the policy it
//! sits in, so a part it omits falls back to Istio's default instead of being inherited; then
//! each part (load balancer, connection pool, outlier detection, TLS) the subset's policy sets
//! replaces the rule's, and all four do when the subset's policy came from its own port entry.
//! Where nothing is set, Istio's defaults apply (the `Default` impls of the engine types).
//! Settings Trellis cannot apply are reported, not dropped silently.

use trellis_engine::config::{ConnectionPool, HashKey, LbPolicy, OutlierDetection};

use crate::diag::Diagnostic;
use crate::istio::destination_rule::{
    ClientTlsSettings, ConnectionPoolSettings, LoadBalancerSettings, LocalityLbSetting,
    OutlierDetectionSpec, SimpleLb, Subset, TlsMode, TrafficPolicy,
};
use crate::istio::DestinationRuleSpec;

/// The policy of one (host, port, subset) cluster after merging.
#[derive(Clone, Debug, PartialEq)]
pub struct EffectivePolicy {
    pub lb: LbPolicy,
    /// The consistent-hash key when `lb` hashes (see [`super::consistent_hash`]).
    pub hash_key: Option<HashKey>,
    pub pool: ConnectionPool,
    pub outlier: Option<OutlierDetection>,
    /// `None`: the rule sets no TLS mode (Istio then uses auto mTLS).
    pub tls_mode: Option<TlsMode>,
    /// The rule's `tls` at this level, whole (`None`: auto mTLS).
    pub tls: Option<ClientTlsSettings>,
    /// The locality load-balancing setting in force (`GetEffectiveLbSetting`: the rule's, else
    /// the mesh default); `None` when turned off.
    pub locality: Option<LocalityLbSetting>,
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
    /// The parts `policy` sets for `port`: its first `portLevelSettings` entry for the port,
    /// replacing the whole policy (parts it omits fall back to defaults, they are not
    /// inherited), else the policy's own parts. The flag says whether a port entry applied.
    fn at_port(policy: &'a TrafficPolicy, port: u16, base: &str) -> (Parts<'a>, bool) {
        let entry = policy
            .port_level_settings
            .iter()
            .enumerate()
            .find(|(_, pl)| pl.port.map(|p| p.number) == Some(u32::from(port)));
        match entry {
            Some((i, pl)) => (
                Parts::of(
                    (&pl.load_balancer, &pl.connection_pool),
                    (&pl.outlier_detection, &pl.tls),
                    &format!("{base}.portLevelSettings[{i}]"),
                ),
                true,
            ),
            None => (
                Parts::of(
                    (&policy.load_balancer, &policy.connection_pool),
                    (&policy.outlier_detection, &policy.tls),
                    base,
                ),
                false,
            ),
        }
    }

    /// The parts one level sets, with the field path of each.
    fn of(
        (lb, pool): (
            &'a Option<LoadBalancerSettings>,
            &'a Option<ConnectionPoolSettings>,
        ),
        (outlier, tls): (
            &'a Option<OutlierDetectionSpec>,
            &'a Option<ClientTlsSettings>,
        ),
        at: &str,
    ) -> Parts<'a> {
        Parts {
            lb: lb.as_ref().map(|x| (x, format!("{at}.loadBalancer"))),
            pool: pool.as_ref().map(|x| (x, format!("{at}.connectionPool"))),
            outlier: outlier
                .as_ref()
                .map(|x| (x, format!("{at}.outlierDetection"))),
            tls: tls.as_ref(),
        }
    }

    /// The subset's parts over `self`: each part the subset sets replaces ours, and all four
    /// do when the subset's policy came from a port entry (MergeTrafficPolicy's
    /// `hasPortLevel`).
    fn overlay(self, subset: Parts<'a>, port_level: bool) -> Parts<'a> {
        if port_level {
            return subset;
        }
        Parts {
            lb: subset.lb.or(self.lb),
            pool: subset.pool.or(self.pool),
            outlier: subset.outlier.or(self.outlier),
            tls: subset.tls.or(self.tls),
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
    // MergeSubsetTrafficPolicy (pilot/pkg/networking/util/util.go): the rule's policy at the
    // port (GetPortLevelTrafficPolicy), then the subset's policy at the port over it.
    let top = rule
        .and_then(|r| r.traffic_policy.as_ref())
        .map(|tp| Parts::at_port(tp, port, "spec.trafficPolicy").0)
        .unwrap_or_default();
    let parts = match subset.and_then(|(i, s)| Some((i, s.traffic_policy.as_ref()?))) {
        Some((i, tp)) => {
            let (sub, port_level) =
                Parts::at_port(tp, port, &format!("spec.subsets[{i}].trafficPolicy"));
            top.overlay(sub, port_level)
        }
        None => top,
    };
    let rule_locality = parts.lb.as_ref().and_then(|(lb, at)| {
        let setting = lb.locality_lb_setting.as_ref()?;
        let at = format!("{at}.localityLbSetting");
        super::locality::validate(setting, parts.outlier.is_some(), &at, diags).then_some(setting)
    });
    let locality = super::locality::effective_setting(rule_locality);
    let (lb, hash_key) = parts
        .lb
        .map(|(lb, at)| lb_policy(lb, &at, diags))
        .unwrap_or_default();
    EffectivePolicy {
        lb,
        hash_key,
        pool: parts
            .pool
            .map(|(p, at)| connection_pool(p, &at, diags))
            .unwrap_or_default(),
        outlier: parts.outlier.map(|(o, _)| outlier_detection(o)),
        tls_mode: parts.tls.and_then(|t| t.mode),
        tls: parts.tls.cloned(),
        locality,
    }
}

fn unsupported(diags: &mut Vec<Diagnostic>, field: String, what: &str) {
    diags.push(
        Diagnostic::warning(format!("{what} is not supported by Trellis; ignored")).field(field),
    );
}

fn lb_policy(
    lb: &LoadBalancerSettings,
    at: &str,
    diags: &mut Vec<Diagnostic>,
) -> (LbPolicy, Option<HashKey>) {
    if lb.warmup_duration_secs.is_some() || lb.warmup.is_some() {
        unsupported(diags, format!("{at}.warmup"), "slow start (warmup)");
    }
    if let Some(ch) = &lb.consistent_hash {
        // LoadBalancerSettings is a oneOf; pilot applies the consistent hash after `simple`,
        // so it wins (ApplyRingHashLoadBalancer runs last in applyLoadBalancer).
        if lb.simple.is_some() {
            diags.push(
                Diagnostic::error(
                    "only one of simple and consistentHash may be set; consistentHash is used",
                )
                .field(at.to_string()),
            );
        }
        return super::consistent_hash::consistent_hash(ch, &format!("{at}.consistentHash"), diags);
    }
    let simple = match lb.simple {
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
    };
    (simple, None)
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
        // `idleTimeout` is the tcp_proxy's (`translate::tcp`), not the cluster's.
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

    /// Istio: a port entry replaces the policy, parts it omits go back to defaults rather than
    /// being inherited (GetPortLevelTrafficPolicy in pilot/pkg/networking/util/util.go: "port
    /// level policies do not inherit and instead to defaults if not provided"); only the first
    /// entry for the port counts (`break`); a subset's port entry replaces all four parts of the
    /// merged policy (MergeTrafficPolicy with hasPortLevel, pilot/pkg/model/destination_rule.go).
    #[test]
    fn port_level_settings_replace_instead_of_merging() {
        let rule = dr(RULE);
        let mut d = Vec::new();
        let p = effective_policy(Some(&rule), 9443, None, &mut d);
        assert_eq!(p.lb, LbPolicy::RoundRobin);
        assert_eq!(
            p.pool,
            ConnectionPool::default(),
            "not inherited from the top level"
        );
        assert_eq!(p.outlier, None, "not inherited from the top level");
        let twice = dr(r#"
host: reviews
trafficPolicy:
  loadBalancer: {simple: RANDOM}
  portLevelSettings:
  - port: {number: 80}
    loadBalancer: {simple: ROUND_ROBIN}
  - port: {number: 80}
    loadBalancer: {simple: LEAST_REQUEST}
subsets:
- name: v1
  labels: {version: v1}
  trafficPolicy:
    portLevelSettings:
    - port: {number: 80}
      connectionPool: {tcp: {maxConnections: 7}}
"#);
        let p = effective_policy(Some(&twice), 80, None, &mut d);
        assert_eq!(
            p.lb,
            LbPolicy::RoundRobin,
            "the first entry for the port wins"
        );
        let p = effective_policy(Some(&twice), 80, Some((0, &twice.subsets[0])), &mut d);
        assert_eq!(p.pool.max_connections, 7);
        assert_eq!(
            p.lb,
            LbPolicy::Default,
            "the subset's port entry replaces every part"
        );
        let p = effective_policy(Some(&twice), 81, Some((0, &twice.subsets[0])), &mut d);
        assert_eq!((p.lb, p.pool.max_connections), (LbPolicy::Random, u32::MAX));
        assert!(d.is_empty(), "{d:?}");
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
        let rule = dr("host: a\ntrafficPolicy:\n  loadBalancer:\n    warmupDurationSecs: 10s\n");
        let mut d = Vec::new();
        let p = effective_policy(Some(&rule), 80, None, &mut d);
        assert_eq!(p.lb, LbPolicy::Default);
        assert_eq!(d.len(), 1);
        assert_eq!(
            d[0].field.as_deref(),
            Some("spec.trafficPolicy.loadBalancer.warmup")
        );
    }
}
