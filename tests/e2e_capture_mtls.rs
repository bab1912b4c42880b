//! Two captured pods talking mutual TLS, as in a cluster: pod A (this thread's network
//! namespace, 10.10.0.2) and pod B (the outside namespace, 10.10.0.1), each with `trellis init`
//! (nft) and a `trellis proxy` as uid/gid 1337 holding its own workload certificate from one
//! mesh CA (`trellis ca`). A's application calls the `reviews` service by a VIP with a plain
//! `http://` request; A's sidecar captures it and opens auto mTLS to B's pod address (the
//! endpoint is labelled `security.istio.io/tlsMode: istio`); B's capture sends that connection
//! to B's inbound listener, which enforces STRICT PeerAuthentication, terminates TLS and hands
//! the request to B's application on 127.0.0.1:9080 with A's identity in
//! `x-forwarded-client-cert`. A plaintext connection to B's port (from A, on a port A's rules
//! exclude) is captured by B and refused by STRICT.
//!
//! Needs root, `ip`, `nsenter`, `setpriv`, `nft` (scripts/test.sh installs them).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod capture_support;
use capture_support::*;

fn chown_to_proxy(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("readable dir") {
        let path = entry.expect("entry").path();
        std::os::unix::fs::chown(&path, Some(1337), Some(1337)).expect("chown");
        if path.is_dir() {
            chown_to_proxy(&path);
        }
    }
    std::os::unix::fs::chown(dir, Some(1337), Some(1337)).expect("chown");
}

fn sidecar_config(dir: &Path, certs: &Path, account: &str, extra: &str) -> PathBuf {
    let path = dir.join(format!("{account}.yaml"));
    let file = |name: &str| certs.join(name).display().to_string();
    std::fs::write(
        &path,
        format!(
            "{VIRTUAL_LISTENERS}identity:
  certChain: {:?}
  key: {:?}
  rootCert: {:?}
workload:
  serviceAccount: {account}
{extra}",
            file("cert-chain.pem"),
            file("key.pem"),
            file("root-cert.pem"),
        ),
    )
    .expect("config written");
    path
}

/// `trellis proxy` as the proxy user, in the namespace of `netns_pid` (or this one).
fn start_proxy(config: &Path, log: &Path, netns_pid: Option<u32>) -> Proc {
    let mut command = match netns_pid {
        Some(pid) => {
            let mut c = Command::new("nsenter");
            c.args(["-t", &pid.to_string(), "-n", "--", "setpriv"]);
            c
        }
        None => Command::new("setpriv"),
    };
    command
        .args(["--reuid", "1337", "--regid", "1337", "--clear-groups", "--"])
        .arg(TRELLIS)
        .args(["proxy", "--config"])
        .arg(config)
        .args(["--cores", "1", "--no-pin", "--no-watch"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log"));
    Proc(
        command
            .spawn()
            .expect("nsenter and setpriv (util-linux) are required"),
    )
}

#[test]
fn captured_pods_talk_mutual_tls_and_strict_refuses_plaintext() {
    enter_pod_netns();
    let pod_b = Outside::create();
    let b_pid = pod_b.holder.0.id();
    let dir = std::env::temp_dir().join(format!("trellis-capture-mtls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");

    // One mesh CA, a certificate per workload, readable by the proxy user.
    let ca = dir.join("ca");
    let path = |p: &Path| p.display().to_string();
    run(TRELLIS, &["ca", "init", "--dir", &path(&ca)]);
    for account in ["productpage", "reviews"] {
        run(
            TRELLIS,
            &[
                "ca",
                "issue",
                "--dir",
                &path(&ca),
                "--service-account",
                account,
                "--out",
                &path(&dir.join(account)),
            ],
        );
    }
    chown_to_proxy(&dir);

    // Pod A excludes outbound 9080 so the test can send plaintext straight to B's port.
    run(
        TRELLIS,
        &["init", "--backend", "nft", "--ipv6", "off", "-o", "9080"],
    );
    run(
        "nsenter",
        &[
            "-t",
            &b_pid.to_string(),
            "-n",
            TRELLIS,
            "init",
            "--backend",
            "nft",
            "--ipv6",
            "off",
        ],
    );
    pod_b.run(|| serve("reviews-app", "0.0.0.0:9080".parse().unwrap()));

    let a_config = sidecar_config(
        &dir,
        &dir.join("productpage"),
        "productpage",
        &format!(
            "services:
  - host: reviews
    ports: [80]
    endpoints:
      - address: \"{OUTSIDE_IP}\"
        ports: {{80: 9080}}
        serviceAccount: reviews
        labels: {{app: reviews, security.istio.io/tlsMode: istio}}
"
        ),
    );
    let b_config = sidecar_config(
        &dir,
        &dir.join("reviews"),
        "reviews",
        "istio:
  resources:
    - apiVersion: security.istio.io/v1
      kind: PeerAuthentication
      metadata: {name: default, namespace: default}
      spec: {mtls: {mode: STRICT}}
",
    );
    let (a_log, b_log) = (dir.join("a.log"), dir.join("b.log"));
    let _a = start_proxy(&a_config, &a_log, None);
    let _b = start_proxy(&b_config, &b_log, Some(b_pid));
    let logs = || {
        format!(
            "--- A\n{}\n--- B\n{}",
            std::fs::read_to_string(&a_log).unwrap_or_default(),
            std::fs::read_to_string(&b_log).unwrap_or_default()
        )
    };
    wait_ready(15021);
    pod_b.run(|| wait_ready(15021));

    // A's application calls the service VIP in plain HTTP; B's application sees A's identity.
    let answer = get("10.96.0.10:80", "reviews");
    assert!(
        answer.contains("reviews-app peer=127.0.0.1 proxied=true caller=productpage"),
        "{answer}\n{}",
        logs()
    );
    // Plaintext to B's application port: captured by B, refused by STRICT.
    let answer = get(&format!("{OUTSIDE_IP}:9080"), "reviews");
    assert!(!answer.contains("reviews-app"), "{answer}\n{}", logs());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !std::fs::read_to_string(&b_log)
        .unwrap_or_default()
        .contains(
            "plaintext connection refused: the port requires mTLS (PeerAuthentication STRICT)",
        )
    {
        assert!(
            std::time::Instant::now() < deadline,
            "B did not log the STRICT refusal\n{}",
            logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
