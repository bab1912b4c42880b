//! A snapshot of the mesh as a directory of YAML describes it: the Istio resources, the
//! service registry and the workloads derived from the Kubernetes objects beside them.
//!
//! A snapshot is a pure function of the files' names and contents ([`Snapshot::from_files`]),
//! so the same directory always gives the same snapshot and the same [`Snapshot::digest`];
//! reading the disk ([`Snapshot::read_dir`]) and noticing changes (`super::watch`) are kept
//! apart from it. Each Istio resource is also kept as written (`documents`), because what a
//! sidecar receives is its share of these documents, not a translated engine config
//! (see RESEARCH.md, "Control plane: wire format and scoping").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::kube::{is_kube_kind, KubeObjects};
use super::services::derive_registry;
use super::workloads::{workload_instances, WorkloadInstance};
use crate::diag::{ConfigError, Diagnostic};
use crate::istio::loader::{read_document as read_istio_document, strip_location};
use crate::istio::{ResourceSet, Source, DEFAULT_NAMESPACE};
use crate::translate::Registry;

use super::mesh_settings::{read_config_map, MeshSettings, MESH_CONFIG_MAP};

/// Everything the control plane knows at one point.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Istio resources, typed (as `translate` reads them).
    pub resources: ResourceSet,
    /// Each Istio resource as written, by its source.
    pub documents: BTreeMap<Source, serde_json::Value>,
    pub kube: KubeObjects,
    pub registry: Registry,
    pub workloads: Vec<WorkloadInstance>,
    /// The MeshConfig fields sidecars get: from the `istio` ConfigMap of `istio-system` when
    /// the source has one, else Istio's defaults (`trellis control --meshConfig` replaces
    /// them: [`Snapshot::with_mesh`]).
    pub mesh: MeshSettings,
    /// Why the `istio` ConfigMap's mesh config was refused, when [`Snapshot::from_objects`]
    /// left it out (`mesh` is then Istio's defaults: the Kubernetes source puts its last good
    /// mesh config back, `kube_source::run`). A directory's snapshot fails instead.
    pub mesh_refused: Option<String>,
    /// What reading and deriving noticed (unknown fields, unresolved ports ...).
    pub diagnostics: Vec<Diagnostic>,
    /// FNV-1a of every file name and content, in order: equal digests, equal snapshots.
    pub digest: u64,
}

impl Snapshot {
    /// Read every `*.yaml` / `*.yml` file under `dir`, recursively, in path order.
    pub fn read_dir(dir: &Path) -> Result<Snapshot, ConfigError> {
        let mut files = Vec::new();
        for path in yaml_files(dir)? {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io {
                path: path.clone(),
                source,
            })?;
            files.push((path.display().to_string(), text));
        }
        Snapshot::from_files(&files)
    }

    /// The snapshot of these `(file name, YAML text)` pairs, in the order given. Fails on the
    /// first document that cannot be read (bad YAML, a wrong type): the caller keeps its last
    /// good snapshot.
    pub fn from_files(files: &[(String, String)]) -> Result<Snapshot, ConfigError> {
        let mut snap = Snapshot::default();
        let mut digest = Fnv::default();
        for (file, text) in files {
            digest.write_entry(file, text);
            snap.read_file(file, text)?;
        }
        snap.digest = digest.0;
        Ok(snap.derived())
    }

    /// The snapshot of objects already parsed, each `(name, object)` in the order given: the
    /// Kubernetes source's stores (`super::kube_source`). Each object goes through the same
    /// reading as a document of a file ([`Snapshot::from_files`] of `(name, compact JSON)`
    /// gives an equal snapshot, digest included), except that an object that cannot be read is
    /// left out with an error diagnostic instead of failing the whole snapshot: an API server
    /// has already admitted it, and one bad object must not freeze the mesh (as pilot's
    /// informers drop an object they cannot decode).
    pub fn from_objects(objects: &[(String, serde_json::Value)]) -> Snapshot {
        let mut snap = Snapshot::default();
        let mut digest = Fnv::default();
        for (name, object) in objects {
            digest.write_entry(name, &object.to_string());
            let read = serde_yaml::to_value(object)
                .map_err(|e| ConfigError::Syntax {
                    file: name.clone(),
                    line: None,
                    message: e.to_string(),
                })
                .and_then(|value| snap.read_document(name, 0, value.clone(), &value));
            if let Err(error) = read {
                snap.diagnostics
                    .push(Diagnostic::error(format!("left out: {error}")).file(name.clone()));
            }
        }
        snap.digest = digest.0;
        snap.derived()
    }

    /// Derive the workloads and the registry from the Kubernetes objects read.
    fn derived(mut self) -> Snapshot {
        let mut diagnostics = std::mem::take(&mut self.diagnostics);
        self.workloads = workload_instances(&self.kube, &mut diagnostics);
        self.registry = derive_registry(&self.kube, &self.workloads, &mut diagnostics);
        check_service_accounts(&self.kube, &self.workloads, &mut diagnostics);
        self.diagnostics = diagnostics;
        self
    }

    fn read_file(&mut self, file: &str, text: &str) -> Result<(), ConfigError> {
        let untyped = serde_yaml::Deserializer::from_str(text);
        let typed = serde_yaml::Deserializer::from_str(text);
        for (index, (untyped_doc, typed_doc)) in untyped.zip(typed).enumerate() {
            let value =
                serde_yaml::Value::deserialize(untyped_doc).map_err(|e| ConfigError::Syntax {
                    file: file.to_string(),
                    line: e.location().map(|l| l.line()),
                    message: strip_location(&e.to_string()),
                })?;
            self.read_document(file, index, value, typed_doc)?;
        }
        Ok(())
    }

    /// Read one document (`value`; `typed` is the same document as a deserializer: the YAML
    /// text, which knows lines, or the value): a Kubernetes kind into `kube`, anything else
    /// through the Istio loader (which reads Istio kinds and notes what it skips). Either the
    /// whole document is read or nothing of it is kept.
    fn read_document<'de, D>(
        &mut self,
        file: &str,
        index: usize,
        value: serde_yaml::Value,
        typed: D,
    ) -> Result<(), ConfigError>
    where
        D: serde::Deserializer<'de, Error = serde_yaml::Error>,
    {
        if value.is_null() {
            return Ok(());
        }
        let str_at = |path: &[&str]| -> Option<String> {
            let mut v = &value;
            for key in path {
                v = v.get(*key)?;
            }
            v.as_str().map(str::to_string)
        };
        let source = |kind: &str| Source {
            file: file.to_string(),
            kind: kind.to_string(),
            namespace: str_at(&["metadata", "namespace"])
                .filter(|ns| !ns.is_empty())
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
            name: str_at(&["metadata", "name"]).unwrap_or_else(|| format!("<document {index}>")),
        };
        let api_version = str_at(&["apiVersion"]).unwrap_or_default();
        let kind = str_at(&["kind"]).unwrap_or_default();
        let (mesh_ns, mesh_name) = MESH_CONFIG_MAP;
        if (api_version.as_str(), kind.as_str()) == ("v1", "ConfigMap")
            && str_at(&["metadata", "namespace"]).as_deref() == Some(mesh_ns)
            && str_at(&["metadata", "name"]).as_deref() == Some(mesh_name)
        {
            // pilot's mesh config (the `mesh` key); a broken one fails the snapshot, so the
            // last good one keeps serving.
            match read_config_map(&value, file) {
                Ok(mesh) => self.mesh = mesh,
                Err(error) => {
                    self.mesh_refused = Some(error.to_string());
                    return Err(error);
                }
            }
            return Ok(());
        }
        if is_kube_kind(&api_version, &kind) {
            let source = source(&kind);
            return self
                .kube
                .read_document(value, source, &mut self.diagnostics);
        }
        let mut istio = ResourceSet::default();
        read_istio_document(&value, typed, file, index, &mut istio)?;
        if api_version.contains(".istio.io/") {
            let source = source(&kind);
            let json = serde_json::to_value(&value).map_err(|e| ConfigError::Invalid {
                file: file.to_string(),
                line: None,
                resource: source.to_string(),
                field: String::new(),
                message: format!("cannot be carried as JSON: {e}"),
            })?;
            self.documents.insert(source, json);
        }
        self.resources.extend(istio);
        Ok(())
    }

    /// This snapshot with `mesh` as its mesh config (`trellis control --meshConfig`, which
    /// wins over a ConfigMap, or the last good one in place of a refused ConfigMap), mixed into
    /// the digest so that a change of it is a change.
    pub fn with_mesh(mut self, mesh: &MeshSettings) -> Snapshot {
        let mut digest = Fnv(self.digest);
        digest.write_entry("--meshConfig", &format!("{mesh:?}"));
        self.digest = digest.0;
        self.mesh = mesh.clone();
        self
    }

    /// The workload instance named `name` in `namespace` (a Pod, a Deployment's replica
    /// `<deployment>-<i>`, or a Deployment without addresses).
    pub fn workload(&self, namespace: &str, name: &str) -> Option<&WorkloadInstance> {
        self.workloads
            .iter()
            .find(|w| w.workload.namespace == namespace && w.name == name)
    }
}

/// Kubernetes' ServiceAccount admission refuses a pod naming an account that does not exist;
/// say so when the directory declares accounts but not that one.
fn check_service_accounts(
    kube: &KubeObjects,
    workloads: &[WorkloadInstance],
    diagnostics: &mut Vec<Diagnostic>,
) {
    if kube.service_accounts.is_empty() {
        return;
    }
    for w in workloads {
        let sa = &w.workload.service_account;
        let declared = sa == "default"
            || kube
                .service_accounts
                .iter()
                .any(|a| &a.source.name == sa && a.source.namespace == w.workload.namespace);
        if !declared {
            diagnostics.push(
                Diagnostic::warning(format!(
                    "service account {sa:?} is not declared in namespace {}; Kubernetes would refuse this pod",
                    w.workload.namespace
                ))
                .file(w.source.file.clone())
                .resource(w.source.to_string()),
            );
        }
    }
}

/// Every YAML file under `dir`, recursively, sorted.
pub fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let io_err = |source| ConfigError::Io {
            path: d.clone(),
            source,
        };
        for entry in std::fs::read_dir(&d).map_err(io_err)? {
            let path = entry.map_err(io_err)?.path();
            if path.is_dir() {
                pending.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml") | Some("yml")
            ) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

impl Snapshot {
    /// This snapshot with `answers` as its DNS answers (`crate::dns`), and a digest that
    /// covers them, so that a name that moves is pushed like an edited file.
    pub fn with_dns(mut self, answers: crate::dns::DnsAnswers) -> Snapshot {
        if answers.is_empty() {
            return self;
        }
        let mut digest = Fnv(self.digest);
        for (name, addresses) in &answers {
            digest.write(name.as_bytes());
            for a in addresses {
                digest.write(a.to_string().as_bytes());
                digest.write(b",");
            }
            digest.write(b";");
        }
        self.digest = digest.0;
        self.registry.dns = answers;
        self
    }
}

/// 64-bit FNV-1a: stable across runs and Rust versions (unlike `DefaultHasher`).
#[derive(Clone, Copy, Debug)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// One named entry (a file, an object): name and content, each closed by a zero byte.
    pub fn write_entry(&mut self, name: &str, content: &str) {
        self.write(name.as_bytes());
        self.write(&[0]);
        self.write(content.as_bytes());
        self.write(&[0]);
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}
