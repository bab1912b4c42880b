//! Every document the analyzer reads, kept as an untyped value beside the typed resources.
//!
//! Istio's analyzers look at kinds Trellis does not translate (Namespaces, Pods, Secrets,
//! AuthorizationPolicies, Telemetry ...) and at fields the typed model does not keep (a
//! Service's `type`, a port's `targetPort`, a Gateway server's `tls.credentialName`). Rather
//! than grow a typed model for each, the analyzers read these from the document as written,
//! through the small accessors here, which never panic on an unexpected shape.

use std::collections::BTreeMap;

use serde_yaml::Value;

use crate::istio::Source;

/// One Kubernetes object as read: where it came from and its whole document.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    pub source: Source,
    pub api_version: String,
    pub value: Value,
}

impl Object {
    pub fn kind(&self) -> &str {
        &self.source.kind
    }

    pub fn name(&self) -> &str {
        &self.source.name
    }

    pub fn namespace(&self) -> &str {
        &self.source.namespace
    }

    /// The value at `path` (map keys), if every step exists.
    pub fn at(&self, path: &[&str]) -> Option<&Value> {
        value_at(&self.value, path)
    }

    /// The string at `path`.
    pub fn str_at(&self, path: &[&str]) -> Option<&str> {
        str_at(&self.value, path)
    }

    /// The sequence at `path` (empty when absent or not a sequence).
    pub fn seq_at(&self, path: &[&str]) -> &[Value] {
        seq_at(&self.value, path)
    }

    /// `metadata.labels`.
    pub fn labels(&self) -> BTreeMap<String, String> {
        string_map(&self.value, &["metadata", "labels"])
    }

    /// `metadata.annotations`.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        string_map(&self.value, &["metadata", "annotations"])
    }
}

/// The value at `path` under `value`.
pub fn value_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut v = value;
    for key in path {
        v = v.get(*key)?;
    }
    Some(v)
}

/// The string at `path` under `value`.
pub fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    value_at(value, path)?.as_str()
}

/// The sequence at `path` under `value` (empty when absent or not a sequence).
pub fn seq_at<'a>(value: &'a Value, path: &[&str]) -> &'a [Value] {
    value_at(value, path)
        .and_then(Value::as_sequence)
        .map_or(&[], Vec::as_slice)
}

/// A scalar as text (`8080`, `true`, `http`), as Kubernetes users write labels and ports.
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A string → string map at `path` (values that are numbers or booleans are stringified, as
/// Kubernetes users sometimes write `version: 1`).
pub fn string_map(value: &Value, path: &[&str]) -> BTreeMap<String, String> {
    let Some(map) = value_at(value, path).and_then(Value::as_mapping) else {
        return BTreeMap::new();
    };
    map.iter()
        .filter_map(|(k, v)| Some((k.as_str()?.to_string(), scalar_text(v)?)))
        .collect()
}

/// Whether every `selector` label is among `labels` (an empty selector selects everything).
pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}
