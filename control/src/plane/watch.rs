//! Noticing that the directory changed: the driver around the pure [`Snapshot::from_files`].
//!
//! Each [`DirWatcher::poll`] lists the YAML files (sorted) with their modification time and
//! length; when that listing differs from the last one it reads a new snapshot, and hands it
//! out only when its content digest differs too (touching a file changes nothing). Polling
//! rather than inotify keeps this portable and deterministic: the caller picks the period
//! (`trellis control` polls every second) and tests call `poll` when they like.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::snapshot::{yaml_files, Snapshot};
use crate::diag::ConfigError;

/// Path → (modified, length) of every YAML file.
pub type Fingerprint = BTreeMap<PathBuf, (Option<SystemTime>, u64)>;

/// The listing [`DirWatcher`] compares.
pub fn fingerprint(dir: &Path) -> Result<Fingerprint, ConfigError> {
    let mut out = Fingerprint::new();
    for path in yaml_files(dir)? {
        let meta = std::fs::metadata(&path).map_err(|source| ConfigError::Io {
            path: path.clone(),
            source,
        })?;
        out.insert(path, (meta.modified().ok(), meta.len()));
    }
    Ok(out)
}

/// Watches one directory.
#[derive(Debug)]
pub struct DirWatcher {
    dir: PathBuf,
    seen: Option<Fingerprint>,
    digest: Option<u64>,
}

impl DirWatcher {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirWatcher {
            dir: dir.into(),
            seen: None,
            digest: None,
        }
    }

    /// A new snapshot when the directory's content changed since the last call (the first call
    /// always gives one), `None` when not. A directory that cannot be read as a snapshot is an
    /// error, reported once per change: the caller keeps serving its last good snapshot.
    pub fn poll(&mut self) -> Result<Option<Snapshot>, ConfigError> {
        let now = fingerprint(&self.dir)?;
        if self.seen.as_ref() == Some(&now) {
            return Ok(None);
        }
        self.seen = Some(now);
        let snapshot = Snapshot::read_dir(&self.dir)?;
        if self.digest == Some(snapshot.digest) {
            return Ok(None);
        }
        self.digest = Some(snapshot.digest);
        Ok(Some(snapshot))
    }
}
