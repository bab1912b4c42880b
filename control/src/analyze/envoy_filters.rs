//! EnvoyFilter patches: IST0151 EnvoyFilterUsesRelativeOperation, IST0152/IST0153/IST0154
//! (REPLACE, ADD, REMOVE where Envoy ignores them) and IST0155
//! EnvoyFilterUsesRelativeOperationWithProxyVersion.
//!
//! As Istio's `envoyfilter.EnvoyPatchAnalyzer` (`envoyfilter/envoyfilter.go`). An EnvoyFilter
//! without a `priority` whose patch is relative to what other filters produced (INSERT_BEFORE,
//! INSERT_AFTER, REPLACE, REMOVE) may apply before or after them, so it may not apply at all:
//! IST0151, or IST0155 when an earlier patch with a `proxyVersion` match touched the same
//! filter name (it will break during an upgrade). ADD and REMOVE on ROUTE_CONFIGURATION or
//! HTTP_ROUTE, and REPLACE other than on HTTP_FILTER, NETWORK_FILTER or VIRTUAL_HOST, are
//! ignored by Istio: IST0153, IST0154, IST0152. The names seen with a `proxyVersion` carry over
//! from one EnvoyFilter to the next, in input order, as Istio's do in its iteration order.
//! Trellis does not serve EnvoyFilters; the documents are read as written.

use serde_yaml::Value;

use super::codes::{
    ENVOY_FILTER_USES_ADD_OPERATION_INCORRECTLY, ENVOY_FILTER_USES_RELATIVE_OPERATION,
    ENVOY_FILTER_USES_RELATIVE_OPERATION_WITH_PROXY_VERSION,
    ENVOY_FILTER_USES_REMOVE_OPERATION_INCORRECTLY,
    ENVOY_FILTER_USES_REPLACE_OPERATION_INCORRECTLY,
};
use super::input::Inputs;
use super::message::{go_quote, Code, Message};
use super::object::{str_at, value_at, Object};

const RELATIVE: &str = "This EnvoyFilter does not have a priority and has a relative patch operation set which can cause the EnvoyFilter not to be applied. Using the INSERT_FIRST of ADD option or setting the priority may help in ensuring the EnvoyFilter is applied correctly.";
const RELATIVE_WITH_PROXY_VERSION: &str = "This EnvoyFilter does not have a priority and has a relative patch operation (NSTERT_BEFORE/AFTER, REPLACE, MERGE, DELETE) and proxyVersion set which can cause the EnvoyFilter not to be applied during an upgrade. Using the INSERT_FIRST or ADD option or setting the priority may help in ensuring the EnvoyFilter is applied correctly.";
const REPLACE: &str = "The REPLACE operation is only valid for HTTP_FILTER and NETWORK_FILTER.";
const ADD: &str =
    "The ADD operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or HTTP_ROUTE.";
const REMOVE: &str = "The REMOVE operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or HTTP_ROUTE.";

/// Run the check over every EnvoyFilter, in input order.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    let mut proxy_version_names: Vec<String> = Vec::new();
    for ef in inputs
        .objects_of("EnvoyFilter")
        .filter(|o| o.api_version.starts_with("networking.istio.io/"))
    {
        analyze_patches(inputs, ef, &mut proxy_version_names, out);
    }
}

/// The name a patch is about (`instanceName` in `analyzeEnvoyFilterPatch`): the patch value's
/// `name` in Go's proto text form, else the listener filter it matches, else empty. The two
/// forms never equal each other, as in Istio.
fn instance_name(patch: &Value) -> String {
    let Some(value) = value_at(patch, &["patch", "value"]).and_then(Value::as_mapping) else {
        return String::new();
    };
    if value.is_empty() {
        return String::new();
    }
    match value.get("name") {
        Some(Value::String(s)) => format!("string_value:{}", go_quote(s)),
        Some(other) => format!("{other:?}"),
        None => str_at(
            patch,
            &["match", "listener", "filterChain", "filter", "name"],
        )
        .unwrap_or_default()
        .to_string(),
    }
}

/// `analyzeEnvoyFilterPatch` for one EnvoyFilter.
fn analyze_patches(
    inputs: &Inputs,
    ef: &Object,
    proxy_version_names: &mut Vec<String>,
    out: &mut Vec<Message>,
) {
    let priority = ef.at(&["spec", "priority"]).and_then(Value::as_i64);
    let has_priority = priority.is_some_and(|p| p != 0);
    for (index, patch) in ef.seq_at(&["spec", "configPatches"]).iter().enumerate() {
        if value_at(patch, &["patch"]).is_none_or(Value::is_null) {
            break;
        }
        let name = instance_name(patch);
        let operation = str_at(patch, &["patch", "operation"]).unwrap_or_default();
        let apply_to = str_at(patch, &["applyTo"]).unwrap_or_default();
        let route = matches!(apply_to, "ROUTE_CONFIGURATION" | "HTTP_ROUTE");
        let mut report = |code: Code, text: &str| {
            let m = Message::new(code, text).field(format!("spec.configPatches[{index}]"));
            out.push(inputs.blame(&ef.source, m));
        };
        let relative = match operation {
            "ADD" if route => {
                report(ENVOY_FILTER_USES_ADD_OPERATION_INCORRECTLY, ADD);
                false
            }
            "REMOVE" if route => {
                report(ENVOY_FILTER_USES_REMOVE_OPERATION_INCORRECTLY, REMOVE);
                false
            }
            "REPLACE" if !matches!(apply_to, "NETWORK_FILTER" | "HTTP_FILTER" | "VIRTUAL_HOST") => {
                report(ENVOY_FILTER_USES_REPLACE_OPERATION_INCORRECTLY, REPLACE);
                false
            }
            "REMOVE" | "REPLACE" | "INSERT_BEFORE" | "INSERT_AFTER" => true,
            _ => false,
        };
        // `relativeOperationMsg`.
        if relative && !has_priority {
            if proxy_version_names.contains(&name) {
                report(
                    ENVOY_FILTER_USES_RELATIVE_OPERATION_WITH_PROXY_VERSION,
                    RELATIVE_WITH_PROXY_VERSION,
                );
            } else {
                report(ENVOY_FILTER_USES_RELATIVE_OPERATION, RELATIVE);
            }
        }
        let proxy_version = str_at(patch, &["match", "proxy", "proxyVersion"]).unwrap_or_default();
        if !proxy_version.is_empty() {
            proxy_version_names.push(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::analyze::{analyze_resources, Analysis, Inputs};

    /// (code, EnvoyFilter) of the IST0151..IST0155 messages.
    fn found(text: &str) -> Vec<(String, String)> {
        let a: Analysis = analyze_resources(&Inputs::read_str(text, "ef.yaml"), "t");
        a.messages
            .iter()
            .filter(|m| ("IST0151"..="IST0155").contains(&m.code))
            .map(|m| (m.code.to_string(), m.resource.clone().unwrap_or_default()))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(c, r)| (c.to_string(), format!("EnvoyFilter {r}.bookinfo")))
            .collect()
    }

    /// analyzers_test.go "EnvoyFilterUsesRelativeOperation": the second patch of
    /// test-relative-3 touches the name its first, proxyVersion-matched, patch did.
    #[test]
    fn relative_operations() {
        let text =
            include_str!("../../tests/analyzer_testdata/relative-envoy-filter-operation.yaml");
        assert_eq!(
            found(text),
            pairs(&[
                ("IST0151", "test-relative-1"),
                ("IST0151", "test-relative-2"),
                ("IST0151", "test-relative-3"),
                ("IST0155", "test-relative-3"),
            ])
        );
    }

    /// "EnvoyFilterUsesReplaceOperation", "...AddOperation", "...RemoveOperation",
    /// "...AbsoluteOperation" and "EnvoyFilterFilterChainMatch".
    #[test]
    fn operations_envoy_ignores() {
        let replace =
            include_str!("../../tests/analyzer_testdata/envoy-filter-replace-operation.yaml");
        assert_eq!(
            found(replace),
            pairs(&[
                ("IST0152", "test-replace-1"),
                ("IST0151", "test-replace-3"),
                ("IST0155", "test-replace-3"),
            ])
        );
        let add = include_str!("../../tests/analyzer_testdata/envoy-filter-add-operation.yaml");
        assert_eq!(
            found(add),
            pairs(&[("IST0153", "test-auth-2"), ("IST0153", "test-auth-3")])
        );
        let remove =
            include_str!("../../tests/analyzer_testdata/envoy-filter-remove-operation.yaml");
        assert_eq!(
            found(remove),
            pairs(&[
                ("IST0154", "test-remove-2"),
                ("IST0154", "test-remove-3"),
                ("IST0151", "test-remove-1"),
                ("IST0151", "test-remove-5"),
            ])
        );
        for quiet in [
            include_str!("../../tests/analyzer_testdata/absolute-envoy-filter-operation.yaml"),
            include_str!("../../tests/analyzer_testdata/envoy-filter-filterchain.yaml"),
        ] {
            assert!(found(quiet).is_empty());
        }
    }
}
