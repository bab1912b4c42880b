//! The sidecar's life cycle with a real `trellis proxy` process: `POST /quitquitquit` on the
//! admin port, and SIGTERM, stop it after draining the request in flight; `trellis wait-ready` returns once
//! the proxy is ready and fails, saying why, when it never is; the application's probes
//! (ISTIO_KUBE_APP_PROBERS) answer through the status port as pilot-agent's do.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const TRELLIS: &str = env!("CARGO_BIN_EXE_trellis");

/// A child process, killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `METHOD path` to 127.0.0.1:port: (status, body), or the error as text in the body.
fn request(method: &str, port: u16, path: &str, host: &str) -> (u16, String) {
    let attempt = || -> std::io::Result<String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(15)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nhost: {host}\r\nuser-agent: kube-probe/1.30\r\nconnection: close\r\n\r\n"
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    };
    match attempt() {
        Ok(text) => {
            let status = text
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
            (status, body.to_string())
        }
        Err(e) => (0, format!("error: {e}")),
    }
}

/// An application: `/slow` answers after `delay` (and reports it started on `started`),
/// `/live` 200, `/sick` 503, anything else 200 with the path.
fn app(delay: Duration, started: mpsc::Sender<()>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let started = started.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let n = stream.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (code, body) = match path.as_str() {
                    "/slow" => {
                        let _ = started.send(());
                        std::thread::sleep(delay);
                        (200, "slow done".to_string())
                    }
                    "/sick" => (503, "sick".to_string()),
                    _ => (200, format!("app {path}")),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {code} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

struct Sidecar {
    proc: Proc,
    listener: u16,
    health: u16,
    admin: u16,
    status: u16,
    log: PathBuf,
}

fn start_sidecar(dir: &Path, app_port: u16, probers: &str) -> Sidecar {
    std::fs::create_dir_all(dir).expect("dir");
    let (listener, health, admin, status) = (free_port(), free_port(), free_port(), free_port());
    let config = dir.join("sidecar.yaml");
    std::fs::write(
        &config,
        format!(
            "listeners:\n  - {{name: outbound, address: \"127.0.0.1:{listener}\", direction: outbound}}\n\
             services:\n  - host: app\n    ports: [80]\n    endpoints:\n      - {{address: \"127.0.0.1:{app_port}\"}}\n"
        ),
    )
    .expect("config");
    let log = dir.join("proxy.log");
    let proc = Proc(
        Command::new(TRELLIS)
            .args(["proxy", "--config"])
            .arg(&config)
            .args([
                "--cores",
                "1",
                "--no-pin",
                "--no-watch",
                "--drain-seconds",
                "10",
            ])
            .args(["--health-port", &health.to_string()])
            .args(["--admin-port", &admin.to_string()])
            .args(["--status-port", &status.to_string()])
            .env("ISTIO_KUBE_APP_PROBERS", probers)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("trellis starts"),
    );
    Sidecar {
        proc,
        listener,
        health,
        admin,
        status,
        log,
    }
}

fn temp_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("trellis-{name}-{}", std::process::id()))
}

fn wait_ready(sidecar: &Sidecar) -> std::process::Output {
    Command::new(TRELLIS)
        .args([
            "wait-ready",
            "--url",
            &format!("http://127.0.0.1:{}/healthz/ready", sidecar.health),
            "--timeout",
            "30s",
            "--period",
            "50ms",
        ])
        .output()
        .expect("wait-ready runs")
}

/// How the drain test asks the proxy to stop.
#[derive(Clone, Copy, Debug)]
enum Stop {
    QuitQuitQuit,
    Sigterm,
}

#[test]
fn quitquitquit_stops_the_proxy_after_draining() {
    stops_after_draining(Stop::QuitQuitQuit);
}

#[test]
fn sigterm_stops_the_proxy_after_draining() {
    stops_after_draining(Stop::Sigterm);
}

fn stops_after_draining(stop: Stop) {
    let (tx, started) = mpsc::channel();
    let app_port = app(Duration::from_millis(1500), tx);
    let mut sidecar = start_sidecar(&temp_dir(&format!("{stop:?}")), app_port, "");
    let ready = wait_ready(&sidecar);
    assert!(
        ready.status.success(),
        "{}",
        String::from_utf8_lossy(&ready.stderr)
    );

    // Not a GET; and the admin's readiness relays the proxy's.
    assert_eq!(request("GET", sidecar.admin, "/quitquitquit", "x").0, 405);
    assert_eq!(
        request("GET", sidecar.admin, "/ready", "x"),
        (200, "ready\n".into())
    );

    let port = sidecar.listener;
    let in_flight = std::thread::spawn(move || request("GET", port, "/slow", "app"));
    started
        .recv_timeout(Duration::from_secs(10))
        .expect("the request reached the application");
    let asked = Instant::now();
    match stop {
        Stop::QuitQuitQuit => assert_eq!(
            request("POST", sidecar.admin, "/quitquitquit", "x"),
            (200, "OK\n".into())
        ),
        Stop::Sigterm => {
            let pid = libc::pid_t::try_from(sidecar.proc.0.id()).expect("pid");
            // SAFETY: a signal to the child this test started.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
            // The signal is handled on a thread of its own: wait until draining shows.
            let deadline = Instant::now() + Duration::from_secs(5);
            while request("GET", sidecar.health, "/healthz/ready", "x").0 == 200 {
                assert!(Instant::now() < deadline, "SIGTERM did not start draining");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    // Draining: not ready any more, and the request in flight still completes.
    let (code, _) = request("GET", sidecar.health, "/healthz/ready", "x");
    assert_eq!(code, 503, "draining proxies are not ready");
    let (code, body) = in_flight.join().expect("client thread");
    assert_eq!(
        (code, body.as_str()),
        (200, "slow done"),
        "{}",
        std::fs::read_to_string(&sidecar.log).unwrap_or_default()
    );
    // Then the process exits, successfully.
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = sidecar.proc.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the proxy did not exit after /quitquitquit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(
        asked.elapsed() >= Duration::from_millis(900),
        "it waited for the request"
    );
    let log = std::fs::read_to_string(&sidecar.log).unwrap_or_default();
    let why = match stop {
        Stop::QuitQuitQuit => "shutting down on request",
        Stop::Sigterm => "signal received: shutting down",
    };
    assert!(log.contains(why), "{log}");
}

#[test]
fn wait_ready_returns_when_ready_and_fails_clearly_on_timeout() {
    let (tx, _started) = mpsc::channel();
    let app_port = app(Duration::ZERO, tx);
    let sidecar = start_sidecar(&temp_dir("wait"), app_port, "");
    // Started together, as a postStart hook runs next to the starting sidecar.
    let ready = wait_ready(&sidecar);
    assert!(
        ready.status.success(),
        "{}",
        String::from_utf8_lossy(&ready.stderr)
    );
    assert_eq!(
        request("GET", sidecar.listener, "/x", "app").0,
        200,
        "ready means serving"
    );

    let nobody = free_port();
    let out = Command::new(TRELLIS)
        .args([
            "wait-ready",
            "--url",
            &format!("http://127.0.0.1:{nobody}/healthz/ready"),
            "--timeout",
            "1s",
        ])
        .output()
        .expect("wait-ready runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not ready after 1s"), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{nobody}")), "{stderr}");
}

#[test]
fn app_probes_reach_the_app_through_the_status_port() {
    let (tx, _started) = mpsc::channel();
    let app_port = app(Duration::ZERO, tx);
    let probers = format!(
        r#"{{"/app-health/web/livez": {{"httpGet": {{"path": "/live", "port": {app_port}}}}},
            "/app-health/web/readyz": {{"httpGet": {{"path": "/sick", "port": {app_port}}}}},
            "/app-health/web/startupz": {{"tcpSocket": {{"port": {app_port}}}}}}}"#
    );
    let sidecar = start_sidecar(&temp_dir("probes"), app_port, &probers);
    let ready = wait_ready(&sidecar);
    assert!(
        ready.status.success(),
        "{}",
        String::from_utf8_lossy(&ready.stderr)
    );
    let status = sidecar.status;
    assert_eq!(
        request("GET", status, "/app-health/web/livez", "x"),
        (200, "app /live".into())
    );
    assert_eq!(
        request("GET", status, "/app-health/web/readyz", "x"),
        (503, "sick".into())
    );
    assert_eq!(
        request("GET", status, "/app-health/web/startupz", "x").0,
        200
    );
    let (code, body) = request("GET", status, "/app-health/other/livez", "x");
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        request("GET", status, "/healthz/ready", "x"),
        (200, "ready\n".into())
    );
}

#[test]
fn bad_app_probers_stop_the_sidecar_with_the_reason() {
    let dir = temp_dir("bad-probers");
    let mut sidecar = start_sidecar(&dir, 1, r#"{"/live": {"tcpSocket": {"port": 1}}}"#);
    let status = sidecar.proc.0.wait().expect("exits");
    assert!(!status.success());
    let log = std::fs::read_to_string(&sidecar.log).unwrap_or_default();
    assert!(log.contains("ISTIO_KUBE_APP_PROBERS"), "{log}");
}
