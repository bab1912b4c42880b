//! The Kubernetes config source: the mesh as an API server holds it, through kube's watchers
//! and reflectors, turned into the same [`Snapshot`] the directory source makes.
//!
//! [`KubeSource::start`] connects (a kubeconfig file, or what kube infers: `$KUBECONFIG`,
//! `~/.kube/config`, else the pod's in-cluster service account) and runs on its own thread
//! with a tokio runtime, so a caller on plain threads (`trellis control`'s loop) or on tokio
//! uses it alike. [`KubeSource::poll`] hands out a new snapshot when the cluster's objects
//! changed, as [`super::DirWatcher::poll`] does for a directory.
//!
//! What is watched: [`kinds::WATCHED`], Istio's kinds as dynamic objects, and one ConfigMap,
//! `istio-system/istio` (pilot's mesh config: a broken one is refused and the last good one
//! stays, see [`run`]). Every object is fed
//! to [`Snapshot::from_objects`], the directory source's reading and derivation: the same
//! validation, warnings, registry and workloads. How changes, `410 Gone`, missing CRDs and a
//! vanishing API server are handled: [`run`]. Why kube's watcher and how it is tested
//! without a cluster: RESEARCH.md, "Control plane: the Kubernetes source".
//!
//! The other way round, [`root_cert`] writes the mesh's roots into every namespace (istiod's
//! `istio-ca-root-cert` ConfigMap), and [`token_review`] checks the tokens sidecars send with
//! their certificate requests.

pub mod kinds;
pub mod nodes;
pub mod root_cert;
mod run;
pub mod token_review;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::Snapshot;

/// Objects as the snapshot reads them: `(name, object)`, in snapshot order.
pub type NamedObjects = Vec<(String, serde_json::Value)>;

/// How to reach the API server and how patiently to watch it.
#[derive(Clone, Debug)]
pub struct KubeSourceConfig {
    /// A kubeconfig file; `None`: what kube infers (`$KUBECONFIG`, `~/.kube/config`, else
    /// in-cluster).
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context; `None`: its current context.
    pub context: Option<String>,
    /// How often a kind whose CRD is not installed is looked for again.
    pub crd_retry: Duration,
    /// First wait after a failed request; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// The watch requests' `timeoutSeconds` (`None`: kube's 290 s).
    pub watch_timeout_secs: Option<u32>,
}

impl Default for KubeSourceConfig {
    fn default() -> Self {
        KubeSourceConfig {
            kubeconfig: None,
            context: None,
            crd_retry: Duration::from_secs(30),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(10),
            watch_timeout_secs: None,
        }
    }
}

/// Why the source could not start.
#[derive(Debug, thiserror::Error)]
pub enum KubeSourceError {
    #[error("cannot read the kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("no Kubernetes configuration found (no kubeconfig, not in a cluster): {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("cannot make a Kubernetes client: {0}")]
    Client(#[from] kube::Error),
    #[error("cannot start the Kubernetes source's runtime: {0}")]
    Runtime(#[from] std::io::Error),
    #[error("the Kubernetes source's thread ended while starting")]
    Ended,
}

/// What the source has seen so far (for logs, `trellis control`'s status and tests).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KubeStatus {
    /// Kinds not served (CRD not installed, or forbidden).
    pub missing: BTreeSet<String>,
    /// Kind → the `apiVersion` watched.
    pub watching: BTreeMap<String, String>,
    /// Whether the last request to the API server got an answer.
    pub connected: bool,
    /// Completed lists (initial ones, and relists after `410 Gone` or a reconnection).
    pub lists: u64,
    /// Watches ended by `410 Gone`.
    pub gone: u64,
    /// Failed requests (API server unreachable or erroring).
    pub failures: u64,
    /// Snapshots handed out.
    pub snapshots: u64,
}

/// What the tokio side shares with the caller's side.
struct Shared {
    inner: Mutex<Published>,
    changed: Condvar,
}

#[derive(Default)]
struct Published {
    latest: Option<Snapshot>,
    /// The objects `latest` was read from, `(name, object)`.
    objects: Arc<NamedObjects>,
    generation: u64,
    status: KubeStatus,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Published> {
        // A panic elsewhere while holding the lock leaves consistent data (plain fields).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn status(&self) -> StatusGuard<'_> {
        StatusGuard(self.lock())
    }

    fn publish(&self, snapshot: Snapshot, objects: NamedObjects) {
        let mut inner = self.lock();
        inner.latest = Some(snapshot);
        inner.objects = Arc::new(objects);
        inner.generation += 1;
        inner.status.snapshots += 1;
        self.changed.notify_all();
    }
}

/// The status, borrowed under the lock.
struct StatusGuard<'a>(MutexGuard<'a, Published>);

impl std::ops::Deref for StatusGuard<'_> {
    type Target = KubeStatus;
    fn deref(&self) -> &KubeStatus {
        &self.0.status
    }
}

impl std::ops::DerefMut for StatusGuard<'_> {
    fn deref_mut(&mut self) -> &mut KubeStatus {
        &mut self.0.status
    }
}

/// A running Kubernetes source.
pub struct KubeSource {
    shared: Arc<Shared>,
    seen: u64,
    /// Dropped with the source: the runtime thread stops.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl std::fmt::Debug for KubeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSource")
            .field("seen", &self.seen)
            .field("status", &self.status())
            .finish()
    }
}

impl KubeSource {
    /// Read the configuration, make the client and start watching. Fails only when there is
    /// no usable configuration: an API server that does not answer yet is waited for.
    pub fn start(config: KubeSourceConfig) -> Result<KubeSource, KubeSourceError> {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Published::default()),
            changed: Condvar::new(),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("kube-source".to_string())
            .spawn(move || {
                runtime.block_on(async move {
                    let client = match client(&config).await {
                        Ok(client) => {
                            let _ = started_tx.send(Ok(()));
                            client
                        }
                        Err(e) => {
                            let _ = started_tx.send(Err(e));
                            return;
                        }
                    };
                    tokio::select! {
                        _ = run::run(client, config, thread_shared) => {}
                        _ = stop_rx => {}
                    }
                });
            })?;
        started_rx.recv().map_err(|_| KubeSourceError::Ended)??;
        Ok(KubeSource {
            shared,
            seen: 0,
            _stop: stop_tx,
        })
    }

    /// The newest snapshot when there is one this caller has not had yet (the first comes once
    /// every kind has been listed), `None` when not. Never blocks.
    pub fn poll(&mut self) -> Option<Snapshot> {
        let inner = self.shared.lock();
        take(&mut self.seen, &inner)
    }

    /// [`KubeSource::poll`], waiting up to `timeout` for a new snapshot.
    pub fn wait(&mut self, timeout: Duration) -> Option<Snapshot> {
        let deadline = Instant::now() + timeout;
        let shared = Arc::clone(&self.shared);
        let mut inner = shared.lock();
        while inner.generation == self.seen {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            inner = shared
                .changed
                .wait_timeout(inner, left)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        take(&mut self.seen, &inner)
    }

    /// The objects of the newest snapshot handed out or not, `(name, object)` in snapshot
    /// order, each as [`Snapshot::from_objects`] read it: for readers that want the documents
    /// themselves (`trellis analyze --kube` runs istioctl's analyzers over them).
    pub fn objects(&self) -> Arc<NamedObjects> {
        Arc::clone(&self.shared.lock().objects)
    }

    /// What the source has seen so far.
    pub fn status(&self) -> KubeStatus {
        self.shared.lock().status.clone()
    }
}

/// The newest snapshot when its generation is past `seen` (then `seen` moves up to it).
fn take(seen: &mut u64, inner: &Published) -> Option<Snapshot> {
    if inner.generation == *seen {
        return None;
    }
    *seen = inner.generation;
    inner.latest.clone()
}

/// A client from `config`'s kubeconfig, or the configuration kube infers.
async fn client(config: &KubeSourceConfig) -> Result<kube::Client, KubeSourceError> {
    use kube::config::{Config, KubeConfigOptions, Kubeconfig};
    let options = KubeConfigOptions {
        context: config.context.clone(),
        ..KubeConfigOptions::default()
    };
    let kube_config = match &config.kubeconfig {
        Some(path) => {
            Config::from_custom_kubeconfig(Kubeconfig::read_from(path)?, &options).await?
        }
        None if config.context.is_some() => Config::from_kubeconfig(&options).await?,
        None => Config::infer().await?,
    };
    Ok(kube::Client::try_from(kube_config)?)
}
