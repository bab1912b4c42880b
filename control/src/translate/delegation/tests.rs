//! Delegation as istiod merges it: the conflict table of pilot's `TestHasConflict`
//! (pilot/pkg/model/virtualservice_test.go) restated in YAML, the merge rules of
//! `TestMergeHTTPRoutes`, and whole translations of Istio's documented delegation example.

use super::*;
use crate::istio::parse_str;
use crate::translate::tests::{forward, registry, table};
use crate::translate::{translate, translate_for, Workload};

fn entry(yaml: &str) -> HttpMatchRequest {
    serde_yaml::from_str(yaml).expect("match entry")
}

/// `hasConflict`, case by case (the names are pilot's test names).
#[test]
fn conflict_table_follows_pilot() {
    let cases: &[(&str, &str, &str, bool)] = &[
        (
            "regex uri",
            "uri: {regex: ^/productpage}",
            "uri: {prefix: /productpage/v2}",
            true,
        ),
        (
            "regex uri in root and delegate does not have uri",
            "uri: {regex: ^/productpage}",
            "{}",
            false,
        ),
        (
            "regex uri in delegate and root does not have uri",
            "{}",
            "uri: {regex: ^/productpage}",
            false,
        ),
        (
            "regex uri in root and delegate has conflicting uri match",
            "uri: {regex: ^/productpage}",
            "uri: {prefix: /productpage}",
            true,
        ),
        (
            "regex uri in delegate and root has conflicting uri match",
            "uri: {prefix: /productpage}",
            "uri: {regex: ^/productpage}",
            true,
        ),
        (
            "match uri",
            "uri: {prefix: /productpage}",
            "uri: {prefix: /productpage/v2}",
            false,
        ),
        (
            "mismatch uri",
            "uri: {prefix: /productpage/v2}",
            "uri: {prefix: /productpage}",
            true,
        ),
        (
            "match uri exact in prefix",
            "uri: {prefix: /productpage/v2}",
            "uri: {exact: /productpage/v2}",
            false,
        ),
        (
            "exact root, prefix leaf",
            "uri: {exact: /a}",
            "uri: {prefix: /a}",
            true,
        ),
        (
            "exact root, same exact leaf",
            "uri: {exact: /a}",
            "uri: {exact: /a}",
            false,
        ),
        (
            "headers not equal",
            "headers: {header: {exact: h1}}",
            "headers: {header: {exact: h2}}",
            true,
        ),
        (
            "headers equal",
            "headers: {header: {exact: h1}}",
            "headers: {header: {exact: h1}}",
            false,
        ),
        (
            "headers match",
            "headers: {header: {prefix: h1}}",
            "headers: {header: {exact: h1-v1}}",
            false,
        ),
        (
            "headers mismatch",
            "headers: {header: {prefix: h1}}",
            "headers: {header: {exact: h2}}",
            true,
        ),
        (
            "headers prefix mismatch",
            "headers: {header: {prefix: h1}}",
            "headers: {header: {prefix: h2}}",
            true,
        ),
        (
            "diff headers",
            "headers: {header: {exact: h1}}",
            "headers: {header-2: {exact: h2}}",
            false,
        ),
        (
            "withoutHeaders mismatch",
            "withoutHeaders: {header: {prefix: h1}}",
            "withoutHeaders: {header: {exact: h2}}",
            true,
        ),
        ("port unset in root", "{}", "port: 8080", false),
        ("port unset in leaf", "port: 8080", "{}", false),
        ("port differs", "port: 8080", "port: 8090", true),
        (
            "sourceLabels mismatch",
            "sourceLabels: {a: b}",
            "sourceLabels: {a: c}",
            true,
        ),
        (
            "sourceNamespace mismatch",
            "sourceNamespace: test1",
            "sourceNamespace: test2",
            true,
        ),
        (
            "sourceNamespace missing in leaf",
            "sourceNamespace: test1",
            "{}",
            true,
        ),
        ("ignoreUriCase differs", "ignoreUriCase: true", "{}", true),
        (
            "root has less gateways than delegate",
            "gateways: [ingress-gateway]",
            "gateways: [ingress-gateway, mesh]",
            true,
        ),
        (
            "leaf gateways inside root's",
            "gateways: [a, b]",
            "gateways: [b]",
            false,
        ),
    ];
    for (name, root, leaf, expected) in cases {
        assert_eq!(
            conflicts(&entry(root), &entry(leaf)),
            *expected,
            "{name}: root {root}, leaf {leaf}"
        );
    }
}

fn rule(yaml: &str) -> HttpRoute {
    serde_yaml::from_str(yaml).expect("rule")
}

/// `mergeHTTPRoute`: the leaf keeps what it sets, takes the root's where it sets nothing, and
/// names join `root-leaf`; each leaf entry is merged with every root entry it fits.
#[test]
fn merged_rule_takes_the_roots_fields_where_the_leaf_has_none() {
    let root = rule(
        r#"
name: root
match:
- {name: a, uri: {prefix: /reviews}, headers: {x-a: {exact: "1"}}}
- {name: b, uri: {prefix: /ratings}}
timeout: 3s
retries: {attempts: 2}
headers: {request: {set: {x-root: "1"}}}
"#,
    );
    let leaf = rule(
        r#"
name: leaf
match:
- {name: v2, uri: {prefix: /reviews/v2}, headers: {x-b: {exact: "2"}}}
timeout: 1s
route: [{destination: {host: reviews}}]
"#,
    );
    let merged = merge_rule(&root, leaf).expect("no conflict");
    assert_eq!(merged.name.as_deref(), Some("root-leaf"));
    assert_eq!(
        merged.matches.len(),
        1,
        "only root entry a fits /reviews/v2"
    );
    let m = &merged.matches[0];
    assert_eq!(m.name.as_deref(), Some("a-v2"));
    assert_eq!(
        m.uri.as_ref().and_then(|u| u.prefix.as_deref()),
        Some("/reviews/v2")
    );
    assert_eq!(
        m.headers.keys().collect::<Vec<_>>(),
        ["x-a", "x-b"],
        "headers are the union"
    );
    assert_eq!(
        merged.timeout.map(|t| t.0),
        Some(std::time::Duration::from_secs(1))
    );
    assert_eq!(merged.retries.as_ref().and_then(|r| r.attempts), Some(2));
    assert!(merged.headers.is_some());

    let no_match = rule("route: [{destination: {host: reviews}}]");
    let merged = merge_rule(&root, no_match).expect("an empty leaf match takes the root's");
    assert_eq!(merged.matches.len(), 2);
    assert_eq!(merged.name.as_deref(), Some("root"));

    let outside = rule("match: [{uri: {prefix: /details}}]\nroute: [{destination: {host: d}}]");
    assert!(merge_rule(&root, outside).is_none(), "fits no root entry");
}

/// Istio's documented example (VirtualService reference, `delegate`): a root in
/// `istio-system` for bookinfo.com hands /productpage and /reviews to VirtualServices in the
/// services' namespaces; short names in a delegate resolve in the delegate's namespace.
const DELEGATION: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo, namespace: default}
spec:
  hosts: [reviews]
  http:
  - name: to-reviews
    match: [{uri: {prefix: /reviews}}]
    timeout: 5s
    delegate: {name: reviews, namespace: team}
  - name: missing
    match: [{uri: {prefix: /nothing}}]
    delegate: {name: absent}
  - name: private
    match: [{uri: {prefix: /private}}]
    delegate: {name: private, namespace: team}
  - route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: team}
spec:
  http:
  - name: jason
    match: [{headers: {end-user: {exact: jason}}, uri: {prefix: /reviews/v2}}]
    route: [{destination: {host: reviews.default.svc.cluster.local, subset: v2}}]
  - name: elsewhere
    match: [{uri: {prefix: /details}}]
    route: [{destination: {host: reviews.default.svc.cluster.local, subset: v3}}]
  - name: rest
    route: [{destination: {host: reviews.default.svc.cluster.local, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: private, namespace: team}
spec:
  exportTo: ["."]
  http:
  - route: [{destination: {host: reviews.default.svc.cluster.local, subset: v3}}]
"#;

/// The subsets both examples route to.
const REVIEWS_SUBSETS: &str = r#"
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
"#;

#[test]
fn delegate_rules_replace_the_delegating_rule_in_the_route_table() {
    let set =
        parse_str(&format!("{DELEGATION}{REVIEWS_SUBSETS}"), "delegation.yaml").expect("parses");
    let t = translate(&set, &registry());
    let vhost = table(&t)
        .virtual_hosts
        .iter()
        .find(|v| v.name == "bookinfo.default")
        .unwrap_or_else(|| panic!("no root vhost: {:#?}", t.diagnostics));
    // jason and rest merged (elsewhere conflicts), then the root's own last rule.
    let names: Vec<&str> = vhost.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(vhost.routes.len(), 3, "{names:?} {:#?}", t.diagnostics);
    assert_eq!(
        forward(&vhost.routes[0]),
        [(
            "outbound|9080|v2|reviews.default.svc.cluster.local".to_string(),
            100
        )]
    );
    assert_eq!(
        forward(&vhost.routes[1]),
        [(
            "outbound|9080|v1|reviews.default.svc.cluster.local".to_string(),
            100
        )]
    );
    assert_eq!(
        vhost.routes[1].timeout,
        Some(std::time::Duration::from_secs(5)),
        "the delegate rule takes the root's timeout"
    );
    let said = |needle: &str| t.diagnostics.iter().any(|d| d.to_string().contains(needle));
    assert!(
        said("delegate VirtualService default/absent not found"),
        "{:#?}",
        t.diagnostics
    );
    assert!(
        said("not exported to namespace \"default\""),
        "{:#?}",
        t.diagnostics
    );
    assert!(
        said("not a subset of the delegating rule's"),
        "{:#?}",
        t.diagnostics
    );
    // A delegate has no hosts: it gives no virtual host of its own.
    assert!(!table(&t)
        .virtual_hosts
        .iter()
        .any(|v| v.name.starts_with("reviews.team")));
}

/// Delegation is decided per root, then the merged rules are filtered for the client like any
/// other (`sourceNamespace` on a delegate's entry).
#[test]
fn delegate_entries_are_filtered_for_the_client() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root, namespace: default}
spec:
  hosts: [reviews]
  http:
  - delegate: {name: leaf}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: leaf, namespace: default}
spec:
  http:
  - match: [{sourceNamespace: shop}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"#;
    let set = parse_str(&format!("{yaml}{REVIEWS_SUBSETS}"), "leaf.yaml").expect("parses");
    let first = |ns: &str| {
        let t = translate_for(&set, &registry(), &Workload::new(ns, &[]));
        let v = table(&t)
            .virtual_hosts
            .iter()
            .find(|v| v.name == "root.default")
            .cloned()
            .unwrap_or_else(|| panic!("{:#?}", t.diagnostics));
        forward(&v.routes[0])[0].0.clone()
    };
    assert_eq!(
        first("shop"),
        "outbound|9080|v2|reviews.default.svc.cluster.local"
    );
    assert_eq!(
        first("default"),
        "outbound|9080|v1|reviews.default.svc.cluster.local"
    );
}

/// Without any delegation the input is borrowed, not copied (translation runs per sidecar).
#[test]
fn no_delegation_borrows() {
    let set = parse_str(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews}}]\n",
        "r.yaml",
    )
    .expect("parses");
    let mut diags = Vec::new();
    assert!(matches!(
        merge_delegates(&set.virtual_services, &mut diags),
        Cow::Borrowed(_)
    ));
    assert!(diags.is_empty());
}

/// mergeHTTPRoute: a delegate rule without `corsPolicy` takes the root's; its own wins.
#[test]
fn cors_policy_is_inherited_from_the_root_unless_the_leaf_has_one() {
    let root = rule(
        r#"
name: root
corsPolicy: {allowOrigins: [{exact: "https://root.example"}]}
delegate: {name: leaf}
"#,
    );
    let merged =
        merge_rule(&root, rule("route: [{destination: {host: reviews}}]")).expect("no conflict");
    let origins = merged
        .cors_policy
        .map(|c| c.allow_origins)
        .unwrap_or_default();
    assert_eq!(origins[0].exact.as_deref(), Some("https://root.example"));
    let own = rule(
        r#"
corsPolicy: {allowOrigins: [{prefix: "https://leaf."}]}
route: [{destination: {host: reviews}}]
"#,
    );
    let merged = merge_rule(&root, own).expect("no conflict");
    let origins = merged
        .cors_policy
        .map(|c| c.allow_origins)
        .unwrap_or_default();
    assert_eq!(origins[0].prefix.as_deref(), Some("https://leaf."));
}
