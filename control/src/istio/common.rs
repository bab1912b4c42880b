//! Types shared by several Istio resources: object metadata, string matches, percentages,
//! port selectors and header operations.
//!
//! Every struct denies nothing and defaults everything: unknown fields are collected by the
//! loader (via `serde_ignored`) and reported, and absent fields take Istio's meaning of "unset".
//! Shapes follow `customresourcedefinitions.gen.yaml` (camelCase, as in the CRDs).

use std::collections::BTreeMap;

use serde::Deserialize;

/// The part of Kubernetes `ObjectMeta` that matters to us. Bookkeeping fields that the API
/// server adds are accepted (so `kubectl get -o yaml` output loads) but not interpreted.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: String,
    /// Empty means the default namespace.
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub generation: Option<i64>,
    #[schemars(with = "Option<serde_json::Value>")]
    pub creation_timestamp: Option<serde_yaml::Value>,
    #[schemars(with = "Option<serde_json::Value>")]
    pub managed_fields: Option<serde_yaml::Value>,
    #[schemars(with = "Option<serde_json::Value>")]
    pub owner_references: Option<serde_yaml::Value>,
    #[schemars(with = "Option<serde_json::Value>")]
    pub finalizers: Option<serde_yaml::Value>,
    /// Set on every pod a controller makes (`reviews-v1-7f9c-`), so objects read from an API
    /// server carry it.
    pub generate_name: Option<String>,
    #[schemars(with = "Option<serde_json::Value>")]
    pub deletion_timestamp: Option<serde_yaml::Value>,
    pub deletion_grace_period_seconds: Option<i64>,
    pub self_link: Option<String>,
}

/// A whole Kubernetes document with a typed `spec`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Document<S> {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Kubernetes accepts an object without `spec` (a namespace-wide Sidecar is often written
    /// so); it reads as the empty spec.
    #[serde(default)]
    pub spec: S,
    /// Written by the API server; accepted and ignored.
    #[serde(default)]
    pub status: Option<serde_yaml::Value>,
}

/// Istio `StringMatch`: exactly one of `exact`, `prefix`, `regex` (or none, meaning "present"
/// where Istio allows an empty match, e.g. in `headers`).
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default)]
pub struct StringMatchSpec {
    pub exact: Option<String>,
    pub prefix: Option<String>,
    pub regex: Option<String>,
}

/// Istio `Percent`: `{ value: 12.5 }`.
#[derive(Clone, Copy, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(default)]
pub struct Percent {
    pub value: f64,
}

/// Istio `PortSelector`: `{ number: 9080 }`.
#[derive(Clone, Copy, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default)]
pub struct PortSelector {
    pub number: u32,
}

/// Istio `Headers.HeaderOperations`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default)]
pub struct HeaderOperations {
    pub set: BTreeMap<String, String>,
    pub add: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

/// Istio `Headers`: operations on the request and the response.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default)]
pub struct Headers {
    pub request: Option<HeaderOperations>,
    pub response: Option<HeaderOperations>,
}

/// Istio `WorkloadSelector` as DestinationRule (and the security resources) write it:
/// `matchLabels` (`istio.type.v1beta1.WorkloadSelector`).
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct WorkloadSelector {
    pub match_labels: BTreeMap<String, String>,
}

/// Istio networking `WorkloadSelector` as Sidecar and ServiceEntry write it: `labels`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(default)]
pub struct LabelsSelector {
    pub labels: BTreeMap<String, String>,
}
