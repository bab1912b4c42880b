//! IST0162 GatewayPortNotDefinedOnService and IST0101 for a Gateway selector that selects no
//! pod, as istio/istio `pkg/config/analysis/analyzers/gateway/gateway.go`
//! (`IngressGatewayPortAnalyzer.analyzeGateway`).
//!
//! A Gateway server's port is where the gateway proxy listens, so traffic reaches it only if a
//! Service in front of the selected pods sends one of its TCP ports there. Like Istio, the
//! ports offered are the `targetPort`s (or `port` where no numeric `targetPort` is given) of
//! every TCP port of every Service that selects a pod the Gateway selects, plus the Services'
//! own port numbers where a `targetPort` maps them; *any* selecting Service offering the port
//! is enough. Pods include Istio's default ingress gateway ([`super::defaults`]).

use std::collections::BTreeSet;

use super::codes::GATEWAY_PORT_NOT_DEFINED_ON_SERVICE;
use super::defaults::{gateway_pods, gateway_services};
use super::input::Inputs;
use super::message::{referenced_not_found, Message};
use super::object::selects;
use super::selectors::selector_string;

/// Istio's message for a Gateway whose selector matches no pod (also
/// [`super::gateway_secrets`]'s, as `gateway.SecretAnalyzer` reports it the same way).
pub fn no_workload(selector: &std::collections::BTreeMap<String, String>) -> Message {
    referenced_not_found("selector", &selector_string(selector)).field("spec.selector")
}

/// Run the check over every Gateway.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    let pods = gateway_pods(inputs);
    let services = gateway_services(inputs);
    for gw in &inputs.resources.gateways {
        let selector = &gw.spec.selector;
        // Target ports, and the service ports that map to one.
        let mut offered: BTreeSet<u32> = BTreeSet::new();
        let mut mapped: BTreeSet<u32> = BTreeSet::new();
        let mut selected = 0;
        for pod in pods.iter().filter(|p| selects(selector, &p.labels)) {
            selected += 1;
            let fronting = services
                .iter()
                .filter(|s| s.namespace == pod.namespace && selects(&s.selector, &pod.labels));
            for port in fronting.flat_map(|s| &s.ports) {
                if port.protocol != "TCP" {
                    continue;
                }
                // Go's `IntOrString.IntValue()`: a port name reads as 0.
                match port.target_port.parse::<u32>().unwrap_or(0) {
                    0 => {
                        offered.insert(port.port);
                    }
                    target => {
                        offered.insert(target);
                        mapped.insert(port.port);
                    }
                }
            }
        }
        if selected == 0 {
            out.push(inputs.blame(&gw.source, no_workload(selector)));
            continue;
        }
        for (i, server) in gw.spec.servers.iter().enumerate() {
            let Some(number) = server.port.as_ref().map(|p| p.number) else {
                continue;
            };
            if offered.contains(&number) || mapped.contains(&number) {
                continue;
            }
            let m = Message::new(
                GATEWAY_PORT_NOT_DEFINED_ON_SERVICE,
                format!(
                    "The gateway is listening on a target port (port {number}) that is not defined in the Service associated with its workload instances (Pod selector {}). If you need to access the gateway port through the gateway Service, it will not be available.",
                    selector_string(selector)
                ),
            );
            out.push(inputs.blame(&gw.source, m.field(format!("spec.servers[{i}].port"))));
        }
    }
}

#[cfg(test)]
mod tests {
    //! Cases of istio/istio `analyzers_test.go` for `gateway.IngressGatewayPortAnalyzer`.
    use crate::analyze::analyze_str;
    use crate::analyze::tests::lines;

    const GATEWAY: &str = r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {myapp: private}
  servers:
  - port: {number: 8004, name: http2, protocol: HTTP}
    hosts: ["*"]
"#;

    #[test]
    fn default_ingress_gateway_offers_80_but_not_8004() {
        let text = r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
  - port: {number: 8004, name: http2, protocol: HTTP}
    hosts: ["*"]
"#;
        assert_eq!(
            lines(&analyze_str(text, "g.yaml"), "IST0162"),
            vec!["Warning [IST0162] (Gateway gw.default) The gateway is listening on a target port (port 8004) that is not defined in the Service associated with its workload instances (Pod selector istio=ingressgateway). If you need to access the gateway port through the gateway Service, it will not be available."]
        );
    }

    #[test]
    fn selector_without_pods_is_ist0101() {
        let a = analyze_str(GATEWAY, "g.yaml");
        assert_eq!(
            lines(&a, "IST0101"),
            vec![
                r#"Error [IST0101] (Gateway gw.default) Referenced selector not found: "myapp=private""#
            ]
        );
        assert!(lines(&a, "IST0162").is_empty());
    }

    #[test]
    fn target_port_or_port_of_a_selecting_service() {
        let service = |ports: &str| {
            format!(
                "{GATEWAY}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p, labels: {{myapp: private}}}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: s}}\nspec:\n  selector: {{myapp: private}}\n  ports: {ports}\n"
            )
        };
        // gateway-custom-ingressgateway.yaml: targetPort 8004 behind port 80.
        let a = analyze_str(
            &service("[{port: 80, protocol: TCP, targetPort: 8004}]"),
            "g.yaml",
        );
        assert!(lines(&a, "IST0162").is_empty(), "{a}");
        // ...-badport-notarget.yaml: port 80, no targetPort.
        let a = analyze_str(&service("[{port: 80, protocol: TCP}]"), "g.yaml");
        assert_eq!(lines(&a, "IST0162").len(), 1, "{a}");
        // ...-translation.yaml: the service port itself, mapped by a targetPort.
        let a = analyze_str(
            &service("[{port: 8004, protocol: TCP, targetPort: 8003}]"),
            "g.yaml",
        );
        assert!(lines(&a, "IST0162").is_empty(), "{a}");
    }
}
