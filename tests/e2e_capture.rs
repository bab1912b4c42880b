//! `trellis init` end to end, as root, in a private network namespace laid out like a pod: the
//! "pod" namespace (this test thread's) holds the application and the sidecar, with address
//! 10.10.0.2 on a veth whose other end (10.10.0.1) is in an "outside" namespace holding a
//! remote service and inbound clients. The capture rules are loaded by each backend in turn
//! (nft, iptables-legacy), and a real `trellis proxy` runs as uid/gid 1337 (setpriv), with the
//! outbound virtual listener on 15001 and the inbound one on 15006
//! (deploy/examples/captured-sidecar.yaml's shape). It shows:
//!
//! (a) the application's connection to a service VIP (10.96.0.10:9080, where nothing listens)
//!     is captured to 15001 and routed by its Host to the service's endpoint, and a connection
//!     to an address the mesh does not know is forwarded to its original destination;
//! (b) an inbound connection to the application's port arrives through 15006 and reaches the
//!     application on 127.0.0.1 at that port;
//! (c) the proxy's own upstream connections (uid 1337) are not captured again: (a) and (b)
//!     complete instead of looping;
//! (d) excluded ports (`-d` inbound, `-o` outbound) bypass the proxy;
//! (e) running init twice leaves one copy of the rules, and `--cleanup` leaves
//!     `nft list ruleset` / `iptables-save` exactly as before.
//!
//! Needs root, `ip`, `setpriv`, `nft` and `iptables-legacy` (scripts/test.sh installs
//! nftables and iptables); without them it fails, saying what is missing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const TRELLIS: &str = env!("CARGO_BIN_EXE_trellis");
const POD_IP: &str = "10.10.0.2";
const OUTSIDE_IP: &str = "10.10.0.1";

/// A child process, killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run {program} ({e}): this test needs iproute2, util-linux, nftables and iptables (scripts/test.sh installs them)")
    });
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(program: &str, args: &[&str]) -> String {
    String::from_utf8_lossy(&run(program, args).stdout).into_owned()
}

/// Move this thread (and what it spawns) into a fresh network namespace: the pod.
fn enter_pod_netns() {
    // SAFETY: plain syscall; affects only the calling thread's namespaces.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "unshare(CLONE_NEWNET) failed ({}): this test needs root, as CI runs",
        std::io::Error::last_os_error()
    );
    run("ip", &["link", "set", "lo", "up"]);
}

/// The outside namespace: a process holding it, a veth to the pod, addresses and routes.
struct Outside {
    holder: Proc,
}

impl Outside {
    fn create() -> Outside {
        let holder = Proc(
            Command::new("unshare")
                .args(["--net", "sleep", "600"])
                .spawn()
                .expect("unshare (util-linux) is required"),
        );
        let pid = holder.0.id().to_string();
        // The holder's namespace exists once `unshare` has exec'd sleep.
        let deadline = Instant::now() + Duration::from_secs(10);
        let own = std::fs::read_link("/proc/thread-self/ns/net").expect("own netns");
        while std::fs::read_link(format!("/proc/{pid}/ns/net")).ok() == Some(own.clone())
            || std::fs::read_link(format!("/proc/{pid}/ns/net")).is_err()
        {
            assert!(Instant::now() < deadline, "unshare --net did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        run(
            "ip",
            &[
                "link", "add", "veth-pod", "type", "veth", "peer", "name", "veth-out", "netns",
                &pid,
            ],
        );
        run(
            "ip",
            &["addr", "add", &format!("{POD_IP}/24"), "dev", "veth-pod"],
        );
        run("ip", &["link", "set", "veth-pod", "up"]);
        run("ip", &["route", "add", "default", "via", OUTSIDE_IP]);
        for args in [
            vec!["ip", "link", "set", "lo", "up"],
            vec!["ip", "addr", "add", "10.10.0.1/24", "dev", "veth-out"],
            vec!["ip", "link", "set", "veth-out", "up"],
        ] {
            let mut full = vec!["-t", &pid, "-n"];
            full.extend(args);
            run("nsenter", &full);
        }
        Outside { holder }
    }

    fn netns(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.holder.0.id()))
    }

    /// Run `f` on a thread inside the outside namespace.
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let ns = std::fs::File::open(self.netns()).expect("outside netns");
        std::thread::spawn(move || {
            // SAFETY: setns on an open namespace fd; affects only this new thread.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("thread in the outside namespace")
    }
}

/// An HTTP server that answers every request with its name, the peer it saw, and whether the
/// request came through a proxy (the sidecar adds x-request-id).
fn serve(name: &str, addr: SocketAddr) {
    let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    let name = name.to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut chunk = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&chunk[..n]),
                }
            }
            let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let peer = stream
                .peer_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_default();
            let body = format!(
                "{name} peer={peer} proxied={}\n",
                text.contains("x-request-id:")
            );
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
}

/// GET / from `addr` with `host`, returning the status line and body (or the error, as text).
fn get(addr: &str, host: &str) -> String {
    get_path(addr, host, "/")
}

fn get_path(addr: &str, host: &str, path: &str) -> String {
    let addr: SocketAddr = addr.parse().expect("address");
    let attempt = || -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        s.read_to_string(&mut response)?;
        Ok(response)
    };
    match attempt() {
        Ok(response) => response
            .split_once("\r\n\r\n")
            .map(|(head, body)| format!("{} | {body}", head.lines().next().unwrap_or("")))
            .unwrap_or(response),
        Err(e) => format!("error: {e}"),
    }
}

fn write_config(dir: &Path) -> PathBuf {
    let path = dir.join("sidecar.yaml");
    std::fs::write(
        &path,
        format!(
            "listeners:
  - {{name: virtualOutbound, address: \"0.0.0.0:15001\", direction: outbound, passthrough: true}}
  - {{name: virtualInbound, address: \"0.0.0.0:15006\", direction: inbound, forwardTo: \"127.0.0.1\"}}
services:
  - host: reviews
    ports: [9080]
    endpoints:
      - {{address: \"{OUTSIDE_IP}:9090\"}}
"
        ),
    )
    .expect("config written");
    path
}

fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = get_path(&format!("127.0.0.1:{port}"), "localhost", "/healthz/ready");
        if answer.contains("200 OK") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the sidecar did not become ready: {answer}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The backend's view of all rules, without what changes by itself: counters, comments, and
/// for iptables the empty built-in chains of a table the kernel instantiated on first use.
fn ruleset(backend: &str) -> String {
    let lines: Vec<String> = match backend {
        "nft" => stdout("nft", &["list", "ruleset"])
            .lines()
            .map(str::to_string)
            .collect(),
        _ => stdout("iptables-legacy-save", &[])
            .lines()
            .filter(|l| l.starts_with('-') || (l.starts_with(':') && l.contains(" - [")))
            .map(|l| l.split(" [").next().unwrap_or(l).to_string())
            .collect(),
    };
    lines.join("\n")
}

fn capture_end_to_end(backend: &str) {
    enter_pod_netns();
    let outside = Outside::create();
    let before = ruleset(backend);

    // Rules: excluded inbound 8081 and outbound 9091 (d).
    let init = |extra: &[&str]| {
        let mut args = vec!["init", "--backend", backend, "-d", "8081", "-o", "9091"];
        args.extend_from_slice(extra);
        run(TRELLIS, &args)
    };
    init(&[]);
    let once = ruleset(backend);
    init(&[]);
    assert_eq!(
        ruleset(backend),
        once,
        "init twice must not duplicate rules"
    );
    assert_ne!(once, before);

    // The application (pod) and the remote service (outside).
    serve("app-8080", "0.0.0.0:8080".parse().unwrap());
    serve("app-8081", "0.0.0.0:8081".parse().unwrap());
    outside.run(|| {
        for port in [9090, 9091, 9092] {
            serve(
                &format!("remote-{port}"),
                format!("{OUTSIDE_IP}:{port}").parse().unwrap(),
            );
        }
    });

    // The sidecar, as the proxy user.
    let dir =
        std::env::temp_dir().join(format!("trellis-capture-{backend}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = write_config(&dir);
    let log_path = dir.join("proxy.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let proxy = Proc(
        Command::new("setpriv")
            .args(["--reuid", "1337", "--regid", "1337", "--clear-groups", "--"])
            .arg(TRELLIS)
            .args(["proxy", "--config"])
            .arg(&config)
            .args(["--cores", "1", "--no-pin", "--no-watch"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("setpriv (util-linux) is required"),
    );
    wait_ready(15021);
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // (a) A service VIP nobody listens on: captured, routed by Host to reviews' endpoint; the
    // proxy's own connection to it (c) went out uncaptured.
    let answer = get("10.96.0.10:9080", "reviews:9080");
    assert!(
        answer.contains("remote-9090 peer=10.10.0.2 proxied=true"),
        "{backend}: {answer}\n{}",
        log()
    );
    // (a) An address the mesh does not know: to the original destination, through the proxy.
    let answer = get("10.10.0.1:9092", "example.com");
    assert!(
        answer.contains("remote-9092 peer=10.10.0.2 proxied=true"),
        "{backend}: {answer}\n{}",
        log()
    );
    // (d) An excluded outbound port: straight there.
    let answer = get("10.10.0.1:9091", "example.com");
    assert!(
        answer.contains("remote-9091 peer=10.10.0.2 proxied=false"),
        "{backend}: {answer}"
    );
    // (b) Inbound to the application's port: through 15006, to 127.0.0.1:8080.
    let answer = outside.run(|| get("10.10.0.2:8080", "app"));
    assert!(
        answer.contains("app-8080 peer=127.0.0.1 proxied=true"),
        "{backend}: {answer}\n{}",
        log()
    );
    // (d) An excluded inbound port: straight to the application.
    let answer = outside.run(|| get("10.10.0.2:8081", "app"));
    assert!(
        answer.contains("app-8081 peer=10.10.0.1 proxied=false"),
        "{backend}: {answer}"
    );
    // The proxy's own ports are never captured inbound: its readiness answers from outside.
    let answer = outside.run(|| get_path("10.10.0.2:15021", "probe", "/healthz/ready"));
    assert!(answer.contains("200 OK"), "{backend}: {answer}");
    drop(proxy);

    // (e) Cleanup restores the rules exactly, and is idempotent.
    run(TRELLIS, &["init", "--backend", backend, "--cleanup"]);
    assert_eq!(
        ruleset(backend),
        before,
        "{backend}: cleanup left rules behind"
    );
    run(TRELLIS, &["init", "--backend", backend, "--cleanup"]);
    assert_eq!(ruleset(backend), before);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nft_capture_end_to_end() {
    capture_end_to_end("nft");
}

#[test]
fn iptables_legacy_capture_end_to_end() {
    capture_end_to_end("iptables");
}

#[test]
fn init_without_net_admin_says_so() {
    let out = Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--",
        ])
        .args([TRELLIS, "init", "--backend", "nft"])
        .output()
        .expect("setpriv (util-linux) is required");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CAP_NET_ADMIN"), "{stderr}");
}

#[test]
fn bad_flags_name_the_flag() {
    let out = Command::new(TRELLIS)
        .args(["init", "--dry-run", "-x", "10.0.0.0/40"])
        .output()
        .expect("trellis runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("-x/--istio-service-exclude-cidr"),
        "{stderr}"
    );
}
