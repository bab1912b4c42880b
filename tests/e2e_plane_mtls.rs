//! The push channel over mTLS, and workload certificates issued over it (issues 13 and 11):
//! `trellis control --ca-dir` and `trellis proxy --control-plane` sidecars with no certificate
//! files of their own, real curl, openssl and Python.
//!
//! 1. `openssl s_client` against the control plane's port sees its chain (serving certificate
//!    and intermediate), verified with the mesh root, for the address dialled.
//! 2. Two sidecars (reviews, productpage) get workload certificates over the channel and talk
//!    mTLS to each other: the reviews workload sees `x-forwarded-client-cert` with
//!    productpage's SPIFFE id, as Istio's sidecars do with certificates from istiod.
//! 3. With a short `--workload-cert-ttl`, reviews renews at half life: a connection
//!    established before keeps working, a new one gets the new certificate (Python's `ssl`).
//! 4. A control plane that does not trust node claims refuses a sidecar that has neither a
//!    client certificate nor a token: one log line on each side naming the check.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use trellis_local_mesh::upstream::Upstream;

mod common;
use common::{curl, renewal_probe, trellis, wait_for};

fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("address")
}

/// A `trellis` process, killed when dropped, logging to a file.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn spawn(args: &[&str], log: PathBuf) -> Proc {
        let child = Command::new(env!("CARGO_BIN_EXE_trellis"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("trellis starts");
        Proc { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Lines holding every one of `needles`.
    fn count(&self, needles: &[&str]) -> usize {
        self.log()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    }

    /// Wait (at most `within`) until `count` lines hold every one of `needles`; the last.
    fn wait_lines(&self, needles: &[&str], count: usize, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            let found: Vec<&str> = log
                .lines()
                .filter(|l| needles.iter().all(|n| l.contains(n)))
                .collect();
            if found.len() >= count {
                return found[count - 1].to_string();
            }
            assert!(
                Instant::now() < deadline,
                "not {count} log lines with {needles:?} in {}:\n{log}",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The mesh directory: the reviews Service, whose one pod is the reviews sidecar's inbound
/// address (a mesh endpoint running as the reviews account), and STRICT mTLS.
fn mesh_yaml(reviews_inbound: SocketAddr) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: reviews, namespace: default}}
spec: {{selector: {{app: reviews}}, ports: [{{name: http, port: 9080}}]}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: reviews, namespace: default}}
spec:
  selector: {{matchLabels: {{app: reviews}}}}
  template:
    metadata:
      labels: {{app: reviews, security.istio.io/tlsMode: istio}}
      annotations: {{trellis.dev/addresses: \"{reviews_inbound}\"}}
    spec:
      serviceAccountName: reviews
      containers: [{{name: reviews, image: example/reviews}}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: default}}
spec: {{mtls: {{mode: STRICT}}}}
"
    )
}

fn control(dir: &Path, ca: &Path, plane: SocketAddr, extra: &[&str], log: &str) -> Proc {
    let mut args = vec![
        "control".to_string(),
        "--dir".into(),
        dir.join("mesh").display().to_string(),
        "--listen".into(),
        plane.to_string(),
        "--poll-ms".into(),
        "100".into(),
        "--ca-dir".into(),
        ca.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let proc = Proc::spawn(&args, dir.join(log));
    wait_for(plane);
    proc
}

/// A sidecar with no `identity:`, configured and certified by the control plane at `plane`.
fn sidecar(dir: &Path, name: &str, config: &str, plane: SocketAddr, root: &Path) -> Proc {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, config).expect("config file");
    let (plane, path, root) = (
        plane.to_string(),
        path.display().to_string(),
        root.display().to_string(),
    );
    let args = [
        "proxy",
        "--config",
        &path,
        "--control-plane",
        &plane,
        "--control-plane-ca",
        &root,
        "--node",
        name,
        "--health-port",
        "0",
        "--cores",
        "1",
        "--no-pin",
    ];
    Proc::spawn(&args, dir.join(format!("{name}.log")))
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "trellis-e2e-plane-mtls-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("mesh")).expect("dir");
    dir
}

const INSTALLED: &str = "workload certificate from the control plane installed";

#[test]
fn sidecars_get_certificates_over_the_channel_talk_mtls_and_renew_without_dropping_connections() {
    let dir = tempdir("hop");
    let ca = dir.join("ca");
    trellis(&["ca", "init", "--dir", ca.to_str().expect("utf-8")]);
    let root = ca.join("root-cert.pem");
    let app = Upstream::start("reviews").expect("upstream");
    let inbound = free_addr();
    std::fs::write(dir.join("mesh/reviews.yaml"), mesh_yaml(inbound)).expect("write");
    let plane = free_addr();
    let control = control(
        &dir,
        &ca,
        plane,
        &["--trust-node-claims", "--workload-cert-ttl", "8s"],
        "control.log",
    );

    // 1. openssl sees the control plane's chain, verified by the mesh root, for its address.
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &plane.to_string(), "-CAfile"])
        .arg(&root)
        .args([
            "-verify_ip",
            "127.0.0.1",
            "-showcerts",
            "-alpn",
            "trellis-plane/1",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    assert_eq!(text.matches("BEGIN CERTIFICATE").count(), 2, "{text}");
    assert!(text.contains("ALPN protocol: trellis-plane/1"), "{text}");

    // 2. Two sidecars certified over the channel, talking mTLS.
    let reviews = sidecar(
        &dir,
        "reviews-0",
        &format!(
            "workload: {{namespace: default, serviceAccount: reviews, labels: {{app: reviews}}}}\nlisteners:\n  - {{name: inbound, address: \"{inbound}\", direction: inbound, forwardTo: \"{}\"}}\n",
            app.addr()
        ),
        plane,
        &root,
    );
    let outbound = free_addr();
    let productpage = sidecar(
        &dir,
        "productpage-0",
        &format!(
            "workload: {{namespace: default, serviceAccount: productpage, labels: {{app: productpage}}}}\nlisteners: [{{address: \"{outbound}\"}}]\n"
        ),
        plane,
        &root,
    );
    wait_for(inbound);
    wait_for(outbound);
    reviews.wait_lines(&[INSTALLED, "sa/reviews"], 1, Duration::from_secs(30));
    productpage.wait_lines(&[INSTALLED, "sa/productpage"], 1, Duration::from_secs(30));
    control.wait_lines(
        &[
            "workload certificate issued",
            "spiffe://cluster.local/ns/default/sa/productpage",
        ],
        1,
        Duration::from_secs(20),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let out = curl(&[
            "-s",
            "-H",
            "Host: reviews:9080",
            &format!("http://{outbound}/headers"),
        ]);
        let body = String::from_utf8_lossy(&out.stdout).to_string();
        if body.contains("x-forwarded-client-cert") {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "no mTLS hop: {body}\nproductpage:\n{}\nreviews:\n{}",
            productpage.log(),
            reviews.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let xfcc = body
        .lines()
        .find_map(|l| l.strip_prefix("x-forwarded-client-cert: "))
        .expect("XFCC");
    assert!(
        xfcc.starts_with("By=spiffe://cluster.local/ns/default/sa/reviews;Hash=")
            && xfcc.ends_with("URI=spiffe://cluster.local/ns/default/sa/productpage"),
        "{xfcc}"
    );

    // 3. Renewal at half of 8 s: an established connection to reviews keeps working, a new one
    //    sees the new certificate.
    let client_certs = dir.join("sleep-certs");
    trellis(&[
        "ca",
        "issue",
        "--dir",
        ca.to_str().expect("utf-8"),
        "--service-account",
        "sleep",
        "--out",
        client_certs.to_str().expect("utf-8"),
    ]);
    let installed = reviews.count(&[INSTALLED]);
    let mut python = renewal_probe(
        &root,
        &client_certs.join("cert-chain.pem"),
        &client_certs.join("key.pem"),
        inbound.port(),
    );
    let mut lines = BufReader::new(python.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("text");
    let fields: Vec<&str> = first.split(' ').collect();
    assert_eq!(fields[0], "first", "{first}");
    let before = fields[1].to_string();
    assert_eq!(&fields[2..], ["HTTP/1.1", "200", "OK"], "{first}");
    let renewed = reviews.wait_lines(&[INSTALLED], installed + 1, Duration::from_secs(30));
    eprintln!("renewed: {renewed}");
    python
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("signal");
    let same = lines.next().expect("a line").expect("text");
    assert_eq!(same, "same-connection HTTP/1.1 200 OK", "{}", reviews.log());
    let new = lines.next().expect("a line").expect("text");
    let fields: Vec<&str> = new.split(' ').collect();
    assert_eq!(fields[0], "new-connection", "{new}");
    assert_ne!(
        fields[1], before,
        "a new connection gets the renewed certificate"
    );
    assert_eq!(&fields[2..], ["HTTP/1.1", "200", "OK"], "{new}");
    assert!(python.wait().expect("python ends").success());
    // Renewals are CSRs on the established channel, authenticated by the certificate held.
    control.wait_lines(
        &["workload certificate issued", "sa/reviews"],
        2,
        Duration::from_secs(20),
    );
}

#[test]
fn a_sidecar_without_credentials_is_refused_when_node_claims_are_not_trusted() {
    let dir = tempdir("refused");
    let ca = dir.join("ca");
    trellis(&["ca", "init", "--dir", ca.to_str().expect("utf-8")]);
    std::fs::write(dir.join("mesh/reviews.yaml"), mesh_yaml(free_addr())).expect("write");
    let plane = free_addr();
    let control = control(&dir, &ca, plane, &[], "control.log");
    let listen = free_addr();
    let sidecar = sidecar(
        &dir,
        "ratings-0",
        &format!(
            "workload: {{namespace: default, serviceAccount: ratings}}\nlisteners: [{{address: \"{listen}\"}}]\n"
        ),
        plane,
        &ca.join("root-cert.pem"),
    );
    let refused = control.wait_lines(&["CSR refused"], 1, Duration::from_secs(30));
    assert!(
        refused.contains("unproven claim of default/ratings")
            && refused.contains("no client certificate and no token"),
        "{refused}"
    );
    let told = sidecar.wait_lines(
        &["certificate refused by the control plane"],
        1,
        Duration::from_secs(20),
    );
    assert!(told.contains("node claims are not trusted"), "{told}");
    // The config is still pushed; only the certificate is refused.
    sidecar.wait_lines(
        &["config from the control plane applied"],
        1,
        Duration::from_secs(20),
    );
    assert_eq!(sidecar.count(&[INSTALLED]), 0);
}
