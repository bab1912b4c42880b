//! # The control plane (Pilot's job): sources, per-sidecar scoping and the push protocol
//!
//! - [`snapshot`]: a directory of the YAML a user would `kubectl apply` (Istio kinds plus
//!   Kubernetes `Service`, `Pod`, `Deployment`, `EndpointSlice`, `Namespace`,
//!   `ServiceAccount`) → one [`Snapshot`]: Istio resources, and the service registry and
//!   workloads derived as istiod's Kubernetes controller derives them ([`services`],
//!   [`workloads`], [`injection`]), from the objects typed in [`kube`].
//! - [`watch`]: the driver that notices the directory changed.
//!
//! Everything here except [`watch`] and [`Snapshot::read_dir`] is a pure function of its
//! inputs, so the simulator can run the control plane as a node.

pub mod injection;
pub mod kube;
pub mod services;
pub mod snapshot;
pub mod watch;
pub mod workloads;

pub use snapshot::Snapshot;
pub use watch::DirWatcher;
pub use workloads::{InstanceAddress, WorkloadInstance, ADDRESSES_ANNOTATION};

#[cfg(test)]
mod snapshot_tests;
