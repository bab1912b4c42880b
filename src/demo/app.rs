//! The demo workloads' HTTP server: plain `std::net`, a thread per connection, keep-alive, the
//! HTTP/1.1 framing of `trellis_local_mesh::http`. A [`Handler`] answers each request; it gets
//! the connection's own keep-alive client to its sidecar's outbound listener, so the calls a
//! workload makes on behalf of one inbound connection reuse one upstream connection.
//!
//! Kept apart from `trellis_local_mesh::upstream` (an echo server the tests use) because a
//! demo workload calls other services while it answers.

use std::io::{self, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;

use trellis_local_mesh::client::HttpClient;
use trellis_local_mesh::http::{framing, invalid, read_body, read_head, wants_close, Framing};

/// A request as a workload sees it.
pub struct Request {
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How a workload calls other services: through its sidecar's outbound listener, naming the
/// service in `Host`, as an application behind a capturing sidecar (or with `http_proxy`) does.
pub struct Outbound {
    sidecar: SocketAddr,
    client: Option<HttpClient>,
}

impl Outbound {
    pub fn new(sidecar: SocketAddr) -> Self {
        Outbound {
            sidecar,
            client: None,
        }
    }

    /// `GET path` on `host`, with `headers`: the status and body, or the transport error.
    pub fn get(
        &mut self,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> io::Result<(u16, Vec<u8>)> {
        let client = match &mut self.client {
            Some(c) => c,
            None => self.client.insert(HttpClient::connect(self.sidecar)?),
        };
        match client.request("GET", path, host, headers, b"") {
            Ok(r) => Ok((r.status, r.body)),
            Err(e) => {
                // A broken connection is not reused.
                self.client = None;
                Err(e)
            }
        }
    }
}

/// What a workload does with a request: a status and a JSON body.
pub type Handler = dyn Fn(&Request, &mut Outbound) -> (u16, String) + Send + Sync;

/// A running workload server; its threads end with the process.
pub struct AppServer {
    pub addr: SocketAddr,
}

/// Serve `handler` on `127.0.0.1`, any free port; outbound calls go to `outbound`.
pub fn start(name: &str, outbound: SocketAddr, handler: Arc<Handler>) -> io::Result<AppServer> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new()
        .name(format!("app-{name}"))
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let handler = handler.clone();
                let _ = std::thread::Builder::new()
                    .name("app-conn".into())
                    .spawn(move || {
                        let mut out = Outbound::new(outbound);
                        if let Err(e) = serve(stream, &*handler, &mut out) {
                            tracing::debug!("demo workload connection ended: {e}");
                        }
                    });
            }
        })?;
    Ok(AppServer { addr })
}

fn serve(stream: TcpStream, handler: &Handler, out: &mut Outbound) -> io::Result<()> {
    stream.set_nodelay(true)?;
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
            .map_err(|e| invalid(&e.to_string()))?
            .is_complete()
        {
            return Err(invalid("incomplete request head"));
        }
        let close = wants_close(req.headers, req.version);
        read_body(&mut reader, framing(req.headers, Framing::None)?)?;
        let request = Request {
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
        };
        let (status, body) = handler(&request, out);
        let reason = if status == 200 { "OK" } else { "Error" };
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "connection: close\r\n" } else { "" },
        );
        writer.write_all(response.as_bytes())?;
        if close {
            return Ok(());
        }
    }
}
