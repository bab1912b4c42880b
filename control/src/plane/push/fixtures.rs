//! The mesh the push tests run on: two namespaces' Services, a DestinationRule, and
//! VirtualService variants to move between, one of which every sidecar refuses.
//!
//! Shared by push/tests.rs and control/tests/plane_turmoil.rs, which include this file by path;
//! the types come from the including module (`super::`), so the same file compiles inside the
//! crate and outside it.

use std::sync::{Arc, OnceLock};

use super::{SidecarDocument, Snapshot, Version};

pub const BASE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec: {selector: {app: cart}, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: posts, namespace: blog}
spec: {selector: {app: posts}, ports: [{name: http, port: 80}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: cart, namespace: shop}
spec:
  host: cart
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
"#;

fn vs(name: &str, v1: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: shop}}
spec:
  hosts: [cart]
  http:
  - route:
    - {{destination: {{host: cart, subset: v1}}, weight: {v1}}}
    - {{destination: {{host: cart, subset: v2}}, weight: {}}}
",
        100 - v1
    )
}

const BLOG_SIDECAR: &str = "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: blog}
spec:
  egress: [{hosts: [\"./*\"]}]
";

/// The snapshots a test moves between: weight changes, a Sidecar, and one with a resource
/// every sidecar that sees it refuses (named `bad`).
pub fn snapshots() -> &'static [Arc<Snapshot>] {
    static SNAPSHOTS: OnceLock<Vec<Arc<Snapshot>>> = OnceLock::new();
    SNAPSHOTS.get_or_init(|| {
        let variants = [
            vs("cart", 100),
            vs("cart", 80),
            vs("cart", 50),
            format!("{}---\n{BLOG_SIDECAR}", vs("cart", 80)),
            format!("{}---\n{}", vs("cart", 80), vs("bad", 10)),
        ];
        variants
            .iter()
            .map(|v| {
                Arc::new(
                    Snapshot::from_files(&[
                        ("base.yaml".into(), BASE.into()),
                        ("vs.yaml".into(), v.clone()),
                    ])
                    .unwrap(),
                )
            })
            .collect()
    })
}

pub const BAD: usize = 4;

/// The sidecar's apply step in these tests: refuse a document holding `bad`.
pub fn apply(_: Version, doc: &SidecarDocument) -> Result<(), String> {
    if doc
        .resources
        .iter()
        .any(|r| r.document["metadata"]["name"] == "bad")
    {
        Err("VirtualService shop/bad: invalid".into())
    } else {
        Ok(())
    }
}
