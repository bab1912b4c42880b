//! ServiceEntry checks: IST0134 ServiceEntryAddressesRequired and IST0177
//! ConflictingServiceEntryProtocol.
//!
//! A TCP port (or one without a protocol) on a ServiceEntry without `addresses` cannot be told
//! apart from other TCP traffic to the same port, so Istio's
//! `serviceentry.ProtocolAddressesAnalyzer` asks for addresses, once per such port (Trellis
//! reads no mesh config, so DNS auto-allocation is taken as off, Istio's default). And two
//! ServiceEntries that give the same host and port different protocols, in export scopes that
//! meet (the same namespace, or one exported to all), leave the protocol undefined:
//! `serviceentry.ConflictingServiceEntryProtocolAnalyzer` reports each of them once.

use std::collections::{BTreeMap, BTreeSet};

use super::codes::{CONFLICTING_SERVICE_ENTRY_PROTOCOL, SERVICE_ENTRY_ADDRESSES_REQUIRED};
use super::conflicts::export_scopes;
use super::input::Inputs;
use super::message::{go_quote, Message};

/// Run both checks.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    addresses_required(inputs, out);
    conflicting_protocols(inputs, out);
}

fn addresses_required(inputs: &Inputs, out: &mut Vec<Message>) {
    for se in &inputs.resources.service_entries {
        if !se.spec.addresses.is_empty() {
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
