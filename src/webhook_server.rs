//! The admission webhook's HTTPS server, for `trellis control --webhook-listen`.
//!
//! Only transport: TLS (rustls, with a serving certificate from the mesh CA, replaced at half
//! its life by `plane::net::upkeep`: `reload::reloadable_webhook_config`) and just enough
//! HTTP/1.1 to take one request per connection; every answer comes from
//! `trellis_control::inject::answer`. Plain threads, as the rest of `trellis control`: the API
//! server sends a handful of requests per pod created, each answered in well under a
//! millisecond. `POST /inject` is the webhook (Istio's path); `GET /ready` answers 200 for a
//! readiness probe.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use trellis_control::inject::{answer, InjectSettings, WebhookAnswer};
use trellis_control::plane::kube_source::nodes::NodeVersionsView;

/// The API server's own limit on a request body is 3 MiB; anything larger is not a review.
const MAX_BODY: usize = 3 * 1024 * 1024;
const MAX_HEAD: usize = 64 * 1024;
/// A client that stalls is dropped after this long.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// What each request is answered with: the injector's settings, and the nodes' kubelet
/// versions when they are watched (`ENABLE_NATIVE_SIDECARS=auto` with `--kube`).
struct Injector {
    settings: InjectSettings,
    nodes: Option<NodeVersionsView>,
}

/// Serve the webhook on `listen` from a background thread.
pub fn start(
    listen: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    settings: InjectSettings,
    nodes: Option<NodeVersionsView>,
) -> Result<()> {
    let listener =
        TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(%listen, "admission webhook serving POST /inject over HTTPS");
    let settings = Arc::new(Injector { settings, nodes });
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (tls, settings) = (tls.clone(), settings.clone());
            std::thread::spawn(move || {
                let peer = stream.peer_addr().ok();
                if let Err(e) = serve(stream, tls, &settings) {
                    tracing::debug!(?peer, "webhook connection: {e:#}");
                }
            });
        }
    });
    Ok(())
}

/// One request on one connection.
fn serve(stream: TcpStream, tls: Arc<rustls::ServerConfig>, settings: &Injector) -> Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let connection = rustls::ServerConnection::new(tls)?;
    let mut stream = rustls::StreamOwned::new(connection, stream);
    let reply = match read_request(&mut stream) {
        Ok(request) => route(&request, settings),
        Err(RequestError::Closed) => return Ok(()),
        Err(RequestError::Bad(status, why)) => WebhookAnswer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{why}\n").into_bytes(),
        },
        Err(RequestError::Io(e)) => return Err(e.into()),
    };
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        reply.status,
        reason(reply.status),
        reply.content_type,
        reply.body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&reply.body)?;
    stream.flush()?;
    stream.conn.send_close_notify();
    stream.flush()?;
    Ok(())
}

fn route(request: &Request, injector: &Injector) -> WebhookAnswer {
    let path = request.target.split('?').next().unwrap_or_default();
    match (request.method.as_str(), path) {
        ("POST", "/inject") => {
            let nodes = injector.nodes.as_ref().and_then(NodeVersionsView::get);
            let answer = answer(
                request.content_type.as_deref(),
                &request.body,
                &injector.settings,
                nodes.as_ref(),
            );
            if answer.status != 200 {
                tracing::warn!(
                    status = answer.status,
                    "webhook refused a request: {}",
                    String::from_utf8_lossy(&answer.body).trim_end()
                );
            }
            answer
        }
        ("GET", "/ready") => WebhookAnswer {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: b"ok\n".to_vec(),
        },
        (_, "/inject") => WebhookAnswer {
            status: 405,
            content_type: "text/plain; charset=utf-8",
            body: b"POST an AdmissionReview to /inject\n".to_vec(),
        },
        _ => WebhookAnswer {
            status: 404,
            content_type: "text/plain; charset=utf-8",
            body: format!("no such path {path:?}; the webhook is POST /inject\n").into_bytes(),
        },
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        _ => "Error",
    }
}

struct Request {
    method: String,
    target: String,
    content_type: Option<String>,
    body: Vec<u8>,
}

enum RequestError {
    /// The client went away before sending a request.
    Closed,
    Bad(u16, String),
    Io(std::io::Error),
}

fn read_request(stream: &mut impl Read) -> Result<Request, RequestError> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if buf.len() > MAX_HEAD {
            return Err(RequestError::Bad(400, "request head too large".into()));
        }
        match stream.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Err(RequestError::Closed),
            Ok(0) => return Err(RequestError::Bad(400, "incomplete request head".into())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(RequestError::Io(e)),
        }
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| RequestError::Bad(400, "request head is not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let mut start = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target)) = (start.next(), start.next()) else {
        return Err(RequestError::Bad(400, "malformed request line".into()));
    };
    let mut content_type = None;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(RequestError::Bad(400, format!("malformed header {line:?}")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("content-length") {
            length =
                Some(value.parse::<usize>().map_err(|_| {
                    RequestError::Bad(400, format!("bad content-length {value:?}"))
                })?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(RequestError::Bad(
                411,
                "send a content-length, not chunks".into(),
            ));
        }
    }
    let length = length.unwrap_or(0);
    if length > MAX_BODY {
        return Err(RequestError::Bad(
            413,
            format!("body of {length} bytes is over {MAX_BODY}"),
        ));
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(RequestError::Bad(
                    400,
                    "body shorter than content-length".into(),
                ))
            }
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(RequestError::Io(e)),
        }
    }
    body.truncate(length);
    Ok(Request {
        method: method.to_string(),
        target: target.to_string(),
        content_type,
        body,
    })
}
