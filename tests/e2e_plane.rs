//! The control plane end to end: `trellis control` serving a directory of the YAML a user would
//! `kubectl apply` (a Service, two Deployments whose replicas' loopback addresses are on the
//! `trellis.dev/addresses` annotation, a DestinationRule and a VirtualService), one `trellis
//! proxy --control-plane` sidecar with no registry or Istio resources of its own, two real
//! upstreams, real curl (issue 13's slice 4).
//!
//! 1. The sidecar routes as the directory says (all to v1) once its first push is applied.
//! 2. Editing the VirtualService file moves the traffic to v2 (the directory is polled, the
//!    change debounced and pushed, the sidecar translates, applies and ACKs).
//! 3. An invalid VirtualService (a regex that does not compile) is NACKed: the control plane
//!    logs the NACK with the sidecar's name and the reason, and the sidecar keeps routing to
//!    v2.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use trellis_local_mesh::upstream::Upstream;

mod common;
use common::{curl, spawn_pushed_sidecar, wait_for, wait_until_answered_by};

fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("address")
}

/// A child process, killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str], log: &Path) -> Proc {
    let log = std::fs::File::create(log).expect("log file");
    Proc(
        Command::new(env!("CARGO_BIN_EXE_trellis"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("trellis starts"),
    )
}

fn deployment(version: &str, upstream: &Upstream) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: reviews-{version}}}
spec:
  selector: {{matchLabels: {{app: reviews, version: {version}}}}}
  template:
    metadata:
      labels: {{app: reviews, version: {version}}}
      annotations: {{trellis.dev/addresses: \"{}\"}}
    spec:
      containers: [{{name: reviews, image: example/reviews}}]
---
",
        upstream.addr()
    )
}

const SERVICE: &str = "apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
";

fn virtual_service(subset: &str, regex: Option<&str>) -> String {
    let matched = regex
        .map(|r| format!("  - match: [{{uri: {{regex: \"{r}\"}}}}]\n    route: [{{destination: {{host: reviews, subset: v1}}}}]\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
{matched}  - route: [{{destination: {{host: reviews, subset: {subset}}}}}]
"
    )
}

/// Who answers `GET /` for host `reviews` through the sidecar (`None`: not an upstream).
fn answer(proxy: SocketAddr) -> Option<String> {
    let out = curl(&["-H", "Host: reviews:9080", &format!("http://{proxy}/")]);
    let body = String::from_utf8_lossy(&out.stdout).trim().to_string();
    body.starts_with("reviews-").then_some(body)
}

#[test]
fn the_control_plane_pushes_a_directory_change_and_a_nack_keeps_the_last_good_config() {
    let tmp = std::env::temp_dir().join(format!("trellis-e2e-plane-{}", std::process::id()));
    let dir = tmp.join("mesh");
    std::fs::create_dir_all(&dir).expect("dir");
    let v1 = Upstream::start("reviews-v1").expect("upstream");
    let v2 = Upstream::start("reviews-v2").expect("upstream");
    std::fs::write(
        dir.join("reviews.yaml"),
        format!(
            "{SERVICE}---\n{}{}",
            deployment("v1", &v1),
            deployment("v2", &v2)
        ),
    )
    .expect("write");
    let vs = dir.join("vs.yaml");
    std::fs::write(&vs, virtual_service("v1", None)).expect("write");

    let plane = free_addr();
    let _control = spawn(
        &[
            "control",
            "--dir",
            &dir.display().to_string(),
            "--listen",
            &plane.to_string(),
            "--poll-ms",
            "100",
            "--insecure-plaintext",
        ],
        &tmp.join("control.log"),
    );
    wait_for(plane);

    let (proxy, _proxy) = spawn_pushed_sidecar(plane, &tmp);

    // 1. The first push.
    wait_until_answered_by(proxy, "reviews-v1", &tmp);

    // 2. A VirtualService edit.
    std::fs::write(&vs, virtual_service("v2", None)).expect("write");
    wait_until_answered_by(proxy, "reviews-v2", &tmp);

    // 3. An invalid one: NACKed, reported, the last good config keeps serving.
    std::fs::write(&vs, virtual_service("v1", Some("(unclosed"))).expect("write");
    let deadline = Instant::now() + Duration::from_secs(30);
    let log = loop {
        let log = std::fs::read_to_string(tmp.join("control.log")).unwrap_or_default();
        if log.contains("NACK") {
            break log;
        }
        assert!(Instant::now() < deadline, "no NACK reported:\n{log}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let nack = log.lines().find(|l| l.contains("NACK")).unwrap_or_default();
    assert!(nack.contains("productpage-0"), "{nack}");
    assert!(nack.contains("unclosed"), "{nack}");
    for _ in 0..5 {
        assert_eq!(answer(proxy).as_deref(), Some("reviews-v2"));
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
