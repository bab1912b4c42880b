//! IST0149 JwtClaimBasedRoutingWithoutRequestAuthN: a gateway-bound VirtualService that routes
//! on a JWT claim (`@request.auth.claims.<name>` headers) for gateway pods no
//! RequestAuthentication covers.
//!
//! Claims only exist after a RequestAuthentication has validated the token, so without one the
//! match never holds. As Istio's `virtualservice.JWTClaimRouteAnalyzer`
//! (`pkg/config/analysis/analyzers/virtualservice/jwtclaimroute.go`): the first claim key of the
//! VirtualService's `headers` or `withoutHeaders` matches (`jwt.ToRoutingClaim`), then, for each
//! of its Gateways other than `mesh` that exists, each Pod the Gateway selects (Istio's default
//! ingress gateway pod included, see [`super::defaults`]) needs a RequestAuthentication in
//! `istio-system` or the pod's namespace whose selector matches it. Missing Gateways are the
//! gateway check's to report.

use std::collections::BTreeMap;

use super::codes::JWT_CLAIM_BASED_ROUTING_WITHOUT_REQUEST_AUTHN;
use super::defaults::{ingress_pod, ISTIO_NAMESPACE};
use super::input::{Inputs, Workload};
use super::message::Message;
use super::object::{selects, seq_at, string_map, Object};

/// Istio's `jwt.HeaderJWTClaim`.
const CLAIM_HEADER: &str = "@request.auth.claims";

/// Istio's `jwt.ToRoutingClaim(..).Match`: `@request.auth.claims.a.b` or `...claims[a][b]`.
fn is_claim(header: &str) -> bool {
    let lower = header.to_ascii_lowercase();
    if !lower.starts_with(CLAIM_HEADER) {
        return false;
    }
    let rest = &header[CLAIM_HEADER.len()..];
    (rest.starts_with('.') && rest.len() > 1)
        || (rest.starts_with('[') && rest.ends_with(']') && rest.len() > 2)
}

/// The first claim key the VirtualService matches on, in document order.
fn claim_key(vs: &Object) -> Option<String> {
    for route in seq_at(&vs.value, &["spec", "http"]) {
        for m in seq_at(route, &["match"]) {
            for field in ["headers", "withoutHeaders"] {
                let Some(headers) = m.get(field).and_then(|h| h.as_mapping()) else {
                    continue;
                };
                let key = headers
                    .keys()
                    .filter_map(|k| k.as_str())
                    .find(|k| is_claim(k));
                if let Some(key) = key {
                    return Some(key.to_string());
                }
            }
        }
    }
    None
}

/// Istio's `resource.NewShortOrFullName`: `ns/name`, or a short name in `namespace`.
fn full_name(namespace: &str, name: &str) -> (String, String) {
    match name.split_once('/') {
        Some((ns, n)) => (ns.to_string(), n.to_string()),
        None => (namespace.to_string(), name.to_string()),
    }
}

/// Run the check on every VirtualService.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    let istio = |o: &&Object, group: &str| o.api_version.starts_with(group);
    // namespace -> the selectors of its RequestAuthentications.
    let mut authn: BTreeMap<&str, Vec<BTreeMap<String, String>>> = BTreeMap::new();
    for ra in inputs
        .objects_of("RequestAuthentication")
        .filter(|o| istio(o, "security.istio.io/"))
    {
        authn
            .entry(ra.namespace())
            .or_default()
            .push(string_map(&ra.value, &["spec", "selector", "matchLabels"]));
    }
    let mut pods: Vec<Workload> = inputs
        .workloads
        .iter()
        .filter(|w| w.kind == "Pod")
        .cloned()
        .collect();
    pods.push(ingress_pod());
    for vs in inputs
        .objects_of("VirtualService")
        .filter(|o| istio(o, "networking.istio.io/"))
    {
        let Some(key) = claim_key(vs) else {
            continue;
        };
        for gw in seq_at(&vs.value, &["spec", "gateways"]) {
            let Some(gw) = gw.as_str().filter(|g| *g != "mesh") else {
                continue;
            };
            let (ns, name) = full_name(vs.namespace(), gw);
            let Some(gateway) = inputs.objects_of("Gateway").find(|g| {
                istio(g, "networking.istio.io/") && g.namespace() == ns && g.name() == name
            }) else {
                continue;
            };
            let selector = string_map(&gateway.value, &["spec", "selector"]);
            for pod in pods.iter().filter(|p| selects(&selector, &p.labels)) {
                let covered = [ISTIO_NAMESPACE, pod.namespace.as_str()]
                    .iter()
                    .flat_map(|ns| authn.get(ns).into_iter().flatten())
                    .any(|s| selects(s, &pod.labels));
                if !covered {
                    let m = Message::new(
                        JWT_CLAIM_BASED_ROUTING_WITHOUT_REQUEST_AUTHN,
                        format!(
                            "The virtual service uses the JWT claim based routing (key: {key}) but found no request authentication for the gateway ({ns}/{name}) pod ({}). The request authentication must first be applied for the gateway pods to validate the JWT token and make the claims available for routing.",
                            pod.name
                        ),
                    );
                    out.push(inputs.blame(&vs.source, m));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_claim;
    use crate::analyze::analyze_str;
    use crate::analyze::tests::lines;

    const CASE: &str =
        include_str!("../../tests/analyzer_testdata/virtualservice_jwtclaimroute.yaml");

    /// analyzers_test.go "virtualServiceJWTClaimRoute": the default ingress gateway pod has
    /// no RequestAuthentication.
    #[test]
    fn istio_case() {
        let a = analyze_str(CASE, "virtualservice_jwtclaimroute.yaml");
        assert_eq!(
            lines(&a, "IST0149"),
            vec!["Error [IST0149] (VirtualService foo.default) The virtual service uses the JWT claim based routing (key: @request.auth.claims.foo) but found no request authentication for the gateway (default/foo-gateway) pod (istio-ingressgateway-dummypod). The request authentication must first be applied for the gateway pods to validate the JWT token and make the claims available for routing."]
        );
    }

    #[test]
    fn a_request_authentication_in_the_root_namespace_covers_the_gateway() {
        let ra = "\n---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt, namespace: istio-system}\nspec:\n  selector:\n    matchLabels: {istio: ingressgateway}\n";
        let a = analyze_str(&format!("{CASE}{ra}"), "x.yaml");
        assert!(lines(&a, "IST0149").is_empty(), "{a}");
    }

    #[test]
    fn claim_header_forms() {
        assert!(is_claim("@request.auth.claims.groups"));
        assert!(is_claim("@request.auth.claims[nested][key]"));
        assert!(!is_claim("@request.auth.claims."));
        assert!(!is_claim("@request.auth.claims[]"));
        assert!(!is_claim("x-user"));
    }
}
