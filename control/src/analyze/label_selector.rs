//! Kubernetes `metav1.LabelSelector` (`matchLabels` and `matchExpressions`) as the admission
//! webhooks' `namespaceSelector` and `objectSelector` use it.
//!
//! Istio's webhook analyzers match them with `metav1.LabelSelectorAsSelector`: an absent
//! selector matches everything (the webhook API's default), and a selector Kubernetes would
//! refuse (an unknown operator, `In`/`NotIn` without values, `Exists` with values) matches
//! nothing, as the Go code treats the conversion error.

use std::collections::BTreeMap;

use serde_yaml::Value;

use super::object::{scalar_text, seq_at, str_at, string_map};

/// Whether `selector` (the YAML value of a LabelSelector, `None` when absent) selects `labels`.
pub fn matches(selector: Option<&Value>, labels: &BTreeMap<String, String>) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_null()) else {
        return true;
    };
    let match_labels = string_map(selector, &["matchLabels"]);
    if !match_labels.iter().all(|(k, v)| labels.get(k) == Some(v)) {
        return false;
    }
    seq_at(selector, &["matchExpressions"]).iter().all(|e| {
        let Some(key) = str_at(e, &["key"]) else {
            return false;
        };
        let values: Vec<String> = seq_at(e, &["values"])
            .iter()
            .filter_map(scalar_text)
            .collect();
        let value = labels.get(key);
        match str_at(e, &["operator"]) {
            Some("In") if !values.is_empty() => value.is_some_and(|v| values.contains(v)),
            Some("NotIn") if !values.is_empty() => !value.is_some_and(|v| values.contains(v)),
            Some("Exists") if values.is_empty() => value.is_some(),
            Some("DoesNotExist") if values.is_empty() => value.is_none(),
            _ => false,
        }
    })
}

/// The `istio.io/rev` values a selector names (`matchLabels`, and `matchExpressions` on that key).
pub fn revisions(selector: Option<&Value>) -> Vec<String> {
    let Some(selector) = selector else {
        return Vec::new();
    };
    let mut out: Vec<String> = string_map(selector, &["matchLabels"])
        .remove("istio.io/rev")
        .into_iter()
        .collect();
    for e in seq_at(selector, &["matchExpressions"]) {
        if str_at(e, &["key"]) == Some("istio.io/rev") {
            out.extend(seq_at(e, &["values"]).iter().filter_map(scalar_text));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kubernetes_semantics() {
        let sel: Value = serde_yaml::from_str(
            "matchLabels: {a: '1'}\nmatchExpressions:\n- {key: b, operator: NotIn, values: [x]}\n- {key: c, operator: DoesNotExist}\n",
        )
        .unwrap();
        assert!(matches(Some(&sel), &labels(&[("a", "1")])));
        assert!(matches(Some(&sel), &labels(&[("a", "1"), ("b", "y")])));
        assert!(!matches(Some(&sel), &labels(&[("a", "1"), ("b", "x")])));
        assert!(!matches(Some(&sel), &labels(&[("a", "1"), ("c", "")])));
        assert!(!matches(Some(&sel), &labels(&[])));
        assert!(matches(None, &labels(&[])));
        let bad: Value =
            serde_yaml::from_str("matchExpressions: [{key: a, operator: In}]").unwrap();
        assert!(!matches(Some(&bad), &labels(&[("a", "1")])));
        let rev: Value = serde_yaml::from_str(
            "matchLabels: {istio.io/rev: canary}\nmatchExpressions: [{key: istio.io/rev, operator: In, values: [a, b]}]",
        )
        .unwrap();
        assert_eq!(revisions(Some(&rev)), vec!["canary", "a", "b"]);
    }
}
