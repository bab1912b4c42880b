//! Istio annotations on Kubernetes objects: IST0108 UnknownAnnotation, IST0107
//! MisplacedAnnotation, IST0135 DeprecatedAnnotation and IST0125 InvalidAnnotation.
//!
//! A mistyped Istio annotation is silently ignored by the injector and istiod, so Istio's
//! `annotations.K8sAnalyzer` (`pkg/config/analysis/analyzers/annotations/annotations.go`) looks
//! at every annotation in Istio's namespace (a key whose prefix before `/` ends in `istio.io`,
//! plus the documented `kubernetes.io/ingress.class`) on Namespaces, Services, Pods and
//! Deployments (the Deployment's own metadata, not its pod template): one Istio does not define
//! is unknown; a deprecated one is reported (except `sidecar.istio.io/inject` beside the label
//! of that name); one defined for other kinds is misplaced; and one whose value the injector
//! would refuse is invalid ([`super::annotation_values`]). Annotations Istio sets itself
//! (`sidecar.istio.io/status`, `gateway.istio.io/controller-version`, `istio.io/rev`) are
//! never reported. The table of definitions is [`super::annotation_table`].

use super::annotation_table::lookup;
use super::annotation_values::validate;
use super::codes::{
    DEPRECATED_ANNOTATION, INVALID_ANNOTATION, MISPLACED_ANNOTATION, UNKNOWN_ANNOTATION,
};
use super::input::Inputs;
use super::message::{go_quote, Message};

/// The kinds whose annotations are judged.
pub(super) const KINDS: [&str; 4] = ["Namespace", "Service", "Pod", "Deployment"];

/// Annotations Istio or its controllers set (`maturity.AlwaysIgnoredAnnotations`).
pub(super) const ALWAYS_IGNORED: [&str; 3] = [
    "sidecar.istio.io/status",
    "gateway.istio.io/controller-version",
    "istio.io/rev",
];

const SIDECAR_INJECT: &str = "sidecar.istio.io/inject";

/// Istio's `istioAnnotation`.
pub(super) fn is_istio_annotation(name: &str) -> bool {
    name == "kubernetes.io/ingress.class"
        || name
            .split('/')
            .next()
            .is_some_and(|p| p.ends_with("istio.io"))
}

/// Run the check on the objects of [`KINDS`].
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    for kind in KINDS {
        for o in inputs.kube_objects_of(kind) {
            let labels = o.labels();
            for (name, value) in o.annotations() {
                if !is_istio_annotation(&name) || ALWAYS_IGNORED.contains(&name.as_str()) {
                    continue;
                }
                let mut report = |m: Message| out.push(inputs.blame(&o.source, m));
                let Some(def) = lookup(&name) else {
                    report(Message::new(
                        UNKNOWN_ANNOTATION,
                        format!("Unknown annotation: {name}"),
                    ));
                    continue;
                };
                if def.deprecated
                    && !(name == SIDECAR_INJECT && labels.contains_key(SIDECAR_INJECT))
                {
                    let extra = if name == SIDECAR_INJECT {
                        r#" in favor of the "sidecar.istio.io/inject" label"#
                    } else {
                        ""
                    };
                    report(Message::new(
                        DEPRECATED_ANNOTATION,
                        format!(
                            "Annotation {} has been deprecated{extra} and may not work in future Istio versions.",
                            go_quote(&name)
                        ),
                    ));
                }
                if def.resources.contains(&"Any") {
                    continue;
                }
                if !def.resources.contains(&kind) {
                    report(Message::new(
                        MISPLACED_ANNOTATION,
                        format!(
                            "Misplaced annotation: {name} can only be applied to {}",
                            def.resources.join(", ")
                        ),
                    ));
                    continue;
                }
                if let Err(problem) = validate(&name, &value) {
                    report(Message::new(
                        INVALID_ANNOTATION,
                        format!("Invalid annotation {name}: {problem}"),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::analyze::analyze_str;
    use crate::analyze::tests::lines;

    /// analyzers_test.go "misannoted", over Istio's `misannotated.yaml`.
    #[test]
    fn misannotated() {
        let a = analyze_str(
            include_str!("../../tests/analyzer_testdata/misannotated.yaml"),
            "misannotated.yaml",
        );
        assert_eq!(
            lines(&a, "IST0108"),
            vec!["Warning [IST0108] (Service httpbin.default) Unknown annotation: networking.istio.io/exportThree"]
        );
        assert_eq!(
            lines(&a, "IST0125"),
            vec![
                r#"Warning [IST0125] (Pod invalid-annotations.default) Invalid annotation readiness.status.sidecar.istio.io/initialDelaySeconds: strconv.ParseUint: parsing "bar": invalid syntax"#
            ]
        );
        assert_eq!(
            lines(&a, "IST0107"),
            vec![
                "Warning [IST0107] (Deployment fortio-deploy.default) Misplaced annotation: sidecar.istio.io/statsInclusionPrefixes can only be applied to Pod",
                "Warning [IST0107] (Namespace staging) Misplaced annotation: kubernetes.io/ingress.class can only be applied to Ingress",
                "Warning [IST0107] (Pod grafana-test.default) Misplaced annotation: kubernetes.io/ingress.class can only be applied to Ingress",
            ]
        );
        assert_eq!(
            lines(&a, "IST0135"),
            vec![
                r#"Info [IST0135] (Deployment fortio-deploy.default) Annotation "sidecar.istio.io/statsInclusionPrefixes" has been deprecated and may not work in future Istio versions."#
            ]
        );
    }

    #[test]
    fn deprecated_inject_annotation_unless_the_label_is_there() {
        let pod = |labels: &str| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {{{labels}}}\n  annotations: {{sidecar.istio.io/inject: \"true\"}}\nspec: {{}}\n"
            )
        };
        assert_eq!(
            lines(&analyze_str(&pod(""), "p.yaml"), "IST0135"),
            vec![
                r#"Info [IST0135] (Pod p.default) Annotation "sidecar.istio.io/inject" has been deprecated in favor of the "sidecar.istio.io/inject" label and may not work in future Istio versions."#
            ]
        );
        let both = pod(r#"sidecar.istio.io/inject: "true""#);
        assert!(lines(&analyze_str(&both, "p.yaml"), "IST0135").is_empty());
    }
}
