//! The admission webhook over real HTTPS: `trellis control --webhook-listen` answers a real
//! `AdmissionReview` (tests/inject/admission-review.json, as the API server sends it for a
//! Deployment's pod) to real curl trusting only the mesh CA's root, at the Service's DNS name;
//! the JSONPatch it returns, applied by Python's `jsonpatch`, gives exactly the pod
//! `trellis inject` makes, and is valid Kubernetes 1.33 (`kubernetes-validate`). The pod's
//! `sidecar.istio.io/nativeSidecar` annotation turns native sidecars on and off as Istio's
//! template reads it. Malformed requests get clear errors and the server carries on.

mod common;
#[path = "../control/tests/support/fake_apiserver.rs"]
mod fake_apiserver;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const SERVICE: &str = "trellis-control.trellis-system.svc";
const NATIVE_ENV: &str = "ENABLE_NATIVE_SIDECARS";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Control(Child);

impl Drop for Control {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trellis-webhook-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Start the control plane with the webhook; its CA bundle is written to `dir/ca.pem`.
fn start(dir: &Path) -> (Control, u16) {
    start_with(dir, &[])
}

fn start_with(dir: &Path, extra: &[&str]) -> (Control, u16) {
    start_env(dir, extra, None)
}

/// Start it with `ENABLE_NATIVE_SIDECARS` set to `native_env` (or unset).
fn start_env(dir: &Path, extra: &[&str], native_env: Option<&str>) -> (Control, u16) {
    let port = free_port();
    let mesh = dir.join("mesh");
    std::fs::create_dir_all(&mesh).expect("mesh dir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_trellis"));
    command.env_remove(NATIVE_ENV);
    if let Some(value) = native_env {
        command.env(NATIVE_ENV, value);
    }
    command.arg("control");
    // A directory of YAML, unless the cluster is the source.
    if !extra.contains(&"--kube") {
        command.arg("--dir").arg(&mesh);
    }
    let child = command
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--webhook-listen", &format!("127.0.0.1:{port}")])
        .arg("--webhook-ca-bundle-out")
        .arg(dir.join("ca.pem"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start trellis control");
    let control = Control(child);
    common::wait_for(SocketAddr::from(([127, 0, 0, 1], port)));
    (control, port)
}

/// POST `body` to the webhook with curl, trusting only the CA bundle; (status, body).
fn post(dir: &Path, port: u16, content_type: &str, body: &[u8]) -> (u16, String) {
    let body_file = dir.join("request.body");
    std::fs::write(&body_file, body).expect("write body");
    let out = common::curl(&[
        "--cacert",
        dir.join("ca.pem").to_str().expect("path"),
        "--resolve",
        &format!("{SERVICE}:{port}:127.0.0.1"),
        "-H",
        &format!("Content-Type: {content_type}"),
        "--data-binary",
        &format!("@{}", body_file.display()),
        "-w",
        "\n%{http_code}",
        &format!("https://{SERVICE}:{port}/inject"),
    ]);
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8 answer");
    let (body, status) = text.rsplit_once('\n').expect("status line");
    (
        status.trim().parse().expect("status code"),
        body.to_string(),
    )
}

fn review_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/inject/admission-review.json")
}

#[test]
fn a_real_review_is_allowed_and_its_patch_gives_the_injected_pod() {
    let dir = scratch("review");
    let (_control, port) = start(&dir);
    let review_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(review_path()).expect("review")).expect("JSON");
    // The patch gives what `trellis inject` makes of the same pod.
    let injected_pod = patched_equals_injected(&dir, port, &review_json, &[]);
    let answer = std::fs::read_to_string(dir.join("response.json")).expect("response");
    let answer_json: serde_json::Value = serde_json::from_str(&answer).expect("JSON answer");
    assert_eq!(answer_json["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer_json["kind"], "AdmissionReview");
    let response = &answer_json["response"];
    assert_eq!(response["uid"], "0df28fbd-5f5f-11e8-bc74-36e6bb280816");
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");

    // The injected pod is not injected again: allowed, no patch.
    let mut again = review_json.clone();
    again["request"]["object"] = serde_json::to_value(&injected_pod).expect("JSON pod");
    let (status, answer) = post(&dir, port, "application/json", again.to_string().as_bytes());
    assert_eq!(status, 200);
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none(), "{answer}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn malformed_requests_get_clear_errors_and_the_server_carries_on() {
    let dir = scratch("malformed");
    let (_control, port) = start(&dir);
    let (status, body) = post(&dir, port, "application/json", b"{not json");
    assert_eq!(status, 400);
    assert!(body.contains("could not decode body"), "{body}");
    let (status, body) = post(&dir, port, "text/plain", b"{}");
    assert_eq!(status, 415);
    assert!(body.contains("expect application/json"), "{body}");
    let (status, body) = post(
        &dir,
        port,
        "application/json",
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}"#,
    );
    assert_eq!(status, 400);
    assert!(body.contains("no uid"), "{body}");

    // A pod that cannot be injected is refused with the reason, uid echoed.
    let mut review: serde_json::Value =
        serde_json::from_slice(&std::fs::read(review_path()).expect("review")).expect("JSON");
    review["request"]["object"]["metadata"]["annotations"]
        ["readiness.status.sidecar.istio.io/periodSeconds"] = "often".into();
    let (status, body) = post(
        &dir,
        port,
        "application/json",
        review.to_string().as_bytes(),
    );
    assert_eq!(status, 200);
    let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        answer["response"]["uid"],
        "0df28fbd-5f5f-11e8-bc74-36e6bb280816"
    );
    assert_eq!(answer["response"]["allowed"], false);
    let message = answer["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("periodSeconds") && message.contains("often"),
        "{answer}"
    );

    // Still serving.
    let (status, _) = post(
        &dir,
        port,
        "application/json",
        &std::fs::read(review_path()).expect("review"),
    );
    assert_eq!(status, 200);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The webhook's certificate, as `openssl s_client` sees it at the Service name: its serial,
/// and whether it verified against the CA bundle.
fn served_serial(dir: &Path, port: u16) -> (String, bool) {
    let script = format!(
        "openssl s_client -connect 127.0.0.1:{port} -servername {SERVICE} -verify_hostname {SERVICE} \
         -CAfile {ca} </dev/null 2>/dev/null | tee {dir}/s_client.out | openssl x509 -noout -serial",
        ca = dir.join("ca.pem").display(),
        dir = dir.display(),
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("openssl runs");
    let transcript = std::fs::read_to_string(dir.join("s_client.out")).unwrap_or_default();
    (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        transcript.contains("Verify return code: 0 (ok)"),
    )
}

/// The webhook's serving certificate comes from the mesh CA and is re-issued at half its life
/// (`--serving-cert-ttl`), as istiod renews its own DNS certificate; new handshakes get the
/// new one, still verified by the same caBundle, and the webhook keeps answering.
#[test]
fn the_webhook_certificate_is_renewed_at_half_its_life() {
    let dir = scratch("renewal");
    let (_control, port) = start_with(&dir, &["--serving-cert-ttl", "2s"]);
    let (first, verified) = served_serial(&dir, port);
    assert!(first.starts_with("serial="), "{first}");
    assert!(
        verified,
        "the first certificate does not verify with the caBundle"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let renewed = loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let (serial, verified) = served_serial(&dir, port);
        if serial != first && serial.starts_with("serial=") {
            assert!(
                verified,
                "the renewed certificate does not verify with the caBundle"
            );
            break serial;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never renewed: {serial}"
        );
    };
    assert_ne!(renewed, first);
    let review = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/inject/admission-review.json"),
    )
    .expect("review");
    let (status, _) = post(&dir, port, "application/json", &review);
    assert_eq!(status, 200);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Post `review` (written to `dir/review.json`), check that its patch, applied by Python's
/// `jsonpatch`, gives exactly what `trellis inject` (with `inject_args`) makes of the same pod,
/// and that this pod is valid Kubernetes 1.33 for `kubernetes-validate`; the injected pod.
fn patched_equals_injected(
    dir: &Path,
    port: u16,
    review: &serde_json::Value,
    inject_args: &[&str],
) -> serde_yaml::Value {
    let review_file = dir.join("review.json");
    std::fs::write(&review_file, review.to_string()).expect("write review");
    let (status, answer) = post(dir, port, "application/json", review.to_string().as_bytes());
    assert_eq!(status, 200, "{answer}");
    std::fs::write(dir.join("response.json"), &answer).expect("write response");
    let pod = dir.join("pod.json");
    std::fs::write(&pod, review["request"]["object"].to_string()).expect("write pod");
    let expected = dir.join("expected.yaml");
    let injected = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .env_remove(NATIVE_ENV)
        .args(["inject", "-n", "bookinfo", "-f"])
        .arg(&pod)
        .arg("-o")
        .arg(&expected)
        .args(inject_args)
        .output()
        .expect("trellis inject");
    assert!(
        injected.status.success(),
        "{}",
        String::from_utf8_lossy(&injected.stderr)
    );
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (script, args) in [
        (
            "tests/inject/apply_patch.py",
            vec![
                review_file.clone(),
                dir.join("response.json"),
                expected.clone(),
            ],
        ),
        (
            "tests/inject/validate_k8s.py",
            vec![PathBuf::from("1.33.0"), expected.clone()],
        ),
    ] {
        let out = Command::new("python3")
            .arg(here.join(script))
            .args(&args)
            .output()
            .expect("python3 with jsonpatch, kubernetes-validate and PyYAML (scripts/test.sh)");
        assert!(
            out.status.success(),
            "{script}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_yaml::from_str(&std::fs::read_to_string(&expected).expect("expected")).expect("yaml")
}

fn names(list: &serde_yaml::Value) -> Vec<&str> {
    list.as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect()
}

/// The pod's `sidecar.istio.io/nativeSidecar` annotation turns native sidecars on in a webhook
/// that would not (auto without a view of the nodes: `DetectNativeSidecar` is false), and off
/// in one that would (`ENABLE_NATIVE_SIDECARS=true`), as the injection template's
/// `$nativeSidecar` reads it; without the annotation the classic form is unchanged.
#[test]
fn the_native_sidecar_annotation_turns_it_on_and_off_in_the_webhook() {
    let dir = scratch("native");
    let review: serde_json::Value =
        serde_json::from_slice(&std::fs::read(review_path()).expect("review")).expect("JSON");
    let annotated = |value: &str| {
        let mut r = review.clone();
        r["request"]["object"]["metadata"]["annotations"]["sidecar.istio.io/nativeSidecar"] =
            value.into();
        r
    };

    let (control, port) = start(&dir);
    let pod = patched_equals_injected(&dir, port, &annotated("true"), &[]);
    assert_eq!(
        names(&pod["spec"]["initContainers"]),
        ["istio-init", "istio-proxy"]
    );
    assert_eq!(names(&pod["spec"]["containers"]), ["reviews"]);
    let proxy = &pod["spec"]["initContainers"][1];
    assert_eq!(proxy["restartPolicy"].as_str(), Some("Always"));
    assert!(
        proxy["lifecycle"]["postStart"].is_null(),
        "no postStart hold"
    );
    let hook: Vec<&str> = (proxy["lifecycle"]["preStop"]["exec"]["command"].as_sequence())
        .map(|c| c.iter().filter_map(|a| a.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        hook,
        ["trellis", "request", "--debug-port=15020", "POST", "drain"],
        "Istio's preStop drain"
    );
    assert_eq!(
        proxy["startupProbe"]["httpGet"]["port"].as_u64(),
        Some(15021)
    );
    // Unannotated: the classic sidecar, first among the containers, held by postStart.
    let pod = patched_equals_injected(&dir, port, &review, &[]);
    assert_eq!(names(&pod["spec"]["initContainers"]), ["istio-init"]);
    assert_eq!(
        names(&pod["spec"]["containers"]),
        ["istio-proxy", "reviews"]
    );
    drop(control);

    let (_control, port) = start_env(&dir, &[], Some("true"));
    let pod = patched_equals_injected(&dir, port, &review, &["--native-sidecars", "true"]);
    assert_eq!(
        names(&pod["spec"]["initContainers"]),
        ["istio-init", "istio-proxy"]
    );
    let pod = patched_equals_injected(&dir, port, &annotated("false"), &[]);
    assert_eq!(
        names(&pod["spec"]["containers"]),
        ["istio-proxy", "reviews"]
    );
    assert!(pod["spec"]["containers"][0]["restartPolicy"].is_null());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether the webhook's answer for `review` with the pod on `node` ("" for none) injects a
/// native sidecar (else the classic one).
fn injects_natively(dir: &Path, port: u16, review: &serde_json::Value, node: &str) -> bool {
    use base64::Engine as _;
    let mut review = review.clone();
    if !node.is_empty() {
        review["request"]["object"]["spec"]["nodeName"] = node.into();
    }
    let (status, answer) = post(dir, port, "application/json", review.to_string().as_bytes());
    assert_eq!(status, 200, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    let patch = answer["response"]["patch"].as_str().expect("a patch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .expect("base64 patch");
    let text = String::from_utf8(bytes).expect("utf-8 patch");
    let ops: Vec<serde_json::Value> = serde_json::from_str(&text).expect("JSON Patch");
    // What the injector says it added (`sidecar.istio.io/status`): a native sidecar is an
    // init container, and no container is added.
    let status = ops
        .iter()
        .find(|op| op["path"] == "/metadata/annotations/sidecar.istio.io~1status")
        .and_then(|op| op["value"].as_str())
        .unwrap_or_else(|| panic!("no status annotation in {text}"));
    let status: serde_json::Value = serde_json::from_str(status).expect("status JSON");
    match (
        status["initContainers"].to_string().as_str(),
        status["containers"].to_string().as_str(),
    ) {
        (r#"["istio-init","istio-proxy"]"#, "null") => true,
        (r#"["istio-init"]"#, r#"["istio-proxy"]"#) => false,
        other => panic!("unexpected status {other:?}"),
    }
}

/// `ENABLE_NATIVE_SIDECARS=auto` (the default) with `--kube`: the webhook watches the nodes
/// (list and watch, as istiod's Node informer) and decides as `DetectNativeSidecar`
/// (pkg/kube/inject/webhook.go): the pod's node when it has one, else every node must run
/// kubelet 1.33 or later; a node going away is seen through the watch.
#[test]
fn auto_mode_follows_the_nodes_kubelet_versions_in_a_cluster() {
    let dir = scratch("nodes");
    let server = fake_apiserver::FakeApiServer::start();
    let node = |name: &str, version: &str| {
        serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                           "status": {"nodeInfo": {"kubeletVersion": version}}})
    };
    server.apply(node("node-new", "v1.33.2"));
    server.apply(node("node-old", "v1.30.5"));
    let kubeconfig = server.write_kubeconfig(&dir);
    let kube = kubeconfig.to_str().expect("path");
    let (_control, port) = start_with(&dir, &["--kube", "--kubeconfig", kube]);
    let review: serde_json::Value =
        serde_json::from_slice(&std::fs::read(review_path()).expect("review")).expect("JSON");

    // Until the first list has completed, auto injects the classic sidecar; then the pod's
    // node decides.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !injects_natively(&dir, port, &review, "node-new") {
        assert!(
            std::time::Instant::now() < deadline,
            "never native on node-new"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!injects_natively(&dir, port, &review, "node-old"));
    assert!(
        !injects_natively(&dir, port, &review, ""),
        "an unscheduled pod may land on node-old"
    );
    assert!(!injects_natively(&dir, port, &review, "node-gone"));
    server.delete("v1", "Node", "", "node-old");
    while !injects_natively(&dir, port, &review, "") {
        assert!(
            std::time::Instant::now() < deadline,
            "the old node's deletion was never seen"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.contains("/api/v1/nodes") && r.contains("watch=true")),
        "nodes are watched: {:?}",
        server.requests()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
