//! Peers of the L4 tests (tcp routes, inbound TCP, gateway TCP/TLS servers): scratch
//! directories, free ports, and real OpenSSL as a TLS server and client.

// Every test binary compiles `common`; only the L4 ones use these.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{wait_for, Killed};

/// An empty directory `trellis-<test>-<name>-<pid>` under the temporary directory.
pub fn scratch(test: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trellis-{test}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A port nothing listens on right now (the kernel's pick, released at once).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("address").port()
}

/// A self-signed certificate with CN and DNS SAN `name` in `dir`: (cert, key).
pub fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", &format!("/CN={name}")])
        .args(["-addext", &format!("subjectAltName=DNS:{name}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs (scripts/test.sh installs it)");
    assert!(out.status.success(), "{out:?}");
    (cert, key)
}

/// `openssl s_server -www` with a certificate for `name`: (port, process, cert).
pub fn s_server(dir: &Path, name: &str) -> (u16, Killed, PathBuf) {
    let (cert, key) = certificate(dir, name);
    let port = free_port();
    let child = Command::new("openssl")
        .args(["s_server", "-accept", &format!("127.0.0.1:{port}"), "-www"])
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server starts");
    let server = Killed(child);
    wait_for(SocketAddr::from(([127, 0, 0, 1], port)));
    (port, server, cert)
}

/// The subject line of the certificate presented through `port` for `sni`, or
/// `no handshake: <what openssl said>`.
pub fn subject_for(port: u16, sni: &str) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", sni])
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| l.starts_with("subject="))
        .map(str::to_string)
        .unwrap_or_else(|| {
            format!(
                "no handshake: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}
