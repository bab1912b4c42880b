//! What a sidecar receives: its share of the mesh as a document it translates itself.
//!
//! The control plane scopes (`super::scope`) but does not translate: it sends the registry
//! entries and the Istio resources as written that this sidecar can see, and the sidecar runs
//! the same `translate` as `trellis proxy --config` does. The sidecar then refuses (NACKs),
//! with the reason, and keeps its last good config:
//! - a document it cannot read, or a config its engine refuses;
//! - a resource Istio's validating webhook would have refused (an invalid regex, a
//!   percentage out of range, an empty host: the translator's errors without an analyzer
//!   code). With a directory source there is no webhook in front of the control plane, so the
//!   sidecar is where such a resource is caught, and like Envoy refusing an xDS update with
//!   one invalid resource in it, the whole update is refused rather than applied without the
//!   rule. References to hosts or subsets that do not exist (IST0101) are accepted, as istiod
//!   pushes them and Envoy answers 503 for them.
//!
//! Why a document rather than Envoy-style translated resources: RESEARCH.md, "Control plane:
//! wire format and scoping".

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use trellis_engine::config::Config;
use trellis_engine::proxy::CompiledConfig;

use super::mesh_apply;
use super::mesh_settings::MeshSettings;
use crate::diag::{ConfigError, Diagnostic, Severity};
use crate::istio::{parse_str, ResourceSet};
use crate::translate::inbound_protocols::InboundProtocol;
use crate::translate::{Registry, Translation};

/// One Istio resource as written, with the file it came from (for the sidecar's messages).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub file: String,
    pub document: serde_json::Value,
}

/// A sidecar's scoped configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SidecarDocument {
    /// The services it can reach (Kubernetes-derived; ServiceEntries come as resources).
    pub registry: Registry,
    /// VirtualServices, DestinationRules and ServiceEntries it can see, in snapshot order.
    pub resources: Vec<Resource>,
    /// The protocol of each port of the workload, by port, for its capture inbound listener
    /// (`translate::inbound_protocols`, from every Service selecting the workload, visible to
    /// it or not). Pairs, not a map: integer map keys do not survive the wire's internally
    /// tagged messages (see `Registry`'s `port_pairs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inbound: Vec<(u16, InboundProtocol)>,
    /// The mesh config's settings sidecars act on (the same for every sidecar).
    #[serde(default, skip_serializing_if = "MeshSettings::is_default")]
    pub mesh: MeshSettings,
}

impl SidecarDocument {
    /// Read the resources back (the sidecar side).
    pub fn resource_set(&self) -> Result<ResourceSet, ConfigError> {
        let mut set = ResourceSet::default();
        for r in &self.resources {
            // JSON is YAML: the loader reads it as it reads a file.
            let text = r.document.to_string();
            set.extend(parse_str(&text, &r.file)?);
        }
        Ok(set)
    }

    /// Translate into an engine config and check that the engine can run it: the sidecar's
    /// ACK or NACK. `Err` is the NACK's reason.
    pub fn translate(&self) -> Result<Translation, ConfigError> {
        self.translate_for(&crate::translate::Workload::default())
    }

    /// [`SidecarDocument::translate`] for the sidecar of `workload`: source matches and short
    /// names are decided for it, as pilot does per proxy, and the mesh config's retry policy
    /// and auto mTLS applied (`super::mesh_apply`; the listeners' settings are the sidecar's
    /// to apply, with its file's listeners).
    pub fn translate_for(
        &self,
        workload: &crate::translate::Workload,
    ) -> Result<Translation, ConfigError> {
        let mut resources = self.resource_set()?;
        mesh_apply::default_retries_into_rules(&mut resources, &self.mesh);
        let mut translation = crate::translate::translate_for(&resources, &self.registry, workload);
        mesh_apply::apply_to_translation(&mut translation, &self.mesh);
        let invalid: Vec<String> = translation
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error && d.code.is_none())
            .map(Diagnostic::to_string)
            .collect();
        if !invalid.is_empty() {
            return Err(ConfigError::Rejected(invalid.join("; ")));
        }
        compile(&translation.config)?;
        Ok(translation)
    }

    /// [`SidecarDocument::inbound`] as a map.
    pub fn inbound_protocols(&self) -> std::collections::BTreeMap<u16, InboundProtocol> {
        self.inbound.iter().copied().collect()
    }

    /// The document's size as pushed (compact JSON).
    pub fn encoded_len(&self) -> usize {
        serde_json::to_vec(self).map(|v| v.len()).unwrap_or(0)
    }
}

/// Whether the engine accepts `config` (routes, regexes, cluster references).
pub fn compile(config: &Config) -> Result<CompiledConfig, ConfigError> {
    CompiledConfig::compile(Arc::new(config.clone()))
        .map_err(|e| ConfigError::Rejected(e.to_string()))
}
