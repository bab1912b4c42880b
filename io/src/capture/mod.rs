//! Traffic capture for a sidecar: the nat rules `trellis init` programs into a pod's network
//! namespace so that inbound TCP reaches the proxy on 15006 and outbound TCP on 15001, with
//! Istio's exclusions (the proxy's own UID/GID, loopback, the proxy's ports, excluded ports
//! and CIDRs). It is Istio's `istio-iptables` (tools/istio-iptables/pkg/capture/run.go), with
//! the same flags, chain names and rules, loaded by nft or iptables.
//!
//! The proxy then learns where each captured connection was going from `SO_ORIGINAL_DST`
//! ([`crate::sockopt::original_dst`]).
//!
//! Pure parts, tested against the rule sets istio-iptables produces for the same flags:
//! - [`spec`]: the settings (flags, annotations, defaults) → a validated [`CaptureSpec`]
//!   ([`downward_api`] reads the pod's annotations file);
//! - [`rules`]: the spec → an ordered [`RuleSet`], independent of the tool;
//! - [`iptables`] and [`nft`]: a rule set → the tool's input, and cleanup input.
//!
//! Thin part: [`apply`] picks the tool, checks CAP_NET_ADMIN, runs it, reports its stderr.

pub mod apply;
pub mod downward_api;
pub mod iptables;
pub mod nft;
pub mod rules;
pub mod spec;

#[cfg(test)]
mod tests;

pub use apply::{BackendChoice, Tool};
pub use rules::{build, RuleSet};
pub use spec::{CaptureOptions, CaptureSpec};

/// Why capture could not be set up or removed.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("invalid {setting} value {value:?}: {reason}")]
    Invalid {
        setting: &'static str,
        value: String,
        reason: String,
    },
    #[error("pod annotations file, line {line}: {reason}")]
    Annotations { line: usize, reason: String },
    #[error("cannot find {wanted} in PATH")]
    MissingTool { wanted: &'static str },
    #[error(
        "not permitted to change netfilter rules ({detail}): run as root, or give the init \
         container the NET_ADMIN capability (and NET_RAW for iptables)"
    )]
    Permission { detail: String },
    #[error("cannot run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    ToolFailed {
        command: String,
        status: String,
        stderr: String,
    },
}
