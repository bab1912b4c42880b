//! `http:` of the proxy config file: the HTTP connection manager's limits and timeouts, and
//! its path normalization.
//!
//! `pathNormalization: {normalization: ...}` has the shape of MeshConfig's field of that name
//! (`meshConfig.pathNormalization`), which Istio's pilot turns into the connection manager's
//! `normalize_path` / `merge_slashes` / `path_with_escaped_slashes_action`
//! (`pilot/pkg/networking/core/listener_builder.go`). A sidecar run from its file alone reads
//! no MeshConfig, so the field sits here; absent, it is Istio's default, `BASE`. A sidecar fed
//! by `trellis control` takes the mesh config's value instead when that sets one
//! (`plane::mesh_apply`).

use serde::Deserialize;
use trellis_engine::config::HttpSettings;
use trellis_engine::path::PathNormalization;

use crate::istio::duration::IstioDuration;
use crate::plane::mesh_settings::PathNormalizationType;

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct HttpSpec {
    max_request_line_bytes: Option<usize>,
    max_header_bytes: Option<usize>,
    max_headers: Option<usize>,
    header_read_timeout: Option<IstioDuration>,
    idle_timeout: Option<IstioDuration>,
    stream_idle_timeout: Option<IstioDuration>,
    retry_buffer_bytes: Option<usize>,
    connection_buffer_bytes: Option<usize>,
    path_normalization: PathNormalizationSpec,
}

/// MeshConfig's `pathNormalization` (`ProxyPathNormalization`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PathNormalizationSpec {
    normalization: Option<PathNormalizationType>,
}

pub(super) fn http_settings(spec: &HttpSpec) -> HttpSettings {
    let d = HttpSettings::default();
    HttpSettings {
        max_request_line_bytes: spec
            .max_request_line_bytes
            .unwrap_or(d.max_request_line_bytes),
        max_header_bytes: spec.max_header_bytes.unwrap_or(d.max_header_bytes),
        max_headers: spec.max_headers.unwrap_or(d.max_headers),
        header_read_timeout: spec
            .header_read_timeout
            .map(|t| t.0)
            .unwrap_or(d.header_read_timeout),
        idle_timeout: spec.idle_timeout.map(|t| t.0).unwrap_or(d.idle_timeout),
        stream_idle_timeout: spec
            .stream_idle_timeout
            .map(|t| t.0)
            .unwrap_or(d.stream_idle_timeout),
        retry_buffer_bytes: spec.retry_buffer_bytes.unwrap_or(d.retry_buffer_bytes),
        connection_buffer_bytes: spec
            .connection_buffer_bytes
            .unwrap_or(d.connection_buffer_bytes),
        path_normalization: spec
            .path_normalization
            .normalization
            .map_or(d.path_normalization, PathNormalization::from),
    }
}
