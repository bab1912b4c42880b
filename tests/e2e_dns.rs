//! ServiceEntries with `resolution: DNS`, end to end: `trellis proxy` resolves the names
//! itself (never the engine), routes to the answers, and follows a name that moves.
//!
//! The proxy runs in a private mount namespace whose `/etc/hosts` is a file of the test's
//! (`unshare --mount` and a bind mount, so root, as CI runs), so the system resolver gives
//! answers the test controls, and rewriting that file moves the name. Checked:
//! 1. a ServiceEntry naming its endpoint by hostname reaches the address the name resolves to;
//! 2. a name that does not resolve leaves its service without endpoints (503) with a log line
//!    naming it, while the other service keeps being served;
//! 3. when the name moves to another address, the next DNS refresh sends new requests there.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use trellis_local_mesh::upstream::Upstream;

mod common;
use common::{curl, wait_for, Killed};

fn free_port(ip: [u8; 4]) -> u16 {
    TcpListener::bind(SocketAddr::from((ip, 0)))
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Status and body of a GET through the proxy with this Host.
fn get(listener: SocketAddr, host: &str) -> (u16, String) {
    let url = format!("http://{listener}/dns");
    let header = format!("Host: {host}");
    let out = curl(&["-s", "-w", "\n%{http_code}", "-H", &header, &url]);
    assert!(out.status.success(), "curl: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

fn write_hosts(path: &Path, text: &str) {
    // In place: the bind mount follows the inode, so the file must not be replaced.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .expect("hosts file");
    f.write_all(text.as_bytes()).expect("write hosts");
}

#[test]
fn dns_service_entries_resolve_outside_the_engine_and_follow_moves() {
    assert!(
        Command::new("unshare").arg("--version").output().is_ok(),
        "this test needs `unshare` (util-linux) and root, as CI runs"
    );
    let dir = std::env::temp_dir().join(format!("trellis-e2e-dns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let port = free_port([127, 0, 0, 2]);
    let first = Upstream::start_on("first", SocketAddr::from(([127, 0, 0, 2], port)))
        .expect("first upstream");
    let second = Upstream::start_on("second", SocketAddr::from(([127, 0, 0, 3], port)))
        .expect("second upstream (same port, another address)");
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, "127.0.0.2 backend.external.test\n").expect("hosts");
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port([127, 0, 0, 1])));
    let config = dir.join("proxy.yaml");
    std::fs::write(
        &config,
        format!(
            r#"listeners:
  - {{name: outbound, address: "{listen}", direction: outbound}}
istio:
  resources:
    - apiVersion: networking.istio.io/v1
      kind: ServiceEntry
      metadata: {{name: api}}
      spec:
        hosts: [api.external.test]
        location: MESH_EXTERNAL
        ports: [{{number: 80, name: http, protocol: HTTP}}]
        resolution: DNS
        endpoints: [{{address: backend.external.test, ports: {{http: {port}}}}}]
    - apiVersion: networking.istio.io/v1
      kind: ServiceEntry
      metadata: {{name: nowhere}}
      spec:
        hosts: [nowhere.external.test]
        ports: [{{number: 80, name: http, protocol: HTTP}}]
        resolution: DNS
        endpoints: [{{address: no-such-name.invalid}}]
"#
        ),
    )
    .expect("config");
    let log_path = dir.join("proxy.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let trellis = env!("CARGO_BIN_EXE_trellis");
    let script = format!(
        "mount --bind {} /etc/hosts && exec {trellis} proxy --config {} --health-port 0 --cores 1 --no-pin --no-watch --dns-refresh-secs 1 --seed 1",
        hosts.display(),
        config.display()
    );
    let _proxy = Killed(
        Command::new("unshare")
            .args(["--mount", "sh", "-c", &script])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("unshare starts"),
    );
    wait_for(listen);
    let logged = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let (status, body) = get(listen, "api.external.test");
    assert_eq!((status, body.trim()), (200, "first"), "log:\n{}", logged());
    let (status, _) = get(listen, "nowhere.external.test");
    assert_eq!(status, 503, "a name without an answer has no endpoint");
    assert!(
        logged().contains("cannot resolve no-such-name.invalid"),
        "the log names the name that failed:\n{}",
        logged()
    );
    assert_eq!(
        get(listen, "api.external.test").0,
        200,
        "the other keeps being served"
    );

    write_hosts(&hosts, "127.0.0.3 backend.external.test\n");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = get(listen, "api.external.test");
        if status == 200 && body.trim() == "second" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the moved name was never followed (last: {status} {body:?}); log:\n{}",
            logged()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        logged().contains("DNS answers of ServiceEntries"),
        "{}",
        logged()
    );
    assert!(first.requests() >= 2 && second.requests() >= 1);
    let _ = std::fs::remove_dir_all(&dir);
}
