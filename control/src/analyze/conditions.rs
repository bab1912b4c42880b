//! IST0171 NegativeConditionStatus: a resource whose `status` carries a condition that says
//! Istio could not apply it (a Service with no ready waypoint, a policy ztunnel refused, a
//! Gateway API route not accepted).
//!
//! Status is written by istiod into the cluster, so this only fires on input read from one
//! (`--kube`, or `kubectl get -o yaml` output). As Istio's `conditions.ConditionAnalyzer`
//! (`pkg/config/analysis/analyzers/conditions/conditions.go`): per kind, the condition types
//! whose `status: "False"` is negative ([`NEGATIVE`]), the routes' conditions being those of
//! each `status.parents[]`; and an AuthorizationPolicy's `WaypointAccepted` with reason
//! `PartiallyInvalid` is reported whatever its status.

use super::codes::NEGATIVE_CONDITION_STATUS;
use super::input::Inputs;
use super::message::Message;
use super::object::{seq_at, str_at, Object};

/// (kind, API group, condition types whose `"False"` is negative).
const NEGATIVE: [(&str, &str, &[&str]); 7] = [
    ("Service", "", &["istio.io/WaypointBound"]),
    (
        "ServiceEntry",
        "networking.istio.io",
        &["istio.io/WaypointBound"],
    ),
    (
        "WorkloadEntry",
        "networking.istio.io",
        &["istio.io/WaypointBound"],
    ),
    (
        "AuthorizationPolicy",
        "security.istio.io",
        &["ZtunnelAccepted", "WaypointAccepted"],
    ),
    (
        "Gateway",
        "gateway.networking.k8s.io",
        &["Accepted", "Programmed", "ResolvedRefs"],
    ),
    (
        "HTTPRoute",
        "gateway.networking.k8s.io",
        &["Accepted", "Programmed", "ResolvedRefs"],
    ),
    (
        "GRPCRoute",
        "gateway.networking.k8s.io",
        &["Accepted", "Programmed", "ResolvedRefs"],
    ),
];

/// The object's API group (`""` for the core group's `v1`).
fn group(o: &Object) -> &str {
    o.api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// The conditions of `o`'s status, routes' per parent.
fn conditions(o: &Object) -> Vec<&serde_yaml::Value> {
    if matches!(o.kind(), "HTTPRoute" | "GRPCRoute") {
        return seq_at(&o.value, &["status", "parents"])
            .iter()
            .flat_map(|p| seq_at(p, &["conditions"]))
            .collect();
    }
    seq_at(&o.value, &["status", "conditions"]).iter().collect()
}

/// Run the check on the kinds of [`NEGATIVE`].
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    for (kind, api_group, negative) in NEGATIVE {
        for o in inputs.objects_of(kind).filter(|o| group(o) == api_group) {
            for c in conditions(o) {
                let field = |k: &str| str_at(c, &[k]).unwrap_or_default();
                let (ty, status, reason) = (field("type"), field("status"), field("reason"));
                let negative = negative.contains(&ty) && status == "False";
                let partially_invalid = kind == "AuthorizationPolicy"
                    && ty == "WaypointAccepted"
                    && reason == "PartiallyInvalid";
                // Istio reports twice when both hold; the two identical lines merge.
                if negative || partially_invalid {
                    let m = Message::new(
                        NEGATIVE_CONDITION_STATUS,
                        format!(
                            "A condition with a negative status is present: type={ty}, reason={reason}, message={}.",
                            field("message")
                        ),
                    );
                    out.push(inputs.blame(&o.source, m));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::analyze::analyze_str;
    use crate::analyze::tests::lines;

    /// analyzers_test.go "Condition Analyzer", over Istio's `condition-analyzer.yaml`.
    #[test]
    fn istio_case() {
        let a = analyze_str(
            include_str!("../../tests/analyzer_testdata/condition-analyzer.yaml"),
            "condition-analyzer.yaml",
        );
        let origins: Vec<String> = a
            .with_code("IST0171")
            .map(|m| m.resource.clone().unwrap_or_default())
            .collect();
        assert_eq!(
            origins,
            vec![
                "AuthorizationPolicy negative-condition-authz-partially-invalid.default",
                "AuthorizationPolicy negative-condition-authz.default",
                "GRPCRoute negative-condition-grpcroute.default",
                "Gateway negative-condition-gateway.default",
                "HTTPRoute negative-condition-httproute.default",
                "Service negative-condition-svc.default",
                "ServiceEntry negative-condition-svcEntry.default",
            ]
        );
        assert!(lines(&a, "IST0171").contains(
            &r#"Warning [IST0171] (Service negative-condition-svc.default) A condition with a negative status is present: type=istio.io/WaypointBound, reason=NoWaypoint, message=waypoint "default/waypoint" is not ready."#
                .to_string()
        ));
    }
}
