//! Real TLS peers nobody here wrote: OpenSSL's `s_client` and Python's `ssl` module against the
//! engine's mTLS server transform, and the engine's mTLS client transform against `s_server`,
//! over loopback TCP,
//! with certificates from the control plane's CA. Each side verifies the other: OpenSSL checks
//! the chain to the root, the transforms check the chain and the SPIFFE id. A client whose
//! certificate comes from a foreign CA is refused, naming the check.
//!
//! openssl and python3 must be installed: a missing binary fails these tests, never skips them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};
use trellis_control::ca::{CertificateAuthority, WorkloadIdentity};
use trellis_engine::time::Instant;
use trellis_engine::transport::policy::{InboundMode, ResolvedUpstreamTls};
use trellis_engine::transport::tls::{MeshCredentials, MtlsSettings, MtlsTransports, Randomness};
use trellis_engine::transport::{
    ByteTransform, Endpoint, TransformError, Transport, TransportFactory,
};

const TD: &str = "cluster.local";
const DEADLINE: Duration = Duration::from_secs(20);

fn key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap()
}

/// A scratch directory holding a CA's root and two workloads' certificates and keys, issued
/// now by the real clock (OpenSSL checks validity with it).
struct Pki {
    dir: PathBuf,
    ca: CertificateAuthority,
}

impl Pki {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("trellis-openssl-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let now = SystemTime::now();
        let ca =
            CertificateAuthority::self_signed(TD, key(), now, Duration::from_secs(86_400 * 30))
                .unwrap();
        std::fs::write(dir.join("root.pem"), ca.root_pem()).unwrap();
        Pki { dir, ca }
    }

    /// Write `<sa>.pem` (chain) and `<sa>.key`; the credentials for the engine side.
    fn workload(&mut self, sa: &str) -> MeshCredentials {
        let key = key();
        let csr = CertificateParams::default()
            .serialize_request(&key)
            .unwrap();
        let id = WorkloadIdentity::new(TD, "default", sa).unwrap();
        let issued = self
            .ca
            .issue(&csr.pem().unwrap(), &id, SystemTime::now(), None)
            .unwrap();
        std::fs::write(self.dir.join(format!("{sa}.pem")), &issued.chain_pem).unwrap();
        std::fs::write(self.dir.join(format!("{sa}.key")), key.serialize_pem()).unwrap();
        MeshCredentials::from_pem(
            &issued.chain_pem,
            &key.serialize_pem(),
            self.ca.root_pem(),
            TD,
        )
        .unwrap()
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Child {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl must be installed for this test (apt-get install openssl)")
}

fn transform(creds: &MeshCredentials, endpoint: Endpoint<'_>) -> Box<dyn ByteTransform> {
    let settings = MtlsSettings {
        unix_base: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap(),
        randomness: Randomness::System,
    };
    match MtlsTransports::new(creds, settings)
        .unwrap()
        .transport(Instant::ZERO, endpoint, None)
    {
        Ok(Transport::Transformed(t) | Transport::Sniffing { tls: t, .. }) => t,
        other => panic!("{other:?}"),
    }
}

/// Flush what the transform wants sent.
fn flush(t: &mut dyn ByteTransform, stream: &mut TcpStream) {
    let mut wire = BytesMut::new();
    t.poll_wire(&mut wire);
    if !wire.is_empty() {
        let _ = stream.write_all(&wire);
    }
}

/// Pump the socket through the transform until `done(plaintext so far)` or the peer closes.
fn pump(
    t: &mut dyn ByteTransform,
    stream: &mut TcpStream,
    done: impl Fn(&[u8]) -> bool,
) -> Result<Vec<u8>, TransformError> {
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut plain = BytesMut::new();
    let mut buf = [0u8; 16 * 1024];
    flush(t, stream);
    while !done(&plain) && !t.is_peer_closed() {
        let n = stream
            .read(&mut buf)
            .expect("the peer answers within the deadline");
        if n == 0 {
            break;
        }
        let received = t.receive(Instant::ZERO, &buf[..n], &mut plain);
        flush(t, stream);
        received?;
    }
    Ok(plain.to_vec())
}

fn accept(listener: &TcpListener) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    let start = std::time::Instant::now();
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                return s;
            }
            Err(_) if start.elapsed() < DEADLINE => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("the client never connected: {e}"),
        }
    }
}

/// A client program started by `spawn(port)` calls the engine's server transform; what the
/// server read, the identity it verified, and what the program printed.
fn client_calls(
    server: &MeshCredentials,
    spawn: impl FnOnce(&str) -> Child,
) -> (Result<Vec<u8>, TransformError>, Option<String>, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let child = spawn(&port);
    let mut stream = accept(&listener);
    let peer = stream.peer_addr().unwrap();
    let local = stream.local_addr().unwrap();
    let mut t = transform(
        server,
        Endpoint::Downstream {
            terminate: None,
            listener: "inbound",
            peer,
            local,
            mode: InboundMode::Strict,
        },
    );
    let read = pump(&mut *t, &mut stream, |p| {
        p.windows(4).any(|w| w == b"\r\n\r\n")
    });
    let identity = t.peer_identity().map(str::to_string);
    if read.is_ok() {
        let body = format!("hello {}", identity.clone().unwrap_or_default());
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        t.seal(answer.as_bytes());
        t.close();
        flush(&mut *t, &mut stream);
    }
    drop(stream);
    let out = child.wait_with_output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (read, identity, printed)
}

/// `openssl s_client` with `<client>.pem` (no certificate when `client` is empty), sending one
/// request.
fn s_client(pki: &Pki, client: &str, port: &str) -> Child {
    let connect = format!("127.0.0.1:{port}");
    let (cert, key) = (format!("{client}.pem"), format!("{client}.key"));
    let mut args = vec!["s_client", "-connect", &connect, "-CAfile", "root.pem"];
    if !client.is_empty() {
        args.extend(["-cert", &cert, "-key", &key]);
    }
    args.extend(["-verify_return_error", "-alpn", "http/1.1", "-quiet"]);
    let mut child = openssl(&pki.dir, &args);
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"GET /hello HTTP/1.1\r\nhost: reviews\r\n\r\n")
        .unwrap();
    drop(stdin);
    child
}

/// Python's ssl module as the client, with `productpage`'s certificate.
const PYTHON_CLIENT: &str = r#"
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations("root.pem")
ctx.load_cert_chain("productpage.pem", "productpage.key")
ctx.check_hostname = False
ctx.set_alpn_protocols(["http/1.1"])
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20) as raw:
    with ctx.wrap_socket(raw) as tls:
        tls.sendall(b"GET /hello HTTP/1.1\r\nhost: reviews\r\n\r\n")
        got = b""
        while True:
            chunk = tls.recv(4096)
            if not chunk:
                break
            got += chunk
        print(got.decode())
        print("ALPN", tls.selected_alpn_protocol(), tls.version())
"#;

fn python_client(pki: &Pki, port: &str) -> Child {
    Command::new("python3")
        .args(["-c", PYTHON_CLIENT, port])
        .current_dir(&pki.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed for this test")
}

/// A client program with productpage's certificate, started by `spawn(pki, port)`, calls the
/// engine's server transform with reviews' certificate: the request arrives, the server
/// verified productpage's SPIFFE id, and the answer naming it reaches the program, which printed
/// what is returned.
fn productpage_calls_reviews(name: &str, spawn: impl FnOnce(&Pki, &str) -> Child) -> String {
    let mut pki = Pki::new(name);
    let server = pki.workload("reviews");
    pki.workload("productpage");
    let (read, identity, printed) = client_calls(&server, |port| spawn(&pki, port));
    let request = String::from_utf8(read.unwrap()).unwrap();
    assert!(request.starts_with("GET /hello HTTP/1.1\r\n"), "{request}");
    let id = "spiffe://cluster.local/ns/default/sa/productpage";
    assert_eq!(identity.as_deref(), Some(id));
    assert!(
        printed.contains(&format!("hello {id}")),
        "{name} printed: {printed}"
    );
    let _ = std::fs::remove_dir_all(&pki.dir);
    printed
}

#[test]
fn openssl_s_client_with_a_workload_certificate_reaches_the_engine_server() {
    productpage_calls_reviews("s_client", |pki, port| s_client(pki, "productpage", port));
}

#[test]
fn python_ssl_with_a_workload_certificate_reaches_the_engine_server() {
    let printed = productpage_calls_reviews("python", python_client);
    assert!(
        printed.contains("ALPN http/1.1 TLSv1.3"),
        "python printed: {printed}"
    );
}

#[test]
fn openssl_s_client_with_a_foreign_certificate_is_refused() {
    let mut pki = Pki::new("s_client-foreign");
    let server = pki.workload("reviews");
    let mut foreign = Pki::new("foreign");
    foreign.workload("intruder");
    for ext in ["pem", "key"] {
        std::fs::copy(
            foreign.dir.join(format!("intruder.{ext}")),
            pki.dir.join(format!("intruder.{ext}")),
        )
        .unwrap();
    }
    let (read, identity, printed) = client_calls(&server, |port| s_client(&pki, "intruder", port));
    let err = read.unwrap_err();
    assert!(err.to_string().contains("unknown CA"), "{err}");
    assert!(
        err.to_string()
            .contains("spiffe://cluster.local/ns/default/sa/intruder"),
        "{err}"
    );
    assert_eq!(identity, None);
    assert!(!printed.contains("hello"), "{printed}");
    let _ = std::fs::remove_dir_all(&pki.dir);
    let _ = std::fs::remove_dir_all(&foreign.dir);
}

#[test]
fn openssl_s_client_without_a_certificate_is_refused() {
    let mut pki = Pki::new("s_client-anonymous");
    let server = pki.workload("reviews");
    let (read, identity, printed) = client_calls(&server, |port| s_client(&pki, "", port));
    let err = read.unwrap_err();
    assert!(err.to_string().contains("no client certificate"), "{err}");
    assert_eq!(identity, None);
    assert!(!printed.contains("hello"), "{printed}");
    let _ = std::fs::remove_dir_all(&pki.dir);
}

#[test]
fn the_engine_client_reaches_openssl_s_server_which_verifies_it() {
    let mut pki = Pki::new("s_server");
    pki.workload("reviews");
    let client = pki.workload("productpage");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = openssl(
        &pki.dir,
        &[
            "s_server",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-cert",
            "reviews.pem",
            "-key",
            "reviews.key",
            "-CAfile",
            "root.pem",
            "-Verify",
            "1",
            "-verify_return_error",
            "-rev",
            "-naccept",
            "1",
        ],
    );
    // s_server says ACCEPT once it listens.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.contains("ACCEPT")),
        "s_server did not start"
    );
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let addr = stream.peer_addr().unwrap();
    let mut t = transform(
        &client,
        Endpoint::Upstream {
            cluster: "reviews",
            addr,
            tls: ResolvedUpstreamTls::Mesh {
                subject_alt_names: &[],
                sni: None,
            },
        },
    );
    t.seal(b"mesh\n");
    let echoed = pump(&mut *t, &mut stream, |p| p.ends_with(b"\n")).unwrap();
    assert_eq!(
        echoed, b"hsem\n",
        "s_server verified our certificate and echoed reversed"
    );
    assert_eq!(
        t.peer_identity(),
        Some("spiffe://cluster.local/ns/default/sa/reviews")
    );
    t.close();
    flush(&mut *t, &mut stream);
    drop(stream);
    let status = child.wait().unwrap();
    assert!(status.success(), "s_server: {status}");
    let _ = std::fs::remove_dir_all(&pki.dir);
}
