//! The sidecar's health endpoint (Istio's 15021 `/healthz/ready`), served by the runtime
//! itself on a small thread of its own: readiness must not depend on the engine's routes, and
//! probes are a few requests a second at most, so a blocking accept loop is plenty.
//!
//! `GET /healthz/ready` answers 200 once every core has bound its listeners with the config
//! applied, 503 before that and while draining (so Kubernetes stops sending traffic while
//! in-flight requests finish). Other paths get 404; every answer closes the connection.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::control::ControlHandle;

/// The readiness path (Istio's).
pub const READY_PATH: &str = "/healthz/ready";
/// Largest request head read from a prober.
const MAX_HEAD: usize = 4096;
/// How long a prober may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(1);

/// Shared readiness state.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    stop: AtomicBool,
}

impl Health {
    /// Mark the proxy ready (listeners bound, config applied).
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    fn status(&self, control: &ControlHandle) -> (u16, &'static str) {
        if control.is_shutdown() {
            (503, "draining\n")
        } else if self.ready.load(Ordering::Acquire) {
            (200, "ready\n")
        } else {
            (503, "starting\n")
        }
    }
}

/// A running health endpoint; [`HealthServer::stop`] ends it.
pub struct HealthServer {
    addr: SocketAddr,
    health: Arc<Health>,
    thread: Option<JoinHandle<()>>,
}

impl HealthServer {
    /// Bind `addr` and serve on a thread.
    pub fn start(
        addr: SocketAddr,
        health: Arc<Health>,
        control: ControlHandle,
    ) -> io::Result<HealthServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let shared = health.clone();
        let thread = std::thread::Builder::new()
            .name("trellis-health".into())
            .spawn(move || serve(listener, &shared, &control))?;
        tracing::info!(%addr, path = READY_PATH, "health endpoint");
        Ok(HealthServer {
            addr,
            health,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop serving and wait for the thread.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.health.stop.store(true, Ordering::Release);
        // Unblock the accept with a connection of our own.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.halt();
        }
    }
}

fn serve(listener: TcpListener, health: &Health, control: &ControlHandle) {
    for stream in listener.incoming() {
        if health.stop.load(Ordering::Acquire) {
            return;
        }
        match stream {
            Ok(s) => {
                if let Err(e) = answer(s, health, control) {
                    tracing::debug!(error = %e, "health probe failed");
                }
            }
            Err(e) => tracing::debug!(error = %e, "health accept failed"),
        }
    }
}

fn answer(mut stream: TcpStream, health: &Health, control: &ControlHandle) -> io::Result<()> {
    let Some(req) = read_request(&mut stream)? else {
        return Ok(());
    };
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", READY_PATH) => {
            let (code, body) = health.status(control);
            respond(&mut stream, code, body)
        }
        (_, READY_PATH) => respond(&mut stream, 405, "method not allowed\n"),
        _ => respond(&mut stream, 404, "not found\n"),
    }
}

/// A request head read by [`read_request`]: what the health, admin and status endpoints need.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProbeRequest {
    pub method: String,
    /// Without the query string.
    pub path: String,
    /// What follows the `?`, if anything.
    pub query: String,
    pub headers: Vec<(String, String)>,
}

/// Read one request head (bodies are not read: no endpoint takes one). `None` when the peer
/// closed first; a malformed or oversized head is answered (400/431) and `None` returned.
pub(crate) fn read_request(stream: &mut TcpStream) -> io::Result<Option<ProbeRequest>> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
        if head.len() > MAX_HEAD {
            respond(stream, 431, "request head too large\n")?;
            return Ok(None);
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => {
            respond(stream, 400, "bad request\n")?;
            return Ok(None);
        }
    }
    let path = req.path.unwrap_or("");
    Ok(Some(ProbeRequest {
        method: req.method.unwrap_or("").to_string(),
        path: path.split('?').next().unwrap_or(path).to_string(),
        query: path
            .split_once('?')
            .map(|(_, q)| q.to_string())
            .unwrap_or_default(),
        headers: req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
    }))
}

/// Write a whole plain-text answer and close.
pub(crate) fn respond(stream: &mut TcpStream, code: u16, body: &str) -> io::Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let response = format!(
        "HTTP/1.1 {code} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

/// `GET path` from `addr` (plain HTTP/1.1, one request, closes): the status code and body.
/// What the status server relays, and what `trellis wait-ready` polls.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<(u16, String)> {
    request(addr, "GET", path, "", timeout)
}

/// `method path` with `body` to `addr` over one connection: the status code and the body.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = Vec::new();
    stream.take(64 * 1024).read_to_end(&mut response)?;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Response::new(&mut headers);
    match parsed.parse(&response) {
        Ok(httparse::Status::Complete(head)) => Ok((
            parsed.code.unwrap_or(500),
            String::from_utf8_lossy(response.get(head..).unwrap_or(&[])).into_owned(),
        )),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{addr} did not answer HTTP"),
        )),
    }
}
