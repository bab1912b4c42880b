//! A client's connection to the sidecar against real peers (RFC 9112 §9): Python's
//! `http.server` upstream and, as clients, curl and Python's `http.client` and sockets.
//!
//! What the sidecar owes: a kept-alive connection carries the next request; a request or
//! response with `connection: close` ends the connection after that response, and requests
//! pipelined behind it are never forwarded (§9.6); pipelined requests are answered in order;
//! an HTTP/1.0 client gets no chunked coding (§6.1: the body is delimited by the close) and
//! keeps its connection only when both sides said `keep-alive` (§9.3).

mod common;

use common::mesh;
use common::proxy::Proxy;
use common::python::PythonServer;
use common::tools::curl;
use std::process::Command;

/// The upstream: `GET /chunked` (a chunked body of 3 chunks), `GET /hit/N` (a short body
/// naming N, the hit recorded), `GET /seen` (the hits so far, comma-separated).
const UPSTREAM: &str = r#"
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNKS = [b"first chunk,", b" second," * 50, b" last"]
seen = []
lock = threading.Lock()

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def answer(self, body):
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for c in CHUNKS:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path.startswith("/hit/"):
            with lock:
                seen.append(self.path[5:])
            self.answer(("hit " + self.path[5:]).encode())
        else:
            with lock:
                self.answer(",".join(seen).encode())

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// The clients, each check an `assert` with its reason; argv: the sidecar's port.
const CLIENTS: &str = r#"
import http.client, socket, sys

PORT = int(sys.argv[1])
BODY = b"first chunk," + b" second," * 50 + b" last"

def raw(data, timeout=5):
    """Write `data` on a fresh connection, read until the sidecar closes it."""
    s = socket.create_connection(("127.0.0.1", PORT), timeout=timeout)
    s.sendall(data)
    out = b""
    while True:
        got = s.recv(65536)
        if not got:
            break
        out += got
    s.close()
    return out

def check_http10_unchunked():
    out = raw(b"GET /chunked HTTP/1.0\r\nhost: py\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    lower = head.lower()
    assert lower.startswith(b"http/1.1 200"), out[:200]
    assert b"transfer-encoding" not in lower, f"chunked coding to an HTTP/1.0 client: {head!r}"
    assert body == BODY, f"HTTP/1.0 body delimited by the close: {len(body)} bytes {body[:60]!r}"

def check_http10_keep_alive():
    s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
    f = s.makefile("rb")
    for n in ("k1", "k2"):
        s.sendall(b"GET /hit/%s HTTP/1.0\r\nhost: py\r\nconnection: keep-alive\r\n\r\n" % n.encode())
        status = f.readline()
        assert status.startswith(b"HTTP/1.1 200"), status
        fields = {}
        while True:
            line = f.readline().strip()
            if not line:
                break
            k, _, v = line.partition(b":")
            fields[k.strip().lower()] = v.strip().lower()
        assert fields.get(b"connection") == b"keep-alive", f"HTTP/1.0 keep-alive unannounced: {fields}"
        body = f.read(int(fields[b"content-length"]))
        assert body == b"hit " + n.encode(), body
    s.close()

def check_keep_alive_then_close():
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=5)
    ports = set()
    for n in ("a1", "a2", "a3"):
        c.request("GET", "/hit/" + n, headers={"host": "py"})
        ports.add(c.sock.getsockname()[1])
        r = c.getresponse()
        assert r.status == 200 and r.read() == b"hit " + n.encode()
        assert not r.will_close, f"kept-alive response {n} ends the connection"
    assert len(ports) == 1, f"three requests took {len(ports)} connections"
    # http.client drops its socket once a response ends the connection: read through a copy.
    sock = c.sock.dup()
    c.request("GET", "/hit/a4", headers={"host": "py", "connection": "close"})
    r = c.getresponse()
    assert r.getheader("connection", "").lower() == "close", r.getheaders()
    assert r.read() == b"hit a4"
    # The sidecar closes its end after that response: the socket reads EOF.
    sock.settimeout(5)
    assert sock.recv(1) == b"", "the sidecar kept a connection the client ended"
    sock.close()
    c.close()

def check_pipelined():
    burst = (b"GET /hit/p1 HTTP/1.1\r\nhost: py\r\n\r\n"
             b"GET /hit/p2 HTTP/1.1\r\nhost: py\r\nconnection: close\r\n\r\n"
             b"GET /hit/p3 HTTP/1.1\r\nhost: py\r\n\r\n")
    out = raw(burst)
    assert out.count(b"HTTP/1.1 200") == 2, f"answers to a pipelined burst: {out!r}"
    first = out.index(b"hit p1")
    second = out.index(b"hit p2")
    assert first < second, "answers out of order"
    assert b"hit p3" not in out, "a request after connection: close was answered"

def check_seen():
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=5)
    c.request("GET", "/seen", headers={"host": "py"})
    seen = c.getresponse().read().decode().split(",")
    assert "p3" not in seen, f"a request pipelined after connection: close reached the server: {seen}"
    for n in ("p1", "p2", "k1", "k2", "a1", "a2", "a3", "a4"):
        assert n in seen, f"{n} never reached the server: {seen}"

check_http10_unchunked()
check_http10_keep_alive()
check_keep_alive_then_close()
check_pipelined()
check_seen()
print("ok")
"#;

#[test]
fn client_connections_keep_alive_pipeline_close_and_speak_http10() {
    let upstream = PythonServer::start(UPSTREAM);
    let proxy = Proxy::start(&mesh::services(&[("py", upstream.addr)], "5s"));
    let out = Command::new("python3")
        .args(["-c", CLIENTS, &proxy.addr().port().to_string()])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    assert!(proxy.is_running());
}

#[test]
fn curl_over_http10_reads_a_chunked_upstream_body_whole() {
    let upstream = PythonServer::start(UPSTREAM);
    let proxy = Proxy::start(&mesh::services(&[("py", upstream.addr)], "5s"));
    let url = format!("http://{}/chunked", proxy.addr());
    let out = curl(&["--http1.0", "-H", "host: py", "-D", "-", &url]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    let want = format!("first chunk,{} last", " second,".repeat(50));
    assert_eq!(body, want);
}
