//! The control plane on the Kubernetes source end to end: `trellis control --kube
//! --kubeconfig FILE` against the API-server double of control/tests/support (the list/watch
//! protocol over HTTP), one `trellis proxy --control-plane` sidecar, two real upstreams, real
//! curl.
//!
//! 1. The sidecar routes as the cluster's VirtualService says (v1) after the first push.
//! 2. A VirtualService changed in the cluster moves the traffic to v2 (watch event, snapshot,
//!    debounce, push, ACK).
//! 3. The API server goes away: the control plane keeps serving its last good snapshot (the
//!    sidecar keeps routing to v2); a change made meanwhile arrives when it is back.

mod common;
#[path = "../control/tests/support/fake_apiserver.rs"]
mod fake_apiserver;

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{spawn_pushed_sidecar, wait_for, wait_until_answered_by, Killed};
use fake_apiserver::FakeApiServer;
use serde_json::{json, Value};
use trellis_local_mesh::upstream::Upstream;

fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("address")
}

/// A running pod of `reviews` at `version`, serving on the upstream's loopback port.
fn pod(version: &str, upstream: &Upstream) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("reviews-{version}-0"), "namespace": "default",
                     "labels": {"app": "reviews", "version": version},
                     "annotations": {"trellis.dev/addresses": upstream.addr().to_string()}},
        "spec": {"containers": [{"name": "reviews", "image": "example/reviews"}]},
        "status": {"podIP": "127.0.0.1", "phase": "Running"}
    })
}

fn routed_to(subset: &str) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "default"},
        "spec": {"hosts": ["reviews"],
                 "http": [{"route": [{"destination": {"host": "reviews", "subset": subset}}]}]}
    })
}

#[test]
fn the_control_plane_serves_a_cluster_and_survives_the_api_server_going_away() {
    let tmp = std::env::temp_dir().join(format!("trellis-e2e-kube-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("dir");
    let v1 = Upstream::start("reviews-v1").expect("upstream");
    let v2 = Upstream::start("reviews-v2").expect("upstream");
    let mut server = FakeApiServer::start();
    server.install_istio_crds();
    server.apply(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "reviews", "namespace": "default"},
        "spec": {"selector": {"app": "reviews"}, "ports": [{"name": "http", "port": 9080}]}
    }));
    server.apply(pod("v1", &v1));
    server.apply(pod("v2", &v2));
    server.apply(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "reviews", "namespace": "default"},
        "spec": {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                                                {"name": "v2", "labels": {"version": "v2"}}]}
    }));
    server.apply(routed_to("v1"));
    let kubeconfig = server.write_kubeconfig(&tmp);

    let plane = free_addr();
    let control_log = std::fs::File::create(tmp.join("control.log")).expect("log");
    let _control = Killed(
        Command::new(env!("CARGO_BIN_EXE_trellis"))
            .args(["control", "--kube", "--kubeconfig"])
            .arg(&kubeconfig)
            .args(["--listen", &plane.to_string(), "--poll-ms", "50"])
            .arg("--insecure-plaintext")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(control_log)
            .spawn()
            .expect("trellis control starts"),
    );
    wait_for(plane);
    let (proxy, _proxy) = spawn_pushed_sidecar(plane, &tmp);

    // 1. The first push.
    wait_until_answered_by(proxy, "reviews-v1", &tmp);
    // 2. A change in the cluster.
    server.apply(routed_to("v2"));
    wait_until_answered_by(proxy, "reviews-v2", &tmp);
    // 3. The API server goes away; the last good config keeps serving.
    server.stop();
    server.apply(routed_to("v1"));
    std::thread::sleep(Duration::from_secs(2));
    wait_until_answered_by(proxy, "reviews-v2", &tmp);
    let log = std::fs::read_to_string(tmp.join("control.log")).unwrap_or_default();
    assert!(
        log.contains("lost the Kubernetes API server"),
        "the outage is not logged:\n{log}"
    );
    server.restart();
    wait_until_answered_by(proxy, "reviews-v1", &tmp);
    let log = std::fs::read_to_string(tmp.join("control.log")).unwrap_or_default();
    assert!(log.contains("answers again"), "{log}");
    assert!(!log.contains("CRD not installed"), "{log}");
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn analyze_and_explain_read_the_cluster_with_kube() {
    let tmp = std::env::temp_dir().join(format!("trellis-e2e-kube-read-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("dir");
    let server = FakeApiServer::start();
    server.install_istio_crds();
    server.apply(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "reviews", "namespace": "default"},
        "spec": {"selector": {"app": "reviews"}, "ports": [{"name": "http", "port": 9080}]}
    }));
    // Routes to a subset no DestinationRule defines: IST0101.
    server.apply(routed_to("v3"));
    let kubeconfig = server.write_kubeconfig(&tmp);
    let trellis = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_trellis"))
            .args(args)
            .args(["--kube", "--kubeconfig"])
            .arg(&kubeconfig)
            .output()
            .expect("trellis runs")
    };
    let analyzed = trellis(&["analyze"]);
    let stdout = String::from_utf8_lossy(&analyzed.stdout);
    assert_eq!(analyzed.status.code(), Some(79), "{stdout}");
    assert!(
        stdout.contains("IST0101") && stdout.contains("reviews+v3"),
        "{stdout}"
    );
    let explained = trellis(&["explain", "--host", "reviews"]);
    let stdout = String::from_utf8_lossy(&explained.stdout);
    assert!(
        stdout.contains("from VirtualService default/reviews"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&explained.stderr)
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

/// Certificates over the channel with the Kubernetes source (istiod's `KubeJWTAuthenticator`):
/// a sidecar without a certificate sends its service-account token, which the control plane
/// checks with a TokenReview; the token's namespace and service account must be the identity
/// asked for. A token for another account, and a token the API server does not know, are each
/// refused with one log line on both sides naming the check.
#[test]
fn tokens_are_checked_by_a_token_review_and_must_name_the_identity_asked_for() {
    let tmp = std::env::temp_dir().join(format!("trellis-e2e-kube-csr-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).expect("dir");
    let server = FakeApiServer::start();
    server.install_istio_crds();
    server.add_token("productpage-token", "default", "productpage");
    let kubeconfig = server.write_kubeconfig(&tmp);
    let ca = tmp.join("ca");
    let out = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["ca", "init", "--dir"])
        .arg(&ca)
        .output()
        .expect("trellis ca init");
    assert!(out.status.success(), "{out:?}");

    let plane = free_addr();
    let control_log = tmp.join("control.log");
    let _control = Killed(
        Command::new(env!("CARGO_BIN_EXE_trellis"))
            .args(["control", "--kube", "--kubeconfig"])
            .arg(&kubeconfig)
            .args([
                "--listen",
                &plane.to_string(),
                "--poll-ms",
                "50",
                "--ca-dir",
            ])
            .arg(&ca)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&control_log).expect("log"))
            .spawn()
            .expect("trellis control starts"),
    );
    wait_for(plane);
    let sidecar = |name: &str, sa: &str, token: &str| {
        let listen = free_addr();
        let config = tmp.join(format!("{name}.yaml"));
        std::fs::write(
            &config,
            format!("listeners: [{{address: \"{listen}\"}}]\nworkload: {{namespace: default, serviceAccount: {sa}}}\n"),
        )
        .expect("write");
        let token_file = tmp.join(format!("{name}.token"));
        std::fs::write(&token_file, token).expect("write");
        let log = tmp.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_trellis"))
            .args(["proxy", "--config"])
            .arg(&config)
            .args(["--control-plane", &plane.to_string(), "--node", name])
            .arg("--control-plane-ca")
            .arg(ca.join("root-cert.pem"))
            .arg("--control-plane-token")
            .arg(&token_file)
            .args(["--health-port", "0", "--cores", "1", "--no-pin"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("trellis proxy starts");
        (Killed(child), log)
    };
    let (_good, good_log) = sidecar("productpage-0", "productpage", "productpage-token");
    let (_liar, liar_log) = sidecar("ratings-0", "ratings", "productpage-token");
    let (_forger, forger_log) = sidecar("details-0", "details", "forged-token");
    let line = |log: &std::path::Path, needle: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if let Some(l) = text.lines().find(|l| l.contains(needle)) {
                return l.to_string();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {needle:?} in {}:\n{text}",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let installed = line(
        &good_log,
        "workload certificate from the control plane installed",
    );
    assert!(
        installed.contains("spiffe://cluster.local/ns/default/sa/productpage"),
        "{installed}"
    );
    let refused = line(&control_log, "CSR refused to token of default/productpage");
    assert!(
        refused.contains("which may not ask for spiffe://cluster.local/ns/default/sa/ratings"),
        "{refused}"
    );
    let told = line(&liar_log, "certificate refused by the control plane");
    assert!(told.contains("token is for default/productpage"), "{told}");
    let forged = line(&control_log, "token refused by the TokenReview");
    assert!(forged.contains("invalid bearer token"), "{forged}");
    let told = line(&forger_log, "certificate refused by the control plane");
    assert!(told.contains("token refused by the TokenReview"), "{told}");
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.starts_with("POST /apis/authentication.k8s.io/v1/tokenreviews")),
        "{:?}",
        server.requests()
    );
}

/// The ConfigMap the control plane keeps in `namespace`: its `root-cert.pem`.
fn root_configmap(server: &FakeApiServer, namespace: &str) -> Option<String> {
    let cm = server.get("configmaps", namespace, "istio-ca-root-cert")?;
    cm["data"]["root-cert.pem"].as_str().map(str::to_string)
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What an injected sidecar does in a cluster (control/src/inject/template.rs): the roots from
/// the `istio-ca-root-cert` ConfigMap the control plane wrote into its namespace (istiod's
/// namespace controller), the projected token sent with its first CSR, no plaintext. Then
/// `trellis ca rotate` on the control plane's CA directory: both roots in the ConfigMap and at
/// the sidecar at once, the old one gone after `--root-overlap`, the sidecar's channel up
/// throughout.
#[test]
fn an_injected_sidecar_trusts_the_configmap_root_and_follows_a_root_rotation() {
    let tmp = std::env::temp_dir().join(format!("trellis-e2e-kube-root-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).expect("dir");
    let server = FakeApiServer::start();
    server.install_istio_crds();
    for ns in ["default", "kube-system"] {
        server.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
    }
    server.add_token("productpage-token", "default", "productpage");
    let kubeconfig = server.write_kubeconfig(&tmp);
    let ca = tmp.join("ca");
    let trellis = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_trellis"))
            .args(args)
            .arg(&ca)
            .output()
            .expect("trellis ca");
        assert!(out.status.success(), "{out:?}");
    };
    trellis(&["ca", "init", "--dir"]);
    let old_root = std::fs::read_to_string(ca.join("root-cert.pem")).expect("root");

    let plane = free_addr();
    let control_log = tmp.join("control.log");
    let _control = Killed(
        Command::new(env!("CARGO_BIN_EXE_trellis"))
            .args(["control", "--kube", "--kubeconfig"])
            .arg(&kubeconfig)
            .args(["--listen", &plane.to_string(), "--poll-ms", "50"])
            .args(["--ca-reload-interval", "200ms", "--root-overlap", "4s"])
            // Every certificate under the old root is renewed within the overlap.
            .args(["--workload-cert-ttl", "4s"])
            .args(["--root-configmap-resync", "1s", "--ca-dir"])
            .arg(&ca)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&control_log).expect("log"))
            .spawn()
            .expect("trellis control starts"),
    );
    wait_for(plane);
    wait_until("the ConfigMap in default", Duration::from_secs(15), || {
        root_configmap(&server, "default").is_some()
    });
    assert_eq!(root_configmap(&server, "default"), Some(old_root.clone()));
    assert_eq!(root_configmap(&server, "kube-system"), None);

    // The pod's mounts: the ConfigMap's root-cert.pem and the projected token.
    let mounted_root = tmp.join("root-cert.pem");
    std::fs::write(&mounted_root, root_configmap(&server, "default").unwrap()).expect("write");
    let token = tmp.join("istio-token");
    std::fs::write(&token, "productpage-token").expect("write");
    let listen = free_addr();
    let config = tmp.join("productpage.yaml");
    std::fs::write(
        &config,
        format!("listeners: [{{address: \"{listen}\"}}]\nworkload: {{namespace: default, serviceAccount: productpage}}\n"),
    )
    .expect("write");
    let sidecar_log = tmp.join("productpage.log");
    let _sidecar = Killed(
        Command::new(env!("CARGO_BIN_EXE_trellis"))
            .args(["proxy", "--config"])
            .arg(&config)
            .args([
                "--control-plane",
                &plane.to_string(),
                "--node",
                "productpage-0",
            ])
            .arg("--control-plane-ca")
            .arg(&mounted_root)
            .arg("--control-plane-token")
            .arg(&token)
            .args(["--health-port", "0", "--cores", "1", "--no-pin"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&sidecar_log).expect("log"))
            .spawn()
            .expect("trellis proxy starts"),
    );
    let installs = || {
        std::fs::read_to_string(&sidecar_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("workload certificate from the control plane installed"))
            .count()
    };
    wait_until("the sidecar's certificate", Duration::from_secs(15), || {
        installs() >= 1
    });
    let log = std::fs::read_to_string(&sidecar_log).unwrap_or_default();
    assert!(
        log.contains("spiffe://cluster.local/ns/default/sa/productpage"),
        "{log}"
    );

    // The root rotated: both roots everywhere at once, then only the new one.
    trellis(&["ca", "rotate", "--dir"]);
    let new_root = std::fs::read_to_string(ca.join("root-cert.pem")).expect("root");
    assert_ne!(new_root, old_root);
    let both = format!("{old_root}{new_root}");
    wait_until(
        "both roots in the ConfigMap",
        Duration::from_secs(15),
        || root_configmap(&server, "default").as_deref() == Some(both.as_str()),
    );
    wait_until("both roots at the sidecar", Duration::from_secs(15), || {
        installs() >= 2
    });
    wait_until("the old root gone", Duration::from_secs(20), || {
        root_configmap(&server, "default").as_deref() == Some(new_root.as_str())
    });
    let control = std::fs::read_to_string(&control_log).unwrap_or_default();
    assert!(control.contains("root rotated"), "{control}");
    let log = std::fs::read_to_string(&sidecar_log).unwrap_or_default();
    assert!(
        !log.contains("control plane connection lost"),
        "the channel dropped during the rotation:\n{log}"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
