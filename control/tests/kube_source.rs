//! The Kubernetes source against an API-server double (`support/fake_apiserver.rs`) that speaks
//! the list/watch protocol: bookinfo applied to it gives the snapshot the directory source
//! gives for the same objects; changes, deletions, `410 Gone` with a relist, missing CRDs and
//! an API server that goes away and comes back.

#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use fake_apiserver::FakeApiServer;
use serde::Deserialize;
use serde_json::{json, Value};
use trellis_control::plane::{KubeSource, KubeSourceConfig, Snapshot};
use trellis_control::translate::translate;

const WAIT: Duration = Duration::from_secs(20);

fn bookinfo_dir() -> std::path::PathBuf {
    let dir = trellis_control::shared_dir().join("istio/samples/bookinfo");
    assert!(dir.is_dir(), "bookinfo not found at {}", dir.display());
    dir
}

fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde_json::to_value(serde_yaml::Value::deserialize(d).unwrap()).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// bookinfo's platform manifest as a cluster holds it: its Deployments replaced by the Pods
/// they would run (one each, an address each), in an injection-enabled namespace; plus the
/// Istio objects of `networking` files.
fn bookinfo_objects(networking: &[&str]) -> Vec<Value> {
    let dir = bookinfo_dir();
    let platform = std::fs::read_to_string(dir.join("platform/kube/bookinfo.yaml")).unwrap();
    let mut objects = vec![json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "default", "labels": {"istio-injection": "enabled"}}})];
    let mut address = 10;
    for doc in documents(&platform) {
        if doc["kind"] == "Deployment" {
            let template = &doc["spec"]["template"];
            let name = doc["metadata"]["name"].as_str().unwrap();
            address += 1;
            objects.push(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("{name}-0"), "namespace": "default",
                             "generateName": format!("{name}-"),
                             "labels": template["metadata"]["labels"]},
                "spec": template["spec"],
                "status": {"podIP": format!("10.1.0.{address}"), "phase": "Running",
                           "conditions": [{"type": "Ready", "status": "True"}]},
            }));
        } else if doc["kind"] != "ServiceAccount" {
            objects.push(doc);
        }
    }
    for file in networking {
        let text = std::fs::read_to_string(dir.join("networking").join(file)).unwrap();
        objects.extend(documents(&text));
    }
    objects
}

fn test_config(server: &FakeApiServer, dir: &std::path::Path) -> KubeSourceConfig {
    KubeSourceConfig {
        kubeconfig: Some(server.write_kubeconfig(dir)),
        context: None,
        crd_retry: Duration::from_millis(200),
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        // Short watches: each ends with a bookmark and resumes from it.
        watch_timeout_secs: Some(1),
    }
}

/// The next snapshot that satisfies `ok`, failing the test after [`WAIT`].
fn next_where(source: &mut KubeSource, what: &str, ok: impl Fn(&Snapshot) -> bool) -> Snapshot {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no snapshot where {what}: {:?}",
            source.status()
        );
        if let Some(snapshot) = source.wait(left) {
            if ok(&snapshot) {
                return snapshot;
            }
        }
    }
}

fn endpoints(snapshot: &Snapshot, host: &str) -> Vec<String> {
    snapshot
        .registry
        .service(host)
        .map(|s| s.endpoints.iter().map(|e| e.address.to_string()).collect())
        .unwrap_or_default()
}

fn has_vs(snapshot: &Snapshot, name: &str) -> bool {
    snapshot
        .resources
        .virtual_services
        .iter()
        .any(|v| v.source.name == name)
}

/// What must agree between two sources' snapshots of the same objects: everything but where
/// each object came from (its file) and the order files list them in.
fn comparable(snapshot: &Snapshot) -> Value {
    let mut services = snapshot.registry.services.clone();
    services.sort_by(|a, b| a.host.cmp(&b.host));
    let mut workloads: Vec<Value> = snapshot
        .workloads
        .iter()
        .map(|w| {
            json!({"name": w.name, "workload": w.workload, "injected": w.injected,
                   "address": w.address.map(|a| a.ip.to_string()),
                   "ports": w.named_ports})
        })
        .collect();
    workloads.sort_by_key(|w| w.to_string());
    let diagnostics: BTreeSet<String> = snapshot
        .diagnostics
        .iter()
        .map(|d| {
            format!(
                "{:?} {:?} {:?} {}",
                d.severity, d.resource, d.field, d.message
            )
        })
        .collect();
    let mut resources: Vec<String> = snapshot
        .documents
        .iter()
        .map(|(source, doc)| format!("{source} {}", doc["spec"]))
        .collect();
    resources.sort();
    // The translation, less its version (a hash of the config) and the order the registry
    // listed services in.
    let config = translate(&snapshot.resources, &snapshot.registry).config;
    let sorted = |items: Vec<String>| -> Vec<String> {
        let mut items = items;
        items.sort();
        items
    };
    let clusters = sorted(config.clusters.iter().map(|c| format!("{c:?}")).collect());
    let route_tables: Vec<(String, Vec<String>)> = config
        .route_tables
        .iter()
        .map(|t| {
            let hosts = t.virtual_hosts.iter().map(|h| format!("{h:?}")).collect();
            (t.name.clone(), sorted(hosts))
        })
        .collect();
    json!({
        "services": services,
        "workloads": workloads,
        "diagnostics": diagnostics,
        "resources": resources,
        "clusters": clusters,
        "route_tables": route_tables,
        "listeners": format!("{:?}", config.listeners),
    })
}

#[test]
fn bookinfo_from_the_api_server_is_the_directory_snapshot_and_follows_changes() {
    let tmp = tempdir("bookinfo");
    let mut server = FakeApiServer::start();
    server.install_istio_crds();
    let objects = bookinfo_objects(&["destination-rule-all.yaml", "virtual-service-all-v1.yaml"]);
    for object in &objects {
        server.apply(object.clone());
    }
    let mut source = KubeSource::start(test_config(&server, &tmp)).expect("start");

    // The directory source's snapshot of the same objects, one file each.
    let files: Vec<(String, String)> = objects
        .iter()
        .enumerate()
        .map(|(i, o)| (format!("{i:03}.yaml"), serde_yaml::to_string(o).unwrap()))
        .collect();
    let from_dir = Snapshot::from_files(&files).expect("directory snapshot");
    let first = next_where(&mut source, "bookinfo is listed", |s| {
        s.registry.services.len() == 4
    });
    assert_eq!(comparable(&first), comparable(&from_dir));
    assert_eq!(
        endpoints(&first, "reviews.default.svc.cluster.local").len(),
        3,
        "reviews v1, v2, v3"
    );
    assert!(first.workloads.iter().all(|w| w.injected));
    assert_eq!(first.resources.virtual_services.len(), 4);
    assert_eq!(first.resources.destination_rules.len(), 4);
    let status = source.status();
    assert!(status.missing.is_empty(), "{status:?}");
    assert_eq!(
        status.watching.get("VirtualService").map(String::as_str),
        Some("networking.istio.io/v1")
    );

    // A changed VirtualService, then a deleted pod, each a new snapshot.
    let mut reviews = objects
        .iter()
        .find(|o| o["kind"] == "VirtualService" && o["metadata"]["name"] == "reviews")
        .unwrap()
        .clone();
    reviews["spec"]["http"][0]["route"][0]["destination"]["subset"] = json!("v3");
    server.apply(reviews);
    let changed = next_where(&mut source, "reviews routes to v3", |s| {
        s.documents.iter().any(|(k, d)| {
            k.name == "reviews" && d["spec"]["http"][0]["route"][0]["destination"]["subset"] == "v3"
        })
    });
    assert_eq!(changed.registry, first.registry);
    server.delete("v1", "Pod", "default", "reviews-v2-0");
    let deleted = next_where(&mut source, "reviews-v2's pod is gone", |s| {
        endpoints(s, "reviews.default.svc.cluster.local").len() == 2
    });
    assert!(deleted.workload("default", "reviews-v2-0").is_none());

    // 410 Gone: an object deleted where no watch saw it is gone after the relist.
    server.delete_silently("v1", "Service", "default", "details");
    server.expire_watches();
    let relisted = next_where(&mut source, "the relist dropped details", |s| {
        s.registry
            .service("details.default.svc.cluster.local")
            .is_none()
    });
    assert_eq!(relisted.registry.services.len(), 3);
    assert!(source.status().gone >= 1, "{:?}", source.status());

    // The API server goes away: nothing new is handed out (the caller keeps the last good
    // snapshot); when it is back, the changes made meanwhile arrive.
    server.stop();
    server.delete(
        "networking.istio.io/v1",
        "VirtualService",
        "default",
        "ratings",
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        source.poll().is_none(),
        "a snapshot while the server is down"
    );
    assert!(!source.status().connected, "{:?}", source.status());
    server.restart();
    let back = next_where(&mut source, "the ratings VirtualService is gone", |s| {
        !has_vs(s, "ratings")
    });
    assert_eq!(back.resources.virtual_services.len(), 3);
    assert_eq!(back.registry, relisted.registry);
    assert!(source.status().connected);

    // The protocol used: paged lists, then watches from their resourceVersion with bookmarks.
    let requests = server.requests();
    let watch = requests
        .iter()
        .find(|r| {
            r.contains("/apis/networking.istio.io/v1/virtualservices?") && r.contains("watch=true")
        })
        .expect("a VirtualService watch");
    assert!(watch.contains("allowWatchBookmarks=true"), "{watch}");
    assert!(watch.contains("resourceVersion="), "{watch}");
    assert!(
        requests
            .iter()
            .any(|r| r.contains("/api/v1/pods?") && r.contains("limit=")),
        "{requests:?}"
    );
}

#[test]
fn missing_crds_are_reported_and_the_rest_is_served_until_they_appear() {
    let tmp = tempdir("crds");
    let server = FakeApiServer::start();
    // Only an older Istio's VirtualService CRD, without v1: the source watches v1beta1.
    let objects = bookinfo_objects(&[]);
    for object in &objects {
        server.apply(object.clone());
    }
    let mut source = KubeSource::start(test_config(&server, &tmp)).expect("start");
    let first = next_where(&mut source, "the services are served", |s| {
        s.registry.services.len() == 4
    });
    assert!(first.resources.virtual_services.is_empty());
    let status = source.status();
    assert!(status.missing.contains("VirtualService"), "{status:?}");
    assert!(status.missing.contains("AuthorizationPolicy"), "{status:?}");
    assert_eq!(status.missing.len(), 9, "{status:?}");
    // Watches end every second here (timeoutSeconds=1) with a bookmark and resume from it: no
    // relist, so the pods are listed twice in all (the probe for the served version, then
    // the watcher's list) however many watches follow.
    std::thread::sleep(Duration::from_millis(2500));
    let requests = server.requests();
    let pods = |watch: bool| {
        requests
            .iter()
            .filter(|r| r.contains("/api/v1/pods?") && r.contains("watch=true") == watch)
            .count()
    };
    assert_eq!(pods(false), 2, "{requests:#?}");
    assert!(pods(true) >= 2, "{requests:#?}");

    server.install_crd(
        "networking.istio.io",
        "virtualservices",
        &["v1beta1", "v1alpha3"],
    );
    server.apply(json!({
        "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "default"},
        "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}
    }));
    let later = next_where(&mut source, "the VirtualService is read", |s| {
        has_vs(s, "reviews")
    });
    assert_eq!(later.registry, first.registry);
    let status = source.status();
    assert!(!status.missing.contains("VirtualService"), "{status:?}");
    assert_eq!(
        status.watching.get("VirtualService").map(String::as_str),
        Some("networking.istio.io/v1beta1")
    );
}

#[test]
fn an_object_the_loader_refuses_is_left_out_with_an_error_and_the_rest_is_served() {
    let tmp = tempdir("bad");
    let server = FakeApiServer::start();
    server.install_istio_crds();
    for object in bookinfo_objects(&["virtual-service-all-v1.yaml"]) {
        server.apply(object);
    }
    server.apply(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "bad", "namespace": "default"},
        "spec": {"host": "reviews", "subsets": "not a list"}
    }));
    let mut source = KubeSource::start(test_config(&server, &tmp)).expect("start");
    let snapshot = next_where(&mut source, "bookinfo is listed", |s| {
        s.registry.services.len() == 4
    });
    assert_eq!(snapshot.resources.virtual_services.len(), 4);
    assert!(snapshot.resources.destination_rules.is_empty());
    let error = snapshot
        .diagnostics
        .iter()
        .find(|d| d.severity == trellis_control::diag::Severity::Error)
        .expect("an error for the bad DestinationRule");
    assert!(error.message.contains("spec.subsets"), "{error:?}");
}

#[test]
fn a_kubeconfig_that_cannot_be_read_fails_at_start() {
    let err = KubeSource::start(KubeSourceConfig {
        kubeconfig: Some("/nonexistent/kubeconfig".into()),
        ..KubeSourceConfig::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("kubeconfig"), "{err}");
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("trellis-kube-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
