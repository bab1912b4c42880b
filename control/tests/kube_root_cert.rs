//! The mesh's roots written into every namespace as istiod writes them (the ConfigMap
//! `istio-ca-root-cert`, key `root-cert.pem`: pilot/pkg/serviceregistry/kube/controller/
//! namespacecontroller.go `reconcileCACertAndCRL`), against the API-server double: created in
//! each namespace but Kubernetes' own, rewritten when the roots change (a rotation), and
//! repaired when a namespace appears or someone edits the ConfigMap.

#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;

use std::time::{Duration, Instant};

use fake_apiserver::FakeApiServer;
use serde_json::{json, Value};
use tokio::sync::watch;
use trellis_control::plane::kube_source::root_cert::{RootCertPublisher, CONFIGMAP, KEY};
use trellis_control::plane::KubeSourceConfig;

const WAIT: Duration = Duration::from_secs(20);

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn root_in(server: &FakeApiServer, ns: &str) -> Option<String> {
    let cm = server.get("configmaps", ns, CONFIGMAP)?;
    cm["data"][KEY].as_str().map(str::to_string)
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_namespace_gets_the_roots_and_keeps_them_current() {
    let server = FakeApiServer::start();
    for ns in ["default", "shop", "kube-system", "kube-public"] {
        server.apply(namespace(ns));
    }
    let dir = std::env::temp_dir().join(format!("trellis-root-cm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = KubeSourceConfig {
        kubeconfig: Some(server.write_kubeconfig(&dir)),
        ..KubeSourceConfig::default()
    };
    let (bundle_tx, bundle) = watch::channel("ROOT-A\n".to_string());
    let (passes_tx, passes) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let publisher = RootCertPublisher::connect(&config).await.unwrap();
            publisher
                .run(bundle, Duration::from_millis(200), |pass| {
                    let _ = passes_tx.send(pass);
                })
                .await;
        });
    });

    wait_for("the ConfigMaps", || {
        root_in(&server, "default").is_some() && root_in(&server, "shop").is_some()
    });
    let first = passes.recv_timeout(WAIT).unwrap().unwrap();
    assert_eq!(first.created, ["default", "shop"], "{first:?}");
    assert!(first.failed.is_empty(), "{first:?}");
    assert_eq!(root_in(&server, "shop").as_deref(), Some("ROOT-A\n"));
    let cm = server.get("configmaps", "shop", CONFIGMAP).unwrap();
    assert_eq!(cm["metadata"]["labels"]["istio.io/config"], "true");
    // Kubernetes' own namespaces are left alone, as istiod leaves them.
    assert_eq!(server.get("configmaps", "kube-system", CONFIGMAP), None);
    assert_eq!(server.get("configmaps", "kube-public", CONFIGMAP), None);

    // A rotation's overlap: both roots, written everywhere at once (not at the next resync).
    bundle_tx.send_replace("ROOT-A\nROOT-B\n".to_string());
    wait_for("the rotated roots", || {
        ["default", "shop"]
            .iter()
            .all(|ns| root_in(&server, ns).as_deref() == Some("ROOT-A\nROOT-B\n"))
    });

    // A new namespace, and a ConfigMap someone overwrote, are repaired within a resync.
    server.apply(namespace("late"));
    let mut edited = server.get("configmaps", "shop", CONFIGMAP).unwrap();
    edited["data"][KEY] = json!("tampered");
    edited["data"]["extra"] = json!("kept");
    server.apply(edited);
    wait_for("the repair", || {
        root_in(&server, "late").as_deref() == Some("ROOT-A\nROOT-B\n")
            && root_in(&server, "shop").as_deref() == Some("ROOT-A\nROOT-B\n")
    });
    let shop = server.get("configmaps", "shop", CONFIGMAP).unwrap();
    assert_eq!(
        shop["data"]["extra"], "kept",
        "other keys stay, as Istio's insertData keeps them"
    );

    // Nothing is written when nothing differs.
    let writes = |server: &FakeApiServer| {
        server
            .requests()
            .iter()
            .filter(|r| r.starts_with("POST") || r.starts_with("PUT"))
            .count()
    };
    let before = writes(&server);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(writes(&server), before, "{:?}", server.requests());

    drop(bundle_tx);
    thread.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
