//! IST0138 GatewayDuplicateCertificate, as istio/istio
//! `pkg/config/analysis/analyzers/gateway/certificate.go` (`CertificateAnalyzer`).
//!
//! Two Gateways on the same proxies that serve the same certificate let an HTTP/2 client reuse
//! one connection for both gateways' hosts (connection coalescing), and the proxy answers 404
//! for the host its filter chain did not match. Like Istio, a Gateway is compared with every
//! Gateway whose selector contains its own (any Gateway when its selector is empty), in every
//! namespace (`SCOPE_GATEWAY_TO_NAMESPACE` is off by default), and servers have the same
//! certificate when their `credentialName`s are equal, or, both without one, when their
//! `serverCertificate` and `privateKey` files are. One message per pair of servers.

use std::collections::BTreeMap;

use super::codes::GATEWAY_DUPLICATE_CERTIFICATE;
use super::input::Inputs;
use super::message::Message;
use crate::istio::gateway::ServerTls;

/// Istio's `selectorSubset`: every label of `x` is in `y` with the same value.
fn subset(x: &BTreeMap<String, String>, y: &BTreeMap<String, String>) -> bool {
    x.iter().all(|(k, v)| y.get(k) == Some(v))
}

/// A field that is present and not empty (proto3's "set").
fn set(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// Istio's `haveSameCertificate`.
fn same_certificate(a: &ServerTls, b: &ServerTls) -> bool {
    match (set(&a.credential_name), set(&b.credential_name)) {
        (Some(x), Some(y)) => x == y,
        (None, None) => {
            let cert = (set(&a.server_certificate), set(&b.server_certificate));
            let key = (set(&a.private_key), set(&b.private_key));
            matches!((cert, key), ((Some(c1), Some(c2)), (Some(k1), Some(k2))) if c1 == c2 && k1 == k2)
        }
        _ => false,
    }
}

/// Run the check over every Gateway.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    let gateways = &inputs.resources.gateways;
    for current in gateways {
        let others = gateways.iter().filter(|g| {
            g.source != current.source
                && (current.spec.selector.is_empty()
                    || subset(&current.spec.selector, &g.spec.selector))
        });
        for other in others {
            for a in current.spec.servers.iter().filter_map(|s| s.tls.as_ref()) {
                for b in other.spec.servers.iter().filter_map(|s| s.tls.as_ref()) {
                    if !same_certificate(a, b) {
                        continue;
                    }
                    let m = Message::new(
                        GATEWAY_DUPLICATE_CERTIFICATE,
                        format!(
                            "Duplicate certificate in multiple gateways [{} {}] may cause 404s if clients re-use HTTP2 connections.",
                            current.source.qualified_name(),
                            other.source.qualified_name()
                        ),
                    );
                    out.push(inputs.blame(&current.source, m.field("metadata.name")));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! istio/istio `analyzers_test.go` case "certificate duplication in Gateway", reduced.
    use crate::analyze::analyze_str;
    use crate::analyze::tests::lines;

    fn gateway(name: &str, selector: &str, tls: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: istio-system}}\nspec:\n  selector: {selector}\n  servers:\n  - port: {{number: 443, name: https, protocol: HTTPS}}\n    tls: {tls}\n    hosts: [\"{name}.example.com\"]\n---\n"
        )
    }

    #[test]
    fn same_credential_on_a_superset_selector() {
        let text = [
            gateway(
                "a",
                "{istio: ingressgateway}",
                "{mode: SIMPLE, credentialName: c}",
            ),
            gateway(
                "b",
                "{istio: ingressgateway, type: internal}",
                "{mode: SIMPLE, credentialName: c}",
            ),
            gateway(
                "c",
                "{istio: ingressgateway}",
                "{mode: SIMPLE, credentialName: other}",
            ),
            gateway(
                "d",
                "{istio: ingressgateway}",
                "{mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem}",
            ),
            gateway(
                "e",
                "{istio: ingressgateway}",
                "{mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k2.pem}",
            ),
        ]
        .concat();
        assert_eq!(
            lines(&analyze_str(&text, "g.yaml"), "IST0138"),
            vec!["Warning [IST0138] (Gateway a.istio-system) Duplicate certificate in multiple gateways [istio-system/a istio-system/b] may cause 404s if clients re-use HTTP2 connections."]
        );
    }
}
