//! IST0101 for a Gateway server's `tls.credentialName` that names no Secret, as istio/istio
//! `pkg/config/analysis/analyzers/gateway/secret.go` (`SecretAnalyzer`).
//!
//! The gateway proxy reads its certificate from a Secret in *its own* namespace, which is the
//! namespace of the pods the Gateway selects, not the Gateway resource's: a Secret beside the
//! Gateway is the classic mistake this catches. Like Istio, the namespace is that of the first
//! selected pod (Istio's default ingress gateway, [`super::defaults`], counts), and a Gateway
//! that selects no pod gets the selector message instead. `ns/name` credential names are
//! looked up as written. Istio's IST0161 InvalidGatewayCredential (the Secret's certificate
//! does not parse) is not checked: Trellis does not parse certificates here.

use super::defaults::gateway_pods;
use super::gateway_ports::no_workload;
use super::input::Inputs;
use super::message::{referenced_not_found, Message};
use super::object::selects;

/// Run the check over every Gateway.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    let pods = gateway_pods(inputs);
    for gw in &inputs.resources.gateways {
        let Some(pod) = pods.iter().find(|p| selects(&gw.spec.selector, &p.labels)) else {
            out.push(inputs.blame(&gw.source, no_workload(&gw.spec.selector)));
            continue;
        };
        for (i, server) in gw.spec.servers.iter().enumerate() {
            let Some(name) = server
                .tls
                .as_ref()
                .and_then(|t| t.credential_name.as_deref())
                .filter(|n| !n.is_empty())
            else {
                continue;
            };
            // Istio's `resource.NewShortOrFullName`.
            let (namespace, short) = name.split_once('/').unwrap_or((&pod.namespace, name));
            let exists = inputs
                .objects_of("Secret")
                .any(|s| s.namespace() == namespace && s.name() == short);
            if !exists {
                let m = referenced_not_found("credentialName", name)
                    .field(format!("spec.servers[{i}].tls.credentialName"));
                out.push(inputs.blame(&gw.source, m));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! istio/istio `analyzers_test.go` case `gatewaySecret`, reduced.
    use crate::analyze::analyze_str;
    use crate::analyze::tests::lines;

    fn gateway(name: &str, selector: &str, credential: &str) -> String {
        format!(
            "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}}}\nspec:\n  selector: {{istio: {selector}}}\n  servers:\n  - port: {{number: 443, name: https, protocol: HTTPS}}\n    tls: {{mode: SIMPLE, credentialName: {credential}}}\n    hosts: [\"*\"]\n"
        )
    }

    #[test]
    fn credential_must_be_in_the_gateway_pods_namespace() {
        let text = [
            "apiVersion: v1\nkind: Secret\nmetadata: {name: cred, namespace: istio-system}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: custom, labels: {istio: custom}}\n".to_string(),
            gateway("ok", "ingressgateway", "cred"),
            gateway("wrongns", "custom", "cred"),
            gateway("fullname", "custom", "istio-system/cred"),
        ]
        .concat();
        let a = analyze_str(&text, "g.yaml");
        assert_eq!(
            lines(&a, "IST0101"),
            vec![
                r#"Error [IST0101] (Gateway wrongns.default) Referenced credentialName not found: "cred""#
            ]
        );
    }
}
