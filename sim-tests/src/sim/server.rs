//! Server workloads: parse what a sidecar sends, check it, and answer the way the scenario
//! says this endpoint behaves (service time, errors, garbage, hangs, crashes).
//!
//! Every request carries `x-sim-id`; the server checks that the request was allowed to reach
//! it (the reference model's route for that request lists this endpoint's version) and that
//! its body is the exact pattern the client sent. Responses carry a body pattern derived from
//! the id, so the client can check it byte for byte.

use std::time::Duration;

use crate::codec::{BodyReader, Framing};
use bytes::{Bytes, BytesMut};
use trellis_engine::ConnId;

use super::check::Invariant;
use super::events::AfterReply;
use super::mesh::{Ev, Mesh, Serve};
use super::pattern::{is_body, Pattern, REQUEST_SALT, RESPONSE_SALT};
use trellis_engine::Instant;

/// Most header fields a request head may carry (the engine's default `max_headers`).
const MAX_HEADERS: usize = 100;

/// What the server decided to do with one request.
pub(super) enum Answer {
    /// A response whose body is the response pattern of `len` bytes (status 200) or a fixed
    /// text.
    Respond {
        status: u16,
        pattern: Option<usize>,
        text: &'static [u8],
    },
    Garbage,
    Hang,
}

/// The request a server is reading on one connection, once its head is parsed.
pub(crate) struct Incoming {
    /// The `x-sim-id` of the request, if it carried a number there.
    id: Option<usize>,
    body: BodyIn,
    /// The request target and the headers, kept for the routing-vocabulary checks (names in
    /// lower case, in arrival order); `None` in scenarios without the vocabulary.
    seen: Option<Box<Upstream>>,
}

/// A request head as it reached the server.
pub(crate) struct Upstream {
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl Upstream {
    /// Every value of header `name` (lower case), in arrival order.
    pub fn values(&self, name: &str) -> Vec<String> {
        (self.headers.iter())
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// The interim answer a server may send before its response ([`super::scenario::InterimSpec`]).
pub(super) const EARLY_HINTS: &[u8] =
    b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n";

enum BodyIn {
    /// A Content-Length body of this many bytes (also no body at all: 0).
    Length(usize),
    /// A chunked body, decoded as it arrives.
    Chunked(Box<(BodyReader, Vec<u8>)>),
}

/// What one step of reading a connection's bytes did.
enum Step {
    /// It used this many bytes; go on with the rest.
    Used(usize),
    /// The bytes end inside a head or body: keep them and wait for more.
    Wait,
    /// The connection is no longer read (gone, or the server gave up on it).
    Stop,
}

/// Parses a request head with `httparse` and checks its framing. The server side deliberately
/// does not use the engine's own codec: an independent parser checking what the engine sends
/// upstream tests the engine, where its codec checking itself would only test consistency
/// (and it is also several times cheaper: no allocation, no `HeaderMap`).
///
/// `Ok(None)` means the head is incomplete; `Err` is why it is unacceptable.
fn parse_head(buf: &[u8], keep: bool) -> Result<Option<(usize, Incoming)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let used = match req.parse(buf) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) => {
            let max = crate::codec::MAX_HEAD_BYTES;
            if buf.len() > max {
                return Err(format!("head over {max} bytes"));
            }
            return Ok(None);
        }
        Err(err) => return Err(err.to_string()),
    };
    // httparse accepts a bare LF as a line end; the engine must always send CRLF.
    if crate::codec::bare_lf(&buf[..used]) {
        return Err("bare LF in the head".into());
    }
    let (mut hosts, mut id) = (0, None);
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case(b"x-sim-id") && id.is_none() {
            id = Some(
                std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.parse().ok()),
            );
        }
    }
    if req.version == Some(1) && hosts != 1 {
        return Err(format!("{hosts} host fields"));
    }
    let body = match crate::codec::request_framing(req.headers)? {
        Framing::Chunked => {
            BodyIn::Chunked(Box::new((BodyReader::new(Framing::Chunked), Vec::new())))
        }
        Framing::Length(n) => {
            BodyIn::Length(usize::try_from(n).map_err(|_| "content-length too large")?)
        }
        Framing::Close => return Err("a request body delimited by the close".into()),
    };
    let seen = keep.then(|| {
        Box::new(Upstream {
            target: req.path.unwrap_or_default().to_string(),
            headers: (req.headers.iter())
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
        })
    });
    Ok(Some((
        used,
        Incoming {
            id: id.flatten(),
            body,
            seen,
        },
    )))
}

/// Feeds the front of `buf` to a chunked body's decoder, collecting the data in `body`:
/// how many bytes it used, and whether the body is complete. Bytes it could not use yet (a
/// partial chunk-size line) are left for the next call, with more behind them.
fn read_chunked(
    decoder: &mut BodyReader,
    body: &mut Vec<u8>,
    buf: &[u8],
) -> Result<(usize, bool), String> {
    let mut rest = BytesMut::from(buf);
    let done = decoder.read(&mut rest, body)?;
    Ok((buf.len() - rest.len(), done))
}

impl Mesh<'_> {
    pub(crate) fn server_receive(&mut self, sc: usize, conn: ConnId, data: Bytes) {
        let Some(u) = self.sidecars[sc].up.get_mut(&conn) else {
            return;
        };
        if !u.server.alive {
            return;
        }
        // Read straight from the segment when nothing is left over from earlier ones.
        let held;
        let input: &[u8] = if u.server.recv.is_empty() {
            &data
        } else {
            u.server.recv.extend_from_slice(&data);
            held = std::mem::take(&mut u.server.recv);
            &held
        };
        let mut at = 0;
        while at < input.len() {
            match self.server_step(sc, conn, &input[at..]) {
                Step::Used(n) => at += n,
                Step::Wait => break,
                Step::Stop => return,
            }
        }
        if at < input.len() {
            if let Some(u) = self.sidecars[sc].up.get_mut(&conn) {
                u.server.recv.extend_from_slice(&input[at..]);
            }
        }
    }

    /// Reads the next head or body from the front of `buf`.
    fn server_step(&mut self, sc: usize, conn: ConnId, buf: &[u8]) -> Step {
        let Some(u) = self.sidecars[sc].up.get_mut(&conn) else {
            return Step::Stop;
        };
        let (ep, epoch) = (u.ep, u.server.epoch);
        let Some(incoming) = u.server.current.as_mut() else {
            let keep = self.scn.requests.is_some();
            return match parse_head(buf, keep) {
                Ok(Some((used, incoming))) => {
                    u.server.current = Some(incoming);
                    if let Some(Incoming {
                        body: BodyIn::Length(0),
                        ..
                    }) = u.server.current
                    {
                        if let Some(Incoming { id, seen, .. }) = u.server.current.take() {
                            self.server_request(sc, conn, ep, epoch, id, seen, &[]);
                        }
                    }
                    Step::Used(used)
                }
                Ok(None) => Step::Wait,
                Err(err) => {
                    u.server.alive = false;
                    let msg = format!("sidecar {sc} sent an unparsable request upstream: {err}");
                    self.violation(Invariant::Bytes, msg);
                    Step::Stop
                }
            };
        };
        let id = incoming.id;
        let seen = incoming.seen.take();
        match &mut incoming.body {
            BodyIn::Length(n) => {
                let n = *n;
                if buf.len() < n {
                    incoming.seen = seen;
                    return Step::Wait;
                }
                u.server.current = None;
                self.server_request(sc, conn, ep, epoch, id, seen, &buf[..n]);
                Step::Used(n)
            }
            BodyIn::Chunked(chunked) => {
                let (decoder, body) = &mut **chunked;
                let (used, done) = match read_chunked(decoder, body, buf) {
                    Ok(progress) => progress,
                    Err(err) => {
                        u.server.alive = false;
                        let msg = format!("sidecar {sc} sent a bad request body: {err}");
                        self.violation(Invariant::Bytes, msg);
                        return Step::Stop;
                    }
                };
                if !done {
                    if let Some(incoming) = (self.sidecars[sc].up.get_mut(&conn))
                        .and_then(|u| u.server.current.as_mut())
                    {
                        incoming.seen = seen;
                    }
                    return if used == 0 {
                        Step::Wait
                    } else {
                        Step::Used(used)
                    };
                }
                let body = std::mem::take(body);
                u.server.current = None;
                self.server_request(sc, conn, ep, epoch, id, seen, &body);
                Step::Used(used)
            }
        }
    }

    /// A whole request (its `x-sim-id` and body) reached endpoint `ep`: check it, then answer.
    #[allow(clippy::too_many_arguments)]
    fn server_request(
        &mut self,
        sc: usize,
        conn: ConnId,
        ep: usize,
        epoch: u32,
        id: Option<usize>,
        seen: Option<Box<Upstream>>,
        body: &[u8],
    ) {
        let Some(req) = id.and_then(|id| self.requests.get(id).map(|r| (id, r))) else {
            self.violation(
                Invariant::Routing,
                "a request without a valid x-sim-id reached a server",
            );
            return;
        };
        let (id, r) = req;
        let (service, generation, rule) = (r.service, r.generation, r.rule);
        let (body_len, resp_len) = (r.body_len, r.resp_len);
        let info = &self.cluster_info[self.endpoints[ep].cluster];
        let (version, service_of) = (info.version, info.service);
        // The rules of the generation the request started on, whatever was pushed since.
        let allowed = rule
            .and_then(|rl| super::model::rule_at(self.scn, service, generation, rl))
            .is_some_and(|rl| {
                info.service == service && super::model::allows_version(rl, info.version)
            });
        if !allowed {
            let msg = format!(
                "request {id} (service {service}, generation {generation}, rule {rule:?}) reached {} of svc{}-v{}",
                super::model::endpoint_addr((info.service, info.version, 0)).ip(),
                info.service,
                info.version
            );
            self.violation(Invariant::Routing, msg);
        }
        if self.requests[id].unserved {
            let msg = format!(
                "request {id}, written on its client connection after the connection was ended, reached svc{}-v{}: the sidecar must not process it (RFC 9112 §9.6)",
                service_of, version
            );
            self.violation(Invariant::Framing, msg);
        }
        self.requests[id].reached.push((self.now, version));
        if let Some(seen) = seen {
            self.check_upstream_request(id, version, &seen);
        }
        if !is_body(id as u64, REQUEST_SALT, body_len, body) {
            let msg = format!(
                "request {id}: server got {} body bytes, client sent {body_len} (content differs: {})",
                body.len(),
                body.len() == body_len
            );
            self.violation(Invariant::Bytes, msg);
        }
        let e = &self.endpoints[ep];
        let spec = &e.spec;
        let answer = if e.hung > 0 || self.rng.u8(0..100) < spec.hang_percent {
            Answer::Hang
        } else if self.rng.u8(0..100) < spec.garbage_percent {
            Answer::Garbage
        } else if self.rng.u8(0..100) < spec.error_percent {
            Answer::Respond {
                status: spec.error_status(),
                pattern: None,
                text: b"server error",
            }
        } else {
            Answer::Respond {
                status: 200,
                pattern: Some(resp_len),
                text: b"",
            }
        };
        let mut delay = Duration::from_millis(u64::from(spec.latency_base_ms)) + e.slow;
        if spec.latency_jitter_ms > 0 {
            // Exponential with the given mean.
            let u = self.rng.f64().max(1e-12);
            let mean = f64::from(spec.latency_jitter_ms) * 1e6;
            delay += Duration::from_nanos((-u.ln() * mean) as u64);
        }
        if spec.tail_percent > 0 && self.rng.u8(0..100) < spec.tail_percent {
            // A long pause on top (a GC, a cold cache): Pareto with shape 1.5, scale tail_ms/3,
            // capped at tail_ms, so most pauses are short and a few are long.
            let u = self.rng.f64().max(1e-12);
            let scale = f64::from(spec.tail_ms) / 3.0;
            let pause = (scale * u.powf(-1.0 / 1.5)).min(f64::from(spec.tail_ms));
            delay += Duration::from_micros((pause * 1e3) as u64);
        }
        let at = self.now + delay;
        self.attempt_served(sc, conn, id, matches!(answer, Answer::Hang));
        let calls = &self.scn.services[self.endpoints[ep].service].calls;
        if let (Answer::Respond { status: 200, .. }, false) = (&answer, calls.is_empty()) {
            // A calling workload: make its calls now, answer once they have ended.
            if let Some(own) = self.endpoints[ep].sidecar {
                let serve = self.serves.len();
                self.serves.push(Serve {
                    sc,
                    conn,
                    epoch,
                    ep,
                    req: id,
                    calls: Vec::new(),
                    waiting: calls.len(),
                    failed: false,
                    delay,
                    alive: true,
                });
                for c in calls.clone() {
                    self.start_call(own, serve, c);
                }
                return;
            }
        }
        self.answer((sc, conn, epoch), ep, id, at, answer);
    }

    /// Send `answer` to request `id` on connection `(sidecar, conn, epoch)` at `at` (dropped
    /// there if the connection or the process is gone by then).
    pub(super) fn answer(
        &mut self,
        (sc, conn, epoch): (usize, ConnId, u32),
        ep: usize,
        id: usize,
        at: Instant,
        answer: Answer,
    ) {
        match answer {
            Answer::Hang => {}
            Answer::Garbage => {
                let data = Bytes::from_static(b"HTTP/1.1 2OO NOT OK\r\n\x00garbage\r\n\r\n");
                self.queue.push(
                    at,
                    Ev::ServerReply {
                        sc,
                        conn,
                        epoch,
                        data,
                        after: AfterReply::Garbage,
                        status: 0,
                        more: false,
                    },
                );
            }
            Answer::Respond {
                status,
                pattern,
                text,
            } => {
                let len = pattern.unwrap_or(text.len());
                let mut out = Vec::with_capacity(len + 96);
                let mut num = itoa::Buffer::new();
                if (self.scn.interim.as_ref())
                    .is_some_and(|i| self.rng.u8(0..100) < i.early_hints_percent)
                {
                    out.extend_from_slice(EARLY_HINTS);
                    if let Some(u) = self.sidecars[sc].up.get_mut(&conn) {
                        u.server.early_hints = true;
                    }
                }
                out.extend_from_slice(b"HTTP/1.1 ");
                out.extend_from_slice(num.format(status).as_bytes());
                out.push(b' ');
                out.extend_from_slice(crate::codec::reason(status).as_bytes());
                let chunked = self
                    .scn
                    .framing
                    .as_ref()
                    .is_some_and(|f| self.rng.u8(0..100) < f.chunked_responses_percent);
                // A HEAD is answered with the fields a GET would get, and no body.
                let head = self.requests.get(id).is_some_and(|r| r.head);
                let (close, until_close) = match &self.scn.messages {
                    Some(m) => {
                        let close = self.rng.u8(0..100) < m.close_percent;
                        let until =
                            !head && status == 200 && self.rng.u8(0..100) < m.until_close_percent;
                        (close, until)
                    }
                    None => (false, false),
                };
                let after = match (until_close, close) {
                    (true, _) => AfterReply::CloseEnds,
                    (false, true) => AfterReply::Close,
                    (false, false) => AfterReply::KeepOpen,
                };
                let chunked = chunked && !until_close;
                if chunked {
                    out.extend_from_slice(b"\r\ntransfer-encoding: chunked");
                } else if !until_close {
                    out.extend_from_slice(b"\r\ncontent-length: ");
                    out.extend_from_slice(num.format(len).as_bytes());
                }
                if close {
                    out.extend_from_slice(b"\r\nconnection: close");
                }
                out.extend_from_slice(b"\r\nx-sim-ep: ");
                out.extend_from_slice(num.format(ep).as_bytes());
                if self.scn.requests.is_some() {
                    for h in super::vocab_checks::SERVER_RESPONSE_HEADERS {
                        out.extend_from_slice(b"\r\n");
                        out.extend_from_slice(h.as_bytes());
                        out.extend_from_slice(b": server");
                    }
                }
                out.extend_from_slice(b"\r\n\r\n");
                let head_len = out.len();
                // A HEAD's answer ends with its head.
                if chunked && !head {
                    let mut body = Vec::with_capacity(len);
                    match pattern {
                        Some(len) => Pattern::new(id as u64, RESPONSE_SALT).write(&mut body, len),
                        None => body.extend_from_slice(text),
                    }
                    crate::codec::write_chunked(&body, &mut self.rng, &mut out);
                } else if !head {
                    match pattern {
                        Some(len) => Pattern::new(id as u64, RESPONSE_SALT).write(&mut out, len),
                        None => out.extend_from_slice(text),
                    }
                }
                // A body delimited by the close, cut by a reset partway.
                let cut = until_close
                    && len > 0
                    && (self.scn.messages.as_ref())
                        .is_some_and(|m| self.rng.u8(0..100) < m.cut_percent);
                let after = if cut {
                    out.truncate(head_len + self.rng.usize(0..len));
                    AfterReply::Reset
                } else {
                    after
                };
                let data = Bytes::from(out);
                let spec = &self.endpoints[ep].spec;
                let trickle = spec.trickle_percent > 0
                    && len > 0
                    && !head
                    && !cut
                    && self.rng.u8(0..100) < spec.trickle_percent;
                if !trickle {
                    let reply = Ev::ServerReply {
                        sc,
                        conn,
                        epoch,
                        data,
                        after,
                        status,
                        more: false,
                    };
                    self.queue.push(at, reply);
                    return;
                }
                // Slow loris: the whole head (the status the driver counts is the one the
                // engine can parse from this first piece), then the body in pieces, each a
                // while after the last.
                let gap_ms = u64::from(spec.trickle_gap_ms.max(1));
                let pieces = self.rng.usize(2..=12).min(len);
                let (mut from, mut t) = (0, at);
                for k in 0..pieces {
                    let to = if k + 1 == pieces {
                        data.len()
                    } else {
                        let left = data.len() - from.max(head_len);
                        from.max(head_len) + left / (pieces - k)
                    };
                    let reply = Ev::ServerReply {
                        sc,
                        conn,
                        epoch,
                        data: data.slice(from..to),
                        after: if k + 1 == pieces {
                            after
                        } else {
                            AfterReply::KeepOpen
                        },
                        status: if k == 0 { status } else { 0 },
                        more: k + 1 < pieces,
                    };
                    self.queue.push(t, reply);
                    from = to;
                    t += Duration::from_micros(self.rng.u64(0..=gap_ms * 1000));
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
