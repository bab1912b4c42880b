//! IST0139 InvalidWebhook: Istio's injection webhooks that overlap (a pod injected twice) or
//! call a Service that does not exist (no pod created at all, with `failurePolicy: Fail`).
//!
//! As Istio's `webhook.Analyzer` (`pkg/config/analysis/analyzers/webhook/webhook.go`): the
//! MutatingWebhookConfigurations that name a revision (`istio.io/rev` in their labels or
//! selectors) or hold a webhook whose name ends in `istio.io` are Istio's. Every combination
//! of namespace labels (none, `istio-injection: enabled`/`disabled`, each with or without each
//! revision) and object labels (none, `sidecar.istio.io/inject: "true"`/`"false"`, likewise)
//! must select at most one of their webhooks; each webhook of an overlap is reported with the
//! others. Then each webhook's `clientConfig.service` must be a Service of the input (or
//! istioctl's default ingress gateway Service).

use std::collections::{BTreeMap, BTreeSet};

use super::codes::INVALID_WEBHOOK;
use super::defaults::ingress_service;
use super::input::Inputs;
use super::label_selector::{matches, revisions};
use super::message::Message;
use super::object::{seq_at, str_at, Object};

type Labels = BTreeMap<String, String>;

/// `getNamespaceLabels`/`getObjectLabels`, then each again with every revision.
fn permutations(key: &str, values: [&str; 2], revs: &BTreeSet<String>) -> Vec<Labels> {
    let base = || {
        let mut out = vec![Labels::new()];
        out.extend(
            values
                .iter()
                .map(|v| Labels::from([(key.to_string(), v.to_string())])),
        );
        out
    };
    let mut all = base();
    for rev in revs {
        for mut l in base() {
            l.insert("istio.io/rev".to_string(), rev.clone());
            all.push(l);
        }
    }
    all
}

/// Go's `%v` of a sorted string list.
fn go_list(items: &BTreeSet<&str>) -> String {
    let words: Vec<&str> = items.iter().copied().collect();
    format!("[{}]", words.join(" "))
}

/// Run the check on MutatingWebhookConfigurations.
pub fn check(inputs: &Inputs, out: &mut Vec<Message>) {
    // `config/webhook` -> (configuration, webhook).
    let mut webhooks: BTreeMap<String, (&Object, &serde_yaml::Value)> = BTreeMap::new();
    let mut revs = BTreeSet::new();
    for config in inputs.kube_objects_of("MutatingWebhookConfiguration") {
        let hooks = seq_at(&config.value, &["webhooks"]);
        let mut config_revs: BTreeSet<String> =
            config.labels().remove("istio.io/rev").into_iter().collect();
        for h in hooks {
            config_revs.extend(revisions(h.get("namespaceSelector")));
            config_revs.extend(revisions(h.get("objectSelector")));
        }
        let istio = hooks
            .iter()
            .any(|h| str_at(h, &["name"]).is_some_and(|n| n.ends_with("istio.io")));
        if config_revs.is_empty() && !istio {
            continue;
        }
        for h in hooks {
            let name = str_at(h, &["name"]).unwrap_or_default();
            webhooks.insert(format!("{}/{name}", config.name()), (config, h));
        }
        revs.extend(config_revs);
    }
    let mut report = |config: &Object, text: String| {
        out.push(inputs.blame(&config.source, Message::new(INVALID_WEBHOOK, text)));
    };
    let namespaces = permutations("istio-injection", ["enabled", "disabled"], &revs);
    let objects = permutations("sidecar.istio.io/inject", ["true", "false"], &revs);
    for ns in &namespaces {
        for obj in &objects {
            let matched: BTreeSet<&str> = webhooks
                .iter()
                .filter(|(_, (_, h))| {
                    matches(h.get("namespaceSelector"), ns) && matches(h.get("objectSelector"), obj)
                })
                .map(|(name, _)| name.as_str())
                .collect();
            if matched.len() > 1 {
                for name in &matched {
                    let mut others = matched.clone();
                    others.remove(name);
                    report(
                        webhooks[*name].0,
                        format!(
                            "Webhook overlaps with others: {}. This may cause injection to occur twice.",
                            go_list(&others)
                        ),
                    );
                }
            }
        }
    }
    let default_service = ingress_service();
    for (config, h) in webhooks.values() {
        let Some(service) = h.get("clientConfig").and_then(|c| c.get("service")) else {
            continue;
        };
        let ns = str_at(service, &["namespace"]).unwrap_or_default();
        let name = str_at(service, &["name"]).unwrap_or_default();
        let exists = inputs
            .services
            .iter()
            .chain([&default_service])
            .any(|s| s.namespace == ns && s.name == name);
        if !exists {
            report(
                config,
                format!(
                    "Injector refers to a control plane service that does not exist: {ns}/{name}."
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::analyze::analyze_str;
    use crate::analyze::tests::lines;

    /// analyzers_test.go "webook", over Istio's `webhook.yaml`.
    #[test]
    fn istio_case() {
        let a = analyze_str(
            include_str!("../../tests/analyzer_testdata/webhook.yaml"),
            "webhook.yaml",
        );
        assert_eq!(
            lines(&a, "IST0139"),
            vec![
                "Error [IST0139] (MutatingWebhookConfiguration istio-sidecar-injector-missing-overlap) Injector refers to a control plane service that does not exist: istio-system/fake.",
                "Error [IST0139] (MutatingWebhookConfiguration istio-sidecar-injector-missing-overlap) Webhook overlaps with others: [istio-sidecar-injector-overlap/sidecar-injector.istio.io]. This may cause injection to occur twice.",
                "Error [IST0139] (MutatingWebhookConfiguration istio-sidecar-injector-overlap) Webhook overlaps with others: [istio-sidecar-injector-missing-overlap/sidecar-injector.istio.io]. This may cause injection to occur twice.",
            ]
        );
    }
}
