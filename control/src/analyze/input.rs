//! What the analyzer reads: every YAML document under a directory, one document at a time.
//!
//! Documents are split on `---` lines and handed to the Istio loader one by one, so a document
//! the loader refuses (bad YAML, a wrong type, an unknown enum value) becomes an IST0106 message
//! about that document and the others are still analyzed, as `istioctl analyze` does. Splitting
//! ourselves also gives each resource the line it starts on, which istioctl prints as
//! `file:line`. Kubernetes `Service`s are read as the service registry, and the pod labels of
//! `Pod`s and workload controllers (`Deployment`, `StatefulSet` ...) as the workloads that
//! selectors can match; every document is also kept whole (see [`super::object`]). As in
//! `istioctl analyze`, objects in Kubernetes' system namespaces are left out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::mesh_config::Mesh;
use super::message::{schema_error, schema_warning, Message};
use super::object::{scalar_text, seq_at, str_at, string_map, Object};
use crate::diag::{ConfigError, Severity};
use crate::istio::{parse_str, ResourceSet, Source, DEFAULT_NAMESPACE};

/// A Kubernetes `Service` (the part analyzers need).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KubeService {
    /// Where it was read (kind `Service`).
    #[serde(skip)]
    pub source: Source,
    pub name: String,
    pub namespace: String,
    pub ports: Vec<KubeServicePort>,
    pub selector: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// `spec.type` (`ClusterIP` when absent).
    pub service_type: String,
    pub labels: BTreeMap<String, String>,
}

/// One `spec.ports[]` entry of a Service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KubeServicePort {
    pub name: String,
    pub port: u32,
    pub protocol: String,
    /// `targetPort` as written (a number or a port name; empty when absent).
    pub target_port: String,
    pub app_protocol: Option<String>,
}

/// Pods (or a controller's pod template): where workload selectors can find labels.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Workload {
    pub kind: String,
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// The pod's annotations (a controller's: its template's).
    pub annotations: BTreeMap<String, String>,
    /// Names of its containers and init containers that have an image.
    pub containers: Vec<String>,
    /// `spec.nodeName` (empty when not scheduled, and for pod templates).
    pub node_name: String,
}

/// Everything read for one analysis.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub resources: ResourceSet,
    pub services: Vec<KubeService>,
    pub workloads: Vec<Workload>,
    /// The line each resource starts on (1-based), for istioctl's `file:line` reference.
    pub lines: BTreeMap<Source, usize>,
    /// Every document as read, Istio kinds included, for checks that need more than the typed
    /// model keeps.
    pub objects: Vec<Object>,
    /// Messages about the input itself: IST0106 for documents that could not be read, IST0133
    /// for unknown fields.
    pub messages: Vec<Message>,
    /// The mesh config and MeshNetworks (Istio's defaults unless set, see [`super::mesh_config`]).
    pub mesh: Mesh,
}

/// Namespaces `istioctl analyze` leaves out, as the injector does (`pkg/kube/inject`
/// `IgnoredNamespaces`): Kubernetes' own and Kind's storage provisioner.
const IGNORED_NAMESPACES: [&str; 4] = [
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "local-path-storage",
];

/// Controllers whose `spec.template.metadata.labels` are their pods' labels.
const WORKLOAD_CONTROLLERS: [&str; 5] = [
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
];

impl Inputs {
    /// Read every `*.yaml` / `*.yml` file under `dir`, recursively, in path order. Fails only
    /// when a directory or file cannot be read at all.
    pub fn read_dir(dir: &Path) -> Result<Inputs, ConfigError> {
        let mut files = Vec::new();
        collect_yaml_files(dir, &mut files)?;
        files.sort();
        let mut inputs = Inputs::default();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Io {
                path: file.clone(),
                source,
            })?;
            inputs.add_str(&text, &file.display().to_string());
        }
        Ok(inputs)
    }

    /// Read YAML text; `file` names it in references.
    pub fn read_str(text: &str, file: &str) -> Inputs {
        let mut inputs = Inputs::default();
        inputs.add_str(text, file);
        inputs
    }

    /// Add every document of `text`.
    pub fn add_str(&mut self, text: &str, file: &str) {
        for (start, doc) in split_documents(text) {
            self.add_document(&doc, start, file);
        }
    }

    /// Whether the input names any service (a Service or a ServiceEntry): without one, a
    /// destination host cannot be judged missing.
    pub fn has_registry(&self) -> bool {
        !self.services.is_empty() || !self.resources.service_entries.is_empty()
    }

    /// `file:line` for a resource.
    pub fn reference(&self, source: &Source) -> String {
        match self.lines.get(source) {
            Some(line) => format!("{}:{line}", source.file),
            None => source.file.clone(),
        }
    }

    /// The pods selectors are judged against: the `Pod`s when the input has any (a cluster's
    /// state), else the pod templates of workload controllers (a directory of manifests).
    pub fn pods(&self) -> Vec<&Workload> {
        let pods: Vec<&Workload> = self.workloads.iter().filter(|w| w.kind == "Pod").collect();
        if pods.is_empty() {
            self.workloads.iter().collect()
        } else {
            pods
        }
    }

    /// Objects of `kind`.
    pub fn objects_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Object> + 'a {
        self.objects.iter().filter(move |o| o.kind() == kind)
    }

    /// Kubernetes objects of `kind` in the API group Istio's analyzers read it from (`v1` for
    /// Pods, Services, Namespaces, ConfigMaps and Secrets, `apps` for Deployments, ...), so a
    /// custom resource that reuses a kind name (Knative's `Service`) is not taken for it.
    pub fn kube_objects_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Object> + 'a {
        self.objects_of(kind).filter(move |o| {
            let v = o.api_version.as_str();
            match kind {
                "Pod" | "Service" | "Namespace" | "ConfigMap" | "Secret" => v == "v1",
                "Deployment" => v.starts_with("apps/"),
                "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => {
                    v.starts_with("admissionregistration.k8s.io/")
                }
                "CustomResourceDefinition" => v.starts_with("apiextensions.k8s.io/"),
                _ => true,
            }
        })
    }

    /// Attach `source` (as istioctl's origin and reference) to `m`.
    pub fn blame(&self, source: &Source, mut m: Message) -> Message {
        m.resource = Some(friendly_name(source));
        m.reference = Some(self.reference(source));
        m
    }

    fn add_document(&mut self, doc: &str, start: usize, file: &str) {
        let at = |line: usize| format!("{file}:{}", start + line.saturating_sub(1));
        let value: serde_yaml::Value = match serde_yaml::from_str(doc) {
            Ok(v) => v,
            Err(e) => {
                let mut m = schema_error(format!("invalid YAML: {}", strip_location(&e)));
                m.reference = Some(at(e.location().map_or(1, |l| l.line())));
                self.messages.push(m);
                return;
            }
        };
        if value.is_null() {
            return;
        }
        let kind = str_at(&value, &["kind"]).unwrap_or_default().to_string();
        if kind == "List" {
            // `kubectl get -o yaml` output: read each item as its own document.
            for item in seq_at(&value, &["items"]) {
                if let Ok(text) = serde_yaml::to_string(item) {
                    self.add_document(&text, start, file);
                }
            }
            return;
        }
        let api_version = str_at(&value, &["apiVersion"]).unwrap_or_default();
        let source = Source {
            file: file.to_string(),
            kind: kind.clone(),
            namespace: str_at(&value, &["metadata", "namespace"])
                .filter(|ns| !ns.is_empty())
                .unwrap_or(DEFAULT_NAMESPACE)
                .to_string(),
            name: str_at(&value, &["metadata", "name"])
                .unwrap_or("<unnamed>")
                .to_string(),
        };
        let own_namespace = if kind == "Namespace" {
            &source.name
        } else {
            &source.namespace
        };
        if IGNORED_NAMESPACES.contains(&own_namespace.as_str()) {
            return;
        }
        let first_line = first_content_line(doc);
        self.lines
            .entry(source.clone())
            .or_insert(start + first_line - 1);
        self.objects.push(Object {
            source: source.clone(),
            api_version: api_version.to_string(),
            value: value.clone(),
        });
        if api_version == "v1" && kind == "Service" {
            self.services.push(read_service(&value, &source));
            return;
        }
        if kind == "Pod" || WORKLOAD_CONTROLLERS.contains(&kind.as_str()) {
            let meta: &[&str] = if kind == "Pod" {
                &["metadata"]
            } else {
                &["spec", "template", "metadata"]
            };
            let map = |key: &str| {
                let path: Vec<&str> = meta.iter().copied().chain([key]).collect();
                string_map(&value, &path)
            };
            let spec: Vec<&str> = meta[..meta.len() - 1]
                .iter()
                .copied()
                .chain(["spec"])
                .collect();
            let containers = ["containers", "initContainers"]
                .iter()
                .flat_map(|key| {
                    let path: Vec<&str> = spec.iter().copied().chain([*key]).collect();
                    seq_at(&value, &path).to_vec()
                })
                .filter(|c| str_at(c, &["image"]).is_some_and(|i| !i.is_empty()))
                .filter_map(|c| str_at(&c, &["name"]).map(str::to_string))
                .collect();
            let node_path: Vec<&str> = spec.iter().copied().chain(["nodeName"]).collect();
            self.workloads.push(Workload {
                node_name: str_at(&value, &node_path).unwrap_or_default().to_string(),
                containers,
                kind,
                name: source.name.clone(),
                namespace: source.namespace.clone(),
                labels: map("labels"),
                annotations: map("annotations"),
            });
            return;
        }
        match parse_str(doc, file) {
            Ok(set) => {
                for d in &set.diagnostics {
                    let unknown =
                        d.severity == Severity::Warning && d.message.starts_with("unknown field");
                    if let (true, Some(field)) = (unknown, &d.field) {
                        let m = schema_warning(format!("unknown field {:?}", field));
                        self.messages.push(Message {
                            resource: Some(friendly_name(&source)),
                            reference: Some(at(first_line)),
                            ..m.field(field.clone())
                        });
                    }
                }
                for s in set_sources(&set) {
                    self.lines.insert(s, start + first_line - 1);
                }
                self.resources.extend(ResourceSet {
                    diagnostics: Vec::new(),
                    ..set
                });
            }
            Err(ConfigError::Invalid {
                line,
                field,
                message,
                ..
            }) => {
                // serde_yaml's message usually names the path already.
                let detail = if message.starts_with(&field) {
                    message
                } else {
                    format!("{field}: {message}")
                };
                let mut m = schema_error(detail).field(field);
                m.resource = Some(friendly_name(&source));
                m.reference = Some(at(line.unwrap_or(first_line)));
                self.messages.push(m);
            }
            Err(other) => {
                let mut m = schema_error(other);
                m.resource = Some(friendly_name(&source));
                m.reference = Some(at(first_line));
                self.messages.push(m);
            }
        }
    }
}

/// Kinds without a namespace: istioctl names them `Kind name`.
const CLUSTER_SCOPED: [&str; 5] = [
    "Namespace",
    "CustomResourceDefinition",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "GatewayClass",
];

/// istioctl's origin: `Kind name.namespace`, or `Kind name` for a cluster-scoped kind.
pub fn friendly_name(source: &Source) -> String {
    if CLUSTER_SCOPED.contains(&source.kind.as_str()) {
        return format!("{} {}", source.kind, source.name);
    }
    format!("{} {}.{}", source.kind, source.name, source.namespace)
}

fn set_sources(set: &ResourceSet) -> Vec<Source> {
    let mut out = Vec::new();
    out.extend(set.virtual_services.iter().map(|r| r.source.clone()));
    out.extend(set.destination_rules.iter().map(|r| r.source.clone()));
    out.extend(set.service_entries.iter().map(|r| r.source.clone()));
    out.extend(set.gateways.iter().map(|r| r.source.clone()));
    out.extend(set.sidecars.iter().map(|r| r.source.clone()));
    out
}

fn read_service(value: &serde_yaml::Value, source: &Source) -> KubeService {
    let ports = value
        .get("spec")
        .and_then(|s| s.get("ports"))
        .and_then(|p| p.as_sequence())
        .map(|ports| {
            ports
                .iter()
                .map(|p| KubeServicePort {
                    name: p
                        .get("name")
                        .and_then(|n| n.as_str())
                        .unwrap_or_default()
                        .to_string(),
                    port: p
                        .get("port")
                        .and_then(|n| n.as_u64())
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or(0),
                    protocol: p
                        .get("protocol")
                        .and_then(|n| n.as_str())
                        .unwrap_or("TCP")
                        .to_string(),
                    target_port: p
                        .get("targetPort")
                        .and_then(scalar_text)
                        .unwrap_or_default(),
                    app_protocol: p
                        .get("appProtocol")
                        .and_then(|n| n.as_str())
                        .map(str::to_string),
                })
                .collect()
        })
        .unwrap_or_default();
    KubeService {
        source: source.clone(),
        name: source.name.clone(),
        namespace: source.namespace.clone(),
        ports,
        selector: string_map(value, &["spec", "selector"]),
        service_type: str_at(value, &["spec", "type"])
            .unwrap_or("ClusterIP")
            .to_string(),
        labels: string_map(value, &["metadata", "labels"]),
        annotations: string_map(value, &["metadata", "annotations"]),
    }
}

/// Split YAML text into documents on `---` lines: (line the document's text starts on, text).
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut start = 1;
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let is_separator = line == "---"
            || line.trim_end() == "---"
            || line.starts_with("--- ")
            || line.starts_with("---\t");
        if is_separator && !line.starts_with(' ') {
            docs.push((start, std::mem::take(&mut current)));
            start = i + 2;
            // `--- {inline: doc}` carries content on the separator line itself.
            let rest = line[3..].trim();
            if !rest.is_empty() && !rest.starts_with('#') {
                current.push_str(rest);
                current.push('\n');
                start = i + 1;
            }
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    docs.push((start, current));
    docs.retain(|(_, d)| !d.trim().is_empty());
    docs
}

/// The 1-based line (within a document) of its first line that is neither blank nor a comment.
fn first_content_line(doc: &str) -> usize {
    doc.lines()
        .position(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        })
        .map_or(1, |i| i + 1)
}

/// serde_yaml's message without its " at line L column C" marks (the reference has the line).
fn strip_location(e: &serde_yaml::Error) -> String {
    let mut s = e.to_string();
    let digits = |t: &str| t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    while let Some(i) = s.find(" at line ") {
        let rest = &s[i + " at line ".len()..];
        let after_line = &rest[digits(rest)..];
        let tail = match after_line.strip_prefix(" column ") {
            Some(col) => &col[digits(col)..],
            None => after_line,
        };
        s = format!("{}{tail}", &s[..i]);
    }
    s
}

fn collect_yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ConfigError> {
    let io_err = |source| ConfigError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let path = entry.map_err(io_err)?.path();
        if path.is_dir() {
            collect_yaml_files(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml") | Some("yml")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_with_their_start_lines() {
        let text = "a: 1\n---\n# c\nb: 2\n--- \n\n---\nc: 3\n";
        let docs = split_documents(text);
        assert_eq!(
            docs,
            vec![
                (1, "a: 1\n".to_string()),
                (3, "# c\nb: 2\n".to_string()),
                (8, "c: 3\n".to_string())
            ]
        );
        assert_eq!(first_content_line("# c\nb: 2\n"), 2);
    }

    #[test]
    fn reads_services_and_workloads_and_keeps_going_after_a_bad_document() {
        let text = r#"apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  selector: {app: reviews}
  ports:
  - {name: http, port: 9080}
  - {name: grpc, port: 9090, protocol: TCP}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1, namespace: shop}
spec:
  template:
    metadata:
      labels: {app: reviews, version: v1}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken}
spec:
  hosts: [reviews]
  http:
  - timeout: soon
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: fine}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
      wieght: 3
"#;
        let inputs = Inputs::read_str(text, "all.yaml");
        assert_eq!(inputs.services.len(), 1);
        let svc = &inputs.services[0];
        assert_eq!(
            (svc.name.as_str(), svc.namespace.as_str()),
            ("reviews", "shop")
        );
        assert_eq!(svc.ports.len(), 2);
        assert_eq!(svc.ports[1].port, 9090);
        assert_eq!(inputs.workloads[0].labels["version"], "v1");
        assert_eq!(inputs.resources.virtual_services.len(), 1);
        let lines: Vec<String> = inputs.messages.iter().map(|m| m.to_string()).collect();
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(
            lines[0].starts_with(
                "Error [IST0106] (VirtualService broken.default all.yaml:24) Schema validation error: spec.http[0].timeout: invalid duration"
            ),
            "{lines:#?}"
        );
        assert_eq!(
            lines[1],
            r#"Warning [IST0133] (VirtualService fine.default all.yaml:26) Schema validation warning: unknown field "spec.http[0].route[0].wieght""#
        );
        let vs = &inputs.resources.virtual_services[0];
        assert_eq!(inputs.reference(&vs.source), "all.yaml:26");
    }

    #[test]
    fn invalid_yaml_is_a_message_not_a_failure() {
        let inputs = Inputs::read_str("a: [unclosed\n---\nb: 1\n", "x.yaml");
        assert_eq!(inputs.messages.len(), 1);
        let shown = inputs.messages[0].to_string();
        assert!(
            shown.starts_with("Error [IST0106] (x.yaml:2) Schema validation error: invalid YAML: "),
            "{shown}"
        );
        assert!(!shown.contains("column"), "{shown}");
    }
}
