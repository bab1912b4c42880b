//! IST0176 GatewayAPICRDVersionBelowMinimum: a Gateway API CRD older than Istio supports, whose
//! resources istiod silently ignores.
//!
//! As Istio's `k8sgateway.CRDVersionAnalyzer` (`pkg/config/analysis/analyzers/k8sgateway/
//! crdversion.go`, with the minimums of `pkg/config/schema/gatewayapi/minimumversions.go`): the
//! CRD's `gateway.networking.k8s.io/bundle-version` annotation, read as Masterminds semver
//! (a leading `v`, missing minor and patch allowed), without its pre-release, below the
//! minimum for that CRD name is reported. An unparsable version is left alone, as Istio does.

use super::codes::GATEWAY_API_CRD_VERSION_BELOW_MINIMUM;
use super::input::Inputs;
use super::message::{go_quote, Message};

const BUNDLE_VERSION: &str = "gateway.networking.k8s.io/bundle-version";

/// `gatewayapi.MinimumCRDVersions`.
const MINIMUMS: [(&str, (u64, u64, u64)); 4] = [
    ("grpcroutes.gateway.networking.k8s.io", (1, 1, 0)),
    ("backendtlspolicies.gateway.networking.k8s.io", (1, 4, 0)),
    ("tlsroutes.gateway.networking.k8s.io", (1, 5, 0)),
    ("tcproutes.gateway.networking.k8s.io", (1, 6, 0)),
];

/// A version as `semver.NewVersion` reads it: (major, minor, patch) and its `String()`.
fn parse_version(text: &str) -> Option<((u64, u64, u64), String)> {
    let v = text.strip_prefix('v').unwrap_or(text);
    let (v, meta) = match v.split_once('+') {
        Some((v, m)) => (v, Some(m)),
        None => (v, None),
    };
    let (core, pre) = match v.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (v, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty() || parts.len() > 3 {
        return None;
    }
    let mut numbers = [0u64; 3];
    for (n, p) in numbers.iter_mut().zip(&parts) {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *n = p.parse().ok()?;
    }
    let mut shown = format!("{}.{}.{}", numbers[0], numbers[1], numbers[2]);
    if let Some(pre) = pre {
        shown.push_str(&format!("-{pre}"));
    }
    if let Some(meta) = meta {
        shown.push_str(&format!("+{meta}"));
    }
    Some(((numbers[0], numbers[1], numbers[2]), shown))
}

/// Run the check on CustomResourceDefinitions.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    for crd in inputs.kube_objects_of("CustomResourceDefinition") {
        let Some((_, minimum)) = MINIMUMS.iter().find(|(name, _)| *name == crd.name()) else {
            continue;
        };
        let annotations = crd.annotations();
        let Some((installed, shown)) = annotations
            .get(BUNDLE_VERSION)
            .and_then(|v| parse_version(v))
        else {
            continue;
        };
        if installed < *minimum {
            let wanted = format!("{}.{}.{}", minimum.0, minimum.1, minimum.2);
            let m = Message::new(
                GATEWAY_API_CRD_VERSION_BELOW_MINIMUM,
                format!(
                    "Gateway API CRD {} is at version {} but Istio requires at least {}; resources of this kind will not be processed. Upgrade the Gateway API CRDs to satisfy the minimum version.",
                    go_quote(crd.name()),
                    go_quote(&shown),
                    go_quote(&wanted)
                ),
            );
            out.push(inputs.blame(&crd.source, m));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_version;
    use crate::analyze::analyze_str;
    use crate::analyze::tests::lines;

    /// analyzers_test.go "GatewayAPICRDVersionBelowMinimum".
    #[test]
    fn istio_case() {
        let a = analyze_str(
            include_str!("../../tests/analyzer_testdata/gateway-api-crd-version-old.yaml"),
            "gateway-api-crd-version-old.yaml",
        );
        assert_eq!(
            lines(&a, "IST0176"),
            vec![
                r#"Warning [IST0176] (CustomResourceDefinition tlsroutes.gateway.networking.k8s.io) Gateway API CRD "tlsroutes.gateway.networking.k8s.io" is at version "1.4.1" but Istio requires at least "1.5.0"; resources of this kind will not be processed. Upgrade the Gateway API CRDs to satisfy the minimum version."#
            ]
        );
    }

    #[test]
    fn versions_as_masterminds_semver() {
        assert_eq!(parse_version("v1.4.1").unwrap().0, (1, 4, 1));
        assert_eq!(parse_version("1.5").unwrap().0, (1, 5, 0));
        assert_eq!(parse_version("v1.5.0-rc.1").unwrap().1, "1.5.0-rc.1");
        assert!(parse_version("latest").is_none());
    }
}
