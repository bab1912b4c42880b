//! ServiceEntry checks: IST0134 ServiceEntryAddressesRequired and IST0177
//! ConflictingServiceEntryProtocol.
//!
//! A TCP port (or one without a protocol) on a ServiceEntry without `addresses` cannot be told
//! apart from other TCP traffic to the same port, so Istio's
//! `serviceentry.ProtocolAddressesAnalyzer` asks for addresses, once per such port, unless
//! the addresses were allocated (`status.addresses`) or the mesh config turns on DNS capture
//! with auto-allocation (`ISTIO_META_DNS_CAPTURE` and `ISTIO_META_DNS_AUTO_ALLOCATE` or
//! `PILOT_ENABLE_IP_AUTOALLOCATE` in `defaultConfig.proxyMetadata`). And two
//! ServiceEntries that give the same host and port different protocols, in export scopes that
//! meet (the same namespace, or one exported to all), leave the protocol undefined:
//! `serviceentry.ConflictingServiceEntryProtocolAnalyzer` reports each of them once.

use std::collections::{BTreeMap, BTreeSet};

use super::codes::{CONFLICTING_SERVICE_ENTRY_PROTOCOL, SERVICE_ENTRY_ADDRESSES_REQUIRED};
use super::conflicts::export_scopes;
use super::input::Inputs;
use super::message::{go_quote, Message};
use crate::istio::Source;

/// Run both checks.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    addresses_required(inputs, out);
    conflicting_protocols(inputs, out);
}

/// `ProtocolAddressesAnalyzer.Analyze`'s `autoAllocated`: DNS capture on, and one of the
/// auto-allocation switches on, all as the string `"true"`.
fn auto_allocated(inputs: &Inputs) -> bool {
    let on = |key: &str| inputs.mesh.config.proxy_metadata(key).as_deref() == Some("true");
    on("ISTIO_META_DNS_CAPTURE")
        && (on("ISTIO_META_DNS_AUTO_ALLOCATE") || on("PILOT_ENABLE_IP_AUTOALLOCATE"))
}

/// `addressAllocated`: the ServiceEntry's `status.addresses` is not empty.
fn address_allocated(inputs: &Inputs, se: &Source) -> bool {
    inputs
        .objects_of("ServiceEntry")
        .filter(|o| o.source == *se)
        .any(|o| !o.seq_at(&["status", "addresses"]).is_empty())
}

/// `ProtocolAddressesAnalyzer.analyzeProtocolAddresses`.
fn addresses_required(inputs: &Inputs, out: &mut Vec<Message>) {
    if auto_allocated(inputs) {
        return;
    }
    for se in &inputs.resources.service_entries {
        if !se.spec.addresses.is_empty() || address_allocated(inputs, &se.source) {
            continue;
        }
        for (i, port) in se.spec.ports.iter().enumerate() {
            let tcp = port
                .protocol
                .as_deref()
                .is_none_or(|p| p.is_empty() || p.eq_ignore_ascii_case("TCP"));
            if tcp {
                let m = Message::new(
                    SERVICE_ENTRY_ADDRESSES_REQUIRED,
                    "ServiceEntry addresses are required for this protocol.",
                );
                out.push(inputs.blame(&se.source, m.field(format!("spec.ports[{i}]"))));
            }
        }
    }
}

/// (export scope, host, port): where two ServiceEntries can meet; mapped to each one's
/// (upper-cased protocol, index).
type ScopedPort<'a> = (String, &'a str, u32);

fn conflicting_protocols(inputs: &Inputs, out: &mut Vec<Message>) {
    let entries = &inputs.resources.service_entries;
    let mut index: BTreeMap<ScopedPort<'_>, Vec<(String, usize)>> = BTreeMap::new();
    for (i, se) in entries.iter().enumerate() {
        for scope in export_scopes(&se.spec.export_to, se.namespace()) {
            for host in &se.spec.hosts {
                for port in &se.spec.ports {
                    let protocol = port.protocol.clone().unwrap_or_default();
                    index
                        .entry((scope.clone(), host.as_str(), port.number))
                        .or_default()
                        .push((protocol.to_ascii_uppercase(), i));
                }
            }
        }
    }
    let mut reported = BTreeSet::new();
    for ((scope, host, port), list) in &index {
        let mut all = list.clone();
        if scope != "*" {
            if let Some(star) = index.get(&("*".to_string(), *host, *port)) {
                all.extend(star.iter().cloned());
            }
        }
        let protocols: BTreeSet<&str> = all.iter().map(|(p, _)| p.as_str()).collect();
        if protocols.len() < 2 {
            continue;
        }
        let names: BTreeSet<String> = all
            .iter()
            .map(|&(_, i)| entries[i].source.qualified_name())
            .collect();
        let names: Vec<String> = names.into_iter().collect();
        let protocols: Vec<&str> = protocols.into_iter().collect();
        for &(_, i) in &all {
            if !reported.insert(i) {
                continue;
            }
            let m = Message::new(
                CONFLICTING_SERVICE_ENTRY_PROTOCOL,
                format!(
                    "Multiple ServiceEntries ({}) define the same host {} and port {port} with conflicting protocols ({}).",
                    names.join(", "),
                    go_quote(host),
                    protocols.join(", ")
                ),
            );
            out.push(inputs.blame(&entries[i].source, m.field("spec.ports")));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::analyze::{analyze_resources, Inputs};

    fn required(inputs: &Inputs) -> Vec<String> {
        analyze_resources(inputs, "t")
            .with_code("IST0134")
            .map(|m| m.resource.clone().unwrap_or_default())
            .collect()
    }

    /// analyzers_test.go "missing Addresses and Protocol in Service Entry" and its
    /// "... with ISTIO_META_DNS_AUTO_ALLOCATE enabled", after `ProtocolAddressesAnalyzer.Analyze`:
    /// auto-allocation counts only with DNS capture on.
    #[test]
    fn dns_auto_allocation_in_the_mesh_config() {
        let text = include_str!(
            "../../tests/analyzer_testdata/serviceentry-missing-addresses-protocol.yaml"
        );
        let mut inputs = Inputs::read_str(text, "se.yaml");
        let all = required(&inputs);
        assert_eq!(all.len(), 3, "{all:?}");
        let mesh = include_str!(
            "../../tests/analyzer_testdata/serviceentry-missing-addresses-protocol-mesh-cfg.yaml"
        );
        inputs.set_mesh_config_str(mesh, "mesh.yaml").unwrap();
        assert!(required(&inputs).is_empty());
        let no_capture =
            "defaultConfig:\n  proxyMetadata:\n    PILOT_ENABLE_IP_AUTOALLOCATE: \"true\"\n";
        inputs.set_mesh_config_str(no_capture, "mesh.yaml").unwrap();
        assert_eq!(required(&inputs), all);
        let pilot = "defaultConfig:\n  proxyMetadata:\n    ISTIO_META_DNS_CAPTURE: \"true\"\n    PILOT_ENABLE_IP_AUTOALLOCATE: \"true\"\n";
        inputs.set_mesh_config_str(pilot, "mesh.yaml").unwrap();
        assert!(required(&inputs).is_empty());
    }

    /// "ServiceEntry Addresses Allocated", after `addressAllocated`: addresses in `status`
    /// count as addresses.
    #[test]
    fn allocated_addresses_in_status() {
        let text =
            include_str!("../../tests/analyzer_testdata/serviceentry-address-allocated.yaml");
        assert!(required(&Inputs::read_str(text, "se.yaml")).is_empty());
        let without_status = &text[..text.find("status:").unwrap()];
        assert_eq!(
            required(&Inputs::read_str(without_status, "se.yaml")),
            vec!["ServiceEntry address-allocated.default"]
        );
    }
}
