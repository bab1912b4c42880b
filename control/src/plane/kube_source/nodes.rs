//! The nodes' kubelet versions, for the injection webhook's `ENABLE_NATIVE_SIDECARS=auto`.
//!
//! istiod builds a Node informer when native sidecars are not disabled (`NewWebhook` in
//! pkg/kube/inject/webhook.go), keeping only what `DetectNativeSidecar` reads
//! (`kube.StripNodeUnusedFields`). The same here: kube's `watcher` (a list, then a watch; RBAC
//! `list` and `watch` on nodes, nothing else) reduced to name → `status.nodeInfo.kubeletVersion`
//! in a [`NodeVersionsView`] the webhook reads for each pod.
//!
//! Until the first list has completed the view is empty (`None`) and `auto` injects the
//! classic sidecar: an informer that has not synced would read as a cluster with no nodes,
//! which `DetectNativeSidecar` takes as "every node supports them". A relist (after
//! `410 Gone` or a reconnection) replaces the versions only once it is complete; while the API
//! server is unreachable the last versions are kept.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;

use super::{client, KubeSourceConfig, KubeSourceError};
use crate::inject::native::NodeVersions;

/// The versions as last listed and watched; `None` before the first list completed.
#[derive(Clone, Debug, Default)]
pub struct NodeVersionsView(Arc<RwLock<Option<NodeVersions>>>);

impl NodeVersionsView {
    pub fn get(&self) -> Option<NodeVersions> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set(&self, versions: Option<NodeVersions>) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = versions;
    }
}

/// One node as `DetectNativeSidecar` sees it: its name and kubelet version.
type Entry = (String, String);

fn entry(node: &Node) -> Option<Entry> {
    let name = node.metadata.name.clone()?;
    let version = node
        .status
        .as_ref()
        .and_then(|s| s.node_info.as_ref())
        .map(|i| i.kubelet_version.clone())
        .unwrap_or_default();
    Some((name, version))
}

/// The watcher's events folded into the versions (sans-IO, so it is tested without a cluster).
#[derive(Debug, Default)]
struct Tracker {
    /// The relist in progress.
    listing: Option<BTreeMap<String, String>>,
    current: Option<NodeVersions>,
}

impl Tracker {
    /// Apply one event; `true` when `current` changed.
    fn apply(&mut self, event: Event<Entry>) -> bool {
        match event {
            Event::Init => {
                self.listing = Some(BTreeMap::new());
                false
            }
            Event::InitApply((name, version)) => {
                self.listing
                    .get_or_insert_with(BTreeMap::new)
                    .insert(name, version);
                false
            }
            Event::InitDone => {
                let listed = NodeVersions(self.listing.take().unwrap_or_default());
                let changed = self.current.as_ref() != Some(&listed);
                self.current = Some(listed);
                changed
            }
            Event::Apply((name, version)) => {
                let current = self.current.get_or_insert_with(NodeVersions::default);
                current.0.insert(name, version.clone()) != Some(version)
            }
            Event::Delete((name, _)) => self
                .current
                .as_mut()
                .is_some_and(|c| c.0.remove(&name).is_some()),
        }
    }
}

/// Watches the nodes into a view.
pub struct NodeWatch {
    client: kube::Client,
}

impl NodeWatch {
    /// A client as the source makes one (call inside the runtime that will run it).
    pub async fn connect(config: &KubeSourceConfig) -> Result<Self, KubeSourceError> {
        Ok(NodeWatch {
            client: client(config).await?,
        })
    }

    /// Keep `view` current until the runtime stops; `report` hears of each failure (the
    /// watcher retries with backoff) and of each node count change.
    pub async fn run(self, view: NodeVersionsView, report: impl Fn(Result<usize, String>)) {
        let api: Api<Node> = Api::all(self.client);
        let events = watcher::watcher(api, watcher::Config::default()).default_backoff();
        let mut events = std::pin::pin!(events);
        let mut tracker = Tracker::default();
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    report(Err(error.to_string()));
                    continue;
                }
            };
            let mapped = match event {
                Event::Init => Event::Init,
                Event::InitDone => Event::InitDone,
                Event::InitApply(node) => match entry(&node) {
                    Some(e) => Event::InitApply(e),
                    None => continue,
                },
                Event::Apply(node) => match entry(&node) {
                    Some(e) => Event::Apply(e),
                    None => continue,
                },
                Event::Delete(node) => match entry(&node) {
                    Some(e) => Event::Delete(e),
                    None => continue,
                },
            };
            if tracker.apply(mapped) {
                view.set(tracker.current.clone());
                report(Ok(tracker.current.as_ref().map_or(0, |c| c.0.len())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, version: &str) -> Entry {
        (name.to_string(), version.to_string())
    }

    #[test]
    fn versions_appear_after_the_first_list_and_a_relist_replaces_them() {
        let mut t = Tracker::default();
        assert!(!t.apply(Event::Init));
        assert!(!t.apply(Event::InitApply(node("a", "v1.33.0"))));
        assert!(t.current.is_none(), "nothing before the list completes");
        assert!(t.apply(Event::InitDone));
        assert_eq!(t.current.as_ref().map(|c| c.0.len()), Some(1));
        assert!(t.apply(Event::Apply(node("b", "v1.30.2"))));
        assert!(!t.apply(Event::Apply(node("b", "v1.30.2"))), "unchanged");
        assert!(t.apply(Event::Delete(node("a", ""))));
        // A relist: the old versions stay until it completes, then only the listed remain.
        t.apply(Event::Init);
        t.apply(Event::InitApply(node("c", "v1.34.1")));
        assert!(t.current.as_ref().is_some_and(|c| c.0.contains_key("b")));
        assert!(t.apply(Event::InitDone));
        let current = t.current.expect("listed");
        assert_eq!(current.0.keys().collect::<Vec<_>>(), ["c"]);
    }
}
