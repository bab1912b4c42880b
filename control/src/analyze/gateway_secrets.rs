//! IST0101 for a Gateway server's `tls.credentialName` that names no Secret, as istio/istio
//! `pkg/config/analysis/analyzers/gateway/secret.go` (`SecretAnalyzer`).
//!
//! The gateway proxy reads its certificate from a Secret in *its own* namespace, which is the
//! namespace of the pods the Gateway selects, not the Gateway resource's: a Secret beside the
//! Gateway is the classic mistake this catches. Like Istio, the namespace is that of the first
//! selected pod (Istio's default ingress gateway, [`super::defaults`], counts), and a Gateway
//! that selects no pod gets the selector message instead. `ns/name` credential names are
//! looked up as written. A Secret that exists but that istiod could not serve is IST0161
//! InvalidGatewayCredential ([`valid_secret`]).

use base64::Engine as _;

use super::codes::INVALID_GATEWAY_CREDENTIAL;
use super::defaults::gateway_pods;
use super::gateway_ports::no_workload;
use super::input::Inputs;
use super::message::{referenced_not_found, Message};
use super::object::{selects, string_map, Object};

/// Istio's `isValidSecret`: `kube.ExtractCertInfo` finds non-empty `cert`/`key` (or
/// `tls.crt`/`tls.key`) in `data`, and `xds.ValidateCertificate` decodes the first PEM block
/// of the certificate as X.509 certificates, each valid now.
fn valid_secret(secret: &Object) -> bool {
    let data = string_map(&secret.value, &["data"]);
    let decoded = |key: &str| {
        data.get(key)
            .and_then(|v| {
                base64::engine::general_purpose::STANDARD
                    .decode(v.trim())
                    .ok()
            })
            .filter(|v| !v.is_empty())
    };
    let cert = match (decoded("cert"), decoded("key")) {
        (Some(cert), Some(_)) => cert,
        _ => match (decoded("tls.crt"), decoded("tls.key")) {
            (Some(cert), Some(_)) => cert,
            _ => return false,
        },
    };
    let Ok(block) = pem::parse(&cert) else {
        return false;
    };
    let mut der = block.contents();
    if der.is_empty() {
        return false;
    }
    while !der.is_empty() {
        let Ok((rest, cert)) = x509_parser::parse_x509_certificate(der) else {
            return false;
        };
        if !cert.validity().is_valid() {
            return false;
        }
        der = rest;
    }
    true
}

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
            let secret = inputs
                .objects_of("Secret")
                .find(|s| s.namespace() == namespace && s.name() == short);
            let field = format!("spec.servers[{i}].tls.credentialName");
            match secret {
                None => {
                    let m = referenced_not_found("credentialName", name).field(field);
                    out.push(inputs.blame(&gw.source, m));
                }
                Some(secret) if !valid_secret(secret) => {
                    let m = Message::new(
                        INVALID_GATEWAY_CREDENTIAL,
                        format!(
                            "The credential referenced by the Gateway {} in namespace {} is invalid, which can cause the traffic not to work as expected.",
                            gw.source.name, pod.namespace
                        ),
                    )
                    .field(field);
                    out.push(inputs.blame(&gw.source, m));
                }
                Some(_) => {}
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

    /// analyzers_test.go "gatewaySecretValidations": bad keys, missing keys, a certificate
    /// that is not PEM, an expired one.
    #[test]
    fn invalid_credentials() {
        let a = analyze_str(
            include_str!("../../tests/analyzer_testdata/gateway-secrets-validation.yaml"),
            "gateway-secrets-validation.yaml",
        );
        assert_eq!(
            lines(&a, "IST0161"),
            [
                "defaultgateway-expired",
                "defaultgateway-invalid-cert",
                "defaultgateway-invalid-keys",
                "defaultgateway-missing-keys",
            ]
            .map(|g| format!("Error [IST0161] (Gateway {g}.default) The credential referenced by the Gateway {g} in namespace istio-system is invalid, which can cause the traffic not to work as expected."))
        );
    }
}
