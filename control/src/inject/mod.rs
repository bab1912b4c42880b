//! # Sidecar injection: `trellis inject` and the admission webhook
//!
//! Istio's injector (pkg/kube/inject: `inject.go`, `webhook.go`, `app_probe.go`, and the
//! injection template) in Trellis's terms: the same decision (reused from
//! [`crate::plane::injection`]), the same containers, ports, probes, labels and annotations,
//! with `trellis init` / `trellis proxy` in the roles of `istio-iptables` / `pilot-agent`.
//!
//! - [`settings`]: the injector's configuration and the pod's annotations.
//! - [`native`]: whether the sidecar is a Kubernetes native sidecar (`ENABLE_NATIVE_SIDECARS`,
//!   `DetectNativeSidecar`, `sidecar.istio.io/nativeSidecar`).
//! - [`validate`]: the annotations Istio refuses when malformed.
//! - [`template`]: the injected containers and volumes (the injection template).
//! - [`probes`]: application probes rewritten onto the sidecar's status port.
//! - [`pod`]: injecting one pod template, in Istio's order of steps.
//! - [`workload`]: where each kind keeps its pod template (Pod ... CronJob, v1 List).
//! - [`documents`]: a multi-document YAML file in, the same file injected out.
//! - [`patch`]: RFC 6902 JSON Patch between two documents.
//! - [`admission`]: `AdmissionReview` in, `AdmissionReview` with a JSONPatch out.
//!
//! Everything here is a pure function of its input, so the CLI, the webhook server and the
//! tests share it.

pub mod admission;
pub mod documents;
pub mod native;
#[cfg(test)]
mod native_tests;
pub mod patch;
pub mod pod;
pub mod probes;
pub mod settings;
pub mod template;
pub mod validate;
pub mod workload;

pub use crate::plane::injection::PROXY_CONTAINER;
pub use admission::{answer, WebhookAnswer};
pub use documents::{inject_file, InjectOptions, InjectedFile};
pub use native::{NativeSidecarMode, NodeVersions};
pub use pod::{Outcome, SkipReason};
pub use settings::InjectSettings;

/// Why a document could not be injected.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error("document {document}: not YAML: {message}")]
    Yaml { document: usize, message: String },
    #[error("document {0}: {1}")]
    Document(usize, Box<InjectError>),
    #[error("{0}: {1}")]
    Workload(String, Box<InjectError>),
    #[error("annotation {name}: {value:?}: {why}")]
    BadAnnotation {
        name: String,
        value: String,
        why: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("internal error: {0}")]
    Internal(String),
}
