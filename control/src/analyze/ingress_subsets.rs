//! IST0140 IngressRouteRulesNotAffected, as istio/istio
//! `pkg/config/analysis/analyzers/virtualservice/destinationhosts.go`
//! (`DestinationHostAnalyzer.analyzeSubset` and `initVirtualServiceDestinations`).
//!
//! A gateway's VirtualService that routes to a host without a subset sends traffic to every
//! version, even where the host's own (mesh) VirtualService splits it by subset: that split is
//! applied by sidecars, not by the ingress gateway. Like Istio, the mesh side is every
//! VirtualService with an HTTP destination that has a subset and whose host is one of its own
//! `hosts` as written; a VirtualService bound to gateways that routes to such a host without a
//! subset gets one message per such destination. Hosts are compared as written, as Istio does.

use super::codes::INGRESS_ROUTE_RULES_NOT_AFFECTED;
use super::input::Inputs;
use super::message::Message;

/// Run the check over every VirtualService.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    let services = &inputs.resources.virtual_services;
    // (VirtualService, destination host) for subset destinations to one of its own hosts.
    let split: Vec<(String, &str)> = services
        .iter()
        .flat_map(|vs| {
            vs.spec
                .http
                .iter()
                .flat_map(|r| &r.route)
                .map(|d| &d.destination)
                .filter(|d| d.subset.as_deref().is_some_and(|s| !s.is_empty()))
                .filter(|d| vs.spec.hosts.contains(&d.host))
                .map(|d| (vs.source.qualified_name(), d.host.as_str()))
        })
        .collect();
    for vs in services.iter().filter(|vs| !vs.spec.gateways.is_empty()) {
        for (i, rule) in vs.spec.http.iter().enumerate() {
            for (j, d) in rule.route.iter().enumerate() {
                if d.destination
                    .subset
                    .as_deref()
                    .is_some_and(|s| !s.is_empty())
                {
                    continue;
                }
                for (other, _) in split.iter().filter(|(_, h)| *h == d.destination.host) {
                    let m = Message::new(
                        INGRESS_ROUTE_RULES_NOT_AFFECTED,
                        format!(
                            "Subset in virtual service {other} has no effect on ingress gateway {} requests",
                            vs.source.qualified_name()
                        ),
                    );
                    let field = format!("spec.http[{i}].route[{j}].destination.host");
                    out.push(inputs.blame(&vs.source, m.field(field)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! istio/istio `analyzers_test.go` case "Route Rule no effect on Ingress", reduced.
    use crate::analyze::analyze_str;
    use crate::analyze::tests::lines;

    #[test]
    fn gateway_route_without_subset_to_a_split_host() {
        let text = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: edge}
spec:
  gateways: [gw]
  hosts: [example.com]
  http:
  - route: [{destination: {host: ratings}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec: {hosts: [ratings], http: [{route: [{destination: {host: ratings, subset: v1}}]}]}
"#;
        assert_eq!(
            lines(&analyze_str(text, "v.yaml"), "IST0140"),
            vec!["Warning [IST0140] (VirtualService edge.default) Subset in virtual service default/ratings has no effect on ingress gateway default/edge requests"]
        );
    }
}
