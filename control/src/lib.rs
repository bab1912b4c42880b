//! # trellis-control: the control plane
//!
//! Istio resource types, config sources, translation to the engine's configuration model, and
//! the `explain` route checker.
//!
//! - [`istio`]: Istio resources as written by users, and the YAML loader that reports unknown
//!   fields and names the file, resource and field of every error.
//! - [`translate`]: Istio resources plus a service registry → `trellis_engine::config::Config`,
//!   flattened like Envoy's (per host, port and subset clusters, one outbound route table).
//! - [`proxy_config`]: the `trellis proxy --config FILE` format.
//! - [`explain`]: which rule a request hits, and why.
//! - [`ca`]: the certificate authority: workload certificates with SPIFFE ids from CSRs,
//!   renewal times, the trust bundle and root rotation.
//! - [`analyze`]: Istio's analyzer checks (`istioctl analyze`), with Istio's codes and wording.
//! - [`diag`]: diagnostics and errors shared by all of them.
//! - [`plane`]: the control plane: a directory source deriving the registry and workloads,
//!   per-sidecar scoping, and the push protocol as a sans-IO state machine.

pub mod analyze;
pub mod ca;
pub mod diag;
pub mod dns;
pub mod explain;
pub mod istio;
pub mod plane;
pub mod proxy_config;
pub mod translate;

pub use analyze::{analyze_dir, Analysis};
pub use diag::{ConfigError, Diagnostic, Severity};
pub use explain::{explain, ExplainReport, ExplainRequest};
pub use proxy_config::{load_proxy_config, load_proxy_config_with, LoadedConfig, ProxyOverrides};

/// Where the project's shared inputs (Istio CRDs and samples) live: `$TRELLIS_SHARED_DIR` if
/// set, else `shared/` beside the repository (`../shared` from its root), as DESIGN.md lays out.
pub fn shared_dir() -> std::path::PathBuf {
    match std::env::var_os("TRELLIS_SHARED_DIR") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    }
}
