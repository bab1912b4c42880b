//! VirtualService `mirror` (with `mirrorPercentage`, or the deprecated `mirrorPercent`) and
//! `mirrors` (each with its own `percentage`) → the engine's [`MirrorPolicy`] list, as pilot
//! writes Envoy's `request_mirror_policies` (applyHTTPRouteDestination, MirrorPercent,
//! MirrorPercentByPolicy and TranslateRequestMirrorPolicy in
//! pilot/pkg/networking/core/route/route.go):
//!
//! - only a rule that forwards (`route`) mirrors: pilot writes mirrors in
//!   applyHTTPRouteDestination, never for a redirect or a direct response;
//! - `mirror` first, then each of `mirrors` in order;
//! - no percentage means every request; an explicit 0 means no mirror at all;
//! - `mirrorPercentage` wins over `mirrorPercent`; a percentage is written per million as
//!   `uint32(value * 10000)`, `mirrorPercent` and the default per hundred;
//! - the destination's cluster is found as a route destination's is (its port, else the
//!   service's only port, else the request's: GetDestinationCluster), subsets included;
//! - the host keeps its name: pilot sets `disable_shadow_host_suffix_append` from
//!   DISABLE_SHADOW_HOST_SUFFIX, true by default since Istio 1.28 (pilot/pkg/features/pilot.go;
//!   the 1.25–1.27 compatibility profiles set it false, Envoy's `-shadow` suffix).

use trellis_engine::config::{MirrorFraction, MirrorPolicy};

use super::routes::DestinationResolver;
use crate::diag::Diagnostic;
use crate::istio::common::Percent;
use crate::istio::virtual_service::HttpRoute;

/// Whether mirrored requests get Envoy's `-shadow` host suffix: pilot's default, no.
pub const SHADOW_HOST_SUFFIX: bool = false;

/// The mirrors of `rule` (at field path `at`), in pilot's order.
pub fn translate_mirrors(
    rule: &HttpRoute,
    namespace: &str,
    at: &str,
    resolver: &dyn DestinationResolver,
    diags: &mut Vec<Diagnostic>,
) -> Vec<MirrorPolicy> {
    let any = rule.mirror.is_some() || !rule.mirrors.is_empty();
    if any && rule.route.is_empty() {
        diags.push(
            Diagnostic::warning(
                "mirroring applies to rules that forward (route); this rule's mirrors are ignored, as pilot ignores them",
            )
            .field(format!("{at}.mirror")),
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    if let Some(dest) = &rule.mirror {
        let here = format!("{at}.mirror");
        let fraction = mirror_percent(rule, at, diags);
        if let Some(fraction) = fraction {
            if let Ok(cluster) = resolver.cluster_for(dest, namespace, &here, diags) {
                out.push(policy(cluster, fraction));
            }
        }
    } else if rule.mirror_percentage.is_some() || rule.mirror_percent.is_some() {
        diags.push(
            Diagnostic::warning("a mirror percentage without `mirror` mirrors nothing")
                .field(format!("{at}.mirrorPercentage")),
        );
    }
    for (i, mirror) in rule.mirrors.iter().enumerate() {
        let here = format!("{at}.mirrors[{i}]");
        let Some(dest) = &mirror.destination else {
            diags.push(
                Diagnostic::warning("a mirror without a destination is skipped, as pilot skips it")
                    .field(format!("{here}.destination")),
            );
            continue;
        };
        let fraction = mirror
            .percentage
            .as_ref()
            .map_or(Some(MirrorFraction::ALL), |p| {
                per_million(p, &format!("{here}.percentage"), diags)
            });
        if let Some(fraction) = fraction {
            let field = format!("{here}.destination");
            if let Ok(cluster) = resolver.cluster_for(dest, namespace, &field, diags) {
                out.push(policy(cluster, fraction));
            }
        }
    }
    out
}

fn policy(cluster: String, fraction: MirrorFraction) -> MirrorPolicy {
    MirrorPolicy {
        cluster,
        fraction,
        host_suffix: SHADOW_HOST_SUFFIX,
    }
}

/// pilot's MirrorPercent: `mirrorPercentage`, else `mirrorPercent`, else 100%; `None` (no
/// mirror) for an explicit zero.
fn mirror_percent(
    rule: &HttpRoute,
    at: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<MirrorFraction> {
    match (&rule.mirror_percentage, rule.mirror_percent) {
        (Some(p), _) => per_million(p, &format!("{at}.mirrorPercentage"), diags),
        (None, Some(0)) => None,
        (None, Some(n)) => {
            if n > 100 {
                diags.push(
                    Diagnostic::error(format!(
                        "mirrorPercent {n} is over 100; every request is mirrored"
                    ))
                    .field(format!("{at}.mirrorPercent")),
                );
            }
            Some(MirrorFraction {
                numerator: n,
                denominator: 100,
            })
        }
        (None, None) => Some(MirrorFraction::ALL),
    }
}

/// translatePercentToFractionalPercent: `uint32(value * 10000)` per million; `None` at zero
/// or below (pilot mirrors nothing when the value is not positive).
fn per_million(p: &Percent, at: &str, diags: &mut Vec<Diagnostic>) -> Option<MirrorFraction> {
    if p.value <= 0.0 || p.value.is_nan() {
        return None;
    }
    if p.value > 100.0 {
        diags.push(
            Diagnostic::error(format!(
                "percentage {} is over 100 (Istio rejects it); every request is mirrored",
                p.value
            ))
            .field(at.to_string()),
        );
    }
    // `as` truncates toward zero like Go's conversion, and saturates where Go's is undefined.
    let numerator = (p.value.min(100.0) * 10_000.0) as u32;
    Some(MirrorFraction {
        numerator,
        denominator: 1_000_000,
    })
}
