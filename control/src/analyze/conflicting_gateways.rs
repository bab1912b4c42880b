//! IST0145 ConflictingGateways: two Gateways for the same gateway workloads claim the same
//! host on the same port (and the same `bind`), so which one serves it is undefined.
//!
//! As Istio's `gateway.ConflictingGatewayAnalyzer`: Gateways are grouped by workload selector
//! (printed `k=v,...`) and server port; two selectors meet when they are equal, or when one's
//! text contains the other's and some pod matches both. A server conflicts with another
//! Gateway of a group it meets when one of its hosts is among that Gateway's hosts on the port
//! with the same `bind` (hosts compared as written, as pilot's `CheckDuplicates`). Each
//! conflicting server gets one message naming the other Gateways (`namespace/name`, sorted).

use std::collections::BTreeMap;

use super::codes::CONFLICTING_GATEWAYS;
use super::input::Inputs;
use super::message::Message;
use super::object::selects;
use super::selectors::selector_string;

/// (selector text, port) → gateway `namespace/name` → host → bind.
type GatewayMap = BTreeMap<(String, u32), BTreeMap<String, BTreeMap<String, String>>>;

/// Run the check on every Gateway.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    let gateways = &inputs.resources.gateways;
    let mut map: GatewayMap = BTreeMap::new();
    for g in gateways {
        let selector = selector_string(&g.spec.selector);
        for server in &g.spec.servers {
            let port = server.port.as_ref().map_or(0, |p| p.number);
            let bind = server.bind.clone().unwrap_or_default();
            let hosts = server
                .hosts
                .iter()
                .map(|h| (h.clone(), bind.clone()))
                .collect();
            // As Istio, a later server on the same port replaces an earlier one's hosts.
            map.entry((selector.clone(), port))
                .or_default()
                .insert(g.source.qualified_name(), hosts);
        }
    }
    let pods = inputs.pods();
    for g in gateways {
        let selector = selector_string(&g.spec.selector);
        let name = g.source.qualified_name();
        let meets = |other: &str| {
            if other == selector {
                return true;
            }
            if !(other.contains(&selector) || selector.contains(other)) {
                return false;
            }
            let other_labels = parse_selector(other);
            pods.iter()
                .any(|p| selects(&g.spec.selector, &p.labels) && selects(&other_labels, &p.labels))
        };
        for server in &g.spec.servers {
            let port = server.port.as_ref().map_or(0, |p| p.number);
            let bind = server.bind.clone().unwrap_or_default();
            let mut conflicting: Vec<&str> = Vec::new();
            for ((other_selector, other_port), by_gateway) in &map {
                if *other_port != port || !meets(other_selector) {
                    continue;
                }
                for (other_name, hosts) in by_gateway {
                    let clash = server.hosts.iter().any(|h| hosts.get(h) == Some(&bind));
                    if *other_name != name && clash {
                        conflicting.push(other_name);
                    }
                }
            }
            if conflicting.is_empty() {
                continue;
            }
            conflicting.sort_unstable();
            let m = Message::new(
                CONFLICTING_GATEWAYS,
                format!(
                    "Conflict with gateways {} (workload selector {selector}, port {port}, hosts {}).",
                    conflicting.join(","),
                    server.hosts.join(",")
                ),
            );
            out.push(inputs.blame(&g.source, m.field("spec.servers")));
        }
    }
}

/// `k=v,k2=v2` back into labels.
fn parse_selector(text: &str) -> BTreeMap<String, String> {
    text.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
