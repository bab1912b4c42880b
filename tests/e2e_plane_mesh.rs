//! The mesh config served by the control plane, end to end: `trellis control --meshConfig FILE`
//! (pilot-discovery's flag; the file is what the `mesh` key of the `istio` ConfigMap holds)
//! sets `protocolDetectionTimeout` for every sidecar it pushes to.
//!
//! The capture inbound listener sniffs a port no Service declares (Envoy's `http_inspector`);
//! a server-first protocol (here a greeting line, as SMTP or MySQL send) only works when the
//! sniffing gives up after the detection timeout and proxies the connection as TCP
//! (`continue_on_listener_filters_timeout`). Istio's default, 0s, waits for the client's
//! first bytes forever; pilot sets `listener_filters_timeout` from the mesh config
//! (`buildSidecarInboundListener` in pilot/pkg/networking/core/listener_inbound.go).
//!
//! 1. With `protocolDetectionTimeout: 300ms` in the file, a silent client gets the workload's
//!    greeting through the sidecar.
//! 2. The file edited to `0s` is pushed: a new silent client gets nothing.
//! 3. A file that does not parse is refused at start with a message naming the field.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

mod common;
use common::l4_peers::{scratch, wait_for_log};
use common::{spawn_proxy, wait_for, Killed};

/// A server-first workload on 127.0.0.2: greets every connection with `220 ready`.
fn greeter() -> u16 {
    let listener = TcpListener::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.write_all(b"220 ready\r\n");
        }
    });
    port
}

/// The first line a silent client reads from `at` within `wait`, if any.
fn greeting(at: SocketAddr, wait: Duration) -> Option<String> {
    let stream = TcpStream::connect(at).expect("connect");
    stream.set_read_timeout(Some(wait)).expect("timeout");
    let mut line = String::new();
    match BufReader::new(stream).read_line(&mut line) {
        Ok(n) if n > 0 => Some(line.trim().to_string()),
        _ => None,
    }
}

fn spawn_control(dir: &Path, mesh: &Path, listen: SocketAddr, log: &Path) -> Killed {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["control", "--dir"])
        .arg(dir)
        .arg("--meshConfig")
        .arg(mesh)
        .args(["--listen", &listen.to_string(), "--poll-ms", "100"])
        .arg("--insecure-plaintext")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("trellis control starts");
    Killed(child)
}

#[test]
fn the_mesh_config_file_sets_the_detection_timeout_of_pushed_sidecars() {
    let tmp = scratch("plane-mesh", "timeout");
    let dir = tmp.join("mesh");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("ns.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: default}\n",
    )
    .expect("write");
    let mesh = tmp.join("mesh.yaml");
    std::fs::write(
        &mesh,
        "protocolDetectionTimeout: 300ms\naccessLogFile: /dev/stdout\n",
    )
    .expect("write");

    // 3. A broken file stops the command with the field named.
    let broken = tmp.join("broken.yaml");
    std::fs::write(&broken, "protocolDetectionTimeout: soon\n").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["control", "--dir"])
        .arg(&dir)
        .arg("--meshConfig")
        .arg(&broken)
        .args(["--insecure-plaintext", "--listen", "127.0.0.1:0"])
        .output()
        .expect("trellis runs");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("protocolDetectionTimeout"), "{said}");

    let control_log = tmp.join("control.log");
    let plane = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("address")
    };
    let _control = spawn_control(&dir, &mesh, plane, &control_log);
    wait_for(plane);

    // A sidecar whose capture listener forwards to the workload on 127.0.0.2 at the port the
    // client dialled (tests/e2e_inbound_protocols.rs explains the loopback stand-in for
    // `trellis init`'s redirect).
    let port = greeter();
    let capture = SocketAddr::from(([127, 0, 0, 1], port));
    let config = tmp.join("proxy.yaml");
    std::fs::write(
        &config,
        format!(
            "workload: {{namespace: default, labels: {{app: db}}}}\nlisteners:\n  - {{name: inbound, address: \"{capture}\", direction: inbound, forwardTo: \"127.0.0.2\"}}\n"
        ),
    )
    .expect("write");
    let proxy_log = tmp.join("proxy.log");
    let plane_arg = plane.to_string();
    let _proxy = spawn_proxy(
        &config,
        &[
            "--control-plane",
            &plane_arg,
            "--insecure-plaintext",
            "--node",
            "db-0",
        ],
        &proxy_log,
    );
    wait_for(capture);
    wait_for_log(&proxy_log, "config from the control plane applied");

    // 1. The pushed timeout: a silent client is proxied as TCP after 300 ms.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match greeting(capture, Duration::from_secs(3)) {
            Some(line) => {
                assert_eq!(line, "220 ready");
                break;
            }
            None => assert!(
                Instant::now() < deadline,
                "no greeting through the sidecar\ncontrol:\n{}\nproxy:\n{}",
                std::fs::read_to_string(&control_log).unwrap_or_default(),
                std::fs::read_to_string(&proxy_log).unwrap_or_default()
            ),
        }
    }

    // 2. Istio's default, 0s, pushed by editing the file: the sidecar waits for the client.
    let applied = |log: &str| log.matches("config from the control plane applied").count();
    let before = applied(&std::fs::read_to_string(&proxy_log).unwrap_or_default());
    std::fs::write(&mesh, "protocolDetectionTimeout: 0s\n").expect("write");
    wait_for_log(&control_log, "mesh config changed");
    let deadline = Instant::now() + Duration::from_secs(20);
    while applied(&std::fs::read_to_string(&proxy_log).unwrap_or_default()) == before {
        assert!(Instant::now() < deadline, "the change was not pushed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(greeting(capture, Duration::from_millis(1500)), None);
    let _ = std::fs::remove_dir_all(&tmp);
}
