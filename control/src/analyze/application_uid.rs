//! IST0144 InvalidApplicationUID: a Pod or Deployment whose application runs as UID 1337.
//!
//! The sidecar runs as 1337 and its iptables rules let that user's traffic bypass the proxy, so
//! an application with the same UID escapes the mesh. As Istio's
//! `deployment.ApplicationUIDAnalyzer` (`pkg/config/analysis/analyzers/deployment/pod.go`): the
//! pod-level `securityContext.runAsUser`, or that of any container other than `istio-proxy`
//! and `istio-operator`, equal to 1337 is reported (once: identical messages are merged).
//! Objects of Istio's control plane (label `istio`, or `release: istio`) are skipped.

use super::codes::INVALID_APPLICATION_UID;
use super::input::Inputs;
use super::message::Message;
use super::object::{seq_at, value_at, Object};

/// The proxy's UID (`UserID` in Istio's analyzer).
const PROXY_UID: u64 = 1337;

/// Containers Istio's analyzer does not judge.
const ISTIO_CONTAINERS: [&str; 2] = ["istio-proxy", "istio-operator"];

/// Whether the pod spec at `spec` runs the application as the proxy's UID.
fn runs_as_proxy_uid(object: &Object, spec: &[&str]) -> bool {
    let run_as = |v: Option<&serde_yaml::Value>| {
        v.and_then(|v| value_at(v, &["securityContext", "runAsUser"]))
            .and_then(serde_yaml::Value::as_u64)
            == Some(PROXY_UID)
    };
    if run_as(object.at(spec)) {
        return true;
    }
    let containers: Vec<&str> = spec.iter().copied().chain(["containers"]).collect();
    seq_at(&object.value, &containers).iter().any(|c| {
        let name = c.get("name").and_then(serde_yaml::Value::as_str);
        !name.is_some_and(|n| ISTIO_CONTAINERS.contains(&n)) && run_as(Some(c))
    })
}

/// Run the check on every Pod and Deployment.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    let kinds: [(&str, &[&str]); 2] = [
        ("Pod", &["spec"]),
        ("Deployment", &["spec", "template", "spec"]),
    ];
    for (kind, spec) in kinds {
        for o in inputs.kube_objects_of(kind) {
            let labels = o.labels();
            let control_plane =
                labels.contains_key("istio") || labels.get("release").is_some_and(|r| r == "istio");
            if !control_plane && runs_as_proxy_uid(o, spec) {
                let m = Message::new(
                    INVALID_APPLICATION_UID,
                    "User ID (UID) 1337 is reserved for the sidecar proxy.",
                );
                out.push(inputs.blame(&o.source, m));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::analyze::analyze_str;
    use crate::analyze::tests::lines;

    /// analyzers_test.go, the four "... SecurityContext with UID 1337" cases.
    #[test]
    fn istio_cases() {
        let cases = [
            (
                include_str!("../../tests/analyzer_testdata/pod-sec-uid.yaml"),
                "Pod pod-sec-uid.default",
            ),
            (
                include_str!("../../tests/analyzer_testdata/pod-con-sec-uid.yaml"),
                "Pod con-sec-uid.default",
            ),
            (
                include_str!("../../tests/analyzer_testdata/deployment-pod-sec-uid.yaml"),
                "Deployment deploy-pod-sec-uid.default",
            ),
            (
                include_str!("../../tests/analyzer_testdata/deployment-con-sec-uid.yaml"),
                "Deployment deploy-con-sec-uid.default",
            ),
        ];
        for (text, origin) in cases {
            let a = analyze_str(text, "uid.yaml");
            assert_eq!(
                lines(&a, "IST0144"),
                vec![format!(
                    "Warning [IST0144] ({origin}) User ID (UID) 1337 is reserved for the sidecar proxy."
                )]
            );
        }
    }

    #[test]
    fn the_proxy_itself_and_the_control_plane_may() {
        let text = r#"
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers:
  - {name: istio-proxy, image: proxy, securityContext: {runAsUser: 1337}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: istiod, labels: {istio: pilot}}
spec:
  template:
    spec:
      securityContext: {runAsUser: 1337}
"#;
        assert!(lines(&analyze_str(text, "p.yaml"), "IST0144").is_empty());
    }
}
