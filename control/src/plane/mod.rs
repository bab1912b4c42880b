//! # The control plane (Pilot's job): sources, per-sidecar scoping and the push protocol
//!
//! - [`snapshot`]: a directory of the YAML a user would `kubectl apply` (Istio kinds plus
//!   Kubernetes `Service`, `Pod`, `Deployment`, `EndpointSlice`, `Namespace`,
//!   `ServiceAccount`) → one [`Snapshot`]: Istio resources, and the service registry and
//!   workloads derived as istiod's Kubernetes controller derives them ([`services`],
//!   [`workloads`], [`injection`]), from the objects typed in [`kube`].
//! - [`watch`]: the driver that notices the directory changed.
//! - `kube_source` (feature `kube`, on by default): the other source, a Kubernetes API server
//!   watched through kube's reflectors, read by the same code as a directory.
//! - [`scope`]: what one sidecar sees (`Sidecar` egress hosts, `exportTo`), as a
//!   [`document::SidecarDocument`] the sidecar translates itself (and ACKs or NACKs).
//! - [`push`]: the push protocol, a sans-IO state machine on each side.
//! - [`net`]: its transport on tokio (any listener and connector: tokio's, or turmoil's in
//!   tests).
//! - [`jwks`]: RequestAuthentication keys fetched here and inlined, so sidecars never fetch.
//! - [`mesh_settings`]: the MeshConfig fields pushed to every sidecar, and [`mesh_apply`]:
//!   what a sidecar does with them.
//!
//! Everything here except [`watch`] and [`Snapshot::read_dir`] is a pure function of its
//! inputs, so the simulator can run the control plane as a node.

pub mod document;
pub mod injection;
pub mod jwks;
pub mod kube;
#[cfg(feature = "kube")]
pub mod kube_source;
pub mod mesh_apply;
pub mod mesh_settings;
pub mod net;
pub mod push;
pub mod scope;
pub mod services;
pub mod snapshot;
pub mod source;
pub mod watch;
pub mod workloads;

pub use document::SidecarDocument;
#[cfg(feature = "kube")]
pub use kube_source::{KubeSource, KubeSourceConfig};
pub use scope::{scope, ScopeIndex, Scoped};
pub use snapshot::Snapshot;
pub use source::ConfigSource;
pub use watch::DirWatcher;
pub use workloads::{InstanceAddress, WorkloadInstance, ADDRESSES_ANNOTATION};

#[cfg(test)]
mod scope_tests;
#[cfg(test)]
mod snapshot_tests;
