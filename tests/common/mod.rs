//! What the binary's end-to-end tests share: waiting for a listener, and running real curl
//! (which must be installed: a missing curl fails the test, it never skips).

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod client_certs;
pub mod l4_peers;

/// Wait until something accepts on `addr` (at most 20 s).
pub fn wait_for(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait until nothing accepts on `addr` any more (at most 20 s). A killed proxy's listening
/// sockets can outlive its process for a moment (io_uring tears its ring down after exit, and
/// operations in flight hold the socket); with `SO_REUSEPORT` a new proxy on the same port
/// would share connections with that dying socket, which then resets them.
#[allow(dead_code)] // not every test binary restarts a proxy
pub fn wait_gone(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "{addr} still accepts");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run the `trellis` binary with `args`; it must exit 0.
#[allow(dead_code)] // only the tests that issue certificates with `trellis ca`
pub fn trellis(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(args)
        .output()
        .expect("trellis runs");
    assert!(out.status.success(), "trellis {args:?}: {out:?}");
    out
}

/// `curl -sS --max-time 20 ARGS`.
pub fn curl(args: &[&str]) -> Output {
    let found = Command::new("sh")
        .args(["-c", "command -v curl"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "curl is required (scripts/test.sh installs it)");
    Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl runs")
}

/// Poll `GET /` for host `reviews` through the sidecar `proxy` until the answering upstream is
/// `name` (at most 30 s; then fail, showing `control.log` and `proxy.log` of `logs`).
#[allow(dead_code)] // only the control-plane tests route through a pushed config
pub fn wait_until_answered_by(proxy: SocketAddr, name: &str, logs: &std::path::Path) {
    let answer = || {
        let out = curl(&["-H", "Host: reviews:9080", &format!("http://{proxy}/")]);
        let body = String::from_utf8_lossy(&out.stdout).trim().to_string();
        body.starts_with("reviews-").then_some(body)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = answer();
        if got.as_deref() == Some(name) {
            return;
        }
        if Instant::now() > deadline {
            let read = |f: &str| std::fs::read_to_string(logs.join(f)).unwrap_or_default();
            panic!(
                "still answered by {got:?}, not {name}\ncontrol log:\n{}\nproxy log:\n{}",
                read("control.log"),
                read("proxy.log")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An offset at which every port of `ports` (plus the offset) is free on 127.0.0.1 (bound,
/// then released for a gateway started with `--port-offset` to take).
#[allow(dead_code)] // not every test binary starts a gateway
pub fn free_offset(ports: &[u16]) -> u16 {
    let lowest = ports.iter().copied().min().unwrap_or(0);
    for _ in 0..100 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("address").port();
        let Some(offset) = port.checked_sub(lowest) else {
            continue;
        };
        let all_free = ports.iter().all(|&p| {
            p == lowest
                || offset
                    .checked_add(p)
                    .is_some_and(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        });
        if all_free {
            return offset;
        }
    }
    panic!("no free set of ports {ports:?}");
}

/// A child process of the test, killed (and reaped) when dropped, so a failing assertion
/// leaves no proxy behind.
#[allow(dead_code)] // not every test binary starts a process
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `trellis proxy --config CONFIG` with the tests' usual flags (no health port, one core,
/// no pinning, no watching, seed 1) and `extra`; its log (RUST_LOG=info) goes to `log`.
#[allow(dead_code)] // not every test binary starts a proxy
pub fn spawn_proxy(config: &std::path::Path, extra: &[&str], log: &std::path::Path) -> Killed {
    let log = std::fs::File::create(log).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["proxy", "--config"])
        .arg(config)
        .args([
            "--health-port",
            "0",
            "--cores",
            "1",
            "--no-pin",
            "--no-watch",
        ])
        .args(["--seed", "1"])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("trellis proxy starts");
    Killed(child)
}

/// A sidecar of `productpage-0` (namespace `default`, `app: productpage`) with nothing of its
/// own, configured by the control plane at `plane`: its listener's address, and the process
/// (logging to `dir/proxy.log`).
#[allow(dead_code)] // only the control-plane tests start a pushed sidecar
pub fn spawn_pushed_sidecar(plane: SocketAddr, dir: &std::path::Path) -> (SocketAddr, Killed) {
    let proxy = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let config = dir.join("proxy.yaml");
    std::fs::write(
        &config,
        format!(
            "listeners: [{{address: \"{proxy}\"}}]\nworkload: {{namespace: default, labels: {{app: productpage}}}}\n"
        ),
    )
    .expect("write proxy.yaml");
    let plane = plane.to_string();
    // The plain-TCP channel: these tests are about the pushes (tests/e2e_plane_mtls.rs runs the
    // channel over mTLS).
    let extra = [
        "--control-plane",
        plane.as_str(),
        "--insecure-plaintext",
        "--node",
        "productpage-0",
    ];
    let child = spawn_proxy(&config, &extra, &dir.join("proxy.log"));
    wait_for(proxy);
    (proxy, child)
}

/// [`spawn_proxy`] as a gateway for `istio=ingressgateway` on 127.0.0.1, Gateway port P
/// listening on P + `offset`.
#[allow(dead_code)] // not every test binary starts a gateway
pub fn spawn_gateway(config: &std::path::Path, offset: u16, log: &std::path::Path) -> Killed {
    let offset = offset.to_string();
    let extra = [
        "--gateway",
        "--labels",
        "istio=ingressgateway",
        "--bind-address",
        "127.0.0.1",
        "--port-offset",
        offset.as_str(),
    ];
    spawn_proxy(config, &extra, log)
}

/// The status code of `curl https://<host>:<port><path>` with `host` resolved to 127.0.0.1,
/// trusting `ca`, with `extra` arguments (a client certificate, say): `000` when no answer
/// came (a refused handshake).
#[allow(dead_code)] // only the gateway TLS tests
pub fn https_status(
    host: &str,
    port: u16,
    path: &str,
    ca: &std::path::Path,
    extra: &[&str],
) -> String {
    let resolve = format!("{host}:{port}:127.0.0.1");
    let url = format!("https://{host}:{port}{path}");
    let ca = ca.display().to_string();
    let mut args = vec![
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--cacert",
        &ca,
        "--resolve",
        &resolve,
    ];
    args.extend_from_slice(extra);
    args.push(&url);
    String::from_utf8_lossy(&curl(&args).stdout).into_owned()
}

/// Status, head (as received) and body of `curl -s -i ARGS`.
#[allow(dead_code)] // not every test binary reads whole answers
pub fn curl_i(args: &[&str]) -> (u16, String, String) {
    let mut all = vec!["-s", "-i"];
    all.extend_from_slice(args);
    let out = curl(&all);
    assert!(out.status.success(), "curl {args:?}: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    (status, head.to_string(), body.to_string())
}

/// `../shared` (or `TRELLIS_SHARED_DIR`): Istio's samples and security fixtures.
#[allow(dead_code)] // only the tests that read Istio's fixtures
pub fn shared_dir() -> std::path::PathBuf {
    match std::env::var_os("TRELLIS_SHARED_DIR") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"),
    }
}

/// Start `tests/support/jwt_peer.py` (PyJWT's tokens and JWKS; any other path answers with
/// the request's headers as JSON): the process and its first line (port, issuer, tokens).
#[allow(dead_code)] // only the JWT tests
pub fn jwt_peer() -> (Killed, serde_json::Value) {
    use std::io::BufRead;
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/jwt_peer.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 is required for this test (scripts/test.sh installs it)");
    let stdout = child.stdout.take().expect("stdout");
    let child = Killed(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the peer prints its settings");
    let info: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("the Python peer printed {line:?}: {e}"));
    if let Some(e) = info.get("error") {
        panic!("{e} (scripts/test.sh installs PyJWT and cryptography)");
    }
    (child, info)
}

/// Start `tests/support/renewal_probe.py`: a Python ssl client with the certificate `chain`
/// and `key`, trusting `root`, against 127.0.0.1:`port` (stdin and stdout piped; see the
/// script for its lines).
#[allow(dead_code)] // only the certificate renewal tests
pub fn renewal_probe(
    root: &std::path::Path,
    chain: &std::path::Path,
    key: &std::path::Path,
    port: u16,
) -> std::process::Child {
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/renewal_probe.py");
    Command::new("python3")
        .arg(script)
        .arg(root)
        .arg(chain)
        .arg(key)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/test.sh installs it)")
}
