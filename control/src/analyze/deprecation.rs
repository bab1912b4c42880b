//! IST0002 Deprecated: fields and kinds Istio has deprecated or removed.
//!
//! Istio has no machine-readable list of deprecated fields; its `deprecation.FieldAnalyzer`
//! (`pkg/config/analysis/analyzers/deprecation/deprecation.go`) is hand-written and checks
//! three things, as this does: a VirtualService `http[].fault.delay.percent` above zero
//! (replaced by `percentage`), a Sidecar `outboundTrafficPolicy.egressProxy` (ignored), and a
//! CustomResourceDefinition of a removed `rbac.istio.io` kind. Read from the documents as
//! written, so a resource that fails validation for another reason is still judged, as Istio's
//! analyzers see every resource the source holds.

use super::codes::DEPRECATED;
use super::input::Inputs;
use super::message::Message;
use super::object::{seq_at, str_at, value_at, Object};

/// Kinds of `rbac.istio.io` whose CRDs Istio removed.
const REMOVED_RBAC_KINDS: [&str; 4] = [
    "ClusterRbacConfig",
    "RbacConfig",
    "ServiceRole",
    "ServiceRoleBinding",
];

fn is_istio_networking(o: &Object) -> bool {
    o.api_version.starts_with("networking.istio.io/")
}

/// Run the check on VirtualServices, Sidecars and CustomResourceDefinitions.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    let mut report = |o: &Object, detail: String| {
        let m = Message::new(DEPRECATED, format!("Deprecated: {detail}"));
        out.push(inputs.blame(&o.source, m));
    };
    for vs in inputs
        .objects_of("VirtualService")
        .filter(|o| is_istio_networking(o))
    {
        for route in seq_at(&vs.value, &["spec", "http"]) {
            let percent = value_at(route, &["fault", "delay", "percent"]).and_then(|p| p.as_i64());
            if percent.is_some_and(|p| p > 0) {
                report(
                    vs,
                    "HTTPRoute.fault.delay.percent is deprecated; use HTTPRoute.fault.delay.percentage"
                        .to_string(),
                );
            }
        }
    }
    for sc in inputs
        .objects_of("Sidecar")
        .filter(|o| is_istio_networking(o))
    {
        let egress_proxy = sc
            .at(&["spec", "outboundTrafficPolicy", "egressProxy"])
            .is_some_and(|v| !v.is_null());
        if egress_proxy {
            report(sc, "OutboundTrafficPolicy.EgressProxy ignored".to_string());
        }
    }
    for crd in inputs.kube_objects_of("CustomResourceDefinition") {
        let group = crd.str_at(&["spec", "group"]);
        let kind = str_at(&crd.value, &["spec", "names", "kind"]).unwrap_or_default();
        if group == Some("rbac.istio.io") && REMOVED_RBAC_KINDS.contains(&kind) {
            report(
                crd,
                format!("Custom resource type rbac.istio.io {kind} is removed"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::analyze::analyze_str;
    use crate::analyze::tests::lines;

    /// analyzers_test.go "deprecation", over Istio's `deprecation.yaml`.
    #[test]
    fn istio_case() {
        let a = analyze_str(
            include_str!("../../tests/analyzer_testdata/deprecation.yaml"),
            "deprecation.yaml",
        );
        assert_eq!(
            lines(&a, "IST0002"),
            vec![
                "Warning [IST0002] (Sidecar no-selector.default) Deprecated: OutboundTrafficPolicy.EgressProxy ignored",
                "Warning [IST0002] (VirtualService productpage.foo) Deprecated: HTTPRoute.fault.delay.percent is deprecated; use HTTPRoute.fault.delay.percentage",
            ]
        );
    }

    #[test]
    fn removed_rbac_crds() {
        let text = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: serviceroles.rbac.istio.io}
spec:
  group: rbac.istio.io
  names: {kind: ServiceRole}
"#;
        assert_eq!(
            lines(&analyze_str(text, "crd.yaml"), "IST0002"),
            vec!["Warning [IST0002] (CustomResourceDefinition serviceroles.rbac.istio.io) Deprecated: Custom resource type rbac.istio.io ServiceRole is removed"]
        );
    }
}
