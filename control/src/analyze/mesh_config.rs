//! The mesh config and MeshNetworks an analysis runs under.
//!
//! Several of Istio's analyzers read the mesh config (`istioctl analyze --meshConfigFile`, the
//! `meshConfigFile` of Istio's analyzer tests) or MeshNetworks (`meshNetworksFile`). Istio's
//! `local.IstiodAnalyzer` always has both: `mesh.DefaultMeshConfig()` with the file applied
//! over it (`mesh.ApplyMeshConfig`), and `mesh.DefaultMeshNetworks()` (no networks) unless a
//! file replaces it, as the resources `MeshConfig istio-system/meshconfig` and
//! `MeshNetworks istio-system/meshnetworks`. Trellis keeps each file's document as written and
//! applies the defaults that matter to its analyzers in the accessors below, so a missing file
//! reads exactly as Istio's defaults.

use serde_yaml::Value;

use super::defaults::ISTIO_NAMESPACE;
use super::input::Inputs;
use super::object::{str_at, string_map, value_at};
use crate::istio::Source;

/// A mesh config or MeshNetworks file that is not a YAML map.
#[derive(Debug, thiserror::Error)]
#[error("{file}: not a mesh config: {detail}")]
pub struct MeshFileError {
    pub file: String,
    pub detail: String,
}

/// A mesh-wide document: where it came from (istioctl's origin) and what it says.
#[derive(Clone, Debug, PartialEq)]
pub struct MeshDocument {
    pub source: Source,
    /// The file as written (`Null` when none was given: Istio's defaults throughout).
    pub value: Value,
}

impl MeshDocument {
    fn new(kind: &str, name: &str) -> MeshDocument {
        MeshDocument {
            source: Source {
                file: String::new(),
                kind: kind.to_string(),
                namespace: ISTIO_NAMESPACE.to_string(),
                name: name.to_string(),
            },
            value: Value::Null,
        }
    }

    /// The value at `path`, if every step exists.
    pub fn at(&self, path: &[&str]) -> Option<&Value> {
        value_at(&self.value, path)
    }

    /// `defaultConfig.proxyMetadata[key]` (`mesh.DefaultProxyConfig` sets none).
    pub fn proxy_metadata(&self, key: &str) -> Option<String> {
        string_map(&self.value, &["defaultConfig", "proxyMetadata"]).remove(key)
    }

    /// `defaultConfig.image.imageType` (empty by default).
    pub fn image_type(&self) -> &str {
        str_at(&self.value, &["defaultConfig", "image", "imageType"]).unwrap_or_default()
    }

    /// `rootNamespace` (`istio-system` when unset, as `NewEffectiveProxyConfigResolver` reads it).
    pub fn root_namespace(&self) -> &str {
        str_at(&self.value, &["rootNamespace"])
            .filter(|ns| !ns.is_empty())
            .unwrap_or(ISTIO_NAMESPACE)
    }

    /// `extensionProviders`: `mesh.ApplyMeshConfig` keeps the default providers (prometheus,
    /// stackdriver, envoy) and replaces or adds the file's by name; only the file's are kept
    /// here, since the defaults are none of the kinds an analyzer looks for.
    pub fn extension_providers(&self) -> &[Value] {
        value_at(&self.value, &["extensionProviders"])
            .and_then(Value::as_sequence)
            .map_or(&[], Vec::as_slice)
    }
}

impl Default for Mesh {
    fn default() -> Self {
        Mesh {
            config: MeshDocument::new("MeshConfig", "meshconfig"),
            networks: MeshDocument::new("MeshNetworks", "meshnetworks"),
        }
    }
}

/// The mesh config and MeshNetworks of one analysis.
#[derive(Clone, Debug, PartialEq)]
pub struct Mesh {
    pub config: MeshDocument,
    pub networks: MeshDocument,
}

fn read(text: &str, file: &str) -> Result<Value, MeshFileError> {
    let err = |detail: String| MeshFileError {
        file: file.to_string(),
        detail,
    };
    let value: Value = serde_yaml::from_str(text).map_err(|e| err(e.to_string()))?;
    match value {
        Value::Mapping(_) | Value::Null => Ok(value),
        _ => Err(err("expected a map".to_string())),
    }
}

impl Inputs {
    /// Use `text` (a MeshConfig as YAML, the `mesh` key of the `istio` ConfigMap) as the mesh
    /// config, as `istioctl analyze --meshConfigFile` does.
    pub fn set_mesh_config_str(&mut self, text: &str, file: &str) -> Result<(), MeshFileError> {
        self.mesh.config.value = read(text, file)?;
        self.mesh.config.source.file = file.to_string();
        Ok(())
    }

    /// Use `text` (a MeshNetworks as YAML) as the mesh networks (Istio's
    /// `AddFileKubeMeshNetworks`).
    pub fn set_mesh_networks_str(&mut self, text: &str, file: &str) -> Result<(), MeshFileError> {
        self.mesh.networks.value = read(text, file)?;
        self.mesh.networks.source.file = file.to_string();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_a_file_and_the_file_over_them() {
        let mut inputs = Inputs::default();
        let mesh = &inputs.mesh.config;
        assert_eq!(mesh.root_namespace(), "istio-system");
        assert_eq!(mesh.image_type(), "");
        assert_eq!(mesh.proxy_metadata("ISTIO_META_DNS_CAPTURE"), None);
        assert!(mesh.extension_providers().is_empty());
        let text = include_str!("../../tests/analyzer_testdata/common/meshconfig.yaml");
        inputs.set_mesh_config_str(text, "mesh.yaml").unwrap();
        assert_eq!(inputs.mesh.config.image_type(), "distroless");
        let text = "defaultConfig:\n  proxyMetadata:\n    ISTIO_META_DNS_CAPTURE: \"true\"\n";
        inputs.set_mesh_config_str(text, "mesh.yaml").unwrap();
        assert_eq!(
            inputs.mesh.config.proxy_metadata("ISTIO_META_DNS_CAPTURE"),
            Some("true".to_string())
        );
        assert!(inputs.set_mesh_config_str("[1, 2]", "bad.yaml").is_err());
        assert_eq!(inputs.mesh.networks.source.name, "meshnetworks");
    }
}
