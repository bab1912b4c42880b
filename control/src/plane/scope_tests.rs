//! Per-sidecar scoping: `Sidecar` egress hosts and `exportTo`, as pilot's sidecar.go and
//! push_context.go select them.

use super::scope::{scope, Scoped};
use super::Snapshot;
use crate::translate::Workload;

/// Two namespaces, `shop` and `blog`, each with a service, a VirtualService and a
/// DestinationRule; `shop/secret` is exported to its own namespace only, and so is
/// `blog`'s VirtualService.
const MESH: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec: {selector: {app: cart}, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata:
  name: secret
  namespace: shop
  annotations: {networking.istio.io/exportTo: "."}
spec: {selector: {app: secret}, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: posts, namespace: blog}
spec: {selector: {app: posts}, ports: [{name: http, port: 80}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cart, namespace: shop}
spec:
  hosts: [cart]
  http: [{route: [{destination: {host: cart}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: posts, namespace: blog}
spec:
  exportTo: ["."]
  hosts: [posts]
  http: [{route: [{destination: {host: posts, subset: v1}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: edge, namespace: shop}
spec:
  hosts: [cart.example.com]
  gateways: [istio-system/ingress]
  http: [{route: [{destination: {host: cart}}]}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: posts, namespace: blog}
spec:
  host: posts
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: cart, namespace: shop}
spec:
  host: cart.shop.svc.cluster.local
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments, namespace: shop}
spec:
  hosts: [pay.example.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
"#;

fn snapshot(extra: &str) -> Snapshot {
    Snapshot::from_files(&[
        ("mesh.yaml".into(), MESH.into()),
        ("sidecars.yaml".into(), extra.into()),
    ])
    .unwrap()
}

fn workload(namespace: &str, labels: &[(&str, &str)]) -> Workload {
    Workload {
        namespace: namespace.into(),
        service_account: "default".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        locality: None,
    }
}

fn hosts(s: &Scoped) -> Vec<&str> {
    s.document
        .registry
        .services
        .iter()
        .map(|s| s.host.as_str())
        .collect()
}

fn names(s: &Scoped) -> Vec<String> {
    s.document
        .resources
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r.document["kind"].as_str().unwrap_or("?"),
                r.document["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

#[test]
fn without_a_sidecar_resource_everything_exported_to_the_namespace_is_seen() {
    let snap = snapshot("");
    let shop = scope(&snap, &workload("shop", &[]));
    assert_eq!(shop.sidecar, None);
    assert_eq!(
        hosts(&shop),
        vec![
            "cart.shop.svc.cluster.local",
            "secret.shop.svc.cluster.local",
            "posts.blog.svc.cluster.local"
        ]
    );
    // blog's VirtualService is exported to blog only; the gateway-bound one is not a sidecar's.
    assert_eq!(
        names(&shop),
        vec![
            "ServiceEntry/payments",
            "VirtualService/cart",
            "DestinationRule/posts",
            "DestinationRule/cart"
        ]
    );
    let blog = scope(&snap, &workload("blog", &[]));
    assert_eq!(
        hosts(&blog),
        vec![
            "cart.shop.svc.cluster.local",
            "posts.blog.svc.cluster.local"
        ],
        "shop/secret is exported to shop only"
    );
    assert!(names(&blog).contains(&"VirtualService/posts".to_string()));
}

const NAMESPACE_SIDECAR: &str = r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: blog}
spec:
  egress:
  - hosts: ["./*", "istio-system/*"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reader, namespace: blog}
spec:
  workloadSelector: {labels: {app: reader}}
  egress:
  - hosts: ["shop/cart.shop.svc.cluster.local", "*/*.example.com"]
"#;

#[test]
fn a_namespace_sidecar_limits_egress_and_a_selecting_one_wins() {
    let snap = snapshot(NAMESPACE_SIDECAR);
    let blog = scope(&snap, &workload("blog", &[("app", "posts")]));
    assert_eq!(
        blog.sidecar.as_ref().map(|s| s.name.as_str()),
        Some("default")
    );
    assert_eq!(hosts(&blog), vec!["posts.blog.svc.cluster.local"]);
    assert_eq!(
        names(&blog),
        vec!["VirtualService/posts", "DestinationRule/posts"]
    );
    let reader = scope(&snap, &workload("blog", &[("app", "reader")]));
    assert_eq!(
        reader.sidecar.as_ref().map(|s| s.name.as_str()),
        Some("reader")
    );
    assert_eq!(hosts(&reader), vec!["cart.shop.svc.cluster.local"]);
    assert_eq!(
        names(&reader),
        vec![
            "ServiceEntry/payments",
            "VirtualService/cart",
            "DestinationRule/cart"
        ]
    );
    // shop has no Sidecar of its own and there is no root one: the default scope.
    let shop = scope(&snap, &workload("shop", &[]));
    assert_eq!(shop.sidecar, None);
    assert_eq!(hosts(&shop).len(), 3);
}

#[test]
fn the_root_namespace_sidecar_applies_where_a_namespace_has_none() {
    let root = r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: istio-system}
spec:
  egress:
  - hosts: ["./*", "~shop/secret.shop.svc.cluster.local"]
"#;
    let snap = snapshot(root);
    let shop = scope(&snap, &workload("shop", &[]));
    assert_eq!(
        shop.sidecar.as_ref().map(|s| s.namespace.as_str()),
        Some("istio-system")
    );
    // `.` is the workload's namespace; the `~` entry excludes.
    assert_eq!(hosts(&shop), vec!["cart.shop.svc.cluster.local"]);
}

#[test]
fn a_scoped_document_round_trips_and_translates_to_fewer_clusters() {
    let snap = snapshot(NAMESPACE_SIDECAR);
    let full = scope(
        &Snapshot::from_files(&[("m.yaml".into(), MESH.into())]).unwrap(),
        &workload("blog", &[]),
    );
    let scoped = scope(&snap, &workload("blog", &[]));
    let bytes = serde_json::to_vec(&scoped.document).unwrap();
    let back: super::document::SidecarDocument = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(back, scoped.document);
    let t_scoped = back.translate().unwrap();
    let t_full = full.document.translate().unwrap();
    assert!(t_scoped.config.clusters.len() < t_full.config.clusters.len());
    assert!(t_scoped
        .config
        .clusters
        .iter()
        .all(|c| c.name.ends_with("posts.blog.svc.cluster.local")));
    assert!(scoped.document.encoded_len() < full.document.encoded_len());
}

#[test]
fn an_invalid_resource_is_the_sidecars_nack_reason() {
    let bad_regex = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bad, namespace: blog}
spec:
  hosts: [posts]
  http:
  - match: [{uri: {regex: "(unclosed"}}]
    route: [{destination: {host: posts}}]
"#;
    let snap = snapshot(bad_regex);
    let doc = scope(&snap, &workload("blog", &[])).document;
    let err = doc.translate().unwrap_err().to_string();
    assert!(err.contains("unclosed") || err.contains("regex"), "{err}");
}

#[test]
fn services_an_imported_virtual_service_routes_to_are_imported_too() {
    let forward = r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: blog}
spec:
  egress:
  - hosts: ["./*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: to-cart, namespace: blog}
spec:
  hosts: [posts]
  http:
  - match: [{uri: {prefix: /buy}}]
    route: [{destination: {host: cart.shop.svc.cluster.local}}]
"#;
    let snap = snapshot(forward);
    let blog = scope(&snap, &workload("blog", &[]));
    assert_eq!(
        hosts(&blog),
        vec![
            "cart.shop.svc.cluster.local",
            "posts.blog.svc.cluster.local"
        ]
    );
    // cart's DestinationRule comes with it; shop's VirtualService for cart does not (its host
    // is not imported: only the destination is).
    let names = names(&blog);
    assert!(
        names.contains(&"DestinationRule/cart".to_string()),
        "{names:?}"
    );
    assert!(
        !names.contains(&"VirtualService/cart".to_string()),
        "{names:?}"
    );
    assert!(blog.document.translate().is_ok());
}

/// Security policies reach the sidecars they can apply to: the root namespace's and the
/// workload's own namespace's, plus every namespace-wide PeerAuthentication (auto mTLS reads
/// the destination namespace's mode); the sidecar then composes them for its workload.
#[test]
fn security_policies_of_the_root_and_own_namespace_are_pushed() {
    let s = snapshot(
        r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: mesh, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: blog-wide, namespace: blog}
spec: {mtls: {mode: DISABLE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: blog-posts, namespace: blog}
spec: {selector: {matchLabels: {app: posts}}, mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: shop-only, namespace: shop}
spec: {rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: blog-only, namespace: blog}
spec: {rules: [{}]}
"#,
    );
    let shop = scope(&s, &workload("shop", &[("app", "cart")]));
    let got = names(&shop);
    for expected in [
        "PeerAuthentication/mesh",
        "PeerAuthentication/blog-wide",
        "AuthorizationPolicy/shop-only",
    ] {
        assert!(got.iter().any(|n| n == expected), "{expected}: {got:?}");
    }
    for unexpected in [
        "PeerAuthentication/blog-posts",
        "AuthorizationPolicy/blog-only",
    ] {
        assert!(
            !got.iter().any(|n| n == unexpected),
            "{unexpected}: {got:?}"
        );
    }
    // And the sidecar composes them as pilot: the mesh's STRICT for a shop workload.
    let resources = shop.document.resource_set().unwrap();
    let merged = crate::translate::peer_authn::compose(&resources, &workload("shop", &[]));
    assert_eq!(merged.mode, trellis_engine::config::InboundMode::Strict);
    assert_eq!(
        crate::translate::peer_authn::service_mode(&resources, "blog"),
        trellis_engine::config::InboundMode::Disable
    );
}

/// A delegate VirtualService (no hosts) travels with the root that names it, even to a
/// sidecar whose `Sidecar` imports only its own namespace, and the services its rules route to
/// are imported with it (pilot merges delegates before scoping: virtualservice_controller.go).
#[test]
fn delegates_travel_with_their_root() {
    let snap = snapshot(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cart-root, namespace: shop}
spec:
  hosts: [cart]
  http: [{match: [{uri: {prefix: /posts}}], delegate: {name: posts-leaf, namespace: blog}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: posts-leaf, namespace: blog}
spec:
  http: [{route: [{destination: {host: posts}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: unused-leaf, namespace: blog}
spec:
  http: [{route: [{destination: {host: posts}}]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress: [{hosts: ["./*"]}]
"#,
    );
    let shop = scope(&snap, &workload("shop", &[]));
    let got = names(&shop);
    assert!(
        got.contains(&"VirtualService/posts-leaf".to_string()),
        "{got:?}"
    );
    assert!(
        !got.contains(&"VirtualService/unused-leaf".to_string()),
        "{got:?}"
    );
    assert!(
        hosts(&shop).contains(&"posts.blog.svc.cluster.local"),
        "{:?}",
        hosts(&shop)
    );
}

/// The pushed document carries the workload's inbound port protocols, from the Services that
/// select its pod by target port (pilot's getFilterChainsByServicePort), whether or not
/// those Services are visible to the sidecar's egress.
#[test]
fn the_document_carries_the_workload_inbound_protocols() {
    let pods = r#"
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  selector: {app: db}
  ports:
  - {name: mysql, port: 3306, targetPort: 13306}
  - {name: http-admin, port: 80, targetPort: admin}
  - {name: metrics, port: 9000}
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: shop, labels: {app: db}}
spec:
  containers:
  - name: db
    image: example/db
    ports: [{name: admin, containerPort: 8080}]
status: {podIP: 10.0.0.9}
"#;
    let snap = Snapshot::from_files(&[("db.yaml".into(), pods.into())]).unwrap();
    let db = Workload::new("shop", &[("app", "db")]);
    use crate::translate::inbound_protocols::InboundProtocol::{Detect, Http, Tcp};
    assert_eq!(
        scope(&snap, &db).document.inbound,
        vec![(8080, Http), (9000, Detect), (13306, Tcp)]
    );
    let other = Workload::new("shop", &[("app", "web")]);
    assert!(scope(&snap, &other).document.inbound.is_empty());
}

/// A Sidecar's `outboundTrafficPolicy` replaces the mesh config's for the sidecars it applies
/// to (`ConvertToSidecarScope`, pilot/pkg/model/sidecar.go); without `mode` it is
/// REGISTRY_ONLY, the enum's zero value; elsewhere the mesh config's stays.
#[test]
fn a_sidecars_outbound_traffic_policy_wins_over_the_mesh_configs() {
    use crate::plane::mesh_settings::OutboundTrafficMode::{AllowAny, RegistryOnly};
    let sidecars = "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: blog}\nspec: {outboundTrafficPolicy: {mode: ALLOW_ANY}}\n---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: locked, namespace: blog}\nspec: {workloadSelector: {labels: {app: locked}}, outboundTrafficPolicy: {}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata: {mesh: \"outboundTrafficPolicy: {mode: REGISTRY_ONLY}\\nenableAutoMtls: false\\n\"}\n";
    let snap = snapshot(sidecars);
    let mode = |w: Workload| scope(&snap, &w).document.mesh.outbound_mode();
    assert_eq!(mode(workload("blog", &[("app", "posts")])), AllowAny);
    assert_eq!(mode(workload("blog", &[("app", "locked")])), RegistryOnly);
    assert_eq!(
        mode(workload("shop", &[])),
        RegistryOnly,
        "the mesh config's"
    );
    let blog = scope(&snap, &workload("blog", &[("app", "posts")]));
    assert!(
        !blog.document.mesh.auto_mtls(),
        "the rest is the mesh config's"
    );
}
