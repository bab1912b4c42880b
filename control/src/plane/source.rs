//! The control plane's config source, as the binary picks it: a directory of YAML or a
//! Kubernetes API server. Either hands out a new [`Snapshot`] when the mesh changed.

use super::{DirWatcher, Snapshot};
use crate::diag::ConfigError;

/// Where snapshots come from.
#[derive(Debug)]
pub enum ConfigSource {
    Dir(DirWatcher),
    #[cfg(feature = "kube")]
    Kube(super::KubeSource),
}

impl ConfigSource {
    /// A new snapshot when the mesh changed since the last call, `None` when not. A directory
    /// that cannot be read is an error (the caller keeps its last good snapshot); the
    /// Kubernetes source reports its troubles in its logs and keeps its last good snapshot
    /// itself.
    pub fn poll(&mut self) -> Result<Option<Snapshot>, ConfigError> {
        match self {
            ConfigSource::Dir(watcher) => watcher.poll(),
            #[cfg(feature = "kube")]
            ConfigSource::Kube(source) => Ok(source.poll()),
        }
    }
}
