//! The control plane's half of RequestAuthentication: before a snapshot is scoped and pushed,
//! every JWT rule that names its keys by `jwksUri` (or only by `issuer`, for OpenID discovery)
//! gets them inline, fetched here through a [`JwksSource`] (the cached
//! [`crate::jwks_resolver::JwksResolver`] in `trellis control`). The sidecar translates the
//! pushed resources like any others and never opens a connection for keys, as Envoy receives
//! `local_jwks` from istiod in its default `istiod` fetch mode.
//!
//! A fetch that fails inlines [`PUBLIC_ONLY_JWKS`], which no token verifies against (pilot
//! fails closed the same way), and is reported; the resolver's refresh retries it.

use serde_json::Value;

use super::snapshot::Snapshot;
use crate::diag::Diagnostic;
use crate::jwks_resolver::{JwksSource, DEFAULT_TIMEOUT, PUBLIC_ONLY_JWKS};

/// Resolve and inline the JWKS of every rule of `snapshot` without inline keys, in both the
/// typed resources and the documents that are pushed. Returns what failed.
pub fn inline_jwks(snapshot: &mut Snapshot, source: &dyn JwksSource) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    for ra in &mut snapshot.resources.request_authentications {
        for (i, rule) in ra.spec.jwt_rules.iter_mut().enumerate() {
            if rule.jwks.as_deref().is_some_and(|j| !j.is_empty()) || rule.issuer.is_empty() {
                continue;
            }
            let uri = rule
                .jwks_uri
                .clone()
                .or_else(|| rule.jwks_uri_deprecated.clone())
                .unwrap_or_default();
            let timeout = rule.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0);
            let text = match source.resolve(&rule.issuer, &uri, timeout) {
                Ok(text) => text,
                Err(e) => {
                    diagnostics.push(
                        Diagnostic::warning(format!(
                            "JWKS of issuer {:?} not fetched ({e}): its tokens are refused until \
                             a refresh succeeds",
                            rule.issuer
                        ))
                        .resource(ra.source.to_string())
                        .field(format!("spec.jwtRules[{i}]")),
                    );
                    PUBLIC_ONLY_JWKS.to_string()
                }
            };
            if let Some(doc_rule) = snapshot
                .documents
                .get_mut(&ra.source)
                .and_then(|d| d.pointer_mut(&format!("/spec/jwtRules/{i}")))
                .and_then(Value::as_object_mut)
            {
                doc_rule.insert("jwks".into(), Value::String(text.clone()));
            }
            rule.jwks = Some(text);
        }
    }
    diagnostics
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl JwksSource for Fixed {
        fn resolve(
            &self,
            issuer: &str,
            uri: &str,
            _: std::time::Duration,
        ) -> Result<String, String> {
            match uri {
                "https://keys.example/jwks.json" => {
                    Ok(format!(r#"{{"keys":[],"for":"{issuer}"}}"#))
                }
                _ => Err("unreachable".into()),
            }
        }
    }

    const FILE: &str = "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt, namespace: shop}\nspec:\n  jwtRules:\n  - issuer: a\n    jwksUri: https://keys.example/jwks.json\n  - issuer: b\n    jwksUri: https://down.example/jwks.json\n  - issuer: c\n    jwks: '{\"keys\":[]}'\n";

    #[test]
    fn uris_are_inlined_in_the_pushed_document_and_failures_fail_closed() {
        let mut snap = Snapshot::from_files(&[("ra.yaml".into(), FILE.into())]).unwrap();
        let diags = inline_jwks(&mut snap, &Fixed);
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(diags[0].to_string().contains("\"b\""), "{}", diags[0]);
        let rules = &snap.resources.request_authentications[0].spec.jwt_rules;
        assert_eq!(rules[0].jwks.as_deref(), Some(r#"{"keys":[],"for":"a"}"#));
        assert_eq!(rules[1].jwks.as_deref(), Some(PUBLIC_ONLY_JWKS));
        assert_eq!(
            rules[2].jwks.as_deref(),
            Some(r#"{"keys":[]}"#),
            "inline kept"
        );
        let doc = snap.documents.values().next().unwrap();
        assert_eq!(
            doc.pointer("/spec/jwtRules/0/jwks").and_then(Value::as_str),
            Some(r#"{"keys":[],"for":"a"}"#),
            "the sidecar receives the keys"
        );
    }
}
