//! Mirroring as pilot translates it (applyHTTPRouteDestination, MirrorPercent,
//! MirrorPercentByPolicy, TranslateRequestMirrorPolicy and GetDestinationCluster in
//! pilot/pkg/networking/core/route/route.go; DISABLE_SHADOW_HOST_SUFFIX in
//! pilot/pkg/features/pilot.go).

use trellis_engine::config::{MirrorFraction, MirrorPolicy};

use super::tests::{run, DR};
use crate::diag::{Severity, IST0101};

fn vs(spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: m}}\nspec:\n{spec}"
    )
}

fn mirrors_of(yaml: &str) -> (Vec<Vec<MirrorPolicy>>, super::Translation) {
    let t = run(yaml);
    let routes = t.config.route_tables[0]
        .virtual_hosts
        .iter()
        .find(|v| v.name == "m.default")
        .map(|v| v.routes.iter().map(|r| r.mirrors.clone()).collect())
        .unwrap_or_default();
    (routes, t)
}

fn per_million(numerator: u32) -> MirrorFraction {
    MirrorFraction {
        numerator,
        denominator: 1_000_000,
    }
}

fn mirror(cluster: &str, fraction: MirrorFraction) -> MirrorPolicy {
    MirrorPolicy {
        cluster: cluster.into(),
        fraction,
        // DisableShadowHostSuffix defaults to true: no `-shadow`.
        host_suffix: false,
    }
}

const RATINGS: &str = "outbound|9080||ratings.default.svc.cluster.local";
const REVIEWS_V2: &str = "outbound|9080|v2|reviews.default.svc.cluster.local";

/// `mirror` first, then `mirrors` in order; `mirrorPercentage` per million as
/// `uint32(value * 10000)`, a policy without a percentage at 100/100; subsets resolve as a
/// route destination's do.
#[test]
fn mirror_then_mirrors_with_pilots_fractions() {
    let spec = r#"
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v1}}]
    mirror: {host: ratings}
    mirrorPercentage: {value: 50}
    mirrors:
    - destination: {host: reviews, subset: v2}
      percentage: {value: 25.5}
    - destination: {host: ratings}
"#;
    let (routes, t) = mirrors_of(&format!("{}---\n{DR}", vs(spec)));
    assert_eq!(
        routes[0],
        vec![
            mirror(RATINGS, per_million(500_000)),
            mirror(REVIEWS_V2, per_million(255_000)),
            mirror(RATINGS, MirrorFraction::ALL),
        ],
        "{:#?}",
        t.diagnostics
    );
    assert!(t.diagnostics.iter().all(|d| d.severity == Severity::Info));
}

/// MirrorPercent: `mirrorPercentage` wins over the deprecated `mirrorPercent`, which is per
/// hundred; an explicit zero in any of them means no mirror (MirrorPercentByPolicy too).
#[test]
fn percentages_zero_and_the_deprecated_field() {
    let spec = r#"
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /a}}]
    route: [{destination: {host: reviews}}]
    mirror: {host: ratings}
    mirrorPercent: 30
  - match: [{uri: {prefix: /b}}]
    route: [{destination: {host: reviews}}]
    mirror: {host: ratings}
    mirrorPercentage: {value: 10}
    mirrorPercent: 30
  - match: [{uri: {prefix: /c}}]
    route: [{destination: {host: reviews}}]
    mirror: {host: ratings}
    mirrorPercentage: {value: 0}
  - match: [{uri: {prefix: /d}}]
    route: [{destination: {host: reviews}}]
    mirror: {host: ratings}
    mirrorPercent: 0
    mirrors: [{destination: {host: ratings}, percentage: {value: 0}}]
"#;
    let (routes, _) = mirrors_of(&vs(spec));
    let thirty = MirrorFraction {
        numerator: 30,
        denominator: 100,
    };
    assert_eq!(routes[0], vec![mirror(RATINGS, thirty)]);
    assert_eq!(routes[1], vec![mirror(RATINGS, per_million(100_000))]);
    assert!(routes[2].is_empty() && routes[3].is_empty());
}

/// Pilot writes mirrors in applyHTTPRouteDestination only: a redirect or a direct response
/// mirrors nothing (said as a warning here).
#[test]
fn only_forwarding_rules_mirror() {
    let spec = r#"
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new}
    mirror: {host: ratings}
  - route: [{destination: {host: reviews}}]
"#;
    let (routes, t) = mirrors_of(&vs(spec));
    assert!(routes[0].is_empty());
    assert!(t
        .diagnostics
        .iter()
        .any(|d| d.severity == Severity::Warning && d.message.contains("mirror")));
}

/// GetDestinationCluster: a mirror naming no port of a multi-port service goes to the port the
/// request came on, like a route destination, so the rule is built per port.
#[test]
fn a_multi_port_mirror_follows_the_request_port() {
    let spec = r#"
  hosts: [multi]
  http:
  - route: [{destination: {host: multi, port: {number: 80}}}]
    mirror: {host: multi}
"#;
    let (routes, _) = mirrors_of(&vs(spec));
    let c = |p: u16| format!("outbound|{p}||multi.default.svc.cluster.local");
    let clusters: Vec<String> = routes.iter().map(|m| m[0].cluster.clone()).collect();
    assert_eq!(clusters, vec![c(80), c(8080), c(80)]);
}

/// An unknown mirror host is IST0101, and only the mirror is left out.
#[test]
fn an_unknown_mirror_host_leaves_out_the_mirror_only() {
    let spec = r#"
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]
    mirror: {host: nowhere}
    mirrors: [{destination: {host: ratings}}]
"#;
    let (routes, t) = mirrors_of(&vs(spec));
    assert_eq!(routes[0], vec![mirror(RATINGS, MirrorFraction::ALL)]);
    assert!(t
        .diagnostics
        .iter()
        .any(|d| d.code.as_deref() == Some(IST0101)));
}
