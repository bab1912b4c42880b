//! IST0136 AlphaAnnotation: an Istio annotation whose feature is still alpha.
//!
//! As Istio's `maturity.AlphaAnalyzer` (`maturity/maturity.go`): every Istio annotation (as
//! [`super::annotations`] tells them) on a Namespace, Service, Pod or Deployment that Istio's
//! table marks `featureStatus: Alpha` is reported, except those Istio sets itself, and, on a Pod
//! without an `istio-init` init container (istio-cni sets them then), the four traffic
//! annotations istio-cni writes. `istioctl analyze` leaves this analyzer out of its default set
//! ("too much noise"), so it runs only when asked ([`super::OptIn`]).

use super::annotation_table::lookup;
use super::annotations::{is_istio_annotation, ALWAYS_IGNORED, KINDS};
use super::codes::ALPHA_ANNOTATION;
use super::input::Inputs;
use super::message::{go_quote, Message};
use super::object::{seq_at, str_at, Object};

/// `conditionallyIgnoredAnnotations`: set by istio-cni on the pods it handles.
const CNI_SET: [&str; 4] = [
    "sidecar.istio.io/interceptionMode",
    "traffic.sidecar.istio.io/includeInboundPorts",
    "traffic.sidecar.istio.io/excludeInboundPorts",
    "traffic.sidecar.istio.io/includeOutboundIPRanges",
];

/// `isCNIEnabled`: no init container is named `istio-init`.
fn cni_enabled(pod: &Object) -> bool {
    !seq_at(&pod.value, &["spec", "initContainers"])
        .iter()
        .any(|c| str_at(c, &["name"]) == Some("istio-init"))
}

/// Run the check (`AlphaAnalyzer.Analyze`).
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    for kind in KINDS {
        for o in inputs.kube_objects_of(kind) {
            let skip_cni_set = kind == "Pod" && cni_enabled(o);
            for name in o.annotations().into_keys() {
                if !is_istio_annotation(&name) || !lookup(&name).is_some_and(|d| d.alpha) {
                    continue;
                }
                if ALWAYS_IGNORED.contains(&name.as_str())
                    || (skip_cni_set && CNI_SET.contains(&name.as_str()))
                {
                    continue;
                }
                let m = Message::new(
                    ALPHA_ANNOTATION,
                    format!(
                        "Annotation {} is part of an alpha-phase feature and may be incompletely supported.",
                        go_quote(&name)
                    ),
                );
                out.push(inputs.blame(&o.source, m.field(format!("metadata.annotations.{name}"))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::analyze::{analyze_with, Inputs, OptIn};

    const MISANNOTATED: &str = include_str!("../../tests/analyzer_testdata/misannotated.yaml");

    /// analyzers_test.go "alpha": not by default (istioctl's default set leaves it out);
    /// when asked, CNI-set annotations count only on the pod with `istio-init`.
    #[test]
    fn alpha_annotations_when_asked() {
        let inputs = Inputs::read_str(MISANNOTATED, "m.yaml");
        let a = analyze_with(&inputs, "t", OptIn::default());
        assert_eq!(a.with_code("IST0136").count(), 0);
        let a = analyze_with(&inputs, "t", OptIn { alpha: true });
        let mut found: Vec<String> = a
            .with_code("IST0136")
            .map(|m| format!("{} {}", m.resource.as_deref().unwrap_or(""), m.message))
            .collect();
        found.sort();
        let expect = |r: &str, n: &str| {
            format!("{r} Annotation \"{n}\" is part of an alpha-phase feature and may be incompletely supported.")
        };
        let pod = "Pod anno-not-set-by-default.default";
        let invalid = "Pod invalid-annotations.default";
        let mut want = vec![
            expect(
                "Deployment fortio-deploy.default",
                "sidecar.istio.io/statsInclusionPrefixes",
            ),
            expect(pod, "sidecar.istio.io/interceptionMode"),
            expect(pod, "traffic.sidecar.istio.io/excludeInboundPorts"),
            expect(pod, "traffic.sidecar.istio.io/includeInboundPorts"),
            expect(pod, "traffic.sidecar.istio.io/includeOutboundIPRanges"),
            expect(
                invalid,
                "readiness.status.sidecar.istio.io/initialDelaySeconds",
            ),
            expect(invalid, "readiness.status.sidecar.istio.io/periodSeconds"),
            expect("Service httpbin.default", "networking.istio.io/exportTo"),
        ];
        want.sort();
        assert_eq!(found, want);
    }
}
