//! IST0126 UnknownMeshNetworksServiceRegistry: a MeshNetworks endpoint `fromRegistry` that
//! names no service registry Istio knows.
//!
//! As Istio's `multicluster.MeshNetworksAnalyzer` (`multicluster/meshnetworks.go`): the known
//! registries are `Mock`, `Kubernetes` and `External` (`pilot/pkg/serviceregistry/provider`,
//! case-sensitive) plus every cluster named by a remote secret (a Secret labelled
//! `istio/multiCluster: "true"`, one cluster per data key). Each unknown `fromRegistry` is one
//! message on `MeshNetworks istio-system/meshnetworks`. Istio reads the Secret's `data`; a
//! manifest usually carries `stringData` (what `istioctl create-remote-secret` writes, which the
//! API server stores as `data`), so its keys count too.

use serde_yaml::Value;

use super::codes::UNKNOWN_MESH_NETWORKS_SERVICE_REGISTRY;
use super::input::Inputs;
use super::message::Message;
use super::object::{seq_at, str_at};

/// `serviceRegistries` in meshnetworks.go.
const KNOWN_REGISTRIES: [&str; 3] = ["Mock", "Kubernetes", "External"];

/// `multicluster.MultiClusterSecretLabel`.
const MULTI_CLUSTER_SECRET_LABEL: &str = "istio/multiCluster";

/// Run the check.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    let mut registries: Vec<String> = KNOWN_REGISTRIES.iter().map(|r| r.to_string()).collect();
    for secret in inputs.kube_objects_of("Secret") {
        if secret
            .labels()
            .get(MULTI_CLUSTER_SECRET_LABEL)
            .map(String::as_str)
            != Some("true")
        {
            continue;
        }
        for key in ["data", "stringData"] {
            if let Some(map) = secret.at(&[key]).and_then(Value::as_mapping) {
                registries.extend(map.keys().filter_map(|k| k.as_str().map(str::to_string)));
            }
        }
    }
    let networks = &inputs.mesh.networks;
    let Some(map) = networks.at(&["networks"]).and_then(Value::as_mapping) else {
        return;
    };
    for (name, network) in map {
        let name = name.as_str().unwrap_or_default();
        for (j, endpoint) in seq_at(network, &["endpoints"]).iter().enumerate() {
            let Some(registry) = str_at(endpoint, &["fromRegistry"]) else {
                continue;
            };
            if registries.iter().any(|r| r == registry) {
                continue;
            }
            let m = Message::new(
                UNKNOWN_MESH_NETWORKS_SERVICE_REGISTRY,
                format!("Unknown service registry {registry} in network {name}"),
            );
            let field = format!("networks.{name}.endpoints[{j}].fromRegistry");
            out.push(inputs.blame(&networks.source, m.field(field)));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::analyze::tests::lines;
    use crate::analyze::{analyze_resources, Inputs};

    const NETWORKS: &str = include_str!("../../tests/analyzer_testdata/common/meshnetworks.yaml");

    /// analyzers_test.go "unknown service registry in mesh networks", after
    /// `MeshNetworksAnalyzer.Analyze`: registry names are case-sensitive, and a remote
    /// secret's cluster names are registries too.
    #[test]
    fn unknown_registries() {
        let secret =
            include_str!("../../tests/analyzer_testdata/multicluster-unknown-serviceregistry.yaml");
        let mut inputs = Inputs::read_str(secret, "secret.yaml");
        inputs
            .set_mesh_networks_str(NETWORKS, "meshnetworks.yaml")
            .unwrap();
        assert_eq!(
            lines(&analyze_resources(&inputs, "t"), "IST0126"),
            vec![
                "Error [IST0126] (MeshNetworks meshnetworks.istio-system) Unknown service registry istio-testing in network network2",
                "Error [IST0126] (MeshNetworks meshnetworks.istio-system) Unknown service registry kubernetes in network network1",
            ]
        );
        let remote = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: r\n  namespace: istio-system\n  labels: {istio/multiCluster: \"true\"}\ndata:\n  istio-testing: eA==\n";
        inputs.add_str(remote, "remote.yaml");
        assert_eq!(lines(&analyze_resources(&inputs, "t"), "IST0126").len(), 1);
        // No MeshNetworks file: Istio's default has no networks.
        let a = analyze_resources(&Inputs::read_str(secret, "secret.yaml"), "t");
        assert!(lines(&a, "IST0126").is_empty());
    }
}
