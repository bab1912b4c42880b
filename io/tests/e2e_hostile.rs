//! Hostile HTTP/1.1 written raw over a TcpStream: request smuggling attempts and malformed
//! messages. Each must get the status RFC 9110/9112 call for, the connection must be closed
//! (its framing can no longer be trusted), nothing ambiguous may reach the upstream, and the
//! proxy must go on serving.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::mesh;
use common::proxy::Proxy;
use common::server::Server;

/// Send `request`, read until the proxy closes; returns what came back and whether the close
/// was seen (EOF or reset) within the timeout.
fn exchange(addr: SocketAddr, request: &[u8]) -> (String, bool) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(request).expect("send request");
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            // A signal interrupted the read (io_uring's task work can do that to threads of
            // the process); a real client retries, and so does this one.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

const OK: &[u8] = b"GET /fine HTTP/1.1\r\nHost: ok\r\nConnection: close\r\n\r\n";

#[test]
fn hostile_requests_get_the_right_status_and_a_closed_connection() {
    let server = Server::app("ok");
    let proxy = Proxy::start(&mesh::services(&[("ok", server.addr())], "5s"));
    let addr = proxy.addr();

    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: ok\r\n\r\n", "a".repeat(20_000));
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: ok\r\nX-Big: {}\r\n\r\n",
        "b".repeat(70_000)
    );
    // (name, request, expected status, may the head reach the upstream before the error)
    let cases: Vec<(&str, Vec<u8>, u16, bool)> = vec![
        (
            "CL+TE smuggling",
            b"POST / HTTP/1.1\r\nHost: ok\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: ok\r\n\r\n".to_vec(),
            400,
            false,
        ),
        (
            "TE+CL smuggling",
            b"POST / HTTP/1.1\r\nHost: ok\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n".to_vec(),
            400,
            false,
        ),
        (
            "duplicate Content-Length",
            b"POST / HTTP/1.1\r\nHost: ok\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".to_vec(),
            400,
            false,
        ),
        (
            "Content-Length list",
            b"POST / HTTP/1.1\r\nHost: ok\r\nContent-Length: 3, 4\r\n\r\nabcd".to_vec(),
            400,
            false,
        ),
        (
            "bad chunk size",
            b"POST / HTTP/1.1\r\nHost: ok\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n".to_vec(),
            400,
            true,
        ),
        (
            "chunk size overflow",
            b"POST / HTTP/1.1\r\nHost: ok\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000000001\r\nx\r\n0\r\n\r\n".to_vec(),
            400,
            true,
        ),
        (
            "obs-fold",
            b"GET / HTTP/1.1\r\nHost: ok\r\nX-Folded: a\r\n b\r\n\r\n".to_vec(),
            400,
            false,
        ),
        (
            "bare LF",
            b"GET / HTTP/1.1\nHost: ok\n\n".to_vec(),
            400,
            false,
        ),
        (
            "space before colon",
            b"GET / HTTP/1.1\r\nHost : ok\r\n\r\n".to_vec(),
            400,
            false,
        ),
        ("missing Host", b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400, false),
        (
            "two Hosts",
            b"GET / HTTP/1.1\r\nHost: ok\r\nHost: evil\r\n\r\n".to_vec(),
            400,
            false,
        ),
        ("oversized headers", big_header.into_bytes(), 431, false),
        ("long URI", long_uri.into_bytes(), 414, false),
        (
            "HTTP/2.0 request line",
            b"GET / HTTP/2.0\r\nHost: ok\r\n\r\n".to_vec(),
            505,
            false,
        ),
        (
            // What a client that thinks the port speaks TLS opens with: no method can hold
            // byte 22, so the answer comes at once, not after the header-read timeout.
            "TLS ClientHello on a plaintext port",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\x00\x01\x02\x03".to_vec(),
            400,
            false,
        ),
        (
            "unknown transfer coding",
            b"POST / HTTP/1.1\r\nHost: ok\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n".to_vec(),
            501,
            false,
        ),
    ];

    let mut failures = Vec::new();
    for (name, request, expected, may_reach) in &cases {
        let before = server.requests();
        let (response, closed) = exchange(addr, request);
        let status = status_of(&response);
        let reached = server.requests() - before;
        if status != *expected || !closed || (reached > 0 && !may_reach) {
            failures.push(format!(
                "{name}: status {status} (want {expected}), closed {closed}, reached upstream {reached}x; response {:?}",
                response.lines().next().unwrap_or("")
            ));
        }
        let (fine, _) = exchange(addr, OK);
        assert_eq!(status_of(&fine), 200, "after {name}: {fine}");
    }
    let paths = server.paths();
    assert!(
        !paths.iter().any(|p| p.contains("smuggled")),
        "a smuggled request reached the upstream: {paths:?}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(proxy.is_running());
}
