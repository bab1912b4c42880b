//! Server workloads: parse what a sidecar sends, check it, and answer the way the scenario
//! says this endpoint behaves (service time, errors, garbage, hangs, crashes).
//!
//! Every request carries `x-sim-id`; the server checks that the request was allowed to reach
//! it (the reference model's route for that request lists this endpoint's version) and that
//! its body is the exact pattern the client sent. Responses carry a body pattern derived from
//! the id, so the client can check it byte for byte.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use trellis_engine::http1::{self, BodyDecoder, BodyEvent, Limits};
use trellis_engine::ConnId;

use super::check::Invariant;
use super::mesh::{Ev, Mesh, Serve};
use trellis_engine::Instant;

/// The deterministic body of request or response `id` with `len` bytes (`salt` tells the two
/// directions apart).
pub fn body_pattern(id: u64, salt: u8, len: usize) -> Bytes {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(salt) ^ 0x2545_f491_4f6c_dd1d;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Eight letters per step: each byte of x folded into a..p.
        out.extend(x.to_le_bytes().iter().map(|b| b'a' + (b & 0x0f)));
    }
    out.truncate(len);
    Bytes::from(out)
}

pub const REQUEST_SALT: u8 = 1;
pub const RESPONSE_SALT: u8 = 2;

/// What the server decided to do with one request.
enum Answer {
    Respond { status: u16, body: Bytes },
    Garbage,
    Hang,
}

impl Mesh<'_> {
    pub(crate) fn server_receive(&mut self, sc: usize, conn: ConnId, data: Bytes) {
        let limits = Limits::default();
        let Some(u) = self.sidecars[sc].up.get_mut(&conn) else {
            return;
        };
        if !u.server.alive {
            return;
        }
        u.server.recv.extend_from_slice(&data);
        loop {
            let Some(u) = self.sidecars[sc].up.get_mut(&conn) else {
                return;
            };
            let srv = &mut u.server;
            if srv.current.is_none() {
                match http1::parse_request_head(&srv.recv, &limits) {
                    Ok(Some((head, used))) => {
                        let _ = srv.recv.split_to(used);
                        let decoder = BodyDecoder::new(head.framing, &limits);
                        srv.current = Some((head, decoder, BytesMut::new()));
                    }
                    Ok(None) => return,
                    Err(err) => {
                        self.violation(
                            Invariant::Bytes,
                            format!("sidecar {sc} sent an unparsable request upstream: {err}"),
                        );
                        if let Some(u) = self.sidecars[sc].up.get_mut(&conn) {
                            u.server.alive = false;
                        }
                        return;
                    }
                }
            }
            let Some((_, decoder, body)) = srv.current.as_mut() else {
                return;
            };
            let done = loop {
                match decoder.decode(&mut srv.recv) {
                    Ok(BodyEvent::Data(d)) => body.extend_from_slice(&d),
                    Ok(BodyEvent::Done { .. }) => break true,
                    Ok(BodyEvent::NeedMore) => break false,
                    Err(err) => {
                        let msg = format!("sidecar {sc} sent a bad request body: {err}");
                        self.violation(Invariant::Bytes, msg);
                        return;
                    }
                }
            };
            if !done {
                return;
            }
            let Some((head, _, body)) = srv.current.take() else {
                return;
            };
            let (ep, epoch) = (u.ep, u.server.epoch);
            self.server_request(sc, conn, ep, epoch, &head, &body.freeze());
        }
    }

    /// A whole request reached endpoint `ep`: check it, then answer.
    fn server_request(
        &mut self,
        sc: usize,
        conn: ConnId,
        ep: usize,
        epoch: u32,
        head: &http1::RequestHead,
        body: &Bytes,
    ) {
        let header = |name: &str| head.headers.get(name).and_then(|v| v.to_str().ok());
        let id = header("x-sim-id").and_then(|v| v.parse::<usize>().ok());
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
        let version = info.version;
        // The rules of the generation the request started on, whatever was pushed since.
        let allowed = rule
            .and_then(|rl| super::model::rule_at(self.scn, service, generation, rl))
            .is_some_and(|rl| {
                info.service == service && rl.dests.iter().any(|(v, _)| *v == info.version)
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
        self.requests[id].reached.push((self.now, version));
        let expected = body_pattern(id as u64, REQUEST_SALT, body_len);
        if *body != expected {
            let msg = format!(
                "request {id}: server got {} body bytes, client sent {} (content differs: {})",
                body.len(),
                expected.len(),
                body.len() == expected.len()
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
                status: 503,
                body: Bytes::from_static(b"server error"),
            }
        } else {
            Answer::Respond {
                status: 200,
                body: body_pattern(id as u64, RESPONSE_SALT, resp_len),
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
        self.answer(sc, conn, epoch, ep, at, answer);
    }

    /// Send `answer` on `conn` at `at` (dropped there if the connection or the process is gone
    /// by then).
    fn answer(
        &mut self,
        sc: usize,
        conn: ConnId,
        epoch: u32,
        ep: usize,
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
                        close: true,
                        status: 0,
                        more: false,
                    },
                );
            }
            Answer::Respond { status, body } => {
                let mut out = BytesMut::with_capacity(body.len() + 128);
                out.extend_from_slice(
                    format!(
                        "HTTP/1.1 {status} {}\r\ncontent-length: {}\r\nx-sim-ep: {ep}\r\n\r\n",
                        http1::reason_phrase(status),
                        body.len()
                    )
                    .as_bytes(),
                );
                let head_len = out.len();
                out.extend_from_slice(&body);
                let data = out.freeze();
                let spec = &self.endpoints[ep].spec;
                let trickle = spec.trickle_percent > 0
                    && !body.is_empty()
                    && self.rng.u8(0..100) < spec.trickle_percent;
                if !trickle {
                    let reply = Ev::ServerReply {
                        sc,
                        conn,
                        epoch,
                        data,
                        close: false,
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
                let pieces = self.rng.usize(2..=12).min(body.len());
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
                        close: false,
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

impl Mesh<'_> {
    /// One of a serve's calls ended; when it was the last, the workload finishes its own
    /// service time and answers.
    pub(crate) fn call_ended(&mut self, serve: usize, ok: bool) {
        let sv = &mut self.serves[serve];
        sv.waiting = sv.waiting.saturating_sub(1);
        sv.failed |= !ok;
        if sv.waiting == 0 && sv.alive {
            let at = self.now + sv.delay;
            self.queue.push(at, Ev::ServeDone { serve });
        }
    }

    /// A serve's calls are done and its service time is over: answer 200 with the body its
    /// client expects, or 502 when a dependency failed.
    pub(crate) fn serve_done(&mut self, serve: usize) {
        let sv = &self.serves[serve];
        if !sv.alive {
            return;
        }
        let (sc, conn, epoch, ep, req, failed) =
            (sv.sc, sv.conn, sv.epoch, sv.ep, sv.req, sv.failed);
        let answer = if failed {
            Answer::Respond {
                status: 502,
                body: Bytes::from_static(b"a dependency failed"),
            }
        } else {
            let resp_len = self.requests[req].resp_len;
            Answer::Respond {
                status: 200,
                body: body_pattern(req as u64, RESPONSE_SALT, resp_len),
            }
        };
        self.answer(sc, conn, epoch, ep, self.now, answer);
    }

    /// A calling workload's process died: the requests it was serving are gone, and so are
    /// its calls still in flight (their connections to its sidecar close under them).
    pub(crate) fn cancel_serves(&mut self, ep: usize) {
        for serve in 0..self.serves.len() {
            if self.serves[serve].ep != ep || !self.serves[serve].alive {
                continue;
            }
            self.serves[serve].alive = false;
            for i in 0..self.serves[serve].calls.len() {
                let call = self.serves[serve].calls[i];
                self.cancel_call(call);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_differ_by_id_and_direction() {
        assert_eq!(body_pattern(1, 1, 50), body_pattern(1, 1, 50));
        assert_ne!(body_pattern(1, 1, 50), body_pattern(2, 1, 50));
        assert_ne!(body_pattern(1, 1, 50), body_pattern(1, 2, 50));
        assert_eq!(body_pattern(9, 2, 0).len(), 0);
    }
}
