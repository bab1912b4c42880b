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
//!
//! And `outboundTrafficPolicy.mode` from the `istio` ConfigMap in the watched directory, for a
//! captured sidecar (`trellis init` in a private network namespace, as tests/e2e_capture.rs;
//! needs root), as pilot builds the outbound side (`buildSidecarOutboundListener` in
//! pilot/pkg/networking/core/listener.go, `buildOutboundCatchAllNetworkFilterChains` in
//! listener_builder.go):
//! - on a port an HTTP service has (reviews' 9080), HTTP for a host the mesh does not know is
//!   passed through to its original destination under ALLOW_ANY and answered 502 under
//!   REGISTRY_ONLY (pilot's `block_all` virtual host, a DirectResponse of 502:
//!   `buildCatchAllVirtualHost` in httproute.go), while the registry's hosts are routed;
//! - on a port no service has, nothing is parsed: the virtual outbound listener's catch-all
//!   `tcp_proxy` passes the bytes to PassthroughCluster (ALLOW_ANY: an HTTP request arrives
//!   without the proxy's headers, a server-first greeting reaches a silent client, curl's
//!   TLS to a server name the mesh does not know completes with the real server) or to
//!   BlackHoleCluster, which closes the connection (REGISTRY_ONLY);
//! - and back to ALLOW_ANY it passes through again. curl and openssl s_server are the peers.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod capture_support;
mod common;
use capture_support::{enter_pod_netns, run, serve, wait_ready, Outside, Proc, TRELLIS};
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

/// The mesh config as the `istio` ConfigMap in istio-system holds it, with `mode`.
fn mesh_config_map(mode: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: istio-system}}\ndata:\n  mesh: |\n    outboundTrafficPolicy:\n      mode: {mode}\n"
    )
}

/// `reviews` in the registry: a Service whose one pod is the outside namespace's 10.10.0.1,
/// serving on 9090.
const REVIEWS: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: default}\n---\n\
apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: default}\n\
spec: {selector: {app: reviews}, ports: [{name: http, port: 9080, targetPort: 9090}]}\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {name: reviews-0, namespace: default, labels: {app: reviews}}\n\
spec: {containers: [{name: reviews, image: example/reviews}]}\n\
status: {podIP: 10.10.0.1, phase: Running}\n";

/// curl through the capture: the status code and the body.
fn curl(url: &str, host: Option<&str>) -> (String, String) {
    let mut command = Command::new("curl");
    command.args(["-sS", "-m", "10", "-w", "\n%{http_code}", url]);
    if let Some(host) = host {
        command.args(["-H", &format!("Host: {host}")]);
    }
    let out = command.output().expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_string(), body.to_string())
}

/// A server-first service at `at`: greets every connection with `220 ready`.
fn greet_at(at: SocketAddr) {
    let listener = TcpListener::bind(at).expect("bind the greeter");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.write_all(b"220 ready\r\n");
        }
    });
}

/// `openssl s_server -www` on 10.10.0.1:8443 in the outside namespace, with a self-signed
/// certificate for www.example.org: a TLS server nobody here wrote.
fn tls_server(outside: &Outside, tmp: &Path) -> Proc {
    let (cert, key) = (tmp.join("tls.crt"), tmp.join("tls.key"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=www.example.org",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs (scripts/test.sh installs it)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let pid = outside.holder.0.id().to_string();
    let server = Proc(
        Command::new("nsenter")
            .args(["-t", &pid, "-n", "openssl", "s_server", "-www", "-quiet"])
            .args(["-accept", "10.10.0.1:8443", "-cert"])
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nsenter and openssl run"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !outside.run(|| TcpStream::connect("10.10.0.1:8443").is_ok()) {
        assert!(Instant::now() < deadline, "openssl s_server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// curl over TLS to `server` (its name as SNI) at `at`, the certificate unchecked: the
/// status code and the body.
fn curl_tls_sni(server: &str, at: &str) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sSk", "-m", "10", "-w", "\n%{http_code}"])
        .args(["--connect-to", &format!("{server}:443:{at}")])
        .arg(format!("https://{server}/"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_string(), body.to_string())
}

#[test]
fn outbound_traffic_policy_passes_through_or_closes_unknown_destinations() {
    enter_pod_netns();
    let outside = Outside::create();
    run(TRELLIS, &["init", "--backend", "nft"]);
    outside.run(|| {
        serve("remote-9092", "10.10.0.1:9092".parse().unwrap());
        serve("remote-9080", "10.10.0.1:9080".parse().unwrap());
        serve("reviews-9090", "10.10.0.1:9090".parse().unwrap());
        greet_at("10.10.0.1:2525".parse().unwrap());
    });

    let tmp = scratch("plane-mesh", "registry-only");
    let _tls_server = tls_server(&outside, &tmp);
    let dir = tmp.join("mesh");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("reviews.yaml"), REVIEWS).expect("write");
    let istio = dir.join("istio.yaml");
    std::fs::write(&istio, mesh_config_map("ALLOW_ANY")).expect("write");
    let control_log = tmp.join("control.log");
    let _control = Killed(
        Command::new(TRELLIS)
            .args(["control", "--dir"])
            .arg(&dir)
            .args(["--listen", "127.0.0.1:15010", "--poll-ms", "100"])
            .arg("--insecure-plaintext")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&control_log).expect("log file"))
            .spawn()
            .expect("trellis control starts"),
    );
    wait_for("127.0.0.1:15010".parse().unwrap());

    // The captured sidecar, as the proxy user; its file says nothing of passthrough.
    let config = tmp.join("sidecar.yaml");
    std::fs::write(
        &config,
        "workload: {namespace: default, labels: {app: client}}\nlisteners:\n  - {name: virtualOutbound, address: \"0.0.0.0:15001\", direction: outbound}\n",
    )
    .expect("write");
    let proxy_log = tmp.join("proxy.log");
    let _proxy = Proc(
        Command::new("setpriv")
            .args(["--reuid", "1337", "--regid", "1337", "--clear-groups", "--"])
            .arg(TRELLIS)
            .args(["proxy", "--config"])
            .arg(&config)
            .args(["--control-plane", "127.0.0.1:15010", "--insecure-plaintext"])
            .args(["--node", "client-0", "--cores", "1", "--no-pin"])
            .args(["--status-port", "15020"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&proxy_log).expect("log file"))
            .spawn()
            .expect("setpriv (util-linux) is required"),
    );
    wait_ready(15021);
    wait_for_log(&proxy_log, "config from the control plane applied");
    let logs = || {
        format!(
            "control:\n{}\nproxy:\n{}",
            std::fs::read_to_string(&control_log).unwrap_or_default(),
            std::fs::read_to_string(&proxy_log).unwrap_or_default()
        )
    };
    let applied = || {
        (std::fs::read_to_string(&proxy_log).unwrap_or_default())
            .matches("config from the control plane applied")
            .count()
    };
    let switch_to = |mode: &str| {
        let before = applied();
        std::fs::write(&istio, mesh_config_map(mode)).expect("write");
        let deadline = Instant::now() + Duration::from_secs(20);
        while applied() == before {
            assert!(
                Instant::now() < deadline,
                "{mode} was not pushed\n{}",
                logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let unknown_port = "http://10.10.0.1:9092/";
    let unknown_host = "http://10.10.0.1:9080/";
    let greeter: SocketAddr = "10.10.0.1:2525".parse().unwrap();

    // ALLOW_ANY (the ConfigMap's): an unknown host on reviews' port is parsed and passed
    // through; a port no service has passes bytes (no x-request-id added), a server-first
    // greeting and TLS to an unknown server name included.
    let (code, body) = curl(unknown_host, None);
    assert_eq!(code, "200", "{body}\n{}", logs());
    assert!(
        body.contains("remote-9080 peer=10.10.0.2 proxied=true"),
        "{body}"
    );
    let (code, body) = curl(unknown_port, None);
    assert_eq!(code, "200", "{body}\n{}", logs());
    assert!(
        body.contains("remote-9092 peer=10.10.0.2 proxied=false"),
        "{body}"
    );
    assert_eq!(
        greeting(greeter, Duration::from_secs(5)).as_deref(),
        Some("220 ready"),
        "{}",
        logs()
    );
    let (code, body) = curl_tls_sni("www.example.org", "10.10.0.1:8443");
    assert_eq!(code, "200", "{body}\n{}", logs());
    assert!(
        body.contains("s_server"),
        "the real TLS server answered: {body}"
    );
    wait_for_log(&proxy_log, "10.10.0.1:2525 route=PassthroughCluster");

    // REGISTRY_ONLY: HTTP for an unknown host on reviews' port is answered 502 by the
    // sidecar; reviews still routes; every other port is closed unparsed (BlackHoleCluster).
    switch_to("REGISTRY_ONLY");
    let (code, body) = curl(unknown_host, None);
    assert_eq!(code, "502", "{body}\n{}", logs());
    assert!(!body.contains("remote-9080"), "{body}");
    let (code, body) = curl("http://10.96.0.10:9080/", Some("reviews"));
    assert_eq!(code, "200", "{body}\n{}", logs());
    assert!(body.contains("reviews-9090"), "{body}");
    let (code, body) = curl(unknown_port, None);
    assert_eq!(code, "000", "closed without an answer: {body}\n{}", logs());
    assert_eq!(
        greeting(greeter, Duration::from_secs(5)),
        None,
        "{}",
        logs()
    );
    let (code, _) = curl_tls_sni("www.example.org", "10.10.0.1:8443");
    assert_eq!(code, "000", "{}", logs());
    wait_for_log(&proxy_log, "route=BlackHoleCluster");

    // Back to ALLOW_ANY: it passes through again.
    switch_to("ALLOW_ANY");
    let (code, body) = curl(unknown_port, None);
    assert_eq!(code, "200", "{body}\n{}", logs());
    assert!(body.contains("remote-9092"), "{body}");
    let _ = std::fs::remove_dir_all(&tmp);
}
