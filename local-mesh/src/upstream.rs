//! A tiny HTTP/1.1 upstream server for the local mesh and the end-to-end tests.
//!
//! Plain `std::net` with a thread per connection, keep-alive by default. Every response
//! carries `x-upstream: <name>` and a `content-length`. The body is:
//! - the request body, byte for byte, when the request has one (an echo, to check that bodies
//!   cross the proxy intact, chunked or not);
//! - otherwise `<name>\n` (e.g. `reviews-v2\n`), to show which version answered.
//!
//! A path `/status/NNN` answers with status NNN, to exercise retries and outlier detection;
//! `/delay/MS` answers after MS milliseconds (at most 10 s), to have requests in flight.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::http::{framing, read_body, read_head, wants_close, Framing};

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    requests: AtomicU64,
    connections: AtomicU64,
    /// Open connections, so `stop` can unblock their threads.
    open: Mutex<BTreeMap<u64, TcpStream>>,
}

/// A running upstream server; stopped on drop.
pub struct Upstream {
    name: String,
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Start a server named `name` on `127.0.0.1`, any free port.
    pub fn start(name: &str) -> io::Result<Self> {
        Upstream::start_on(name, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Start a server named `name` on `addr`.
    pub fn start_on(name: &str, addr: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let acceptor = {
            let shared = shared.clone();
            let name = name.to_string();
            std::thread::Builder::new()
                .name(format!("upstream-{name}"))
                .spawn(move || accept_loop(listener, &name, &shared))?
        };
        Ok(Upstream {
            name: name.to_string(),
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Stop accepting, close open connections, and wait for the acceptor.
    pub fn stop(&mut self) {
        if self.shared.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        // Unblock accept() with a throwaway connection.
        let _ = TcpStream::connect(self.addr);
        if let Ok(open) = self.shared.open.lock() {
            for s in open.values() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, name: &str, shared: &Arc<Shared>) {
    let mut next_id = 0u64;
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        shared.connections.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let id = next_id;
        next_id += 1;
        if let (Ok(clone), Ok(mut open)) = (stream.try_clone(), shared.open.lock()) {
            open.insert(id, clone);
        }
        let shared2 = shared.clone();
        let name2 = name.to_string();
        let spawned = std::thread::Builder::new()
            .name(format!("upstream-{name}-{id}"))
            .spawn(move || {
                if let Err(e) = serve(stream, &name2, &shared2) {
                    tracing::debug!(upstream = %name2, error = %e, "upstream connection ended");
                }
                if let Ok(mut open) = shared2.open.lock() {
                    open.remove(&id);
                }
            });
        if spawned.is_err() {
            if let Ok(mut open) = shared.open.lock() {
                open.remove(&id);
            }
        }
    }
}

/// Serve requests on one connection until it closes.
fn serve(stream: TcpStream, name: &str, shared: &Shared) -> io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let Some(head) = read_head(&mut reader)? else {
            return Ok(());
        };
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if !req
            .parse(&head)
            .map_err(|e| crate::http::invalid(&e.to_string()))?
            .is_complete()
        {
            return Err(crate::http::invalid("incomplete request head"));
        }
        let method = req.method.unwrap_or("GET").to_string();
        let path = req.path.unwrap_or("/").to_string();
        let close = wants_close(req.headers, req.version);
        let body = read_body(&mut reader, framing(req.headers, Framing::None)?)?;

        if let Some(ms) = path
            .strip_prefix("/delay/")
            .and_then(|s| s.parse::<u64>().ok())
        {
            std::thread::sleep(std::time::Duration::from_millis(ms.min(10_000)));
        }
        let status = path
            .strip_prefix("/status/")
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|s| (200..=599).contains(s))
            .unwrap_or(200);
        let payload = if path == "/headers" {
            // What reached the workload, one `name: value` line per field (like httpbin's
            // /headers): tests read the headers the mesh added, such as XFCC.
            let mut text = String::new();
            for h in req.headers.iter() {
                text.push_str(&format!(
                    "{}: {}\n",
                    h.name,
                    String::from_utf8_lossy(h.value)
                ));
            }
            text.into_bytes()
        } else if body.is_empty() {
            format!("{name}\n").into_bytes()
        } else {
            body
        };
        let mut response = format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nx-upstream: {name}\r\n",
            reason(status),
            payload.len()
        );
        if close {
            response.push_str("connection: close\r\n");
        }
        response.push_str("\r\n");
        let mut out = response.into_bytes();
        if method != "HEAD" {
            out.extend_from_slice(&payload);
        }
        // Counted before writing, so a client that has the response sees the count.
        shared.requests.fetch_add(1, Ordering::Relaxed);
        writer.write_all(&out)?;
        if close {
            return Ok(());
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::HttpClient;

    #[test]
    fn answers_name_echoes_bodies_and_keeps_alive() {
        let mut up = Upstream::start("reviews-v1").unwrap();
        let mut c = HttpClient::connect(up.addr()).unwrap();
        let r = c.request("GET", "/", "reviews", &[], b"").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"reviews-v1\n");
        assert_eq!(r.header("x-upstream"), Some("reviews-v1"));
        let r = c
            .request("POST", "/echo", "reviews", &[], b"\x00\x01body")
            .unwrap();
        assert_eq!(r.body, b"\x00\x01body");
        let r = c
            .request("GET", "/status/503", "reviews", &[], b"")
            .unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(up.requests(), 3);
        assert_eq!(up.connections(), 1, "keep-alive reuses one connection");
        up.stop();
    }
}
