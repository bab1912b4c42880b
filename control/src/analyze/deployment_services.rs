//! IST0116 DeploymentAssociatedToMultipleServices and IST0137 DeploymentConflictingPorts: a
//! Deployment in the mesh whose pods two Services select in conflicting ways.
//!
//! Istio's `deployment.ServiceAssociationAnalyzer` (`pkg/config/analysis/analyzers/deployment/
//! services.go`): a sidecar reads one protocol per port, so two Services that select the same
//! pods with one port number but different protocols (`TCP` and `UDP`, or as written) cannot
//! both work; and two Services that send one `targetPort` from two different service ports
//! break Istio's inbound listener. Only Deployments in the mesh are judged ([`in_mesh`], Istio's
//! `util.DeploymentInMesh`), waypoints are skipped, and a Service counts when its selector is
//! non-empty, matches the pod template's labels and it lives in the Deployment's namespace.

use std::collections::BTreeMap;

use super::codes::{DEPLOYMENT_ASSOCIATED_TO_MULTIPLE_SERVICES, DEPLOYMENT_CONFLICTING_PORTS};
use super::input::{Inputs, KubeService};
use super::message::{go_quote, Message};
use super::object::{selects, seq_at, str_at, string_map, Object};

/// `gateway.istio.io/managed` on a waypoint's Deployment (`constants.ManagedGatewayMeshController`).
const WAYPOINT_CONTROLLER: &str = "istio.io-mesh-controller";

/// Istio's `util.inMesh` for a Deployment's pod template: it runs `istio-proxy` (with an
/// image), else its `sidecar.istio.io/inject` label, else that annotation, decides; else its
/// namespace's `istio-injection` label, when the Namespace is in the input.
pub fn in_mesh(inputs: &Inputs, deployment: &Object) -> bool {
    let template = &["spec", "template"];
    let path = |rest: &[&'static str]| -> Vec<&'static str> {
        template
            .iter()
            .copied()
            .chain(rest.iter().copied())
            .collect()
    };
    let containers = seq_at(&deployment.value, &path(&["spec", "containers"]));
    let proxy = containers.iter().any(|c| {
        str_at(c, &["name"]) == Some("istio-proxy")
            && str_at(c, &["image"]).is_some_and(|i| !i.is_empty())
    });
    if proxy {
        return true;
    }
    for key in ["labels", "annotations"] {
        let map = string_map(&deployment.value, &path(&["metadata", key]));
        if let Some(v) = map.get("sidecar.istio.io/inject") {
            return v == "true";
        }
    }
    inputs
        .kube_objects_of("Namespace")
        .find(|ns| ns.name() == deployment.namespace())
        .is_some_and(|ns| {
            ns.labels()
                .get("istio-injection")
                .is_some_and(|v| v == "enabled")
        })
}

/// The Services that select the Deployment's pods, as `namespace/name` with the Service.
fn matching_services<'a>(
    inputs: &'a Inputs,
    deployment: &Object,
) -> Vec<(String, &'a KubeService)> {
    let labels = string_map(
        &deployment.value,
        &["spec", "template", "metadata", "labels"],
    );
    inputs
        .services
        .iter()
        .filter(|s| {
            !s.selector.is_empty()
                && selects(&s.selector, &labels)
                && s.namespace == deployment.namespace()
        })
        .map(|s| (format!("{}/{}", s.namespace, s.name), s))
        .collect()
}

/// Go's `%v` of a slice: `[a b c]`.
fn go_list<T: ToString>(items: &[T]) -> String {
    let words: Vec<String> = items.iter().map(ToString::to_string).collect();
    format!("[{}]", words.join(" "))
}

/// Run the check on every Deployment.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    for d in inputs.kube_objects_of("Deployment") {
        let waypoint = d
            .labels()
            .get("gateway.istio.io/managed")
            .is_some_and(|v| v == WAYPOINT_CONTROLLER);
        if waypoint || !in_mesh(inputs, d) {
            continue;
        }
        let services = matching_services(inputs, d);
        // port -> protocol -> services (`servicePortMap`).
        let mut by_port: BTreeMap<u32, BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
        // targetPort -> port -> service, the last one winning (`serviceTargetPortsMap`).
        let mut by_target: BTreeMap<String, BTreeMap<u32, &str>> = BTreeMap::new();
        for (name, svc) in &services {
            for p in &svc.ports {
                let protocol = if p.protocol.is_empty() {
                    "TCP"
                } else {
                    &p.protocol
                };
                by_port
                    .entry(p.port)
                    .or_default()
                    .entry(protocol)
                    .or_default()
                    .push(name);
                let target = match p.target_port.as_str() {
                    "" | "0" => p.port.to_string(),
                    t => t.to_string(),
                };
                by_target.entry(target).or_default().insert(p.port, name);
            }
        }
        for (port, protocols) in &by_port {
            if protocols.len() > 1 {
                let mut names: Vec<&str> = protocols.values().flatten().copied().collect();
                names.sort_unstable();
                let m = Message::new(
                    DEPLOYMENT_ASSOCIATED_TO_MULTIPLE_SERVICES,
                    format!(
                        "This deployment {} is associated with multiple services using port {port} but different protocols: {}",
                        d.name(),
                        go_list(&names)
                    ),
                );
                out.push(inputs.blame(&d.source, m));
            }
        }
        for (target, ports) in &by_target {
            if ports.len() > 1 {
                let mut names: Vec<&str> = ports.values().copied().collect();
                names.sort_unstable();
                let numbers: Vec<u32> = ports.keys().copied().collect();
                let m = Message::new(
                    DEPLOYMENT_CONFLICTING_PORTS,
                    format!(
                        "This deployment {} is associated with multiple services {} using targetPort {} but different ports: {}.",
                        d.name(),
                        go_list(&names),
                        go_quote(target),
                        go_list(&numbers)
                    ),
                );
                out.push(inputs.blame(&d.source, m));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::analyze::tests::lines;
    use crate::analyze::{analyze_str, Analysis};

    fn istio_case(file: &str, text: &str) -> Analysis {
        analyze_str(text, file)
    }

    /// analyzers_test.go "serviceMultipleDeployments".
    #[test]
    fn service_multiple_deployments() {
        let a = istio_case(
            "deployment-multi-service.yaml",
            include_str!("../../tests/analyzer_testdata/deployment-multi-service.yaml"),
        );
        assert_eq!(
            lines(&a, "IST0116"),
            vec![
                "Warning [IST0116] (Deployment multiple-svc-multiple-prot.bookinfo) This deployment multiple-svc-multiple-prot is associated with multiple services using port 9080 but different protocols: [bookinfo/details-http-v1 bookinfo/details-tcp-v1]",
                "Warning [IST0116] (Deployment multiple-without-port.bookinfo) This deployment multiple-without-port is associated with multiple services using port 9080 but different protocols: [bookinfo/productpage-http-v1 bookinfo/productpage-tcp-v1]",
            ]
        );
        assert_eq!(
            lines(&a, "IST0137"),
            vec![
                r#"Warning [IST0137] (Deployment conflicting-ports.bookinfo) This deployment conflicting-ports is associated with multiple services [bookinfo/conflicting-ports-1 bookinfo/conflicting-ports-2] using targetPort "9080" but different ports: [9080 9090]."#
            ]
        );
    }

    /// analyzers_test.go "deploymentMultiServicesInDifferentNamespace" and
    /// "serviceWithNoSelector": nothing.
    #[test]
    fn other_namespaces_and_selectorless_services_do_not_count() {
        for (file, text) in [
            (
                "deployment-multi-service-different-ns.yaml",
                include_str!(
                    "../../tests/analyzer_testdata/deployment-multi-service-different-ns.yaml"
                ),
            ),
            (
                "deployment-service-no-selector.yaml",
                include_str!("../../tests/analyzer_testdata/deployment-service-no-selector.yaml"),
            ),
        ] {
            let a = istio_case(file, text);
            assert!(lines(&a, "IST0116").is_empty(), "{file}: {a}");
            assert!(lines(&a, "IST0137").is_empty(), "{file}: {a}");
        }
    }
}
