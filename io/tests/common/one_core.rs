//! One proxy core (the runtime, not a process) in front of one well-behaved upstream, `bulk`,
//! started with the `RunOptions` a test chooses, and the raw HTTP/1.1 a test needs to talk
//! to it byte by byte: for the receive- and send-path tests, which check bytes end to end
//! and read the loop's counters.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use trellis_io::runtime::RuntimeOptions;
use trellis_io::{BackendChoice, ControlHandle, IoStats, RunOptions, Runtime};
use trellis_local_mesh::http::{framing, read_body, read_head, Framing};

use super::content::Content;
use super::mesh;
use super::proxy::load;
use super::server::Server;

/// A proxy (one core) in front of one bulk server.
pub struct OneCore {
    runtime: Runtime,
    control: ControlHandle,
    pub addr: SocketAddr,
    _server: Server,
}

impl OneCore {
    /// `run` as given (seed, buffers, send path); `config_prefix` goes before the listener and
    /// services (top-level settings such as `http:`), empty for none.
    pub fn start(backend: BackendChoice, run: RunOptions, config_prefix: &str) -> OneCore {
        let server = Server::app("bulk");
        let yaml = format!(
            "{config_prefix}{}",
            mesh::services(&[("bulk", server.addr())], "60s")
        );
        let control = ControlHandle::new();
        let runtime = Runtime::start(
            load(&yaml),
            RuntimeOptions {
                cores: 1,
                backend,
                run: RunOptions {
                    shutdown_grace: Duration::from_secs(2),
                    ..run
                },
                health: None,
                pin: false,
            },
            control.clone(),
        )
        .expect("proxy starts");
        let addr = runtime.local_addrs()[0].1;
        OneCore {
            runtime,
            control,
            addr,
            _server: server,
        }
    }

    pub fn stats(&self) -> IoStats {
        // Published at the end of each loop turn: let the last one finish.
        std::thread::sleep(Duration::from_millis(50));
        self.runtime.io_stats()
    }

    /// Normal traffic on a fresh connection: the proxy is healthy after what a test did to
    /// it (`label` names the path in failures).
    pub fn still_serves(&self, label: &str) {
        let mut r = BufReader::new(TcpStream::connect(self.addr).expect("connect"));
        for _ in 0..20 {
            r.get_mut()
                .write_all(request("/bytes/30000", false).as_bytes())
                .expect("send");
            let (status, body) = response(&mut r);
            assert_eq!(status, 200, "{label}");
            assert!(body == content(30_000), "{label}: body differs");
        }
    }

    /// Shut down and join: a panic on the core thread (a debug assertion) fails the test here.
    pub fn stop(self) {
        self.control.shutdown();
        self.runtime.join().expect("clean shutdown");
    }
}

/// A GET for `path` on `bulk`, keep-alive unless `close`.
pub fn request(path: &str, close: bool) -> String {
    let connection = if close { "close" } else { "keep-alive" };
    format!("GET {path} HTTP/1.1\r\nhost: bulk\r\nconnection: {connection}\r\n\r\n")
}

/// Read one response: its status and body.
pub fn response<R: BufRead>(r: &mut R) -> (u16, Vec<u8>) {
    let head = read_head(r).expect("head").expect("a response");
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut headers);
    parsed.parse(&head).expect("a valid head");
    let status = parsed.code.expect("a status");
    let framing = framing(parsed.headers, Framing::UntilClose).expect("framing");
    (status, read_body(r, framing).expect("body"))
}

/// One `read`, retried when a signal interrupts it (the runtime's signal handling lives in
/// the test process too, so EINTR reaches a test's blocking reads).
pub fn read_some<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// The bytes `/bytes/{len}` answers.
pub fn content(len: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(len);
    Content::new(len as u64)
        .read_to_end(&mut body)
        .expect("content");
    body
}
