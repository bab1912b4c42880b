//! The MeshConfig fields the control plane hands to every sidecar, read as pilot reads its
//! mesh config.
//!
//! istiod takes MeshConfig from the `mesh` key of the `istio` ConfigMap in its own namespace
//! (`istio-system`), or from a file (`pilot-discovery --meshConfig`, the ConfigMap mounted),
//! and applies it over `mesh.DefaultMeshConfig()` (`mesh.ApplyMeshConfigDefaults`,
//! pkg/config/mesh/mesh.go). Trellis reads both: the ConfigMap as one more object of the
//! directory or the API server (`trellis control --kube` watches that one object), so editing
//! it is pushed like any change, and `trellis control --meshConfig FILE`, which wins over the
//! ConfigMap when given.
//!
//! Only the fields a sidecar acts on travel; each is `None` when the config leaves it to
//! Istio's default, and its accessor gives pilot's default then:
//!
//! | field | default (`DefaultMeshConfig`) | what the sidecar does with it |
//! |---|---|---|
//! | `protocolDetectionTimeout` | `0s`: no timeout | the capture inbound listener's sniffing (`translate::inbound_capture`; `buildSidecarInboundListener`) |
//! | `pathNormalization.normalization` | unset: `DEFAULT`, which pilot treats as `BASE` | the HTTP connection manager's path normalization (`buildHTTPConnectionManager`, listener_builder.go) |
//! | `outboundTrafficPolicy.mode` | `ALLOW_ANY` | unknown hosts on the outbound listener pass through, or `REGISTRY_ONLY`: answered 502 (`buildCatchAllVirtualHost`, httproute.go) |
//! | `enableAutoMtls` | `true` | clusters without a DestinationRule `tls` use ISTIO_MUTUAL to sidecars, or plaintext when `false` (`buildUpstreamTLSSettings`, cluster_tls.go) |
//! | `defaultHttpRetryPolicy` | unset: 2 attempts on `connect-failure,refused-stream,...` | the retries of routes that set none (`translateRoute` and `BuildDefaultHTTPOutboundRoute`, route.go) |
//!
//! How a sidecar applies them, and which wins over its own file: [`super::mesh_apply`].
//! Other fields are accepted and left alone, as a sidecar has nothing to do with them; a
//! field of the wrong type, or a value Trellis cannot honour, is an error, so a broken mesh
//! config is refused (the last good one keeps serving) rather than half applied.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::diag::ConfigError;
use crate::istio::duration::parse_duration;
use crate::istio::virtual_service::HttpRetry;

/// The namespace and name of the ConfigMap pilot reads (`istio` in istiod's namespace).
pub const MESH_CONFIG_MAP: (&str, &str) = ("istio-system", "istio");

/// What every sidecar gets of the mesh config.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshSettings {
    /// `protocolDetectionTimeout` in milliseconds; `None`: Istio's default, 0s (no timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_detection_timeout_ms: Option<u64>,
    /// `pathNormalization.normalization`; `None`: Istio's default, `BASE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_normalization: Option<PathNormalizationType>,
    /// `outboundTrafficPolicy.mode`; `None`: Istio's default, `ALLOW_ANY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_traffic_policy: Option<OutboundTrafficMode>,
    /// `enableAutoMtls`; `None`: Istio's default, `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_auto_mtls: Option<bool>,
    /// `defaultHttpRetryPolicy` as written (an `HTTPRetry`, checked when read); `None`:
    /// Istio's default retry policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_http_retry_policy: Option<serde_json::Value>,
}

/// MeshConfig `ProxyPathNormalization.NormalizationType`, as Istio spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PathNormalizationType {
    /// The enum's zero value, which pilot treats as `BASE`.
    Default,
    None,
    Base,
    MergeSlashes,
    DecodeAndMergeSlashes,
}

impl From<PathNormalizationType> for trellis_engine::path::PathNormalization {
    /// pilot's switch in `buildHTTPConnectionManager` (pilot/pkg/networking/core/
    /// listener_builder.go): NONE → `normalize_path: false`; BASE and DEFAULT → `true`;
    /// MERGE_SLASHES adds `merge_slashes`; DECODE_AND_MERGE_SLASHES also
    /// `UNESCAPE_AND_FORWARD`.
    fn from(n: PathNormalizationType) -> Self {
        use trellis_engine::path::PathNormalization as P;
        match n {
            PathNormalizationType::None => P::None,
            PathNormalizationType::Default | PathNormalizationType::Base => P::Base,
            PathNormalizationType::MergeSlashes => P::MergeSlashes,
            PathNormalizationType::DecodeAndMergeSlashes => P::DecodeAndMergeSlashes,
        }
    }
}

/// MeshConfig `OutboundTrafficPolicy.Mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboundTrafficMode {
    /// Requests for hosts the mesh does not know go where they were headed
    /// (`PassthroughCluster`).
    AllowAny,
    /// Only the registry's hosts: anything else is answered 502 (pilot's `block_all` virtual
    /// host).
    RegistryOnly,
}

impl MeshSettings {
    /// `protocolDetectionTimeout`, when the mesh config sets one above zero (`0s` is Istio's
    /// "no timeout").
    pub fn protocol_detection_timeout(&self) -> Option<Duration> {
        self.protocol_detection_timeout_ms
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
    }

    /// `outboundTrafficPolicy.mode`, Istio's `ALLOW_ANY` when unset (`DefaultMeshConfig`).
    pub fn outbound_mode(&self) -> OutboundTrafficMode {
        self.outbound_traffic_policy
            .unwrap_or(OutboundTrafficMode::AllowAny)
    }

    /// `enableAutoMtls`, Istio's `true` when unset (`DefaultMeshConfig`).
    pub fn auto_mtls(&self) -> bool {
        self.enable_auto_mtls.unwrap_or(true)
    }

    /// `pathNormalization.normalization` as the engine takes it, `BASE` when unset
    /// (`GetNormalization()` of an unset message is `DEFAULT`, which pilot treats as `BASE`).
    pub fn path_normalization(&self) -> trellis_engine::path::PathNormalization {
        self.path_normalization
            .unwrap_or(PathNormalizationType::Default)
            .into()
    }

    /// `defaultHttpRetryPolicy`, when set. It was checked when read, so one that does not
    /// read back (a document from a newer control plane) counts as unset.
    pub fn default_http_retry_policy(&self) -> Option<HttpRetry> {
        let value = self.default_http_retry_policy.as_ref()?;
        serde_json::from_value(value.clone()).ok()
    }

    /// These settings for a sidecar whose `Sidecar` resource has `outbound_traffic_policy`:
    /// it replaces the mesh's, as pilot's `ConvertToSidecarScope` (pilot/pkg/model/sidecar.go)
    /// takes the Sidecar's `OutboundTrafficPolicy` when it is set and the mesh config's mode
    /// otherwise. A policy without `mode` is REGISTRY_ONLY, the zero value of
    /// networking/v1alpha3/sidecar.proto's `OutboundTrafficPolicy.Mode`; a mode the Sidecar
    /// CRD's schema refuses (anything but REGISTRY_ONLY and ALLOW_ANY) leaves the mesh's.
    pub fn under_sidecar(&self, outbound_traffic_policy: Option<&serde_yaml::Value>) -> Self {
        let mut settings = self.clone();
        let mode = outbound_traffic_policy
            .filter(|p| p.is_mapping())
            .map(|p| outbound_mode_of(p.get("mode")));
        if let Some(Ok(mode)) = mode {
            settings.outbound_traffic_policy = Some(mode);
        }
        settings
    }

    /// Whether the mesh config leaves everything to Istio's defaults.
    pub fn is_default(&self) -> bool {
        *self == MeshSettings::default()
    }
}

/// The fields read from the YAML, as written; every other field is accepted and ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct MeshConfigFields {
    protocol_detection_timeout: Option<String>,
    path_normalization: Option<PathNormalizationFields>,
    outbound_traffic_policy: Option<OutboundTrafficPolicyFields>,
    enable_auto_mtls: Option<bool>,
    default_http_retry_policy: Option<serde_yaml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PathNormalizationFields {
    /// A name, or the enum's number (config.proto: `DEFAULT = 0` ... `DECODE_AND_MERGE_SLASHES
    /// = 4`), as protobuf JSON takes either.
    normalization: Option<serde_yaml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OutboundTrafficPolicyFields {
    /// Read as written first (a name, or the enum's number as protobuf JSON allows), so that
    /// Istio's third mode gets its own message.
    mode: Option<serde_yaml::Value>,
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
        serde_path_to_error::deserialize(value)
            .map_err(|e| invalid(&e.path().to_string(), e.inner().to_string()))?
    };
    let protocol_detection_timeout_ms = match fields.protocol_detection_timeout.as_deref() {
        None => None,
        Some(text) => {
            let d = parse_duration(text)
                .map_err(|e| invalid("protocolDetectionTimeout", e.to_string()))?;
            Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        }
    };
    // A policy written without `mode` is REGISTRY_ONLY, the enum's zero value: pilot applies
    // the YAML over `DefaultMeshConfig` with golang/protobuf's jsonpb, whose `unmarshalMessage`
    // (jsonpb/decode.go) sets a present message field to a new message (`m.NewField`, then
    // `m.Set`) rather than merging into the default's ALLOW_ANY.
    let outbound_traffic_policy = match fields.outbound_traffic_policy {
        None => None,
        Some(policy) => Some(
            outbound_mode_of(policy.mode.as_ref())
                .map_err(|m| invalid("outboundTrafficPolicy.mode", m))?,
        ),
    };
    let path_normalization = match fields.path_normalization.and_then(|p| p.normalization) {
        None => None,
        Some(value) => Some(
            path_normalization_of(value)
                .map_err(|m| invalid("pathNormalization.normalization", m))?,
        ),
    };
    let default_http_retry_policy = match fields.default_http_retry_policy {
        None => None,
        Some(value) => Some(retry_policy(value).map_err(|(field, m)| invalid(&field, m))?),
    };
    Ok(MeshSettings {
        protocol_detection_timeout_ms,
        path_normalization,
        outbound_traffic_policy,
        enable_auto_mtls: fields.enable_auto_mtls,
        default_http_retry_policy,
    })
}

/// `outboundTrafficPolicy.mode` as written. `ALLOW_ANY_DYNAMIC_DNS` (Envoy's dynamic forward
/// proxy, `IsAllowAnyDynamicDNSOutbound` in pilot/pkg/networking/util/util.go) is refused:
/// Trellis has no dynamic forward proxy, and passing unknown hosts through by their original
/// destination instead would be a different mode under its name.
/// The numbers are mesh/v1alpha1/config.proto's (`REGISTRY_ONLY = 0; ALLOW_ANY = 1;
/// ALLOW_ANY_DYNAMIC_DNS = 3`); no `mode` is the zero value.
fn outbound_mode_of(mode: Option<&serde_yaml::Value>) -> Result<OutboundTrafficMode, String> {
    use serde_yaml::Value;
    let name = match mode {
        None | Some(Value::Null) => "REGISTRY_ONLY",
        Some(Value::String(name)) => name.as_str(),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(0) => "REGISTRY_ONLY",
            Some(1) => "ALLOW_ANY",
            Some(3) => "ALLOW_ANY_DYNAMIC_DNS",
            _ => return Err(format!("unknown value {n} for the enum")),
        },
        Some(other) => return Err(format!("expected a mode name, found {other:?}")),
    };
    match name {
        "ALLOW_ANY" => Ok(OutboundTrafficMode::AllowAny),
        "REGISTRY_ONLY" => Ok(OutboundTrafficMode::RegistryOnly),
        "ALLOW_ANY_DYNAMIC_DNS" => Err("ALLOW_ANY_DYNAMIC_DNS is not supported by Trellis".into()),
        other => Err(format!(
            "unknown variant {other:?}, expected ALLOW_ANY or REGISTRY_ONLY"
        )),
    }
}

/// `pathNormalization.normalization`, by name or by its number in config.proto's enum.
fn path_normalization_of(value: serde_yaml::Value) -> Result<PathNormalizationType, String> {
    type P = PathNormalizationType;
    let by_number = [
        P::Default,
        P::None,
        P::Base,
        P::MergeSlashes,
        P::DecodeAndMergeSlashes,
    ];
    match value.as_u64() {
        Some(n) => (usize::try_from(n).ok())
            .and_then(|i| by_number.get(i))
            .copied()
            .ok_or_else(|| format!("unknown value {n} for the enum")),
        None => serde_yaml::from_value(value).map_err(|e| e.to_string()),
    }
}

/// `defaultHttpRetryPolicy`, an `HTTPRetry`: checked as a VirtualService's `retries` is, and
/// kept as written for the wire. `Err`: the field path and why.
fn retry_policy(value: serde_yaml::Value) -> Result<serde_json::Value, (String, String)> {
    let at = |path: String| match path.as_str() {
        "." | "" => "defaultHttpRetryPolicy".to_string(),
        p => format!("defaultHttpRetryPolicy.{p}"),
    };
    let _: HttpRetry = serde_path_to_error::deserialize(value.clone())
        .map_err(|e| (at(e.path().to_string()), e.inner().to_string()))?;
    serde_json::to_value(&value).map_err(|e| (at(String::new()), e.to_string()))
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
#[path = "mesh_settings_tests.rs"]
mod tests;
