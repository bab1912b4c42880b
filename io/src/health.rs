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
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
        if head.len() > MAX_HEAD {
            return respond(&mut stream, 431, "request head too large\n");
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return respond(&mut stream, 400, "bad request\n"),
    }
    let path = req.path.unwrap_or("");
    let path = path.split('?').next().unwrap_or(path);
    match (req.method, path) {
        (Some("GET"), READY_PATH) => {
            let (code, body) = health.status(control);
            respond(&mut stream, code, body)
        }
        (Some(_), READY_PATH) => respond(&mut stream, 405, "method not allowed\n"),
        _ => respond(&mut stream, 404, "not found\n"),
    }
}

fn respond(stream: &mut TcpStream, code: u16, body: &str) -> io::Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let response = format!(
        "HTTP/1.1 {code} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())?;
    stream.flush()
}
