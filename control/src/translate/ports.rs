//! Destination port inference on multi-port services.
//!
//! istiod builds a sidecar's routes once per listener port, and a destination that names no
//! port of a service with several gets the cluster of the port the request came on
//! (GetDestinationCluster in pilot/pkg/networking/core/route/route.go, called from
//! buildSidecarVirtualHostsForVirtualService for each port of the services the VirtualService
//! covers). Trellis has one route table for every port, so such a rule becomes one copy per
//! port, each restricted to that port with a `port` condition and resolved for it, followed by
//! the rule as it was (first port) for requests on any other port.

use trellis_engine::config::{Route, RouteMatch};

use super::catalog::{AtPort, Catalog};
use super::routes::translate_rule;
use crate::istio::virtual_service::HttpRoute;

/// The per-port copies of rule `index` to put before it, for the listener `ports` (the ports
/// of the services the VirtualService covers). Empty when no destination needs inference.
pub fn per_port_copies(
    vs: (&str, &str),
    index: usize,
    rule: &HttpRoute,
    catalog: &Catalog<'_>,
    ports: &[u16],
) -> Vec<Route> {
    let (name, namespace) = vs;
    // Mirror destinations are resolved at the listener port too (GetDestinationCluster).
    let mirrored = rule
        .mirror
        .iter()
        .chain(rule.mirrors.iter().filter_map(|m| m.destination.as_ref()));
    if !rule
        .route
        .iter()
        .map(|d| &d.destination)
        .chain(mirrored)
        .any(|d| catalog.infers_port(d, namespace))
    {
        return Vec::new();
    }
    let mut out = Vec::new();
    for &port in ports {
        let resolver = AtPort {
            catalog,
            port: Some(port),
        };
        // The rule as written is translated (and reported) once, by the caller.
        let Some(mut route) =
            translate_rule(name, namespace, index, rule, &resolver, &mut Vec::new())
        else {
            continue;
        };
        match restrict_to_port(&route.matches, port) {
            Some(matches) => route.matches = matches,
            None => continue,
        }
        out.push(route);
    }
    out
}

/// `matches` as they apply on `port`: each gets a `port` condition, and those for another port
/// are dropped (`None` when none is left). No match at all means every request on the port.
fn restrict_to_port(matches: &[RouteMatch], port: u16) -> Option<Vec<RouteMatch>> {
    if matches.is_empty() {
        return Some(vec![RouteMatch {
            port: Some(port),
            ..RouteMatch::default()
        }]);
    }
    let kept: Vec<RouteMatch> = matches
        .iter()
        .filter(|m| m.port.is_none_or(|p| p == port))
        .map(|m| RouteMatch {
            port: Some(port),
            ..m.clone()
        })
        .collect();
    (!kept.is_empty()).then_some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_are_restricted_to_the_port() {
        assert_eq!(
            restrict_to_port(&[], 80),
            Some(vec![RouteMatch {
                port: Some(80),
                ..RouteMatch::default()
            }])
        );
        let other = RouteMatch {
            port: Some(8080),
            ..RouteMatch::default()
        };
        assert_eq!(restrict_to_port(std::slice::from_ref(&other), 80), None);
        assert_eq!(
            restrict_to_port(std::slice::from_ref(&other), 8080),
            Some(vec![other])
        );
    }
}
