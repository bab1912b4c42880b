//! Response framing and connection persistence against real peers: Python's `http.server`
//! upstream (an HTTP/1.1 implementation nobody here wrote) and curl as the client.
//!
//! RFC 9112 §6.3: the answer to HEAD has no body whatever its `content-length` says, and the
//! connection carries the next request; a body with neither length nor chunks ends at the
//! server's FIN, and one cut by a reset is not complete (§8), so the client must not get a
//! clean end for it. RFC 9110 §8.6: a 204 has no content, and one that frames a body is
//! refused (502) without harming the requests after it.

mod common;

use common::mesh;
use common::proxy::Proxy;
use common::python::PythonServer;
use common::tools::{curl, curl_output, split_response};

/// The upstream: `HEAD`/`GET /file` (1,000 bytes with a length, kept alive), `GET /until-close`
/// (100,000 bytes, no length, then FIN), `GET /cut` (the same head, 50,000 bytes, then RST),
/// `GET /bad-204` (a 204 with a chunked body, kept alive).
const UPSTREAM: &str = r#"
import socket, struct, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FILE = bytes(i % 251 for i in range(1000))
LONG = bytes(i % 239 for i in range(100000))

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def do_HEAD(self):
        self.send_response(200)
        self.send_header("content-length", str(len(FILE)))
        self.end_headers()
    def do_GET(self):
        if self.path == "/bad-204":
            # A 204 that frames a body (RFC 9110 §8.6 forbids it): its chunk bytes would be
            # read as the next response on the connection by a proxy that skipped them.
            self.wfile.write(b"HTTP/1.1 204 No Content\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n")
            return
        if self.path == "/file":
            self.send_response(200)
            self.send_header("content-length", str(len(FILE)))
            self.end_headers()
            self.wfile.write(FILE)
            return
        self.send_response(200)
        self.send_header("connection", "close")
        self.end_headers()
        if self.path == "/until-close":
            self.wfile.write(LONG)
        else:
            self.wfile.write(LONG[:50000])
            self.wfile.flush()
            # A crash, not a close: RST with no FIN first (socketserver would shut the write
            # side down, a FIN, before closing), the file objects dropped so the descriptor
            # really closes here.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()
            self.wfile.close()
            self.connection.close()
        self.close_connection = True

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

fn expected(len: usize, modulus: usize) -> Vec<u8> {
    (0..len).map(|i| (i % modulus) as u8).collect()
}

#[test]
fn head_answers_end_with_their_head_and_the_connection_carries_on() {
    let upstream = PythonServer::start(UPSTREAM);
    let proxy = Proxy::start(&mesh::services(&[("py", upstream.addr)], "5s"));
    let url = format!("http://{}/file", proxy.addr());
    // HEAD, then GET on the same client connection (curl --next reuses it): the GET must get
    // the whole file, not bytes the HEAD's length promised.
    let out = curl(&[
        "-H", "host: py", "-I", &url, "--next", "-H", "host: py", "-o", "-", &url,
    ]);
    let text = out.stdout;
    let head_end = text
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a HEAD answer")
        + 4;
    let head = String::from_utf8_lossy(&text[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-length: 1000"), "{head}");
    assert_eq!(
        &text[head_end..],
        expected(1000, 251),
        "the GET after the HEAD"
    );
}

#[test]
fn a_body_delimited_by_the_close_ends_at_the_fin_and_not_at_a_reset() {
    let upstream = PythonServer::start(UPSTREAM);
    let proxy = Proxy::start(&mesh::services(&[("py", upstream.addr)], "5s"));
    let whole = curl(&[
        "-H",
        "host: py",
        &format!("http://{}/until-close", proxy.addr()),
    ]);
    assert_eq!(whole.stdout, expected(100_000, 239));

    let cut = curl_output(&[
        "-D",
        "-",
        "-H",
        "host: py",
        &format!("http://{}/cut", proxy.addr()),
    ]);
    let (status, head, body) = split_response(&cut);
    // The reset discards what the server's kernel had not sent yet: when that was the head as
    // well, the sidecar answers the reset itself (503 UC, or 502 for a head cut short), a
    // clean answer of its own. What must never happen is the server's 200 ending cleanly
    // short.
    if status == 200 {
        assert!(
            !cut.status.success(),
            "curl must see the body cut, not a clean end: got {} bytes, {}",
            body.len(),
            cut.status
        );
        assert!(body.len() <= 50_000, "{} bytes", body.len());
    } else {
        assert!(matches!(status, 502 | 503), "{head}");
    }
    assert!(proxy.is_running());
}

#[test]
fn a_204_that_frames_a_body_is_refused_and_the_next_request_is_served() {
    let upstream = PythonServer::start(UPSTREAM);
    let proxy = Proxy::start(&mesh::services(&[("py", upstream.addr)], "5s"));
    let base = format!("http://{}", proxy.addr());
    // Refused as Envoy's codec refuses it (`ClientConnectionImpl::onHeadersCompleteBase`:
    // "transfer encoding not allowed in 1xx or 204"): 502, and the connection is dropped, so
    // the chunk bytes it carried are never read as the next answer.
    let bad = curl(&[
        "-H",
        "host: py",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{base}/bad-204"),
    ]);
    assert_eq!(String::from_utf8_lossy(&bad.stdout), "502");
    for _ in 0..3 {
        let good = curl(&["-H", "host: py", &format!("{base}/file")]);
        assert_eq!(good.stdout, expected(1000, 251));
    }
    assert!(proxy.is_running());
}
