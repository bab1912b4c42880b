//! The directory source end to end: YAML files → registry, workloads, Istio resources.

use std::net::IpAddr;

use super::injection::TLS_MODE_LABEL;
use super::*;
use crate::diag::Severity;

const NAMESPACE: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {istio-injection: enabled}
"#;

const REVIEWS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  selector: {app: reviews}
  ports:
  - {name: http, port: 9080, targetPort: web}
  - {name: metrics, port: 9090, targetPort: 15090, appProtocol: http}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: shop-reviews, namespace: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: reviews, version: v1}}
  template:
    metadata:
      labels: {app: reviews, version: v1}
      annotations: {trellis.dev/addresses: "10.0.0.1, 10.0.0.2"}
    spec:
      serviceAccountName: shop-reviews
      containers:
      - name: reviews
        image: example/reviews:v1
        ports: [{name: web, containerPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata:
  name: reviews-v2-abc
  namespace: shop
  labels: {app: reviews, version: v2, sidecar.istio.io/inject: "false"}
spec:
  containers:
  - name: reviews
    image: example/reviews:v2
    ports: [{name: web, containerPort: 8081}]
status: {podIP: 10.0.0.3}
"#;

const VS: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
"#;

fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn services_select_pods_and_deployment_replicas_with_target_ports_by_name() {
    let snap = Snapshot::from_files(&files(&[
        ("ns.yaml", NAMESPACE),
        ("reviews.yaml", REVIEWS),
        ("vs.yaml", VS),
    ]))
    .unwrap();
    let svc = snap
        .registry
        .service("reviews.shop.svc.cluster.local")
        .expect("reviews service");
    assert_eq!(svc.ports.len(), 2);
    assert_eq!(svc.ports[0].protocol.as_deref(), Some("HTTP"));
    assert_eq!(svc.ports[1].protocol.as_deref(), Some("HTTP"));
    let addrs: Vec<IpAddr> = svc.endpoints.iter().map(|e| e.address).collect();
    assert_eq!(addrs, vec![ip("10.0.0.3"), ip("10.0.0.1"), ip("10.0.0.2")]);
    // targetPort `web` resolves against each pod's own container ports.
    let v2 = &svc.endpoints[0];
    assert_eq!(v2.target_port(9080), 8081);
    assert_eq!(v2.target_port(9090), 15090);
    let v1 = &svc.endpoints[1];
    assert_eq!(v1.target_port(9080), 8080);
    assert_eq!(v1.service_account.as_deref(), Some("shop-reviews"));
    assert_eq!(v2.service_account.as_deref(), Some("default"));
    // Injected (namespace label) pods carry tlsMode; the opted-out pod does not.
    assert_eq!(
        v1.labels.get(TLS_MODE_LABEL).map(String::as_str),
        Some("istio")
    );
    assert_eq!(v1.labels.get("version").map(String::as_str), Some("v1"));
    assert_eq!(v2.labels.get(TLS_MODE_LABEL), None);
    assert_eq!(snap.resources.virtual_services.len(), 1);
    assert_eq!(snap.documents.len(), 1);
    // The Kubernetes kinds read here are not reported as skipped.
    assert!(
        !snap
            .diagnostics
            .iter()
            .any(|d| d.message.contains("skipped")),
        "{:?}",
        snap.diagnostics
    );
}

#[test]
fn workloads_carry_identity_for_sidecars() {
    let snap =
        Snapshot::from_files(&files(&[("ns.yaml", NAMESPACE), ("r.yaml", REVIEWS)])).unwrap();
    let names: Vec<&str> = snap.workloads.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["reviews-v2-abc", "reviews-v1-0", "reviews-v1-1"]
    );
    let w = snap.workload("shop", "reviews-v1-1").unwrap();
    assert!(w.injected);
    assert_eq!(w.workload.service_account, "shop-reviews");
    assert_eq!(
        w.workload.spiffe_id("cluster.local"),
        "spiffe://cluster.local/ns/shop/sa/shop-reviews"
    );
    assert!(!snap.workload("shop", "reviews-v2-abc").unwrap().injected);
}

#[test]
fn loopback_addresses_carry_the_port_every_service_port_lands_on() {
    let text = REVIEWS.replace("10.0.0.1, 10.0.0.2", "127.0.0.1:9081");
    let snap = Snapshot::from_files(&files(&[("r.yaml", &text)])).unwrap();
    let svc = snap
        .registry
        .service("reviews.shop.svc.cluster.local")
        .unwrap();
    let replica = svc
        .endpoints
        .iter()
        .find(|e| e.address == ip("127.0.0.1"))
        .unwrap();
    assert_eq!(replica.target_port(9080), 9081);
    assert_eq!(replica.target_port(9090), 9081);
}

#[test]
fn endpoint_slices_replace_the_selector_and_drop_unready_endpoints() {
    let slice = r#"
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  ports: [{name: tcp-db, port: 5432}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-1
  namespace: shop
  labels: {kubernetes.io/service-name: db}
addressType: IPv4
ports: [{name: tcp-db, port: 15432}]
endpoints:
- addresses: [10.1.0.1]
- addresses: [10.1.0.2]
  conditions: {ready: false}
- addresses: [10.1.0.3]
  targetRef: {kind: Pod, name: gone}
"#;
    let snap = Snapshot::from_files(&files(&[("db.yaml", slice)])).unwrap();
    let svc = snap.registry.service("db.shop.svc.cluster.local").unwrap();
    assert_eq!(svc.ports[0].protocol.as_deref(), Some("TCP"));
    assert_eq!(svc.endpoints.len(), 1, "{:?}", svc.endpoints);
    assert_eq!(svc.endpoints[0].address, ip("10.1.0.1"));
    assert_eq!(svc.endpoints[0].target_port(5432), 15432);
    assert_eq!(svc.endpoints[0].service_account, None);
}

#[test]
fn problems_are_reported_not_dropped() {
    let bad = REVIEWS
        .replace("targetPort: web", "targetPort: nope")
        .replace(
            "serviceAccountName: shop-reviews",
            "serviceAccountName: ghost",
        )
        .replace(
            "metadata: {name: reviews, namespace: shop}\nspec:\n  selector",
            "metadata: {name: reviews, namespace: shop}\nspec:\n  sessionAfinity: None\n  selector",
        );
    let snap = Snapshot::from_files(&files(&[("r.yaml", &bad)])).unwrap();
    let shown: Vec<String> = snap.diagnostics.iter().map(|d| d.to_string()).collect();
    let has = |needle: &str| shown.iter().any(|s| s.contains(needle));
    assert!(has("spec.sessionAfinity"), "{shown:#?}");
    assert!(has("no container port named \"nope\""), "{shown:#?}");
    assert!(has("service account \"ghost\""), "{shown:#?}");
    assert!(snap
        .diagnostics
        .iter()
        .all(|d| d.severity == Severity::Warning));
}

#[test]
fn digest_is_a_function_of_the_content() {
    let a = Snapshot::from_files(&files(&[("r.yaml", REVIEWS)])).unwrap();
    let b = Snapshot::from_files(&files(&[("r.yaml", REVIEWS)])).unwrap();
    let c = Snapshot::from_files(&files(&[("r.yaml", VS)])).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.digest, c.digest);
}

#[test]
fn bookinfo_platform_manifest_gives_its_services_and_workloads() {
    let dir = crate::shared_dir().join("istio/samples/bookinfo/platform/kube");
    let text = std::fs::read_to_string(dir.join("bookinfo.yaml")).unwrap();
    let snap = Snapshot::from_files(&[("bookinfo.yaml".into(), text)]).unwrap();
    let hosts: Vec<&str> = snap
        .registry
        .services
        .iter()
        .map(|s| s.host.as_str())
        .collect();
    assert_eq!(
        hosts,
        vec![
            "details.default.svc.cluster.local",
            "ratings.default.svc.cluster.local",
            "reviews.default.svc.cluster.local",
            "productpage.default.svc.cluster.local"
        ]
    );
    let reviews = snap.workload("default", "reviews-v2").unwrap();
    assert_eq!(reviews.workload.service_account, "bookinfo-reviews");
    assert!(snap
        .diagnostics
        .iter()
        .all(|d| d.severity != Severity::Error));
    assert!(
        !snap
            .diagnostics
            .iter()
            .any(|d| d.message.contains("unknown field")),
        "{:#?}",
        snap.diagnostics
    );
}

#[test]
fn watcher_hands_out_a_snapshot_only_when_content_changes() {
    let dir = std::env::temp_dir().join(format!("trellis-watch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("vs.yaml"), VS).unwrap();
    let mut watcher = DirWatcher::new(&dir);
    assert!(watcher.poll().unwrap().is_some());
    assert!(watcher.poll().unwrap().is_none());
    std::fs::write(dir.join("vs.yaml"), VS.replace("v1}", "v2}") + "\n").unwrap();
    let snap = watcher.poll().unwrap().expect("changed");
    assert_eq!(snap.resources.virtual_services.len(), 1);
    std::fs::write(dir.join("vs.yaml"), "a: [unclosed").unwrap();
    assert!(watcher.poll().is_err());
    assert!(
        watcher.poll().unwrap().is_none(),
        "reported once per change"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_documented_example_directory_loads_cleanly() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/plane/mesh");
    let snap = Snapshot::read_dir(&dir).unwrap();
    assert!(snap.diagnostics.is_empty(), "{:#?}", snap.diagnostics);
    let reviews = snap
        .registry
        .service("reviews.default.svc.cluster.local")
        .unwrap();
    assert_eq!(reviews.endpoints.len(), 3);
    assert!(reviews.endpoints.iter().all(|e| {
        e.labels.get(TLS_MODE_LABEL).map(String::as_str) == Some("istio")
            && e.service_account.as_deref() == Some("bookinfo-reviews")
    }));
    let productpage = snap.workload("default", "productpage-v1").unwrap();
    let scoped = crate::plane::scope(&snap, &productpage.workload);
    let translation = scoped.document.translate().unwrap();
    assert!(translation
        .config
        .clusters
        .iter()
        .any(|c| c.name == "outbound|9080|v3|reviews.default.svc.cluster.local"));
}

#[test]
fn slice_endpoints_find_their_pod_by_ip_and_injected_pods_are_recognised() {
    let text = r#"
apiVersion: v1
kind: Pod
metadata:
  name: db-0
  namespace: shop
  labels: {app: db}
  annotations: {sidecar.istio.io/status: '{"containers":["istio-proxy"]}'}
spec:
  serviceAccountName: db
  containers: [{name: db, image: db}]
status: {podIP: 10.1.0.1}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  ports: [{name: tcp, port: 5432}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-abc
  namespace: shop
  labels: {kubernetes.io/service-name: db}
addressType: IPv4
ports: [{name: tcp, port: 5432}]
endpoints:
- addresses: [10.1.0.1]
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: shop}
spec: {type: ExternalName, externalName: example.com}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  ports: [{name: tcp, port: 5433}]
"#;
    let snap = Snapshot::from_files(&files(&[("db.yaml", text)])).unwrap();
    let db = snap.registry.service("db.shop.svc.cluster.local").unwrap();
    assert_eq!(db.ports[0].number, 5432, "the first definition wins");
    let e = &db.endpoints[0];
    assert_eq!(e.service_account.as_deref(), Some("db"));
    assert_eq!(e.labels.get("app").map(String::as_str), Some("db"));
    // Injected (the injector's status annotation), though its namespace is not labelled.
    assert_eq!(
        e.labels.get(TLS_MODE_LABEL).map(String::as_str),
        Some("istio")
    );
    assert!(snap
        .registry
        .service("ext.shop.svc.cluster.local")
        .is_none());
    let shown: Vec<String> = snap.diagnostics.iter().map(|d| d.to_string()).collect();
    assert!(
        shown.iter().any(|s| s.contains("ExternalName")),
        "{shown:#?}"
    );
    assert!(
        shown.iter().any(|s| s.contains("defined twice")),
        "{shown:#?}"
    );
}

/// DNS answers are part of what a snapshot says: they change its digest (so a moved name is
/// pushed) and reach every sidecar's registry.
#[test]
fn dns_answers_change_the_digest_and_reach_the_sidecars() {
    let snap = Snapshot::from_files(&[(
        "se.yaml".into(),
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: api, namespace: default}\nspec:\n  hosts: [api.example.com]\n  ports: [{number: 80, name: http}]\n  resolution: DNS\n".into(),
    )])
    .expect("snapshot");
    let answers = std::collections::BTreeMap::from([(
        "api.example.com".to_string(),
        vec!["192.0.2.1".parse().expect("ip")],
    )]);
    let resolved = snap.clone().with_dns(answers.clone());
    assert_ne!(resolved.digest, snap.digest);
    assert_eq!(
        snap.clone().with_dns(answers).digest,
        resolved.digest,
        "deterministic"
    );
    let workload = crate::translate::Workload::default();
    let scoped = super::scope::scope(&resolved, &workload);
    assert_eq!(scoped.document.registry.dns, resolved.registry.dns);
}

/// The Kubernetes source's entry point reads objects exactly as the directory reads files: the
/// snapshot of parsed objects equals the snapshot of their compact JSON as files, digest
/// included, and an object the loader refuses is left out with an error instead of failing.
#[test]
fn objects_read_as_files_of_their_json_and_a_bad_one_is_left_out() {
    let mut objects: Vec<(String, serde_json::Value)> = Vec::new();
    for text in [NAMESPACE, REVIEWS, VS] {
        for doc in serde_yaml::Deserializer::from_str(text) {
            let value = <serde_yaml::Value as serde::Deserialize>::deserialize(doc).expect("yaml");
            if !value.is_null() {
                let json = serde_json::to_value(value).expect("json");
                objects.push(("<kubernetes>".to_string(), json));
            }
        }
    }
    let files: Vec<(String, String)> = objects
        .iter()
        .map(|(name, object)| (name.clone(), object.to_string()))
        .collect();
    let from_objects = Snapshot::from_objects(&objects);
    assert_eq!(from_objects, Snapshot::from_files(&files).expect("files"));
    assert!(!from_objects.registry.services.is_empty());

    let bad = serde_json::json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "bad"}, "spec": {"ports": [{"port": "http"}]}});
    objects.push(("<kubernetes>".to_string(), bad));
    let with_bad = Snapshot::from_objects(&objects);
    assert_eq!(with_bad.registry, from_objects.registry);
    assert!(
        with_bad
            .diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error && d.message.contains("spec.ports[0].port")),
        "{:#?}",
        with_bad.diagnostics
    );
}

/// pilot reads its mesh config from the `mesh` key of the `istio` ConfigMap in istio-system
/// (`pilot/pkg/bootstrap/configcontroller.go`, `mesh.ApplyMeshConfigDefaults`); a snapshot
/// carries it to every sidecar's document, and a broken one refuses the snapshot (the last
/// good one keeps serving).
#[test]
fn the_istio_config_map_is_the_mesh_config() {
    let map = |mesh: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: istio-system}}\ndata:\n  mesh: |\n    {mesh}\n"
        )
    };
    let plain = Snapshot::from_files(&[]).expect("empty");
    assert!(plain.mesh.is_default());
    let set = Snapshot::from_files(&[("istio.yaml".into(), map("protocolDetectionTimeout: 2s"))])
        .expect("reads");
    assert_eq!(set.mesh.protocol_detection_timeout_ms, Some(2000));
    // Another ConfigMap of that name elsewhere is not the mesh config.
    let other = Snapshot::from_files(&[(
        "other.yaml".into(),
        map("protocolDetectionTimeout: 2s").replace("istio-system", "default"),
    )])
    .expect("reads");
    assert!(other.mesh.is_default());
    let broken = Snapshot::from_files(&[("istio.yaml".into(), map("protocolDetectionTimeout: x"))]);
    assert!(broken.is_err());
    // `--meshConfig` wins, and changes the digest.
    let file = crate::plane::mesh_settings::MeshSettings {
        protocol_detection_timeout_ms: Some(100),
        ..Default::default()
    };
    let over = set.clone().with_mesh(&file);
    assert_eq!(over.mesh, file);
    assert_ne!(over.digest, set.digest);
}
