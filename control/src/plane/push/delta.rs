//! Incremental updates: a new document written against the one the sidecar holds.
//!
//! Each entry of the new document's service list and resource list is either the index of an
//! identical entry in the base, or the entry itself. Order is kept exactly (translation breaks
//! ties by order), removed entries are simply not referenced, and a change to one
//! VirtualService costs that VirtualService plus an index per unchanged entry. The receiver
//! checks the rebuilt document against the digest the server sent, and asks for the whole
//! document when they differ.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::wire::Digest;
use crate::plane::document::{Resource, SidecarDocument};
use crate::plane::mesh_settings::MeshSettings;
use crate::plane::snapshot::Fnv;
use crate::translate::inbound_protocols::InboundProtocol;
use crate::translate::{Registry, Service};

/// An entry of the new document: the base's entry at an index, or a new one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entry<T> {
    Keep(usize),
    New(T),
}

/// A document as changes against a base document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DocumentDelta {
    pub services: Vec<Entry<Service>>,
    pub resources: Vec<Entry<Resource>>,
    /// The DNS answers, whole, when they changed (`None`: the base's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<BTreeMap<String, Vec<std::net::IpAddr>>>,
    /// The workload's inbound port protocols, whole, when they changed (`None`: the base's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound: Option<Vec<(u16, InboundProtocol)>>,
    /// The mesh config's settings, whole, when they changed (`None`: the base's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<MeshSettings>,
}

/// Why a delta could not be applied.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    #[error("delta refers to entry {0}, which the base does not have")]
    MissingEntry(usize),
    #[error("delta was written against digest {expected:016x}, the sidecar holds {held:016x}")]
    WrongBase { expected: Digest, held: Digest },
    #[error("rebuilt document has digest {got:016x}, the server's is {expected:016x}")]
    DigestMismatch { expected: Digest, got: Digest },
}

/// The digest of a document: FNV-1a of its JSON (maps are sorted, so the JSON is canonical).
pub fn digest(document: &SidecarDocument) -> Digest {
    let mut h = Fnv::default();
    if let Ok(bytes) = serde_json::to_vec(document) {
        h.write(&bytes);
    }
    h.0
}

/// `new` as changes against `base`.
pub fn diff(base: &SidecarDocument, new: &SidecarDocument) -> DocumentDelta {
    DocumentDelta {
        services: entries(&base.registry.services, &new.registry.services, |s| {
            s.host.clone()
        }),
        resources: entries(&base.resources, &new.resources, |r| {
            format!(
                "{}|{}|{}|{}",
                r.file,
                r.document["kind"],
                r.document["metadata"]["namespace"],
                r.document["metadata"]["name"]
            )
        }),
        dns: (base.registry.dns != new.registry.dns).then(|| new.registry.dns.clone()),
        inbound: (base.inbound != new.inbound).then(|| new.inbound.clone()),
        mesh: (base.mesh != new.mesh).then(|| new.mesh.clone()),
    }
}

fn entries<T: Clone + PartialEq>(
    base: &[T],
    new: &[T],
    key: impl Fn(&T) -> String,
) -> Vec<Entry<T>> {
    let index: BTreeMap<String, usize> =
        base.iter().enumerate().map(|(i, t)| (key(t), i)).collect();
    new.iter()
        .map(|t| match index.get(&key(t)) {
            Some(&i) if base[i] == *t => Entry::Keep(i),
            _ => Entry::New(t.clone()),
        })
        .collect()
}

/// Rebuild the new document from `base` and `delta`.
pub fn apply(base: &SidecarDocument, delta: &DocumentDelta) -> Result<SidecarDocument, DeltaError> {
    Ok(SidecarDocument {
        registry: Registry {
            services: rebuild(&base.registry.services, &delta.services)?,
            dns: delta
                .dns
                .clone()
                .unwrap_or_else(|| base.registry.dns.clone()),
        },
        resources: rebuild(&base.resources, &delta.resources)?,
        inbound: (delta.inbound.clone()).unwrap_or_else(|| base.inbound.clone()),
        mesh: (delta.mesh.clone()).unwrap_or_else(|| base.mesh.clone()),
    })
}

fn rebuild<T: Clone>(base: &[T], entries: &[Entry<T>]) -> Result<Vec<T>, DeltaError> {
    entries
        .iter()
        .map(|e| match e {
            Entry::Keep(i) => base.get(*i).cloned().ok_or(DeltaError::MissingEntry(*i)),
            Entry::New(t) => Ok(t.clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(name: &str, weight: u32) -> Resource {
        Resource {
            file: "f.yaml".into(),
            document: serde_json::json!({
                "kind": "VirtualService",
                "metadata": {"name": name},
                "spec": {"weight": weight}
            }),
        }
    }

    fn doc(resources: Vec<Resource>, hosts: &[&str]) -> SidecarDocument {
        SidecarDocument {
            registry: Registry {
                services: hosts
                    .iter()
                    .map(|h| Service {
                        host: h.to_string(),
                        ..Service::default()
                    })
                    .collect(),
                ..Default::default()
            },
            resources,
            inbound: Vec::new(),
            mesh: Default::default(),
        }
    }

    /// The mesh config's settings travel whole when they change, and not otherwise.
    #[test]
    fn mesh_settings_are_sent_when_they_change() {
        let base = SidecarDocument::default();
        let mut new = base.clone();
        assert_eq!(diff(&base, &new).mesh, None);
        new.mesh.protocol_detection_timeout_ms = Some(5000);
        let delta = diff(&base, &new);
        assert_eq!(delta.mesh.as_ref(), Some(&new.mesh));
        assert_eq!(apply(&base, &delta).expect("applies"), new);
        assert_ne!(digest(&base), digest(&new));
    }

    /// The workload's inbound protocols travel whole when they change, and not otherwise.
    #[test]
    fn inbound_protocols_are_sent_when_they_change() {
        let base = doc(vec![resource("a", 1)], &["x"]);
        let mut new = base.clone();
        assert_eq!(diff(&base, &new).inbound, None);
        new.inbound = vec![(3306, InboundProtocol::Tcp), (8080, InboundProtocol::Http)];
        let delta = diff(&base, &new);
        assert_eq!(delta.inbound.as_deref(), Some(&new.inbound[..]));
        let json = serde_json::to_string(&delta).unwrap();
        let back: DocumentDelta = serde_json::from_str(&json).unwrap();
        assert_eq!(apply(&base, &back).unwrap(), new);
        assert_eq!(apply(&new, &diff(&new, &new)).unwrap(), new);
    }

    #[test]
    fn a_delta_carries_only_what_changed_and_rebuilds_the_document() {
        let base = doc(vec![resource("a", 1), resource("b", 1)], &["x", "y"]);
        let new = doc(
            vec![resource("b", 2), resource("a", 1), resource("c", 1)],
            &["y"],
        );
        let delta = diff(&base, &new);
        assert_eq!(
            delta.resources,
            vec![
                Entry::New(resource("b", 2)),
                Entry::Keep(0),
                Entry::New(resource("c", 1))
            ]
        );
        assert_eq!(delta.services, vec![Entry::Keep(1)]);
        assert_eq!(apply(&base, &delta).unwrap(), new);
        assert_ne!(digest(&base), digest(&new));
    }

    /// DNS answers travel whole, and only when they changed.
    #[test]
    fn dns_answers_travel_when_they_change() {
        let base = doc(vec![], &["api.example.com"]);
        let mut new = base.clone();
        assert_eq!(diff(&base, &new).dns, None);
        new.registry.dns.insert(
            "api.example.com".into(),
            vec!["192.0.2.1".parse().expect("ip")],
        );
        let delta = diff(&base, &new);
        assert!(delta.dns.is_some());
        assert_eq!(apply(&base, &delta).expect("applies"), new);
        assert_ne!(digest(&base), digest(&new));
    }

    #[test]
    fn a_delta_against_another_base_is_caught() {
        let delta = DocumentDelta {
            services: vec![Entry::Keep(5)],
            resources: vec![],
            dns: None,
            inbound: None,
            mesh: None,
        };
        assert_eq!(
            apply(&SidecarDocument::default(), &delta),
            Err(DeltaError::MissingEntry(5))
        );
    }
}
