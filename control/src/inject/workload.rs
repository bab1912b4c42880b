//! Where a document's pod template is, by kind (`IntoObject` in pkg/kube/inject/inject.go).
//!
//! A `Pod` is its own template; `Deployment`, `StatefulSet`, `DaemonSet`, `ReplicaSet`,
//! `ReplicationController` and `Job` hold one at `spec.template`; a `CronJob` at
//! `spec.jobTemplate.spec.template`; a `v1 List` holds documents in `items`, each injected in
//! turn. Every other kind passes through untouched, as kube-inject leaves kinds its scheme does
//! not know.

use std::collections::BTreeMap;

use serde_yaml::{Mapping, Value};

use super::pod::{inject_template, Outcome, Owner, Selection};
use super::settings::InjectSettings;
use super::InjectError;

/// One pod template's result, named for reports (`Deployment default/reviews-v1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateReport {
    pub workload: String,
    pub outcome: Outcome,
}

/// The path from the document to its pod template, by kind (`None`: not a workload).
fn template_path(api_version: &str, kind: &str) -> Option<&'static [&'static str]> {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    match (group, kind) {
        ("", "Pod") => Some(&[]),
        ("", "ReplicationController")
        | ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("batch", "Job") => Some(&["spec", "template"]),
        ("batch", "CronJob") => Some(&["spec", "jobTemplate", "spec", "template"]),
        _ => None,
    }
}

fn key(name: &str) -> Value {
    Value::String(name.to_string())
}

fn text<'v>(value: &'v Value, field: &str) -> &'v str {
    value.get(field).and_then(Value::as_str).unwrap_or_default()
}

/// What is known of the namespaces' labels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceLabels {
    /// Namespaces described by name (Namespace documents).
    pub by_name: BTreeMap<String, BTreeMap<String, String>>,
    /// The labels of any other namespace (`--namespace-labels`).
    pub others: BTreeMap<String, String>,
}

impl NamespaceLabels {
    pub fn of(&self, namespace: &str) -> &BTreeMap<String, String> {
        self.by_name.get(namespace).unwrap_or(&self.others)
    }
}

/// Inject every pod template of `document`; `namespace_labels`, when known, decide as the
/// webhook configuration's selectors do; `None` injects every pod not opting out, as
/// `istioctl kube-inject`. An empty result: nothing to inject.
pub fn inject_document(
    document: &mut Value,
    namespace_labels: Option<&NamespaceLabels>,
    default_namespace: &str,
    settings: &InjectSettings,
) -> Result<Vec<TemplateReport>, InjectError> {
    let api_version = text(document, "apiVersion").to_string();
    let kind = text(document, "kind").to_string();
    if api_version == "v1" && kind == "List" {
        let mut reports = Vec::new();
        if let Some(items) = document.get_mut("items").and_then(Value::as_sequence_mut) {
            for item in items {
                reports.extend(inject_document(
                    item,
                    namespace_labels,
                    default_namespace,
                    settings,
                )?);
            }
        }
        return Ok(reports);
    }
    let Some(path) = template_path(&api_version, &kind) else {
        return Ok(Vec::new());
    };
    let metadata = document.get("metadata");
    let name = metadata
        .map(|m| text(m, "name"))
        .unwrap_or_default()
        .to_string();
    let namespace = metadata
        .map(|m| text(m, "namespace"))
        .filter(|ns| !ns.is_empty())
        .unwrap_or(default_namespace)
        .to_string();
    // A pod's workload is its controller's (`GetDeployMetaFromPod`), as in the webhook.
    let owner = if kind == "Pod" {
        let json = serde_json::to_value(&*document)
            .map_err(|e| InjectError::Invalid(format!("{kind} {name}: {e}")))?;
        super::admission::pod_owner(&json)
    } else {
        Owner {
            name: name.clone(),
            api_version,
            kind: kind.clone(),
        }
    };
    let workload = format!("{kind} {namespace}/{name}");
    let mut template = &mut *document;
    for (depth, segment) in path.iter().enumerate() {
        template = template.get_mut(*segment).ok_or_else(|| {
            InjectError::Invalid(format!(
                "{workload}: {} is required",
                path[..=depth].join(".")
            ))
        })?;
    }
    let template = template.as_mapping_mut().ok_or_else(|| {
        InjectError::Invalid(format!("{workload}: the pod template is not a map"))
    })?;
    let mut metadata = take_mapping(template, "metadata", &workload)?;
    let mut spec = take_mapping(template, "spec", &workload)?;
    let selection = match namespace_labels {
        None => Selection::Explicit,
        Some(known) => Selection::Namespace(known.of(&namespace)),
    };
    // No view of the nodes here: native sidecars only when explicitly enabled (`IntoObject`
    // in pkg/kube/inject/inject.go, the branch without a kube client).
    let result = inject_template(
        &mut metadata,
        &mut spec,
        &namespace,
        &owner,
        selection,
        settings,
        settings.native_sidecars.without_nodes(),
    );
    // Put the parts back where they were, changed or not.
    template.insert(key("metadata"), Value::Mapping(metadata));
    template.insert(key("spec"), Value::Mapping(spec));
    Ok(vec![TemplateReport {
        workload,
        outcome: result
            .map_err(|e| InjectError::Workload(format!("{kind} {name}"), Box::new(e)))?,
    }])
}

/// A sub-map taken out of `parent` for editing, its slot left in place so the key keeps its
/// position (`Mapping::insert` of an existing key keeps the order).
fn take_mapping(parent: &mut Mapping, field: &str, workload: &str) -> Result<Mapping, InjectError> {
    match parent.get_mut(key(field)) {
        None => {
            parent.insert(key(field), Value::Null);
            Ok(Mapping::new())
        }
        Some(Value::Null) => Ok(Mapping::new()),
        Some(Value::Mapping(map)) => Ok(std::mem::take(map)),
        Some(_) => Err(InjectError::Invalid(format!(
            "{workload}: the pod template's {field} is not a map"
        ))),
    }
}
