//! The source's tokio side: one task per watched kind (find the served version, then kube's
//! `watcher` into a `reflector` store) and one loop that turns their notes into snapshots.
//!
//! - The first snapshot waits until every kind has listed (or is known to be absent), as
//!   istiod waits for its informers' `HasSynced`: a snapshot with the Services but not yet the
//!   VirtualServices would push wrong routes for a moment.
//! - After that, every batch of changes rebuilds the snapshot from all the stores through
//!   [`Snapshot::from_objects`], the directory source's own reading and derivation, and hands
//!   it out only when its digest changed.
//! - `410 Gone` (the resourceVersion was compacted) is handled by the watcher: it lists again,
//!   and the reflector replaces its store on `InitDone`, so objects missing from the relist
//!   are gone from the next snapshot. Until then the store keeps what it had.
//! - The API server going away: the watchers fail and retry with backoff; the stores keep their
//!   objects, so nothing is handed out and the last good snapshot keeps being served. The
//!   relist on reconnection brings the changes made meanwhile.
//! - A kind whose CRD is not installed (every version 404) or that RBAC forbids: warned once,
//!   looked for again every `crd_retry` (pilot's `crdWatcher.KnownOrCallback`,
//!   pkg/kube/kclient/crdwatcher.go, starts an informer when the CRD appears), and the other
//!   kinds go on.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::runtime::reflector::{self, store::Writer, Store};
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use tokio::sync::mpsc;

use super::kinds::{pruned, WatchedKind, KUBE_FILE, WATCHED};
use super::{KubeSourceConfig, NamedObjects, Shared};
use crate::plane::Snapshot;

/// What a kind's task tells the loop.
enum Note {
    /// Every version answered 404 (or 403): not installed, or not allowed.
    Missing { kind: usize, reason: String },
    /// Watching this version; its objects will be in `store`.
    Found {
        kind: usize,
        resource: ApiResource,
        store: Store<DynamicObject>,
    },
    /// A list (initial, or after `410 Gone` or a reconnection) completed.
    Synced(usize),
    /// An object was added, changed or deleted.
    Changed,
    /// The API server could not be reached or answered an error; the watcher retries.
    Failed {
        kind: usize,
        error: String,
        gone: bool,
    },
}

/// Where one kind stands.
enum KindState {
    Pending,
    Missing,
    Watching {
        resource: ApiResource,
        store: Store<DynamicObject>,
        synced: bool,
    },
}

/// Run until the receiver side of `shared` is gone (the process ends) or `shutdown` fires.
pub(super) async fn run(client: Client, config: KubeSourceConfig, shared: Arc<Shared>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    for (index, kind) in WATCHED.iter().enumerate() {
        tokio::spawn(watch_kind(
            client.clone(),
            index,
            *kind,
            tx.clone(),
            config.clone(),
        ));
    }
    drop(tx);
    let mut states: Vec<KindState> = WATCHED.iter().map(|_| KindState::Pending).collect();
    let mut published = false;
    let mut last_digest = None;
    let mut outage = false;
    let mut mesh = LastGoodMesh::default();
    while let Some(note) = rx.recv().await {
        let mut dirty = apply(note, &mut states, &shared, &mut outage);
        // A burst of events (a relist, `kubectl apply -f dir`) makes one snapshot.
        tokio::task::yield_now().await;
        while let Ok(note) = rx.try_recv() {
            dirty |= apply(note, &mut states, &shared, &mut outage);
        }
        let ready = states.iter().all(|s| match s {
            KindState::Pending => false,
            KindState::Missing => true,
            KindState::Watching { synced, .. } => *synced,
        });
        if !dirty || !(published || ready) {
            continue;
        }
        published = true;
        let objects = objects(&states);
        let snapshot = mesh.keep_last_good(Snapshot::from_objects(&objects));
        if last_digest == Some(snapshot.digest) {
            continue;
        }
        last_digest = Some(snapshot.digest);
        tracing::info!(
            digest = format!("{:016x}", snapshot.digest),
            services = snapshot.registry.services.len(),
            workloads = snapshot.workloads.len(),
            "new snapshot from the Kubernetes API"
        );
        shared.publish(snapshot, objects);
    }
}

/// The mesh config last read from the `istio` ConfigMap that could be read. An object the
/// snapshot cannot read is left out of it (see [`Snapshot::from_objects`]), which for the mesh
/// config would mean Istio's defaults: instead, as the directory source and `--meshConfig`
/// keep their last good mesh config, a refused ConfigMap is logged and the last good settings
/// stay: pilot's `NewCollection` (pkg/config/mesh/meshwatcher/collection.go) logs "invalid
/// mesh config, using last known state" and discards the result. pilot watches the ConfigMap
/// with a `metadata.name` field selector in its namespace (`NewConfigMapSource`,
/// pkg/config/mesh/kubemesh/watcher.go), as [`super::kinds::WatchedKind::only`] does.
#[derive(Default)]
struct LastGoodMesh {
    settings: crate::plane::mesh_settings::MeshSettings,
    /// The refusal logged last, so that it is logged once.
    refused: Option<String>,
}

impl LastGoodMesh {
    fn keep_last_good(&mut self, snapshot: Snapshot) -> Snapshot {
        match &snapshot.mesh_refused {
            Some(error) => {
                if self.refused.as_ref() != Some(error) {
                    tracing::error!(
                        "mesh config (ConfigMap istio-system/istio) refused, the last good one is still served: {error}"
                    );
                    self.refused = Some(error.clone());
                }
                let settings = self.settings.clone();
                snapshot.with_mesh(&settings)
            }
            None => {
                self.refused = None;
                if snapshot.mesh != self.settings {
                    tracing::info!(settings = ?snapshot.mesh, "mesh config changed");
                    self.settings = snapshot.mesh.clone();
                }
                snapshot
            }
        }
    }
}

/// Record one note; whether the stores' content may have changed.
fn apply(note: Note, states: &mut [KindState], shared: &Shared, outage: &mut bool) -> bool {
    let mut status = shared.status();
    let back = |status: &mut super::KubeStatus, outage: &mut bool| {
        if *outage {
            tracing::info!("the Kubernetes API server answers again");
            *outage = false;
        }
        status.connected = true;
    };
    match note {
        Note::Missing { kind, reason } => {
            let name = WATCHED[kind].kind;
            tracing::warn!(
                kind = name,
                "{reason}; watching the other kinds and looking for it again later"
            );
            status.missing.insert(name.to_string());
            states[kind] = KindState::Missing;
            true
        }
        Note::Found {
            kind,
            resource,
            store,
        } => {
            let name = WATCHED[kind].kind;
            if status.missing.remove(name) {
                tracing::info!(kind = name, "now served; watching it");
            }
            status
                .watching
                .insert(name.to_string(), resource.api_version.clone());
            states[kind] = KindState::Watching {
                resource,
                store,
                synced: false,
            };
            false
        }
        Note::Synced(kind) => {
            back(&mut status, outage);
            status.lists += 1;
            if let KindState::Watching { synced, .. } = &mut states[kind] {
                *synced = true;
            }
            true
        }
        Note::Changed => {
            back(&mut status, outage);
            true
        }
        Note::Failed { kind, error, gone } => {
            if gone {
                status.gone += 1;
                tracing::info!(
                    kind = WATCHED[kind].kind,
                    "resourceVersion too old (410 Gone); listing again"
                );
                return false;
            }
            status.failures += 1;
            status.connected = false;
            if !*outage {
                *outage = true;
                tracing::warn!(
                    kind = WATCHED[kind].kind,
                    %error,
                    "lost the Kubernetes API server; serving the last good snapshot and retrying"
                );
            }
            false
        }
    }
}

/// Every store's objects as the snapshot reads them ([`pruned`]), kinds in [`WATCHED`] order and
/// each kind by namespace and name.
fn objects(states: &[KindState]) -> NamedObjects {
    let mut objects = Vec::new();
    for state in states {
        let KindState::Watching {
            resource, store, ..
        } = state
        else {
            continue;
        };
        let mut items: Vec<(String, String, serde_json::Value)> = store
            .state()
            .iter()
            .map(|o| {
                (
                    o.metadata.namespace.clone().unwrap_or_default(),
                    o.metadata.name.clone().unwrap_or_default(),
                    pruned(resource, o),
                )
            })
            .collect();
        items.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        objects.extend(
            items
                .into_iter()
                .map(|(_, _, value)| (KUBE_FILE.to_string(), value)),
        );
    }
    objects
}

/// One kind: find the version served, then watch it into a store for as long as the loop runs.
async fn watch_kind(
    client: Client,
    index: usize,
    kind: WatchedKind,
    tx: mpsc::UnboundedSender<Note>,
    config: KubeSourceConfig,
) {
    let Some(resource) = served_version(&client, index, kind, &tx, &config).await else {
        return;
    };
    let writer = Writer::new(resource.clone());
    let store = writer.as_reader();
    let found = Note::Found {
        kind: index,
        resource: resource.clone(),
        store,
    };
    if tx.send(found).is_err() {
        return;
    }
    let api = kind.api(client, &resource);
    let mut watch_config = watcher::Config::default();
    if let Some(timeout) = config.watch_timeout_secs {
        watch_config = watch_config.timeout(timeout);
    }
    if let Some(fields) = kind.field_selector() {
        watch_config = watch_config.fields(&fields);
    }
    let events = watcher::watcher(api, watch_config)
        // Managed fields are often most of an object's size, and never read (see `pruned`).
        .modify(|object| object.metadata.managed_fields = None)
        .backoff(CappedBackoff::new(&config));
    let mut events = std::pin::pin!(reflector::reflector(writer, events));
    while let Some(event) = events.next().await {
        let note = match event {
            Ok(Event::InitDone) => Note::Synced(index),
            Ok(Event::Apply(_) | Event::Delete(_)) => Note::Changed,
            Ok(Event::Init | Event::InitApply(_)) => continue,
            Err(error) => Note::Failed {
                kind: index,
                gone: matches!(&error, watcher::Error::WatchError(s) if s.code == 410),
                error: error.to_string(),
            },
        };
        if tx.send(note).is_err() {
            return;
        }
    }
}

/// The first of `kind`'s versions the API server serves, waiting as long as it takes; `None`
/// when the loop is gone.
async fn served_version(
    client: &Client,
    index: usize,
    kind: WatchedKind,
    tx: &mpsc::UnboundedSender<Note>,
    config: &KubeSourceConfig,
) -> Option<ApiResource> {
    let mut reported_missing = false;
    let mut backoff = CappedBackoff::new(config);
    loop {
        let mut absent = Vec::new();
        let mut failure = None;
        for version in kind.versions {
            let resource = kind.api_resource(version);
            let api = kind.api(client.clone(), &resource);
            let mut params = ListParams::default().limit(1);
            if let Some(fields) = kind.field_selector() {
                params = params.fields(&fields);
            }
            match api.list(&params).await {
                Ok(_) => return Some(resource),
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    absent.push(resource.api_version);
                }
                Err(kube::Error::Api(status)) if status.code == 403 => {
                    absent.push(format!(
                        "{} (forbidden: {})",
                        resource.api_version, status.message
                    ));
                }
                Err(error) => {
                    failure = Some(error.to_string());
                    break;
                }
            }
        }
        let wait = match failure {
            Some(error) => {
                let note = Note::Failed {
                    kind: index,
                    error,
                    gone: false,
                };
                tx.send(note).ok()?;
                backoff.next().unwrap_or(config.backoff_max)
            }
            None => {
                backoff.reset();
                if !reported_missing {
                    reported_missing = true;
                    let what = if kind.custom {
                        "CRD not installed"
                    } else {
                        "not served"
                    };
                    let reason = format!(
                        "{} {what}: no {} {}",
                        kind.kind,
                        absent.join(", "),
                        kind.plural
                    );
                    tx.send(Note::Missing {
                        kind: index,
                        reason,
                    })
                    .ok()?;
                }
                config.crd_retry
            }
        };
        if tx.is_closed() {
            return None;
        }
        tokio::time::sleep(wait).await;
    }
}

/// Exponential backoff from `backoff_min` doubling to `backoff_max`, reset by the watcher
/// after a success (kube's default starts at 800 ms and caps at 30 s; tests want it short).
struct CappedBackoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl CappedBackoff {
    fn new(config: &KubeSourceConfig) -> Self {
        CappedBackoff {
            min: config.backoff_min,
            max: config.backoff_max,
            next: config.backoff_min,
        }
    }
}

impl Iterator for CappedBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (self.next * 2).min(self.max);
        Some(now)
    }
}

impl Backoff for CappedBackoff {
    fn reset(&mut self) {
        self.next = self.min;
    }
}
