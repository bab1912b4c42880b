//! DestinationRule `loadBalancer.consistentHash` → the engine's ring hash or Maglev policy and
//! the hash key.
//!
//! The algorithm follows ApplyRingHashLoadBalancer (pilot/pkg/networking/core/
//! cluster_traffic_policy.go): `maglev` is Envoy's MAGLEV (its `tableSize` when non-zero, else
//! Envoy's 65537), `ringHash` is RING_HASH (its `minimumRingSize` when non-zero, else Envoy's
//! 1024), and neither is RING_HASH with the legacy `minimumRingSize` or 1024. The key follows
//! ConsistentHashToHashPolicy (pilot/pkg/networking/core/route/route.go): header (lowercased,
//! as Envoy's LowerCaseString), cookie (name, path, ttl, attributes), source IP (only when
//! `true`: Envoy builds no hash method for `source_ip: false`), query parameter. No key means
//! Envoy hashes nothing and picks with a random hash.
//!
//! Departure: pilot puts the key on the route, so a route splitting across several
//! DestinationRules with different keys combines them; the engine keeps the key with each
//! cluster, which is the same for a route with one destination (the usual case).

use trellis_engine::config::{HashCookie, HashKey, LbPolicy};

use crate::diag::Diagnostic;
use crate::istio::destination_rule::ConsistentHashLb;

/// Envoy's defaults (RingHashLbConfig.minimum_ring_size, MaglevLbConfig.table_size).
const DEFAULT_MINIMUM_RING_SIZE: u64 = 1024;
const DEFAULT_TABLE_SIZE: u64 = 65537;
/// Envoy's RingHashLbConfig.maximum_ring_size default (the ring never grows past it).
const MAXIMUM_RING_SIZE: u64 = 8 * 1024 * 1024;

/// The balancing policy and key of `spec`, found at field path `at`.
pub fn consistent_hash(
    spec: &ConsistentHashLb,
    at: &str,
    diags: &mut Vec<Diagnostic>,
) -> (LbPolicy, Option<HashKey>) {
    let lb = match (&spec.maglev, &spec.ring_hash) {
        (Some(_), Some(_)) => {
            diags.push(
                Diagnostic::error("only one of ringHash and maglev may be set; maglev is used")
                    .field(at.to_string()),
            );
            maglev(spec, at, diags)
        }
        (Some(_), None) => maglev(spec, at, diags),
        (None, ring) => {
            let size = ring
                .as_ref()
                .and_then(|r| r.minimum_ring_size)
                .or(spec.minimum_ring_size)
                .filter(|&n| n != 0)
                .unwrap_or(DEFAULT_MINIMUM_RING_SIZE);
            if size > MAXIMUM_RING_SIZE {
                diags.push(
                    Diagnostic::warning(format!(
                        "minimumRingSize {size} is over Envoy's maximum ring size {MAXIMUM_RING_SIZE}; the ring stops there"
                    ))
                    .field(format!("{at}.ringHash.minimumRingSize")),
                );
            }
            LbPolicy::RingHash {
                minimum_ring_size: size.min(MAXIMUM_RING_SIZE),
            }
        }
    };
    (lb, hash_key(spec, at, diags))
}

fn maglev(spec: &ConsistentHashLb, at: &str, diags: &mut Vec<Diagnostic>) -> LbPolicy {
    let size = spec
        .maglev
        .as_ref()
        .and_then(|m| m.table_size)
        .filter(|&n| n != 0)
        .unwrap_or(DEFAULT_TABLE_SIZE);
    if trellis_engine::cluster::maglev::is_prime(size) {
        return LbPolicy::Maglev { table_size: size };
    }
    // Envoy refuses the cluster ("The table size of maglev must be prime number").
    diags.push(
        Diagnostic::error(format!(
            "maglev tableSize {size} is not prime (Envoy rejects it); {DEFAULT_TABLE_SIZE} is used"
        ))
        .field(format!("{at}.maglev.tableSize")),
    );
    LbPolicy::Maglev {
        table_size: DEFAULT_TABLE_SIZE,
    }
}

fn hash_key(spec: &ConsistentHashLb, at: &str, diags: &mut Vec<Diagnostic>) -> Option<HashKey> {
    let mut keys = Vec::new();
    if let Some(h) = spec.http_header_name.as_deref().filter(|h| !h.is_empty()) {
        keys.push(HashKey::Header(h.to_ascii_lowercase()));
    }
    if let Some(c) = &spec.http_cookie {
        keys.push(HashKey::Cookie(HashCookie {
            name: c.name.clone(),
            path: c.path.clone().filter(|p| !p.is_empty()),
            ttl: c.ttl.map(|t| t.0),
            attributes: c
                .attributes
                .iter()
                .map(|a| (a.name.clone(), a.value.clone().unwrap_or_default()))
                .collect(),
        }));
    }
    if spec.use_source_ip == Some(true) {
        keys.push(HashKey::SourceIp);
    }
    if let Some(q) = spec
        .http_query_parameter_name
        .as_deref()
        .filter(|q| !q.is_empty())
    {
        keys.push(HashKey::QueryParameter(q.to_string()));
    }
    if keys.len() > 1 {
        diags.push(
            Diagnostic::error(
                "only one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName may be set; the first is used",
            )
            .field(at.to_string()),
        );
    }
    if let Some(HashKey::Cookie(c)) = keys.first() {
        if c.name.is_empty() {
            diags.push(
                Diagnostic::error("httpCookie.name is required; no hash key")
                    .field(format!("{at}.httpCookie.name")),
            );
            return None;
        }
    }
    keys.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn run(yaml: &str) -> (LbPolicy, Option<HashKey>, Vec<Diagnostic>) {
        let spec: ConsistentHashLb = serde_yaml::from_str(yaml).expect("spec");
        let mut d = Vec::new();
        let (lb, key) = consistent_hash(&spec, "lb.consistentHash", &mut d);
        (lb, key, d)
    }

    /// ApplyRingHashLoadBalancer (pilot/pkg/networking/core/cluster_traffic_policy.go).
    #[test]
    fn algorithm_and_sizes_follow_pilot() {
        let ring = |n| LbPolicy::RingHash {
            minimum_ring_size: n,
        };
        assert_eq!(run("httpHeaderName: x").0, ring(1024));
        assert_eq!(run("minimumRingSize: 64").0, ring(64));
        assert_eq!(
            run("{ringHash: {minimumRingSize: 2048}, minimumRingSize: 64}").0,
            ring(2048)
        );
        assert_eq!(run("ringHash: {}").0, ring(1024));
        assert_eq!(
            run("maglev: {tableSize: 251}").0,
            LbPolicy::Maglev { table_size: 251 }
        );
        assert_eq!(run("maglev: {}").0, LbPolicy::Maglev { table_size: 65537 });
        let (lb, _, d) = run("maglev: {tableSize: 1000}");
        assert_eq!(lb, LbPolicy::Maglev { table_size: 65537 });
        assert_eq!(
            d[0].field.as_deref(),
            Some("lb.consistentHash.maglev.tableSize")
        );
    }

    /// ConsistentHashToHashPolicy (pilot/pkg/networking/core/route/route.go).
    #[test]
    fn keys_follow_pilot() {
        assert_eq!(
            run("httpHeaderName: X-User").1,
            Some(HashKey::Header("x-user".into()))
        );
        assert_eq!(run("useSourceIp: true").1, Some(HashKey::SourceIp));
        assert_eq!(run("useSourceIp: false").1, None);
        assert_eq!(
            run("httpQueryParameterName: u").1,
            Some(HashKey::QueryParameter("u".into()))
        );
        assert_eq!(
            run("httpCookie: {name: s, path: /, ttl: 10s, attributes: [{name: SameSite, value: Strict}, {name: Secure}]}").1,
            Some(HashKey::Cookie(HashCookie {
                name: "s".into(),
                path: Some("/".into()),
                ttl: Some(Duration::from_secs(10)),
                attributes: vec![
                    ("SameSite".into(), "Strict".into()),
                    ("Secure".into(), String::new())
                ],
            }))
        );
        assert_eq!(run("ringHash: {}").1, None);
        let (_, key, d) = run("{httpHeaderName: a, useSourceIp: true}");
        assert_eq!(key, Some(HashKey::Header("a".into())));
        assert_eq!(d.len(), 1);
    }
}

#[cfg(test)]
mod translation {
    use trellis_engine::config::{HashKey, LbPolicy};

    use crate::istio::parse_str;
    use crate::translate::tests::registry;
    use crate::translate::translate;

    /// A DestinationRule's consistentHash reaches its clusters (subsets inherit it, as
    /// MergeTrafficPolicy does), and an unknown field inside it is reported, not dropped.
    #[test]
    fn destination_rule_consistent_hash_reaches_the_clusters() {
        let yaml = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpHeaderName: end-user, maglev: {tableSize: 251}, bogus: 1}
  subsets:
  - name: v1
    labels: {version: v1}
"#;
        let t = translate(&parse_str(yaml, "dr.yaml").expect("parses"), &registry());
        for name in [
            "outbound|9080||reviews.default.svc.cluster.local",
            "outbound|9080|v1|reviews.default.svc.cluster.local",
        ] {
            let c = t.config.cluster(name).expect("cluster");
            assert_eq!(c.lb, LbPolicy::Maglev { table_size: 251 });
            assert_eq!(c.hash_key, Some(HashKey::Header("end-user".into())));
        }
        assert!(
            t.diagnostics.iter().any(|d| d.message.contains("bogus")
                || d.field.as_deref().is_some_and(|f| f.contains("bogus"))),
            "{:#?}",
            t.diagnostics
        );
    }
}
