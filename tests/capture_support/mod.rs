//! What the capture end-to-end tests share: a "pod" network namespace (the test thread's) with
//! a veth to an "outside" one, commands that must succeed, and a small HTTP server and client
//! that show whether a request went through a sidecar. Needs root (CI runs as root).
#![allow(dead_code)] // each test binary uses its own subset

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

pub const TRELLIS: &str = env!("CARGO_BIN_EXE_trellis");
pub const POD_IP: &str = "10.10.0.2";
pub const OUTSIDE_IP: &str = "10.10.0.1";
/// The captured sidecar's two virtual listeners (deploy/examples/captured-sidecar.yaml).
pub const VIRTUAL_LISTENERS: &str = "listeners:
  - {name: virtualOutbound, address: \"0.0.0.0:15001\", direction: outbound, passthrough: true}
  - {name: virtualInbound, address: \"0.0.0.0:15006\", direction: inbound, forwardTo: \"127.0.0.1\"}
";
pub const POD_IP6: &str = "fd00:10::2";
pub const OUTSIDE_IP6: &str = "fd00:10::1";

/// A child process, killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run(program: &str, args: &[&str]) -> Output {
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

pub fn stdout(program: &str, args: &[&str]) -> String {
    String::from_utf8_lossy(&run(program, args).stdout).into_owned()
}

/// Move this thread (and what it spawns) into a fresh network namespace: the pod.
pub fn enter_pod_netns() {
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
pub struct Outside {
    pub holder: Proc,
}

impl Outside {
    pub fn create() -> Outside {
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
        // IPv6 too (nodad: usable at once), for the dual-stack cases.
        run(
            "ip",
            &[
                "-6",
                "addr",
                "add",
                &format!("{POD_IP6}/64"),
                "dev",
                "veth-pod",
                "nodad",
            ],
        );
        run("ip", &["link", "set", "veth-pod", "up"]);
        run("ip", &["route", "add", "default", "via", OUTSIDE_IP]);
        run("ip", &["-6", "route", "add", "default", "via", OUTSIDE_IP6]);
        for args in [
            vec!["ip", "link", "set", "lo", "up"],
            vec!["ip", "addr", "add", "10.10.0.1/24", "dev", "veth-out"],
            vec![
                "ip",
                "-6",
                "addr",
                "add",
                "fd00:10::1/64",
                "dev",
                "veth-out",
                "nodad",
            ],
            vec!["ip", "link", "set", "veth-out", "up"],
        ] {
            let mut full = vec!["-t", &pid, "-n"];
            full.extend(args);
            run("nsenter", &full);
        }
        Outside { holder }
    }

    pub fn netns(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.holder.0.id()))
    }

    /// Run `f` on a thread inside the outside namespace.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
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
pub fn serve(name: &str, addr: SocketAddr) {
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
            // The caller's mesh identity, when a sidecar terminated mTLS for this request.
            let caller = text
                .lines()
                .find(|l| l.starts_with("x-forwarded-client-cert:"))
                .and_then(|l| l.rsplit("/sa/").next())
                .map(|sa| sa.trim_end_matches(['"', ';', ' ']).to_string())
                .unwrap_or_else(|| "none".into());
            let body = format!(
                "{name} peer={peer} proxied={} caller={caller}\n",
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
pub fn get(addr: &str, host: &str) -> String {
    get_path(addr, host, "/")
}

pub fn get_path(addr: &str, host: &str, path: &str) -> String {
    http("GET", addr, host, path)
}

/// `method path` to `addr`: the status line and body (or the error, as text).
pub fn http(method: &str, addr: &str, host: &str, path: &str) -> String {
    let addr: SocketAddr = addr.parse().expect("address");
    let attempt = || -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"
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

pub fn wait_ready(port: u16) {
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
