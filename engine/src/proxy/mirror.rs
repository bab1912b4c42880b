//! Traffic mirroring: VirtualService `mirror`/`mirrors`, as Envoy's router shadows a request
//! (`Filter::decodeHeaders`, `decodeData`, `decodeTrailers` and `onDestroy` in
//! source/common/router/router.cc, with `streaming_shadow` on).
//!
//! - **When.** With the request's first attempt, once its host is picked (Envoy starts its
//!   shadows in `decodeHeaders`, after the connection pool was found, never for a retry): one
//!   draw from the engine's seeded RNG per request (Envoy's stream id), and each policy of the
//!   route mirrors when [`crate::config::MirrorFraction::selects`] that draw.
//! - **What.** The head exactly as the primary's first attempt sends it (route and destination
//!   edits, rewrites, `x-request-id`), its host with `-shadow` appended when the policy says so
//!   (Envoy's `shadowAppendedHost`: before the port), then the body as the client sends it,
//!   and its trailers.
//! - **Fire and forget.** The mirror has a connection of its own from its cluster's pool (an
//!   idle one, or a new one within `maxConnections`; never a queue: a full breaker drops the
//!   mirror), one try, the route timeout as its deadline (Envoy's `setTimeout(global_timeout)`)
//!   and the stream idle timeout. Its response is read and thrown away, and the connection is
//!   pooled again when it can be. Nothing of it reaches the client or the primary attempt: no
//!   byte, no status, no timing, no retry. Its outcome feeds its own cluster's outlier detector
//!   and breaker, as an Envoy shadow does.
//! - **Never back-pressure.** Envoy's streaming shadows pass their watermarks to the client;
//!   Trellis does not. A mirror buffers at most `connection_buffer_bytes` (what it holds plus
//!   what its connection has not taken): past that it is abandoned (`mirror_rq_abandoned`, as
//!   Envoy counts `retry_or_shadow_abandoned` for a shadow whose body outgrew its buffer).
//! - **Ends with its primary, until its body is whole.** A mirror still copying the body when
//!   the primary request ends (answered early, or its client gone) is cancelled, as Envoy's
//!   `onDestroy` cancels its shadow streams; one that has the whole request lives on alone.
//! - **Observable apart.** Never a second access-log record (that log has one record per client
//!   request): [`super::EngineStats`]' `mirror_rq_*` counters, and a [`MirrorLog`] per mirror
//!   sent ([`Engine::drain_mirror_logs`]), flagged as a shadow by its very type.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::config::MirrorPolicy;
use crate::http1::{self, BodyDecoder, BodyEncoder, HeadStr, Limits, RequestHead};
use crate::time::Instant;

use super::conn::{Conn, Side, UpState};
use super::ids::{ConnId, RequestId, UpstreamId};
use super::request::Inbound;
use super::slab::Slab;
use super::Engine;

mod response;

/// Mirror records kept until drained; past this many, new ones are only counted.
pub const MAX_MIRROR_LOGS: usize = 1024;

/// How one mirrored request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MirrorOutcome {
    /// Its whole response was read (and thrown away).
    Completed,
    /// Its connection could not be made.
    ConnectFailed,
    /// The upstream closed or reset before its response was whole.
    Reset,
    /// The route timeout, the stream idle timeout or the connect timeout passed.
    Timeout,
    /// The upstream answered something that is not a valid response.
    ProtocolError,
    /// Given up by the proxy: its body outran its buffer, or its primary request ended first.
    Abandoned,
}

/// One mirrored request, as a shadow log line would show it.
#[derive(Clone, Debug, PartialEq)]
pub struct MirrorLog {
    /// The mirror's cluster.
    pub cluster: String,
    pub upstream_host: SocketAddr,
    /// The host the mirror was sent with (`-shadow` appended when the policy asks).
    pub authority: HeadStr,
    pub path: HeadStr,
    pub start: Instant,
    pub duration: Duration,
    /// The mirror's response status; 0 when none arrived.
    pub status: u16,
    pub outcome: MirrorOutcome,
}

/// A mirrored request in flight, kept on the upstream connection that carries it
/// (`Upstream::mirror`, state [`UpState::Shadow`]).
pub(crate) struct Mirror {
    /// The request whose body is still being copied; `None` once the copy is whole.
    pub primary: Option<RequestId>,
    cluster: String,
    head: RequestHead,
    /// The connection is established and the head went out on it.
    connected: bool,
    encoder: BodyEncoder,
    /// Body bytes waiting for the connection.
    unsent: VecDeque<Bytes>,
    unsent_bytes: usize,
    /// The request's end and trailers, once the client sent them.
    end: Option<http1::Trailers>,
    end_sent: bool,
    response: Option<MirrorResponse>,
    limits: Limits,
    buffer_limit: usize,
    deadline: Option<Instant>,
    idle_timeout: Duration,
    idle_deadline: Instant,
    start: Instant,
}

struct MirrorResponse {
    status: u16,
    decoder: BodyDecoder,
    keep_alive: bool,
}

impl Mirror {
    /// The earliest instant this mirror must be woken at (`connect`: its connection's connect
    /// deadline, while connecting).
    pub fn next_deadline(&self, connect: Option<Instant>) -> Instant {
        [connect.filter(|_| !self.connected), self.deadline]
            .into_iter()
            .flatten()
            .fold(self.idle_deadline, Instant::min)
    }

    /// Write what is buffered (and the end, once known) to the connection's `out`.
    fn flush(&mut self, out: &mut BytesMut) {
        while let Some(chunk) = self.unsent.pop_front() {
            self.encoder.encode_data(&chunk, out);
        }
        self.unsent_bytes = 0;
        if let Some(trailers) = self.end.as_ref().filter(|_| !self.end_sent) {
            self.encoder.encode_end(trailers, out);
            self.end_sent = true;
        }
    }
}

/// The mirror on open connection `up` and that connection's outgoing buffer, marked for
/// flushing (a free function over the two fields, so the caller keeps `self` for the rest).
fn mirror_out<'a>(
    conns: &'a mut Slab<ConnId, Conn>,
    dirty: &mut Vec<ConnId>,
    up: UpstreamId,
) -> Option<(&'a mut Mirror, &'a mut BytesMut)> {
    let c = conns.get_mut(up.conn())?;
    if c.closing.is_some() {
        return None;
    }
    if !c.dirty {
        c.dirty = true;
        dirty.push(up.conn());
    }
    let Conn {
        side: Side::Up(u),
        out,
        ..
    } = c
    else {
        return None;
    };
    Some((u.mirror.as_deref_mut()?, out))
}

/// Envoy's `shadowAppendedHost`: `-shadow` goes before the port, if there is one.
pub(crate) fn shadow_host(host: &str) -> String {
    // A bracketed IPv6 literal's colons are not a port separator.
    let port_at = match host.rfind(':') {
        Some(i) if !host.get(i..).is_some_and(|tail| tail.contains(']')) => Some(i),
        _ => None,
    };
    match port_at {
        Some(i) => format!("{}-shadow{}", &host[..i], &host[i..]),
        None => format!("{host}-shadow"),
    }
}

impl Engine {
    /// Take the records of mirrored requests finished since the last call.
    pub fn drain_mirror_logs(&mut self) -> Vec<MirrorLog> {
        std::mem::take(&mut self.mirror_logs)
    }

    /// Start the mirrors of request `id`'s route (called with its first attempt, whose host
    /// is picked and whose head is ready).
    pub(crate) fn start_mirrors(&mut self, now: Instant, id: RequestId) {
        let Some(req) = self.requests.get(id) else {
            return;
        };
        // Most routes mirror nothing: answered before the snapshot is held (the checks
        // below, on the held snapshot, give the same answer).
        if req
            .route_config()
            .is_none_or(|route| route.mirrors.is_empty())
            || req.head.upgrade.is_some()
        {
            return;
        }
        // The snapshot is held here, so its route can be read while the engine changes.
        let snapshot = req.snapshot.clone();
        let Some(r) = req.route else {
            return;
        };
        let Some(route) = snapshot
            .config
            .route_tables
            .get(r.table)
            .and_then(|t| t.virtual_hosts.get(r.vhost))
            .and_then(|v| v.routes.get(r.route))
        else {
            return;
        };
        // A connection that upgrades becomes a tunnel: there is no request to copy.
        if route.mirrors.is_empty() || req.head.upgrade.is_some() {
            return;
        }
        let draw = self.rng.next_u64();
        for policy in &route.mirrors {
            #[allow(unused_mut)]
            let mut selected = policy.fraction.selects(draw);
            #[cfg(feature = "mutants")]
            if self.mutations.mirror_percentage_inverted {
                selected = !selected;
            }
            if selected {
                self.start_mirror(now, id, policy, route.timeout);
            }
        }
    }

    fn start_mirror(
        &mut self,
        now: Instant,
        id: RequestId,
        policy: &MirrorPolicy,
        timeout: Option<Duration>,
    ) {
        let Some(slot) = self.clusters.lookup(&policy.cluster) else {
            self.stats.mirror_rq_dropped += 1;
            return;
        };
        let Some(req) = self.requests.get(id) else {
            return;
        };
        let http = &req.snapshot.config.http;
        let mut head = req.head.clone();
        #[allow(unused_mut)]
        let mut suffix = policy.host_suffix;
        #[cfg(feature = "mutants")]
        if self.mutations.mirror_shadow_suffix_always {
            suffix = true;
        }
        if suffix {
            head.authority = shadow_host(&head.authority).into();
        }
        let mirror = Mirror {
            primary: None,
            cluster: policy.cluster.clone(),
            connected: false,
            encoder: BodyEncoder::new(head.framing),
            head,
            unsent: req.body.unsent.iter().cloned().collect(),
            unsent_bytes: req.body.unsent_bytes,
            end: match &req.body.inbound {
                Inbound::Done { trailers } => Some(trailers.clone()),
                Inbound::Reading => None,
            },
            end_sent: false,
            response: None,
            limits: Limits::from(http),
            buffer_limit: http.connection_buffer_bytes,
            deadline: timeout.map(|t| now + t),
            idle_timeout: http.stream_idle_timeout,
            idle_deadline: now + http.stream_idle_timeout,
            start: now,
        };
        if mirror.unsent_bytes > mirror.buffer_limit {
            self.stats.mirror_rq_abandoned += 1;
            return;
        }
        let Some(s) = self.clusters.slot_mut(slot) else {
            return;
        };
        if !s.state.breaker_mut().try_start_request() {
            self.stats.mirror_rq_dropped += 1;
            return;
        }
        let Ok(pick) = s.state.pick_hashed(&mut self.rng, &[], None) else {
            s.state.breaker_mut().request_done();
            self.stats.mirror_rq_dropped += 1;
            return;
        };
        let pooled = s.idle.get_mut(pick.host).and_then(|l| l.pop());
        let up = match pooled {
            Some(up) => up,
            None if s.state.breaker_mut().try_open_connection() => {
                match self.open_connection(now, slot, pick.host, None) {
                    Some(up) => up,
                    None => return,
                }
            }
            None => {
                s.state.breaker_mut().request_done();
                self.stats.mirror_rq_dropped += 1;
                return;
            }
        };
        if let Some(s) = self.clusters.slot_mut(slot) {
            s.state.request_started(pick.host);
        }
        let streaming = mirror.end.is_none();
        let Some(u) = self.conns.up_mut(up) else {
            return;
        };
        u.state = UpState::Shadow;
        u.idle_deadline = None;
        u.requests += 1;
        u.mirror = Some(Box::new(Mirror {
            primary: streaming.then_some(id),
            ..mirror
        }));
        self.stats.mirror_rq_total += 1;
        if streaming {
            if let Some(req) = self.requests.get_mut(id) {
                req.mirrors.push(up);
            }
        }
        if pooled.is_some() {
            self.mirror_connected(now, up);
        }
        self.arm_mirror_timer(up);
    }

    /// The mirror's connection is up: send the head and what of the body is here.
    pub(crate) fn mirror_connected(&mut self, _now: Instant, up: UpstreamId) {
        let Some((m, out)) = mirror_out(&mut self.conns, &mut self.dirty, up) else {
            return;
        };
        if !m.connected {
            m.connected = true;
            http1::encode_request_head(&m.head, out);
        }
        m.flush(out);
        self.set_reading(up, true);
    }

    /// Body bytes of request `id` arrived: copy them to its mirrors.
    pub(crate) fn mirror_body(&mut self, now: Instant, id: RequestId, data: &Bytes) {
        let Some(req) = self.requests.get_mut(id) else {
            return;
        };
        let mut ups = std::mem::take(&mut req.mirrors);
        ups.retain(|&up| self.mirror_push(now, up, data.clone()));
        if let Some(req) = self.requests.get_mut(id) {
            req.mirrors = ups;
        }
    }

    /// Copy `data` to the mirror on `up`; false when that mirror no longer streams.
    fn mirror_push(&mut self, now: Instant, up: UpstreamId, data: Bytes) -> bool {
        let Some((m, out)) = mirror_out(&mut self.conns, &mut self.dirty, up) else {
            return false;
        };
        m.idle_deadline = now + m.idle_timeout;
        m.unsent_bytes += data.len();
        m.unsent.push_back(data);
        if m.connected {
            m.flush(out);
        }
        let over = self.conns.get(up.conn()).is_some_and(|c| match &c.side {
            Side::Up(u) => u
                .mirror
                .as_ref()
                .is_some_and(|m| c.backlog() + m.unsent_bytes > m.buffer_limit),
            Side::Down(_) => false,
        });
        if over {
            self.end_mirror(now, up, MirrorOutcome::Abandoned);
            return false;
        }
        true
    }

    /// Request `id`'s body is whole: its mirrors get its end and go on alone.
    pub(crate) fn mirror_end(&mut self, now: Instant, id: RequestId) {
        let Some(req) = self.requests.get_mut(id) else {
            return;
        };
        let Inbound::Done { trailers } = &req.body.inbound else {
            return;
        };
        let trailers = trailers.clone();
        for up in std::mem::take(&mut req.mirrors) {
            let Some((m, out)) = mirror_out(&mut self.conns, &mut self.dirty, up) else {
                continue;
            };
            m.primary = None;
            m.end = Some(trailers.clone());
            m.idle_deadline = now + m.idle_timeout;
            if m.connected {
                m.flush(out);
            }
        }
    }

    /// Request `id` ends: mirrors still copying its body are cancelled (Envoy's `onDestroy`).
    pub(crate) fn release_mirrors(&mut self, now: Instant, id: RequestId) {
        let Some(req) = self.requests.get_mut(id) else {
            return;
        };
        for up in std::mem::take(&mut req.mirrors) {
            self.end_mirror(now, up, MirrorOutcome::Abandoned);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::shadow_host;

    #[test]
    fn shadow_suffix_goes_before_the_port_as_envoy_puts_it() {
        // shadowAppendedHost in source/common/router/shadow_writer_impl.cc.
        assert_eq!(shadow_host("reviews"), "reviews-shadow");
        assert_eq!(shadow_host("reviews:9080"), "reviews-shadow:9080");
        assert_eq!(shadow_host("[::1]:80"), "[::1]-shadow:80");
        assert_eq!(shadow_host("[::1]"), "[::1]-shadow");
    }
}
