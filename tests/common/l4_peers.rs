//! Peers of the L4 tests (tcp routes, inbound TCP, gateway TCP/TLS servers): scratch
//! directories, free ports, real OpenSSL as a TLS server and client, a line-echo workload,
//! mesh certificates and Python's `ssl` as an mTLS client.

// Every test binary compiles `common`; only the L4 ones use these.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{trellis, wait_for, Killed};

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
    subject_offering(port, sni, &[])
}

/// [`subject_for`] with a ClientHello that offers the ALPN protocols `alpn` (`-alpn`).
pub fn subject_offering(port: u16, sni: &str, alpn: &[&str]) -> String {
    s_client_line(port, sni, alpn, &["subject="])
}

/// The first line `openssl s_client` prints for a ClientHello naming `sni` and offering the
/// ALPN protocols `alpn` that starts with one of `prefixes`, or `no handshake: <output>`.
pub fn s_client_line(port: u16, sni: &str, alpn: &[&str], prefixes: &[&str]) -> String {
    let mut command = Command::new("openssl");
    command
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", sni]);
    if !alpn.is_empty() {
        command.args(["-alpn", &alpn.join(",")]);
    }
    let out = command
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| prefixes.iter().any(|p| l.starts_with(p)))
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| {
            format!(
                "no handshake: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// A line-echo TCP workload on `ip`: answers each line with `<tag>:<line>`; every line it ever
/// received is recorded, so a test can tell that a denied client's bytes never arrived.
pub fn line_echo(ip: &str, tag: &'static str) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind((ip, 0)).expect("bind");
    let addr = listener.local_addr().expect("address");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let record = record.clone();
            std::thread::spawn(move || {
                let Ok(mut out) = stream.try_clone() else {
                    return;
                };
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    record.lock().expect("lock").push(line.clone());
                    if out.write_all(format!("{tag}:{line}\n").as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// Send one line over plain TCP and read what comes back until EOF or a newline: `None`
/// when the connection was closed (or reset) without an answer.
pub fn plain_exchange(addr: SocketAddr, line: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(format!("{line}\n").as_bytes()).ok()?;
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match s.read(&mut byte) {
            Ok(0) | Err(_) => break,
            Ok(_) if byte[0] == b'\n' => return Some(String::from_utf8_lossy(&got).into()),
            Ok(_) => got.push(byte[0]),
        }
    }
    (!got.is_empty()).then(|| String::from_utf8_lossy(&got).into())
}

pub fn wait_for_log(log: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `trellis ca init` into `dir/ca`, then one workload certificate per service account.
pub fn issue(dir: &Path, accounts: &[&str]) -> Vec<PathBuf> {
    let ca = dir.join("ca");
    trellis(&["ca", "init", "--dir", ca.to_str().expect("utf-8")]);
    accounts
        .iter()
        .map(|sa| {
            let out = dir.join(format!("certs-{sa}"));
            trellis(&[
                "ca",
                "issue",
                "--dir",
                ca.to_str().expect("utf-8"),
                "--service-account",
                sa,
                "--out",
                out.to_str().expect("utf-8"),
            ]);
            out
        })
        .collect()
}

/// The proxy config's `identity:` line for the certificates `trellis ca issue` wrote in
/// `certs`.
pub fn identity_yaml(certs: &Path) -> String {
    let file = |name: &str| certs.join(name).display().to_string();
    format!(
        "identity: {{certChain: {:?}, key: {:?}, rootCert: {:?}}}\n",
        file("cert-chain.pem"),
        file("key.pem"),
        file("root-cert.pem")
    )
}

/// One mTLS exchange with Python's `ssl` as `certs`: prints the echo's answer, or `CLOSED`
/// when the connection ended without one, or `REFUSED` when the handshake failed.
pub fn mtls_exchange(at: SocketAddr, certs: &Path, root: &Path, line: &str) -> String {
    let client = (certs.join("cert-chain.pem"), certs.join("key.pem"));
    tls_exchange(
        at.port(),
        root,
        Some((&client.0, &client.1)),
        &format!("{line}\n"),
    )
}

/// One TLS exchange with Python's `ssl` on 127.0.0.1:`port`: the server verified against
/// `root` without a host name check (a mesh certificate names a SPIFFE id), the client
/// certificate and key `client` presented when given; sends `payload` and returns the first
/// line of the answer, or `CLOSED` when the connection ended without one, or `REFUSED` when
/// the handshake failed.
pub fn tls_exchange(
    port: u16,
    root: &Path,
    client: Option<(&Path, &Path)>,
    payload: &str,
) -> String {
    tls_exchange_named(port, None, root, client, payload)
}

/// [`tls_exchange`] with the ClientHello naming `sni` (`None`: no SNI).
pub fn tls_exchange_named(
    port: u16,
    sni: Option<&str>,
    root: &Path,
    client: Option<(&Path, &Path)>,
    payload: &str,
) -> String {
    let server_hostname = sni.map_or_else(|| "None".to_string(), |s| format!("{s:?}"));
    let load = client.map_or_else(String::new, |(chain, key)| {
        format!(
            "ctx.load_cert_chain({:?}, {:?})",
            chain.display().to_string(),
            key.display().to_string()
        )
    });
    let script = format!(
        r#"
import socket, ssl
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_REQUIRED
ctx.load_verify_locations({root:?})
{load}
raw = socket.create_connection(("127.0.0.1", {port}), timeout=10)
try:
    tls = ctx.wrap_socket(raw, server_hostname={server_hostname})
except (ssl.SSLError, OSError):
    print("REFUSED")
    raise SystemExit(0)
try:
    tls.sendall({payload:?}.encode())
    data = b""
    while b"\n" not in data:
        chunk = tls.recv(4096)
        if not chunk:
            break
        data += chunk
    print(data.split(b"\n")[0].decode().strip() or "CLOSED")
except (ssl.SSLError, OSError):
    print("CLOSED")
"#,
        root = root.display().to_string(),
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
