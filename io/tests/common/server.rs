//! Upstream servers for the end-to-end tests: plain `std::net`, a thread per connection, and an
//! HTTP/1.1 of their own (with `httparse` for heads), independent of the engine's codec.
//!
//! [`Behaviour::App`] is a well-behaved keep-alive service; its paths:
//! - `/sha256`: streams the request body (any framing) through `sha256sum` and answers the hex
//!   digest, so 100 MB uploads are checked without being held in memory;
//! - `/bytes/N`: answers N bytes of [`Content`] with chunked transfer-coding;
//! - `/headers`: answers the request head it received (to see what the proxy forwarded);
//! - anything else: discards the body and answers `NAME\n` with `x-upstream: NAME`.
//!
//! The other behaviours misbehave on purpose, each in one way a real upstream can.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use trellis_local_mesh::http::{read_head, wants_close, Framing};

use super::content::{Content, Hasher};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// A well-behaved service (module docs).
    App,
    /// Promises `content-length: 1000`, sends 100 bytes, and closes.
    CloseMidBody,
    /// Answers bytes that are not an HTTP response, then closes.
    Garbage,
    /// Reads the request and never answers (holds the connection until stopped).
    Silent,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    requests: AtomicU64,
    connections: AtomicU64,
    open: Mutex<BTreeMap<u64, TcpStream>>,
    /// Request targets in arrival order.
    paths: Mutex<Vec<String>>,
}

/// A running server on 127.0.0.1; stopped on drop.
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(name: &str, behaviour: Behaviour) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let addr = listener.local_addr().expect("upstream address");
        let shared = Arc::new(Shared::default());
        let acceptor = {
            let shared = shared.clone();
            let name = name.to_string();
            std::thread::Builder::new()
                .name(format!("upstream-{name}"))
                .spawn(move || accept_loop(listener, &name, behaviour, &shared))
                .expect("upstream thread")
        };
        Server {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    pub fn app(name: &str) -> Server {
        Server::start(name, Behaviour::App)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests read so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// The request targets seen so far, in arrival order.
    pub fn paths(&self) -> Vec<String> {
        self.shared
            .paths
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
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

/// An address nothing listens on (bound, then released): connections to it are refused.
pub fn refused_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("address")
}

fn accept_loop(listener: TcpListener, name: &str, behaviour: Behaviour, shared: &Arc<Shared>) {
    for (id, stream) in listener.incoming().enumerate() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let _ = stream.set_nodelay(true);
        let id = id as u64;
        if let (Ok(clone), Ok(mut open)) = (stream.try_clone(), shared.open.lock()) {
            open.insert(id, clone);
        }
        let shared = shared.clone();
        let name = name.to_string();
        let _ = std::thread::Builder::new()
            .name(format!("upstream-{name}-{id}"))
            .spawn(move || {
                let _ = serve(stream, &name, behaviour, &shared);
                if let Ok(mut open) = shared.open.lock() {
                    open.remove(&id);
                }
            });
    }
}

/// One parsed request head.
struct Head {
    raw: Vec<u8>,
    method: String,
    path: String,
    framing: Framing,
    close: bool,
}

fn parse(raw: Vec<u8>) -> io::Result<Head> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&raw) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(io::Error::other("bad request head")),
    }
    let framing = framing_of(req.headers)?;
    Ok(Head {
        method: req.method.unwrap_or("GET").to_string(),
        path: req.path.unwrap_or("/").to_string(),
        close: wants_close(req.headers, req.version),
        framing,
        raw: raw.clone(),
    })
}

fn serve(stream: TcpStream, name: &str, behaviour: Behaviour, shared: &Shared) -> io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut r = BufReader::with_capacity(64 * 1024, stream);
    loop {
        let Some(raw) = read_head(&mut r)? else {
            return Ok(());
        };
        let head = parse(raw)?;
        if let Ok(mut paths) = shared.paths.lock() {
            paths.push(head.path.clone());
        }
        shared.requests.fetch_add(1, Ordering::SeqCst);
        match behaviour {
            Behaviour::App => {}
            Behaviour::CloseMidBody => {
                copy_body(&mut r, head.framing, &mut io::sink())?;
                out.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")?;
                out.write_all(&[b'x'; 100])?;
                out.flush()?;
                return out.shutdown(Shutdown::Both);
            }
            Behaviour::Garbage => {
                copy_body(&mut r, head.framing, &mut io::sink())?;
                out.write_all(b"SSH-2.0-OpenSSH_9.2 this is not HTTP\r\n\r\n")?;
                return out.shutdown(Shutdown::Both);
            }
            Behaviour::Silent => {
                // Hold the connection open until the peer or the test closes it.
                io::copy(&mut r, &mut io::sink())?;
                return Ok(());
            }
        }
        let path = head.path.split('?').next().unwrap_or("/").to_string();
        if path == "/sha256" {
            let mut hasher = Hasher::new();
            let n = copy_body(&mut r, head.framing, &mut hasher)?;
            let body = format!("{} {n}\n", hasher.finish()?);
            respond(&mut out, name, &head, body.as_bytes())?;
        } else if let Some(len) = path.strip_prefix("/bytes/").and_then(|n| n.parse().ok()) {
            copy_body(&mut r, head.framing, &mut io::sink())?;
            respond_chunked(&mut out, name, &head, Content::new(len))?;
        } else if path == "/headers" {
            copy_body(&mut r, head.framing, &mut io::sink())?;
            respond(&mut out, name, &head, &head.raw)?;
        } else {
            copy_body(&mut r, head.framing, &mut io::sink())?;
            respond(&mut out, name, &head, format!("{name}\n").as_bytes())?;
        }
        if head.close {
            return Ok(());
        }
    }
}

fn respond(out: &mut TcpStream, name: &str, head: &Head, body: &[u8]) -> io::Result<()> {
    let mut msg = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nx-upstream: {name}\r\n{}\r\n",
        body.len(),
        if head.close { "connection: close\r\n" } else { "" }
    )
    .into_bytes();
    if head.method != "HEAD" {
        msg.extend_from_slice(body);
    }
    out.write_all(&msg)
}

fn respond_chunked(
    out: &mut TcpStream,
    name: &str,
    head: &Head,
    mut body: impl Read,
) -> io::Result<()> {
    let mut w = io::BufWriter::with_capacity(128 * 1024, out);
    write!(
        w,
        "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\nx-upstream: {name}\r\n{}\r\n",
        if head.close { "connection: close\r\n" } else { "" }
    )?;
    let mut buf = vec![0u8; 48 * 1024];
    loop {
        let n = body.read(&mut buf)?;
        if n == 0 {
            break;
        }
        write!(w, "{n:x}\r\n")?;
        w.write_all(&buf[..n])?;
        w.write_all(b"\r\n")?;
    }
    w.write_all(b"0\r\n\r\n")?;
    w.flush()
}

/// A request's framing, without the demo helpers' 64 MiB cap (bodies here are streamed).
fn framing_of(headers: &[httparse::Header<'_>]) -> io::Result<Framing> {
    let mut framing = Framing::None;
    for h in headers {
        let value = String::from_utf8_lossy(h.value).trim().to_ascii_lowercase();
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if value != "chunked" {
                return Err(io::Error::other(format!("transfer-encoding {value:?}")));
            }
            return Ok(Framing::Chunked);
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse()
                .map_err(|_| io::Error::other(format!("content-length {value:?}")))?;
            framing = Framing::Length(n);
        }
    }
    Ok(framing)
}

/// Stream a body with `framing` from `r` into `w`; returns the bytes copied.
pub fn copy_body<R: BufRead>(r: &mut R, framing: Framing, w: &mut dyn Write) -> io::Result<u64> {
    match framing {
        Framing::None => Ok(0),
        Framing::Length(n) => {
            let copied = io::copy(&mut r.take(n as u64), w)?;
            if copied != n as u64 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            Ok(copied)
        }
        Framing::UntilClose => io::copy(r, w),
        Framing::Chunked => {
            let mut total = 0;
            loop {
                let line = read_line(r)?;
                let size = line.split(';').next().unwrap_or("").trim();
                let size = u64::from_str_radix(size, 16)
                    .map_err(|_| io::Error::other(format!("bad chunk size {line:?}")))?;
                if size == 0 {
                    while !read_line(r)?.is_empty() {}
                    return Ok(total);
                }
                if io::copy(&mut r.take(size), w)? != size {
                    return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
                }
                total += size;
                if !read_line(r)?.is_empty() {
                    return Err(io::Error::other("chunk longer than its size"));
                }
            }
        }
    }
}

fn read_line<R: BufRead>(r: &mut R) -> io::Result<String> {
    let mut line = Vec::new();
    r.take(4096).read_until(b'\n', &mut line)?;
    if line.pop() != Some(b'\n') {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| io::Error::other("non-UTF-8 framing line"))
}
