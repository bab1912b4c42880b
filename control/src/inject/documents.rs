//! `trellis inject`'s file: multi-document YAML in, the same documents out, in order.
//!
//! Like `istioctl kube-inject` (`IntoResourceFile` in pkg/kube/inject/inject.go) each document
//! is read on its own and only workloads are re-written; unlike it, a document that is not
//! changed (a Service, a Secret, a pod that opts out or is injected already) is copied
//! byte for byte, comments included, so the output diffs cleanly against the input. A
//! re-written document keeps the comment lines that open it and the order of its keys.
//!
//! Namespaces: `Namespace` documents in the file give their labels, as `--namespace-labels`
//! does; when any namespace's labels are known, injection follows the webhook configuration's
//! selectors (a pod in an unlabelled namespace is not injected unless it opts in), otherwise
//! every pod that does not opt out is injected, as kube-inject does.

use std::collections::BTreeMap;

use serde_yaml::Value;

use super::pod::Outcome;
use super::settings::InjectSettings;
use super::workload::{inject_document, NamespaceLabels, TemplateReport};
use super::InjectError;

/// What `trellis inject` is told beside the file.
#[derive(Clone, Debug, Default)]
pub struct InjectOptions {
    pub settings: InjectSettings,
    /// The labels of the namespaces the file does not describe (`--namespace-labels`): when
    /// given, namespace labels decide; Namespace documents in the file decide for theirs.
    pub namespace_labels: Option<BTreeMap<String, String>>,
    /// The namespace of documents that name none.
    pub default_namespace: String,
}

/// The injected file and what happened to each pod template.
#[derive(Clone, Debug, Default)]
pub struct InjectedFile {
    pub text: String,
    pub reports: Vec<TemplateReport>,
}

/// One document of the file: its text up to (not including) the next separator line.
struct Chunk<'a> {
    /// The `---` line that opened it (with its newline), empty for the first.
    separator: &'a str,
    body: &'a str,
}

/// Split on `---` separator lines (YAML's document marker, alone or before a comment).
fn split(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut separator = "";
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end();
        let is_separator = bare == "---" || bare.starts_with("--- #");
        if is_separator {
            chunks.push(Chunk {
                separator,
                body: &text[start..offset],
            });
            separator = &text[offset..offset + line.len()];
            start = offset + line.len();
        }
        offset += line.len();
    }
    chunks.push(Chunk {
        separator,
        body: &text[start..],
    });
    chunks
}

/// The comment and blank lines that open a document.
fn leading_comments(body: &str) -> &str {
    let mut end = 0;
    for line in body.split_inclusive('\n') {
        let bare = line.trim();
        if bare.is_empty() || bare.starts_with('#') {
            end += line.len();
        } else {
            break;
        }
    }
    &body[..end]
}

fn string_labels(value: &Value) -> BTreeMap<String, String> {
    value
        .get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_mapping)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
        .collect()
}

/// Inject every workload of a multi-document YAML file.
pub fn inject_file(input: &str, options: &InjectOptions) -> Result<InjectedFile, InjectError> {
    let chunks = split(input);
    let mut documents: Vec<Option<Value>> = Vec::with_capacity(chunks.len());
    let mut namespace_labels = NamespaceLabels {
        by_name: BTreeMap::new(),
        others: options.namespace_labels.clone().unwrap_or_default(),
    };
    let mut namespaces_known = options.namespace_labels.is_some();
    for (index, chunk) in chunks.iter().enumerate() {
        let value: Value = serde_yaml::from_str(chunk.body).map_err(|e| InjectError::Yaml {
            document: index + 1,
            message: e.to_string(),
        })?;
        if value.get("kind").and_then(Value::as_str) == Some("Namespace")
            && value.get("apiVersion").and_then(Value::as_str) == Some("v1")
        {
            let name = value
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            namespace_labels
                .by_name
                .entry(name)
                .or_default()
                .extend(string_labels(&value));
            namespaces_known = true;
        }
        documents.push((!value.is_null()).then_some(value));
    }
    let known = namespaces_known.then_some(&namespace_labels);
    let default_namespace = if options.default_namespace.is_empty() {
        "default"
    } else {
        &options.default_namespace
    };
    let mut out = InjectedFile::default();
    for (index, (chunk, document)) in chunks.iter().zip(documents).enumerate() {
        out.text.push_str(chunk.separator);
        let Some(mut document) = document else {
            out.text.push_str(chunk.body);
            continue;
        };
        let reports = inject_document(&mut document, known, default_namespace, &options.settings)
            .map_err(|e| InjectError::Document(index + 1, Box::new(e)))?;
        let changed = reports.iter().any(|r| r.outcome == Outcome::Injected);
        out.reports.extend(reports);
        if !changed {
            out.text.push_str(chunk.body);
            continue;
        }
        out.text.push_str(leading_comments(chunk.body));
        let yaml = serde_yaml::to_string(&document).map_err(|e| InjectError::Yaml {
            document: index + 1,
            message: e.to_string(),
        })?;
        out.text.push_str(&yaml);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_and_unchanged_documents_survive_byte_for_byte() {
        let input = "# head\napiVersion: v1\nkind: Service\nmetadata: {name: a}  # keep\n---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\ndata: {k: v}\n";
        let out = inject_file(input, &InjectOptions::default()).unwrap();
        assert_eq!(out.text, input);
        assert!(out.reports.is_empty());
    }

    #[test]
    fn a_namespace_document_makes_its_labels_decide() {
        let input = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: shop}\nspec:\n  containers: [{name: app, image: app}]\n";
        let out = inject_file(input, &InjectOptions::default()).unwrap();
        assert_eq!(out.text, input, "an unlabelled namespace is not selected");
        let labelled = input.replace(
            "{name: shop}",
            "{name: shop, labels: {istio-injection: enabled}}",
        );
        let out = inject_file(&labelled, &InjectOptions::default()).unwrap();
        assert_eq!(out.reports[0].outcome, Outcome::Injected);
        assert!(out.text.contains("istio-proxy"));
    }

    #[test]
    fn bad_yaml_names_the_document() {
        let err = inject_file("a: 1\n---\nb: [\n", &InjectOptions::default()).unwrap_err();
        assert!(err.to_string().contains("document 2"), "{err}");
    }
}
