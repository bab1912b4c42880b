//! CustomResourceDefinitions for the Istio kinds Trellis reads, their schemas derived from the
//! Rust types the loader deserializes into ([`crate::istio`]).
//!
//! schemars derives a JSON schema from each `*Spec` type and its serde attributes (field
//! names, defaults, enums), in OpenAPI 3.0 form with every sub-schema inlined; then
//! [`structural`] turns it into what the API server accepts as a *structural* schema
//! (apiextensions.k8s.io/v1): a `type` on every node, no `$ref`, `oneOf`/`anyOf` only as
//! value constraints. Where a Rust type is a choice between shapes (an externally tagged enum,
//! one key of several), the object gets the union of their properties, as Istio's own CRDs
//! (manifests/charts/base/files/crd-all.gen.yaml) describe a protobuf `oneof`; a choice
//! between kinds of value becomes `x-kubernetes-int-or-string` or a free-form node. Parts the
//! types keep as raw YAML (what Trellis does not interpret, e.g. `VirtualService.spec.tcp`) are
//! free-form too.
//!
//! `spec` keeps unknown fields (`x-kubernetes-preserve-unknown-fields`): Istio fields Trellis
//! does not model yet must survive `kubectl apply`, which a pruning schema would drop.
//! Names, versions, short names and categories are Istio's.

use serde_json::{json, Map, Value};

use crate::istio::{
    AuthorizationPolicySpec, DestinationRuleSpec, GatewaySpec, PeerAuthenticationSpec,
    RequestAuthenticationSpec, ServiceEntrySpec, SidecarSpec, VirtualServiceSpec,
};

/// One Istio kind as Istio's CRD names it.
struct Kind {
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    short_names: &'static [&'static str],
    /// Served versions; the first is the storage version.
    versions: &'static [&'static str],
    spec: fn() -> Value,
}

const NETWORKING: &str = "networking.istio.io";
const SECURITY: &str = "security.istio.io";
const NETWORKING_VERSIONS: &[&str] = &["v1", "v1alpha3", "v1beta1"];
const SECURITY_VERSIONS: &[&str] = &["v1", "v1beta1"];

fn schema_of<T: schemars::JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .into_generator();
    let schema = generator.into_root_schema_for::<T>();
    structural(schema.to_value())
}

fn kinds() -> Vec<Kind> {
    vec![
        Kind {
            group: NETWORKING,
            kind: "DestinationRule",
            plural: "destinationrules",
            short_names: &["dr"],
            versions: NETWORKING_VERSIONS,
            spec: schema_of::<DestinationRuleSpec>,
        },
        Kind {
            group: NETWORKING,
            kind: "Gateway",
            plural: "gateways",
            short_names: &["gw"],
            versions: NETWORKING_VERSIONS,
            spec: schema_of::<GatewaySpec>,
        },
        Kind {
            group: NETWORKING,
            kind: "ServiceEntry",
            plural: "serviceentries",
            short_names: &["se"],
            versions: NETWORKING_VERSIONS,
            spec: schema_of::<ServiceEntrySpec>,
        },
        Kind {
            group: NETWORKING,
            kind: "Sidecar",
            plural: "sidecars",
            short_names: &[],
            versions: NETWORKING_VERSIONS,
            spec: schema_of::<SidecarSpec>,
        },
        Kind {
            group: NETWORKING,
            kind: "VirtualService",
            plural: "virtualservices",
            short_names: &["vs"],
            versions: NETWORKING_VERSIONS,
            spec: schema_of::<VirtualServiceSpec>,
        },
        Kind {
            group: SECURITY,
            kind: "AuthorizationPolicy",
            plural: "authorizationpolicies",
            short_names: &["ap"],
            versions: SECURITY_VERSIONS,
            spec: schema_of::<AuthorizationPolicySpec>,
        },
        Kind {
            group: SECURITY,
            kind: "PeerAuthentication",
            plural: "peerauthentications",
            short_names: &["pa"],
            versions: SECURITY_VERSIONS,
            spec: schema_of::<PeerAuthenticationSpec>,
        },
        Kind {
            group: SECURITY,
            kind: "RequestAuthentication",
            plural: "requestauthentications",
            short_names: &["ra"],
            versions: SECURITY_VERSIONS,
            spec: schema_of::<RequestAuthenticationSpec>,
        },
    ]
}

/// The CustomResourceDefinitions, in a stable order (group, then kind).
pub fn custom_resource_definitions() -> Vec<Value> {
    kinds()
        .into_iter()
        .map(|k| {
            let mut spec = (k.spec)();
            if let Some(map) = spec.as_object_mut() {
                map.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
            }
            let versions: Vec<Value> = k
                .versions
                .iter()
                .enumerate()
                .map(|(i, version)| {
                    json!({
                        "name": version,
                        "served": true,
                        "storage": i == 0,
                        "subresources": {"status": {}},
                        "schema": {"openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": spec,
                                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                            },
                        }},
                    })
                })
                .collect();
            let group_category = k.group.replace('.', "-");
            json!({
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {
                    "name": format!("{}.{}", k.plural, k.group),
                    "labels": super::manifests::common_labels(),
                },
                "spec": {
                    "group": k.group,
                    "names": {
                        "kind": k.kind,
                        "listKind": format!("{}List", k.kind),
                        "plural": k.plural,
                        "singular": k.kind.to_lowercase(),
                        "shortNames": k.short_names,
                        "categories": ["istio-io", group_category],
                    },
                    "scope": "Namespaced",
                    "versions": versions,
                },
            })
        })
        .collect()
}

/// Integer formats the API server knows; schemars' `uint16` and the like are dropped.
const KNOWN_FORMATS: [&str; 4] = ["int32", "int64", "float", "double"];

fn free_form(description: Option<Value>) -> Value {
    let mut out = json!({"x-kubernetes-preserve-unknown-fields": true});
    if let (Some(d), Some(map)) = (description, out.as_object_mut()) {
        map.insert("description".into(), d);
    }
    out
}

/// A schemars OpenAPI schema as a Kubernetes structural schema (see the module docs).
pub fn structural(schema: Value) -> Value {
    let Value::Object(mut map) = schema else {
        // `true` (anything) or `false` (nothing): free-form either way.
        return free_form(None);
    };
    for noise in [
        "$schema",
        "title",
        "default",
        "examples",
        "example",
        "$defs",
        "definitions",
    ] {
        map.remove(noise);
    }
    if map.remove("$ref").is_some() {
        // Only a recursive type is left as a reference: its inner levels are free-form.
        return free_form(map.remove("description"));
    }
    if let Some(format) = map.get("format").and_then(Value::as_str) {
        if !KNOWN_FORMATS.contains(&format) {
            map.remove("format");
        }
    }
    for choice in ["oneOf", "anyOf"] {
        if let Some(Value::Array(alternatives)) = map.remove(choice) {
            return merge_alternatives(map, alternatives);
        }
    }
    if let Some(Value::Object(properties)) = map.remove("properties") {
        let properties: Map<String, Value> = properties
            .into_iter()
            .map(|(k, v)| (k, structural(v)))
            .collect();
        map.insert("properties".into(), Value::Object(properties));
    }
    if let Some(items) = map.remove("items") {
        map.insert("items".into(), structural(items));
    }
    match map.remove("additionalProperties") {
        Some(Value::Bool(false)) | None => {}
        Some(Value::Bool(true)) => {
            map.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
        }
        Some(other) => {
            map.insert("additionalProperties".into(), structural(other));
        }
    }
    if !map.contains_key("type") && !map.contains_key("x-kubernetes-preserve-unknown-fields") {
        let description = map.remove("description");
        return free_form(description);
    }
    Value::Object(map)
}

/// A `oneOf`/`anyOf` as one structural node (see the module docs).
fn merge_alternatives(mut base: Map<String, Value>, alternatives: Vec<Value>) -> Value {
    let alternatives: Vec<Value> = alternatives.into_iter().map(structural).collect();
    let types: std::collections::BTreeSet<&str> = alternatives
        .iter()
        .filter_map(|a| a.get("type").and_then(Value::as_str))
        .collect();
    let all_typed = alternatives.iter().all(|a| a.get("type").is_some());
    let nullable = base.remove("nullable").is_some()
        || alternatives
            .iter()
            .any(|a| a.get("nullable") == Some(&json!(true)));
    let mut merged = match (all_typed, types.len(), types.iter().next().copied()) {
        (true, 1, Some("string")) => {
            let values: Option<Vec<Value>> = alternatives
                .iter()
                .map(|a| a.get("enum").and_then(Value::as_array).cloned())
                .collect::<Option<Vec<_>>>()
                .map(|lists| lists.into_iter().flatten().collect());
            let mut out = json!({"type": "string"});
            if let (Some(values), Some(map)) = (values, out.as_object_mut()) {
                map.insert("enum".into(), Value::Array(values));
            }
            out
        }
        (true, 1, Some("object")) => {
            let mut properties = Map::new();
            for alternative in &alternatives {
                if let Some(Value::Object(p)) = alternative.get("properties") {
                    for (k, v) in p {
                        properties.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
            }
            json!({"type": "object", "properties": properties})
        }
        (true, 2, _) if types.contains("integer") && types.contains("string") => {
            json!({"x-kubernetes-int-or-string": true})
        }
        _ => free_form(None),
    };
    if let Some(map) = merged.as_object_mut() {
        if let Some(d) = base.remove("description") {
            map.insert("description".into(), d);
        }
        if nullable && map.contains_key("type") {
            map.insert("nullable".into(), json!(true));
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every node has a type, or is free-form / int-or-string; no `$ref`, `oneOf`, `anyOf`.
    fn assert_structural(path: &str, node: &Value) {
        let map = node
            .as_object()
            .unwrap_or_else(|| panic!("{path}: not an object"));
        for banned in ["$ref", "oneOf", "anyOf", "allOf", "$defs", "default"] {
            assert!(!map.contains_key(banned), "{path}: {banned}");
        }
        assert!(
            map.contains_key("type")
                || map.contains_key("x-kubernetes-preserve-unknown-fields")
                || map.contains_key("x-kubernetes-int-or-string"),
            "{path}: no type in {node}"
        );
        if let Some(Value::Object(p)) = map.get("properties") {
            for (k, v) in p {
                assert_structural(&format!("{path}.{k}"), v);
            }
        }
        if let Some(items) = map.get("items") {
            assert_structural(&format!("{path}[]"), items);
        }
        if let Some(extra) = map.get("additionalProperties") {
            assert_structural(&format!("{path}{{}}"), extra);
        }
    }

    #[test]
    fn every_crd_schema_is_structural_and_names_what_the_types_read() {
        let crds = custom_resource_definitions();
        assert_eq!(crds.len(), 8);
        for crd in &crds {
            let name = crd["metadata"]["name"].as_str().unwrap();
            let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
            assert_structural(name, schema);
        }
        let vs = crds
            .iter()
            .find(|c| c["spec"]["names"]["kind"] == "VirtualService")
            .unwrap();
        let http = &vs["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["http"];
        assert_eq!(http["type"], "array");
        let route = &http["items"]["properties"]["route"]["items"]["properties"];
        assert_eq!(route["weight"]["type"], "integer");
        assert_eq!(route["destination"]["properties"]["host"]["type"], "string");
    }
}
