//! The MeshConfig fields the control plane hands to every sidecar, read as pilot reads its
//! mesh config.
//!
//! istiod takes MeshConfig from the `mesh` key of the `istio` ConfigMap in its own namespace
//! (`istio-system`), or from a file (`pilot-discovery --meshConfig`, the ConfigMap mounted),
//! and applies it over `mesh.DefaultMeshConfig()` (`mesh.ApplyMeshConfigDefaults`,
//! pkg/config/mesh/mesh.go). Trellis reads both: the ConfigMap as one more object of the
//! directory or the API server (so editing it is pushed like any change), and
//! `trellis control --meshConfig FILE`, which wins over the ConfigMap when given.
//!
//! Only the fields a sidecar acts on travel; each is `None` when the config leaves it to
//! Istio's default. Today: `protocolDetectionTimeout` (default `0s`: wait for the first bytes
//! as long as it takes), which the capture inbound listener uses on ports whose protocol is
//! sniffed (`translate::inbound_capture`). Other fields are accepted and left alone, as a
//! sidecar has nothing to do with them; a field of the wrong type is an error, so a broken
//! mesh config is refused (the last good one keeps serving) rather than half applied.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::diag::ConfigError;
use crate::istio::duration::parse_duration;

/// The namespace and name of the ConfigMap pilot reads (`istio` in istiod's namespace).
pub const MESH_CONFIG_MAP: (&str, &str) = ("istio-system", "istio");

/// What every sidecar gets of the mesh config.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshSettings {
    /// `protocolDetectionTimeout` in milliseconds; `None`: Istio's default, 0s (no timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_detection_timeout_ms: Option<u64>,
}

impl MeshSettings {
    /// `protocolDetectionTimeout`, when the mesh config sets one above zero (`0s` is Istio's
    /// "no timeout").
    pub fn protocol_detection_timeout(&self) -> Option<Duration> {
        self.protocol_detection_timeout_ms
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
    }

    /// Whether the mesh config leaves everything to Istio's defaults.
    pub fn is_default(&self) -> bool {
        *self == MeshSettings::default()
    }
}

/// The fields read from the YAML, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct MeshConfigFields {
    protocol_detection_timeout: Option<String>,
}

/// Read a MeshConfig written as YAML (the ConfigMap's `mesh` value, or the file); `file` names
/// it in errors.
pub fn read_mesh_config(text: &str, file: &str) -> Result<MeshSettings, ConfigError> {
    let invalid = |field: &str, message: String| ConfigError::Invalid {
        file: file.to_string(),
        line: None,
        resource: "MeshConfig".to_string(),
        field: field.to_string(),
        message,
    };
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| ConfigError::Syntax {
        file: file.to_string(),
        line: e.location().map(|l| l.line()),
        message: e.to_string(),
    })?;
    if !(value.is_mapping() || value.is_null()) {
        return Err(invalid("", "a MeshConfig is a map".to_string()));
    }
    let fields: MeshConfigFields = if value.is_null() {
        MeshConfigFields::default()
    } else {
        serde_yaml::from_value(value).map_err(|e| invalid("", e.to_string()))?
    };
    let protocol_detection_timeout_ms = match fields.protocol_detection_timeout.as_deref() {
        None => None,
        Some(text) => {
            let d = parse_duration(text)
                .map_err(|e| invalid("protocolDetectionTimeout", e.to_string()))?;
            Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        }
    };
    Ok(MeshSettings {
        protocol_detection_timeout_ms,
    })
}

/// Read the `mesh` key of the `istio` ConfigMap (`data`, as the object carries it).
pub fn read_config_map(
    object: &serde_yaml::Value,
    file: &str,
) -> Result<MeshSettings, ConfigError> {
    match object.get("data").and_then(|d| d.get("mesh")) {
        None => Ok(MeshSettings::default()),
        Some(serde_yaml::Value::String(text)) => read_mesh_config(text, file),
        Some(_) => Err(ConfigError::Invalid {
            file: file.to_string(),
            line: None,
            resource: "ConfigMap istio-system/istio".to_string(),
            field: "data.mesh".to_string(),
            message: "the mesh config is a string of YAML".to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `mesh.DefaultMeshConfig()` (pkg/config/mesh/mesh.go) sets `ProtocolDetectionTimeout`
    /// to 0s: no timeout, so nothing is set here either.
    #[test]
    fn defaults_and_the_detection_timeout() {
        let empty = read_mesh_config("", "mesh.yaml").expect("an empty config is Istio's default");
        assert!(empty.is_default());
        assert_eq!(empty.protocol_detection_timeout(), None);
        let set = read_mesh_config(
            "protocolDetectionTimeout: 5s\naccessLogFile: /dev/stdout\n",
            "mesh.yaml",
        )
        .expect("reads");
        assert_eq!(
            set.protocol_detection_timeout(),
            Some(Duration::from_secs(5))
        );
        let zero = read_mesh_config("protocolDetectionTimeout: 0s\n", "mesh.yaml").expect("reads");
        assert_eq!(zero.protocol_detection_timeout(), None);
        assert!(
            !zero.is_default(),
            "written 0s is kept, and means no timeout"
        );
    }

    #[test]
    fn a_broken_config_is_an_error_naming_the_field() {
        let err = read_mesh_config("protocolDetectionTimeout: soon\n", "mesh.yaml").unwrap_err();
        assert!(
            err.to_string().contains("protocolDetectionTimeout"),
            "{err}"
        );
        assert!(read_mesh_config("- a list\n", "mesh.yaml").is_err());
        assert!(read_mesh_config("protocolDetectionTimeout: [1]\n", "mesh.yaml").is_err());
    }

    #[test]
    fn the_config_map_carries_it_under_mesh() {
        let object: serde_yaml::Value = serde_yaml::from_str(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    protocolDetectionTimeout: 100ms\n",
        )
        .unwrap();
        let mesh = read_config_map(&object, "istio.yaml").expect("reads");
        assert_eq!(mesh.protocol_detection_timeout_ms, Some(100));
    }
}
