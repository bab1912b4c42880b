//! Client workloads: open-loop (Poisson arrivals) and closed-loop (fixed concurrency with think
//! time) request generators, each behind its own sidecar on loopback.
//!
//! A request gets its own downstream connection unless the scenario's connection stream puts
//! it on one the client holds ([`super::client_conn`]); either way "ends exactly once" is
//! exact to check: one request head in, one response (or a cut) out, at most one access-log
//! record, exactly one for a request the sidecar had in hand. The client parses what the
//! sidecar sends back as it arrives (heads with `httparse`, independent of the engine's
//! codec; interim 1xx heads read past), checks the body byte for byte and the timing against
//! the route's promise, and gives up at its own deadline.

use std::time::Duration;

use bytes::Bytes;

use super::check::Invariant;
use super::client_conn::ConnUse;
use super::head_limits::{head_limit_status, pad_request_line, LimitProbe};
use super::mesh::{ClientRequest, Ev, Mesh};
use super::model;
use super::pattern::{Pattern, REQUEST_SALT, RESPONSE_SALT};
use super::reference;
use super::report::{Outcome, TimelineRequest};
use super::response_read::{parse_response, BodyIn, BodyRead, Reading};
use super::scenario::{Load, RequestShape};

/// The engine's default `stream_idle_timeout` (Envoy's: 5 minutes).
pub(super) const DEFAULT_STREAM_IDLE: Duration = Duration::from_secs(300);

/// One request to make: where, as whom, with what.
pub(super) struct Call {
    pub service: usize,
    pub user: Option<String>,
    /// `Some`: a POST with a body of this length.
    pub body_len: Option<usize>,
    pub resp_len: usize,
    /// How long the caller waits when the route promises no bound.
    pub patience: Duration,
    /// Method, path, query, authority and headers, for scenarios with the routing vocabulary
    /// (`None`: `GET`/`POST /r/{id}` to `svc{s}`).
    pub shape: Option<RequestShape>,
}

/// The least time a closed-loop client takes between the end of one request and the next.
const CLIENT_TURNAROUND: Duration = Duration::from_micros(100);

impl Mesh<'_> {
    pub(crate) fn start_clients(&mut self) {
        for (k, c) in self.scn.clients.iter().enumerate() {
            match c.load {
                Load::Open { .. } => {
                    let t = self.now + self.interarrival(k);
                    self.queue.push(t, Ev::Arrival { client: k });
                }
                Load::Closed { concurrency, .. } => {
                    for l in 0..concurrency as usize {
                        let t = self.now + Duration::from_micros(self.rng.u64(0..1000));
                        self.queue.push(
                            t,
                            Ev::LoopStart {
                                client: k,
                                loop_id: l,
                            },
                        );
                    }
                }
            }
        }
    }

    fn interarrival(&mut self, k: usize) -> Duration {
        let rate = match self.scn.clients[k].load {
            Load::Open { rate } => f64::from(rate.max(1)),
            Load::Closed { .. } => 1.0,
        };
        let u = self.rng.f64().max(1e-12);
        Duration::from_nanos((-u.ln() / rate * 1e9) as u64)
    }

    fn workload_over(&self) -> bool {
        self.now >= trellis_engine::Instant::from_millis(self.scn.duration_ms)
    }

    pub(crate) fn on_arrival(&mut self, client: usize) {
        if self.workload_over() {
            return;
        }
        self.start_request(client, None);
        let t = self.now + self.interarrival(client);
        self.queue.push(t, Ev::Arrival { client });
    }

    /// Start one request from `client`.
    pub(crate) fn start_request(&mut self, client: usize, loop_id: Option<usize>) {
        if self.workload_over() {
            return;
        }
        let call = self.draw_call(client);
        self.open_request(client, call, loop_id, None);
    }

    /// What `client`'s next request is: the service, user, bodies and shape it draws.
    fn draw_call(&mut self, client: usize) -> Call {
        let spec = &self.scn.clients[client];
        let service = spec.targets[self.rng.usize(0..spec.targets.len())];
        let user = if spec.users.is_empty() || self.rng.u8(0..4) == 0 {
            None
        } else {
            Some(spec.users[self.rng.usize(0..spec.users.len())].clone())
        };
        let post = self.rng.u8(0..100) < spec.post_percent;
        let body_len = if post {
            self.rng.usize(0..=spec.max_body as usize)
        } else {
            0
        };
        let resp_len = self.rng.usize(0..=spec.max_response as usize);
        let patience = Duration::from_millis(spec.deadline_ms);
        let shape = self.draw_shape(service, post, false);
        Call {
            service,
            user,
            body_len: post.then_some(body_len),
            resp_len,
            patience,
            shape,
        }
    }

    /// Write request `call` from `sidecar`'s workload: on a fresh connection, or (with
    /// [`super::scenario::ConnectionSpec`]) on one the client holds; returns its id.
    pub(super) fn open_request(
        &mut self,
        sidecar: usize,
        call: Call,
        loop_id: Option<usize>,
        serve: Option<usize>,
    ) -> usize {
        self.write_request(sidecar, call, loop_id, serve, None)
    }

    /// [`Self::open_request`], on the connection `usage` says when it is given.
    fn write_request(
        &mut self,
        sidecar: usize,
        call: Call,
        loop_id: Option<usize>,
        serve: Option<usize>,
        usage: Option<ConnUse>,
    ) -> usize {
        let Call {
            service,
            user,
            body_len,
            resp_len,
            patience,
            shape,
        } = call;
        let post = body_len.is_some();
        let body_len = body_len.unwrap_or(0);
        let mut shape = shape;
        // A plain GET sent as HEAD: the route is the same (no shape, no method condition).
        let head = !post
            && shape.is_none()
            && (self.scn.messages.as_ref()).is_some_and(|m| self.rng.u8(0..100) < m.head_percent);
        let probe = self.draw_limit_probe(shape.is_some());
        if let (Some((LimitProbe::Line, want)), Some(sh)) = (probe, shape.as_mut()) {
            pad_request_line(sh, want);
        }
        let usage = match (usage, serve) {
            (Some(usage), _) => usage,
            (None, None) => self.draw_conn_use(sidecar, loop_id.is_none()),
            (None, Some(_)) => ConnUse::default(),
        };
        // A drawn Host selects the virtual host, and so the service, the request is for
        // (wildcard domains may send it to another service's rules, or none: 404 NR).
        let vhost = match (&shape, &self.scn.requests) {
            (Some(sh), Some(v)) => {
                reference::resolve_vhost(&sh.authority, self.scn.services.len(), &v.wildcards)
            }
            _ => Some(service),
        };
        let service = vhost.unwrap_or(service);
        let id = self.requests.len();
        // The request head and body, written straight into the buffer the engine reads.
        let mut raw = Vec::with_capacity(96 + body_len);
        let mut num = itoa::Buffer::new();
        let id_text = num.format(id).as_bytes();
        let version: &[u8] = if usage.http10 {
            b" HTTP/1.0\r\nhost: "
        } else {
            b" HTTP/1.1\r\nhost: "
        };
        match &shape {
            None => {
                raw.extend_from_slice(match (post, head) {
                    (true, _) => b"POST /r/",
                    (false, true) => b"HEAD /r/",
                    (false, false) => b"GET /r/",
                });
                raw.extend_from_slice(id_text);
                raw.extend_from_slice(version);
                model::write_service_host(&mut raw, service);
            }
            Some(sh) => {
                raw.extend_from_slice(sh.method.as_bytes());
                raw.push(b' ');
                raw.extend_from_slice(sh.sent_target().as_bytes());
                raw.extend_from_slice(version);
                raw.extend_from_slice(sh.authority.as_bytes());
            }
        }
        raw.extend_from_slice(b"\r\nx-sim-id: ");
        raw.extend_from_slice(id_text);
        raw.extend_from_slice(b"\r\n");
        if let Some(u) = &user {
            raw.extend_from_slice(b"x-user: ");
            raw.extend_from_slice(u.as_bytes());
            raw.extend_from_slice(b"\r\n");
        }
        for (name, value) in shape.iter().flat_map(|sh| &sh.headers) {
            raw.extend_from_slice(name.as_bytes());
            raw.extend_from_slice(b": ");
            raw.extend_from_slice(value.as_bytes());
            raw.extend_from_slice(b"\r\n");
        }
        match (usage.close, usage.http10 && usage.keep_alive) {
            (true, _) => raw.extend_from_slice(b"connection: close\r\n"),
            (false, true) => raw.extend_from_slice(b"connection: keep-alive\r\n"),
            (false, false) => {}
        }
        // HTTP/1.0 has no chunked coding (RFC 9112 §6.1): its bodies carry a length.
        let chunked = post
            && !usage.http10
            && self
                .scn
                .framing
                .as_ref()
                .is_some_and(|f| self.rng.u8(0..100) < f.chunked_requests_percent);
        match probe {
            Some((LimitProbe::Bytes, want)) => {
                // The rest of the head: the framing field and the empty line.
                let framing = match (chunked, post) {
                    (true, _) => "transfer-encoding: chunked\r\n".len(),
                    (false, true) => "content-length: \r\n".len() + num.format(body_len).len(),
                    (false, false) => 0,
                };
                let head = raw.len() + framing + 2;
                // `x-pad: ` + value + CRLF.
                if let Some(k) = want.checked_sub(head + 9) {
                    raw.extend_from_slice(b"x-pad: ");
                    raw.resize(raw.len() + k, b'p');
                    raw.extend_from_slice(b"\r\n");
                }
            }
            Some((LimitProbe::Count, want)) => {
                let fields = raw.windows(2).filter(|w| w == b"\r\n").count() - 1
                    + usize::from(post || chunked);
                for _ in fields..want {
                    raw.extend_from_slice(b"x-fill: 1\r\n");
                }
            }
            _ => {}
        }
        if chunked {
            raw.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
            let mut body = Vec::with_capacity(body_len);
            Pattern::new(id as u64, REQUEST_SALT).write(&mut body, body_len);
            crate::codec::write_chunked(&body, &mut self.rng, &mut raw);
        } else {
            if post {
                raw.extend_from_slice(b"content-length: ");
                raw.extend_from_slice(num.format(body_len).as_bytes());
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(b"\r\n");
            Pattern::new(id as u64, REQUEST_SALT).write(&mut raw, body_len);
        }

        // Which limit, if any, the head as written breaks: a request the engine must refuse
        // is never routed, so the routing checks leave it alone.
        let reject = self
            .scn
            .http
            .as_ref()
            .and_then(|h| head_limit_status(h, &raw));
        let conn = match usage.on {
            Some(conn) => conn,
            None => self.open_conn(sidecar, id, serve.is_none()),
        };
        let Some(d) = self.sidecars[sidecar].down.get_mut(&conn) else {
            return id;
        };
        // Written behind a request or response that ended the connection.
        let unserved = d.ending;
        d.ending |= usage.close || (usage.http10 && !usage.keep_alive);
        d.waiting.push_back(id);
        d.idle_since = None;
        let first = d.waiting.len() == 1;
        (self.sidecars[sidecar].log_req.entry(conn).or_default()).push_back(id);
        self.open_requests += 1;
        self.requests.push(ClientRequest {
            sidecar,
            serve,
            loop_id,
            service,
            user,
            generation: 0,
            stream_idle: DEFAULT_STREAM_IDLE,
            routable: vhost.is_some(),
            patience,
            rule: None,
            reject,
            block: None,
            shape: shape.map(Box::new),
            bound: None,
            start: self.now,
            body_len,
            resp_len,
            head,
            conn,
            http10: usage.http10,
            ends_conn: usage.close || (usage.http10 && !usage.keep_alive),
            unserved,
            pipelined: !first,
            reused: usage.on.is_some() && first,
            delivered: false,
            ended_first: false,
            logs: 0,
            reading: Reading::Head(Vec::new()),
            outcome: None,
            end: None,
            unread: 0,
            read_until: self.now,
            reached: Vec::new(),
        });
        self.client_write(sidecar, conn, id, first, Bytes::from(raw));
        if usage.follow_after_close {
            let call = self.draw_call(sidecar);
            let follower = ConnUse {
                on: Some(conn),
                ..ConnUse::default()
            };
            self.write_request(sidecar, call, None, None, Some(follower));
        }
        id
    }

    /// Bytes from the sidecar to the client of request `req`, read as they come: the head is
    /// parsed once, then body bytes are decoded and compared with the expected pattern piece
    /// by piece, never buffered whole. `Some(used)` once the response is whole, after `used`
    /// bytes of `data` (the rest are the next response's), with whether it ended the
    /// connection ([`Self::finish_response`]).
    pub(crate) fn client_receive(&mut self, req: usize, data: &[u8]) -> Option<(usize, bool)> {
        let keep = self.scn.requests.is_some();
        let r = &mut self.requests[req];
        let method = if r.head { "HEAD" } else { "GET" };
        if r.end.is_some() {
            let msg = format!(
                "request {req}: {} bytes after its response ended",
                data.len()
            );
            self.violations.report(Invariant::EndsOnce, self.now, msg);
            return None;
        }
        let whole = data.len();
        let mut data = data;
        if let Reading::Head(held) = &mut r.reading {
            // Parse straight from the delivery when no partial head came before it.
            let buf: &[u8] = if held.is_empty() {
                data
            } else {
                held.extend_from_slice(data);
                held
            };
            let (used, mut b) = match parse_response(buf, keep, method) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => {
                    if held.is_empty() {
                        held.extend_from_slice(data);
                    }
                    return None;
                }
                // Nothing more is read; the request ends when the sidecar closes or the client
                // gives up.
                Err(()) => {
                    r.reading = Reading::Ignored;
                    return None;
                }
            };
            // The body starts `used` bytes into the head buffer: whatever of it came in this
            // delivery.
            let skip = used.saturating_sub(buf.len() - data.len());
            data = &data[skip..];
            if (100..200).contains(&b.status) {
                // An interim answer: the response is still to come (never to HTTP/1.0:
                // RFC 9110 §15.2).
                let http10 = r.http10;
                r.reading = Reading::Head(Vec::new());
                if http10 {
                    let msg = format!(
                        "request {req} (HTTP/1.0): the sidecar sent it an interim {} answer (RFC 9110 §15.2)",
                        b.status
                    );
                    self.violations.report(Invariant::Framing, self.now, msg);
                }
                let consumed = whole - data.len();
                return match data.is_empty() {
                    true => None,
                    false => self
                        .client_receive(req, data)
                        .map(|(used, ends)| (consumed + used, ends)),
                };
            }
            // A HEAD's answer has no body to check: its length shows in `EndsOnce`.
            if b.from_server && b.status == 200 && !r.head {
                b.check = Some(Pattern::new(req as u64, RESPONSE_SALT));
            }
            let chunked_to_http10 = r.http10 && b.transfer_coded;
            r.reading = Reading::Body(Box::new(b));
            if chunked_to_http10 {
                let msg = format!(
                    "request {req} (HTTP/1.0): its response carries transfer-encoding, which an HTTP/1.0 client cannot decode (RFC 9112 §6.1)"
                );
                self.violations.report(Invariant::Framing, self.now, msg);
            }
        }
        let r = &mut self.requests[req];
        let Reading::Body(b) = &mut r.reading else {
            return None;
        };
        let take = |b: &mut BodyRead, piece: &[u8]| {
            b.len += piece.len();
            if let Some(p) = b.check.as_mut() {
                b.ok = b.ok && p.matches(piece);
            }
            if let Some(seen) = b.seen.as_mut().filter(|_| !b.from_server) {
                let room = 4096usize.saturating_sub(seen.body.len());
                seen.body.extend_from_slice(&piece[..piece.len().min(room)]);
            }
        };
        let left = match &mut b.body {
            BodyIn::Length(remaining) => {
                let n = data
                    .len()
                    .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                take(b, &data[..n]);
                let BodyIn::Length(remaining) = &mut b.body else {
                    return None;
                };
                *remaining -= n as u64;
                if *remaining > 0 {
                    return None;
                }
                data.len() - n
            }
            BodyIn::Decoder(decoder, rest) => {
                rest.extend_from_slice(data);
                let mut decoder = decoder.clone();
                let mut rest = std::mem::take(rest);
                let mut piece = Vec::new();
                let done = match decoder.read(&mut rest, &mut piece) {
                    Ok(done) => done,
                    Err(_) => {
                        r.reading = Reading::Ignored;
                        return None;
                    }
                };
                take(b, &piece);
                if !done {
                    b.body = BodyIn::Decoder(decoder, rest);
                    return None;
                }
                rest.len()
            }
        };
        let Reading::Body(b) = std::mem::replace(&mut r.reading, Reading::Ignored) else {
            return None;
        };
        let ends = self.finish_response(req, *b);
        Some((whole - left, ends))
    }

    /// Request `req`'s response is whole: hold it to the reference model and end the request.
    /// Whether it ended its connection: it said `connection: close`, or answered an HTTP/1.0
    /// request without `keep-alive` (RFC 9112 §9.3).
    pub(super) fn finish_response(&mut self, req: usize, b: BodyRead) -> bool {
        let r = &self.requests[req];
        let ends = b.says_close || (r.http10 && !b.says_keep_alive);
        let outcome = match (b.from_server, b.flags) {
            (true, _) => Outcome::Response(b.status),
            (false, flags) => Outcome::Mesh(b.status, flags.unwrap_or_default()),
        };
        if b.check.is_some() && !(b.ok && b.len == r.resp_len) {
            let msg = format!(
                "request {req}: response body of {} bytes differs from the {} the server sent",
                b.len, r.resp_len
            );
            self.violations.report(Invariant::Bytes, self.now, msg);
        }
        let got_limit = matches!(&outcome, Outcome::Mesh(414 | 431, _));
        match (r.reject, &outcome) {
            (Some(want), Outcome::Mesh(got, _)) if *got == want => {}
            (None, _) if !got_limit => {}
            (want, got) => {
                let msg = format!(
                    "request {req}: head limits call for {want:?}, got {got:?} (limits {:?})",
                    self.scn.http
                );
                self.violations.report(Invariant::HeadLimits, self.now, msg);
            }
        }
        let unrouted = r.rule.is_none() && r.reject.is_none();
        // `ALLOW_ANY`: a request for no known host goes to the original destination, where
        // nothing listens: a connect failure, never retried (no route, no retry policy).
        let passed_through = unrouted && self.scn.passthrough;
        if passed_through && !matches!(&outcome, Outcome::Mesh(503, f) if f == "UF") {
            let msg = format!(
                "request {req} for no known host, with passthrough to {} (nothing listens), ended {outcome:?}, expected 503 UF",
                model::ORIGINAL_DST
            );
            self.violations.report(Invariant::Routing, self.now, msg);
        }
        let model_says_no_route = unrouted && !passed_through;
        let got_no_route = matches!(&outcome, Outcome::Mesh(404, f) if f.contains("NR"));
        if model_says_no_route != got_no_route {
            let msg = format!(
                "request {req} (service {}, generation {}, user {:?}): reference route {:?}, got {outcome:?}",
                r.service, r.generation, r.user, r.rule
            );
            self.violations.report(Invariant::Routing, self.now, msg);
        }
        if let Some(seen) = &b.seen {
            self.check_vocab_response(req, &outcome, b.ep, seen);
        }
        self.end_request(req, outcome);
        ends
    }

    /// Request `req` ends with `outcome`: check its deadline, record it, and start what
    /// waits on it (its loop's next request, its serve's answer).
    pub(super) fn end_request(&mut self, req: usize, outcome: Outcome) {
        let now = self.now;
        let first = self.is_front(req);
        let r = &mut self.requests[req];
        r.ended_first = first && r.delivered && !r.unserved;
        let r = &mut self.requests[req];
        let took = now - r.start;
        if let Some(bound) = r.bound {
            if took > bound {
                let msg = format!(
                    "request {req} (service {}, generation {}, rule {:?}) took {took:?}, its route promises {bound:?}; ended {outcome:?}",
                    r.service, r.generation, r.rule
                );
                self.violations.report(Invariant::Deadline, now, msg);
            }
        }
        let r = &mut self.requests[req];
        if let Some(t) = self.timeline.as_mut() {
            t.requests.push(TimelineRequest {
                start: r.start,
                latency: took,
                ok: outcome.is_success(),
                mesh_error: matches!(outcome, Outcome::Mesh(..)),
                call: r.serve.is_some(),
            });
        }
        r.end = Some(now);
        let ok = matches!(outcome, Outcome::Response(200..=299));
        r.outcome = Some(outcome);
        self.open_requests -= 1;
        if let Some(serve) = r.serve {
            self.call_ended(serve, ok);
        }
        let r = &mut self.requests[req];
        if let Some(l) = r.loop_id {
            let client = r.sidecar;
            if let Load::Closed { think_ms, .. } = self.scn.clients[client].load {
                // A client spends at least 100 µs between requests (loopback and its own
                // work), so a loop answered instantly still moves the clock forward.
                let t = now + Duration::from_millis(think_ms) + CLIENT_TURNAROUND;
                self.queue.push(t, Ev::LoopStart { client, loop_id: l });
            }
        }
    }
}
