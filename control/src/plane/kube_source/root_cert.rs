//! The mesh's roots in every namespace: the ConfigMap `istio-ca-root-cert` (key
//! `root-cert.pem`) that injected sidecars mount to check the control plane's certificate, as
//! istiod writes it (pilot/pkg/serviceregistry/kube/controller/namespacecontroller.go,
//! `reconcileCACertAndCRL`, through security/pkg/k8s/configutil.go `InsertDataToConfigMap`):
//! created where missing, its `root-cert.pem` replaced where it differs (other keys left
//! alone), labelled `istio.io/config: "true"`, and not written into Kubernetes' own
//! namespaces (`inject.IgnoredNamespaces`) nor into a namespace being deleted.
//!
//! istiod reacts to namespace and ConfigMap events through informers; here one pass lists the
//! namespaces and reconciles each, run whenever the roots change (a root rotation) and every
//! `resync` otherwise, so a new namespace or an edited or deleted ConfigMap is repaired within
//! one period (a pod that mounts the ConfigMap before it exists waits in ContainerCreating,
//! and kubelet retries).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use tokio::sync::watch;

use super::{client, KubeSourceConfig, KubeSourceError};

/// Istio's ConfigMap name (`features.CACertConfigMapName`).
pub const CONFIGMAP: &str = "istio-ca-root-cert";
/// Istio's data key (`constants.CACertNamespaceConfigMapDataName`).
pub const KEY: &str = "root-cert.pem";
/// Kubernetes' namespaces, skipped as istiod skips them (pkg/kube/inject/initializer.go).
pub const IGNORED_NAMESPACES: [&str; 4] = [
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "local-path-storage",
];

/// What one namespace needs.
#[derive(Clone, Debug, PartialEq)]
pub enum Upsert {
    Create(ConfigMap),
    /// The existing ConfigMap with `root-cert.pem` replaced (its resourceVersion kept, so a
    /// concurrent edit makes the update fail and the next pass try again).
    Update(ConfigMap),
    Nothing,
}

/// What `namespace` needs so that its ConfigMap holds `bundle`, given the one it has.
pub fn upsert(namespace: &str, existing: Option<&ConfigMap>, bundle: &str) -> Upsert {
    match existing {
        None => Upsert::Create(ConfigMap {
            metadata: ObjectMeta {
                name: Some(CONFIGMAP.to_string()),
                namespace: Some(namespace.to_string()),
                labels: Some(BTreeMap::from([(
                    "istio.io/config".to_string(),
                    "true".to_string(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(KEY.to_string(), bundle.to_string())])),
            ..ConfigMap::default()
        }),
        Some(current) => {
            let held = current.data.as_ref().and_then(|d| d.get(KEY));
            if held.map(String::as_str) == Some(bundle) {
                return Upsert::Nothing;
            }
            let mut updated = current.clone();
            updated
                .data
                .get_or_insert_with(BTreeMap::new)
                .insert(KEY.to_string(), bundle.to_string());
            Upsert::Update(updated)
        }
    }
}

/// Whether a namespace gets the ConfigMap: not Kubernetes' own, not terminating.
pub fn wanted(namespace: &Namespace) -> Option<&str> {
    let name = namespace.metadata.name.as_deref()?;
    let terminating =
        namespace.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    (!terminating && !IGNORED_NAMESPACES.contains(&name)).then_some(name)
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    /// `(namespace, error)`: retried on the next pass.
    pub failed: Vec<(String, String)>,
}

/// Writes the roots into every namespace.
pub struct RootCertPublisher {
    client: kube::Client,
}

impl RootCertPublisher {
    /// A client as the source makes one (call inside the runtime that will run it).
    pub async fn connect(config: &KubeSourceConfig) -> Result<Self, KubeSourceError> {
        Ok(RootCertPublisher {
            client: client(config).await?,
        })
    }

    /// One pass over every namespace. `Err`: the namespaces could not be listed.
    pub async fn reconcile(&self, bundle: &str) -> Result<PassReport, kube::Error> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let mut report = PassReport::default();
        for namespace in namespaces.list(&ListParams::default()).await? {
            let Some(name) = wanted(&namespace) else {
                continue;
            };
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), name);
            let written = match api.get_opt(CONFIGMAP).await {
                Ok(existing) => match upsert(name, existing.as_ref(), bundle) {
                    Upsert::Create(cm) => api
                        .create(&PostParams::default(), &cm)
                        .await
                        .map(|_| report.created.push(name.to_string())),
                    Upsert::Update(cm) => api
                        .replace(CONFIGMAP, &PostParams::default(), &cm)
                        .await
                        .map(|_| report.updated.push(name.to_string())),
                    Upsert::Nothing => Ok(()),
                },
                Err(e) => Err(e),
            };
            match written {
                Ok(()) => {}
                // Created between our read and write, or the namespace went away: the next
                // pass sees the new state (istiod skips these too).
                Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => {}
                Err(e) => report.failed.push((name.to_string(), e.to_string())),
            }
        }
        Ok(report)
    }

    /// Reconcile now, whenever `bundle` changes, and every `resync`, until `bundle`'s sender
    /// is gone. Each pass's outcome goes to `report` (`Err`: why the namespaces could not be
    /// listed; the next pass comes after `resync`).
    pub async fn run(
        self,
        mut bundle: watch::Receiver<String>,
        resync: Duration,
        mut report: impl FnMut(Result<PassReport, String>),
    ) {
        loop {
            let roots = bundle.borrow_and_update().clone();
            report(self.reconcile(&roots).await.map_err(|e| e.to_string()));
            tokio::select! {
                changed = bundle.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(resync) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NamespaceStatus;

    #[test]
    fn created_when_missing_updated_when_different_left_alone_when_equal() {
        let Upsert::Create(created) = upsert("shop", None, "ROOT") else {
            panic!("a missing ConfigMap is created");
        };
        assert_eq!(created.metadata.name.as_deref(), Some(CONFIGMAP));
        assert_eq!(created.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(
            created.metadata.labels.as_ref().unwrap()["istio.io/config"],
            "true"
        );
        assert_eq!(created.data.as_ref().unwrap()[KEY], "ROOT");
        assert_eq!(upsert("shop", Some(&created), "ROOT"), Upsert::Nothing);
        // Another key someone added stays (Istio's `insertData` merges).
        let mut edited = created.clone();
        edited
            .data
            .as_mut()
            .unwrap()
            .insert("extra".into(), "kept".into());
        let Upsert::Update(updated) = upsert("shop", Some(&edited), "NEW") else {
            panic!("a different root is replaced");
        };
        assert_eq!(updated.data.as_ref().unwrap()[KEY], "NEW");
        assert_eq!(updated.data.as_ref().unwrap()["extra"], "kept");
        let mut emptied = created;
        emptied.data = None;
        assert!(matches!(
            upsert("shop", Some(&emptied), "ROOT"),
            Upsert::Update(_)
        ));
    }

    #[test]
    fn kubernetes_namespaces_and_terminating_ones_are_skipped() {
        let ns = |name: &str, phase: Option<&str>| Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            status: phase.map(|p| NamespaceStatus {
                phase: Some(p.into()),
                ..NamespaceStatus::default()
            }),
            ..Namespace::default()
        };
        assert_eq!(wanted(&ns("shop", Some("Active"))), Some("shop"));
        assert_eq!(wanted(&ns("default", None)), Some("default"));
        assert_eq!(wanted(&ns("kube-system", None)), None);
        assert_eq!(wanted(&ns("going", Some("Terminating"))), None);
    }
}
