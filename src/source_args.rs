//! The flags that pick where the mesh is read from: `--dir DIR` or `--kube [--kubeconfig PATH]
//! [--context NAME]`, shared by `trellis control` (and the commands that read the same
//! sources).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use trellis_control::plane::kube_source::NamedObjects;
use trellis_control::plane::{ConfigSource, DirWatcher, KubeSource, KubeSourceConfig, Snapshot};

/// How long `analyze --kube` and `explain --kube` wait for the cluster's first complete list.
const READ_ONCE_TIMEOUT: Duration = Duration::from_secs(30);

/// The Kubernetes source's flags.
#[derive(Args, Debug, Clone)]
pub struct KubeArgs {
    /// Read the mesh from a Kubernetes API server instead of a directory: Istio's resources,
    /// Services, Pods, EndpointSlices and Namespaces, watched. Connects with --kubeconfig, else
    /// $KUBECONFIG or ~/.kube/config, else the pod's in-cluster service account.
    #[arg(long, conflicts_with = "dir")]
    pub kube: bool,
    /// The kubeconfig file to use (with --kube).
    #[arg(long, value_name = "PATH", requires = "kube")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (with --kube; default: its current context).
    #[arg(long, value_name = "NAME", requires = "kube")]
    pub context: Option<String>,
}

impl KubeArgs {
    /// The Kubernetes source's configuration from these flags.
    pub fn config(&self) -> KubeSourceConfig {
        KubeSourceConfig {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            ..KubeSourceConfig::default()
        }
    }

    /// The source these flags and `dir` name (clap has made sure it is exactly one).
    pub fn source(&self, dir: Option<&Path>) -> Result<ConfigSource> {
        if self.kube {
            let source =
                KubeSource::start(self.config()).context("cannot start the Kubernetes source")?;
            return Ok(ConfigSource::Kube(source));
        }
        let dir = dir.context("either --dir or --kube is needed")?;
        Ok(ConfigSource::Dir(DirWatcher::new(dir)))
    }

    /// Read the cluster once (`analyze --kube`, `explain --kube`): the first complete snapshot,
    /// and the objects it was read from.
    pub fn read_once(&self) -> Result<(Snapshot, Arc<NamedObjects>)> {
        let mut source =
            KubeSource::start(self.config()).context("cannot start the Kubernetes source")?;
        let snapshot = source.wait(READ_ONCE_TIMEOUT).with_context(|| {
            format!(
                "no complete list from the Kubernetes API server within {} s ({:?})",
                READ_ONCE_TIMEOUT.as_secs(),
                source.status()
            )
        })?;
        Ok((snapshot, source.objects()))
    }

    /// Where the mesh is read from, for logs.
    pub fn describe(&self, dir: Option<&Path>) -> String {
        match (self.kube, dir) {
            (true, _) => match &self.kubeconfig {
                Some(path) => format!("kubernetes ({})", path.display()),
                None => "kubernetes".to_string(),
            },
            (false, Some(dir)) => dir.display().to_string(),
            (false, None) => String::new(),
        }
    }
}

/// `key=value` items (labels on the command line) as a map; an item without `=` is an error
/// naming `what`.
pub fn key_values(
    items: &[String],
    what: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    for item in items {
        let Some((key, value)) = item.split_once('=') else {
            anyhow::bail!("{what} {item:?} is not `key=value`");
        };
        out.insert(key.trim().to_string(), value.trim().to_string());
    }
    Ok(out)
}
