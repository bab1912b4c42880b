//! The fake API server's request scoping: which kind a list or watch path names, in one
//! namespace (`/api/v1/namespaces/<ns>/<plural>`) or all (`/api/v1/<plural>`), and the
//! `metadata.name` / `metadata.namespace` field selectors a real server applies (kube's
//! `watcher::Config::fields`, as pilot's ConfigMap watch uses one).

use std::collections::BTreeMap;

use serde_json::Value;

/// What a list or watch request asks for.
pub struct Scope<'a> {
    pub group: &'a str,
    pub version: &'a str,
    pub plural: &'a str,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl<'a> Scope<'a> {
    /// The scope of `path` with its query `params`; `None`: not a list or watch path, or a
    /// field selector this double does not understand.
    pub fn of(path: &'a str, params: &BTreeMap<&str, &str>) -> Option<Scope<'a>> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version, namespace, plural) = match segments.as_slice() {
            ["api", version, plural] => ("", *version, None, *plural),
            ["api", version, "namespaces", ns, plural] => ("", *version, Some(*ns), *plural),
            ["apis", group, version, plural] => (*group, *version, None, *plural),
            ["apis", group, version, "namespaces", ns, plural] => {
                (*group, *version, Some(*ns), *plural)
            }
            _ => return None,
        };
        let mut scope = Scope {
            group,
            version,
            plural,
            namespace: namespace.map(str::to_string),
            name: None,
        };
        let selector = params.get("fieldSelector").map(|s| decode(s));
        for term in selector.iter().flat_map(|s| s.split(',')) {
            match term.split_once('=') {
                Some(("metadata.name", name)) => scope.name = Some(name.to_string()),
                Some(("metadata.namespace", ns)) => scope.namespace = Some(ns.to_string()),
                _ => return None,
            }
        }
        Some(scope)
    }

    /// Whether `object` is in scope.
    pub fn keeps(&self, object: &Value) -> bool {
        let meta = &object["metadata"];
        let is = |want: &Option<String>, field: &str| {
            want.as_deref()
                .is_none_or(|w| meta[field].as_str().unwrap_or("") == w)
        };
        is(&self.namespace, "namespace") && is(&self.name, "name")
    }
}

/// A query value percent-decoded (`metadata.name%3Distio`).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
