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
use super::mesh::{Ev, Mesh};

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
        let at = self.now + delay;
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
                out.extend_from_slice(&body);
                self.queue.push(
                    at,
                    Ev::ServerReply {
                        sc,
                        conn,
                        epoch,
                        data: out.freeze(),
                        close: false,
                        status,
                    },
                );
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
