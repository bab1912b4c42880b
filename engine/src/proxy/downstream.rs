//! Client connection events: reading request heads and bodies, protocol errors, header-read
//! and idle timeouts, EOF and resets. (Keep-alive after a request is `reply`'s; tunnels and
//! backpressure are `relay`'s.)
//!
//! Pipelining is handled safely by never looking at the next request before the current one
//! is answered: its bytes wait in the receive buffer (bounded; reading pauses when full).

use std::sync::Arc;

use bytes::BytesMut;

use crate::codec::{DecodeContext, DecodeError, Http1Server, LocalResponse, RequestEvent};
use crate::http1::HeadStr;
use crate::time::Instant;

use crate::transport::{Endpoint, Transport};

use super::api::{Accepted, Event};
use super::conn::{Conn, DownState, Downstream, Side};
use super::ids::{DownstreamId, RequestId};
use super::log::{RequestLog, ResponseFlag};
use super::outbox::down_writer;
use super::request::{Inbound, Phase};
use super::timers::TimerOwner;
use super::Engine;

impl Engine {
    pub(crate) fn accept_downstream(&mut self, now: Instant, accepted: Accepted) -> DownstreamId {
        self.stats.downstream_cx_total += 1;
        let listener = self.snapshot.listener_name_for(accepted.local);
        let idle_timeout = self.snapshot.config.http.idle_timeout;
        let known = listener.is_some();
        let listener = listener.unwrap_or_else(|| Arc::from(""));
        let transport = if known {
            // PeerAuthentication is per workload port: the port the client meant to reach.
            let port = accepted
                .original_dst
                .map_or(accepted.local.port(), |a| a.port());
            let config = self.snapshot.listener_named(&listener).map(|(l, _)| l);
            let mode = config.map(|l| l.mtls.mode_for(port)).unwrap_or_default();
            let endpoint = Endpoint::Downstream {
                listener: &listener,
                peer: accepted.peer,
                local: accepted.local,
                mode,
                terminate: config.and_then(|l| l.tls.as_ref()),
            };
            let identity = self.snapshot.config.identity.as_deref();
            self.transports.transport(now, endpoint, identity)
        } else {
            Ok(Transport::Plain)
        };
        let (transport, refused) = match transport {
            Ok(t) => (t, None),
            Err(error) => (Transport::Plain, Some(error)),
        };
        let peer = accepted.peer;
        let draining = self.drains(&listener);
        let down = Downstream {
            listener,
            peer: accepted.peer,
            local: accepted.local,
            original_dst: accepted.original_dst,
            source_labels: accepted.source_labels,
            recv: BytesMut::new(),
            codec: Box::new(Http1Server::new()),
            read_closed: false,
            state: DownState::Idle,
            close_after_response: false,
            draining,
            resume_queued: false,
            idle_deadline: Some(now + idle_timeout),
            head_deadline: None,
            tcp: None,
        };
        let id =
            DownstreamId::new((self.conns).insert_with(|_| Conn::new(Side::Down(down), transport)));
        if !known {
            // Nothing is configured to listen here: refuse rather than guess.
            self.mark_closing(id, false);
        } else if let Some(error) = refused {
            // No transport could be set up for it (missing credentials): refuse, and say why.
            self.stats.transport_failures += 1;
            self.push_event(Event::TransportFailed {
                conn: id.conn(),
                peer,
                upstream: false,
                error,
            });
            self.mark_closing(id, false);
        } else {
            self.arm_conn_timer(id, now + idle_timeout);
            // An L4 route may take it instead of the HTTP codec.
            self.tcp_accept(now, id);
            if let Some(Conn {
                side:
                    Side::Down(Downstream {
                        state: DownState::Tcp,
                        ..
                    }),
                transport,
                ..
            }) = self.conns.get_mut(id.conn())
            {
                // Pilot's PERMISSIVE chain for a TCP port relays a TLS client that is not a
                // sidecar to the workload, whose TLS it is.
                transport.pass_foreign_tls_through();
            }
        }
        id
    }

    fn down_mut(&mut self, id: DownstreamId) -> Option<&mut Downstream> {
        self.conns.open_down_mut(id)
    }

    /// New bytes (or a finished request) on a downstream connection: make progress.
    pub(crate) fn on_downstream_data(&mut self, now: Instant, id: DownstreamId) {
        loop {
            let Some(down) = self.down_mut(id) else {
                return;
            };
            match down.state {
                DownState::Idle | DownState::ReadingHead => {
                    if down.recv.is_empty() {
                        break;
                    }
                    if down.state == DownState::Idle {
                        // What the client was sent and has not taken bounds how far it may
                        // read ahead: a pipelined request waits (in the bounded receive buffer)
                        // until that drains, so answering many of them needs no more memory.
                        let limit = self.snapshot.config.http.connection_buffer_bytes;
                        if self
                            .conns
                            .get(id.conn())
                            .is_some_and(|c| c.backlog() >= limit)
                        {
                            break;
                        }
                        let Some(down) = self.down_mut(id) else {
                            return;
                        };
                        down.state = DownState::ReadingHead;
                        let at = now + self.snapshot.config.http.header_read_timeout;
                        if let Some(down) = self.down_mut(id) {
                            down.head_deadline = Some(at);
                            down.idle_deadline = None;
                        }
                        self.arm_conn_timer(id, at);
                    }
                    let Some(down) = self.conns.down_mut(id) else {
                        return;
                    };
                    let cx = DecodeContext {
                        limits: &self.limits,
                        pool: &mut self.header_pool,
                    };
                    match down.codec.decode(&mut down.recv, false, cx) {
                        Ok(RequestEvent::Head { stream, head }) => {
                            self.start_request(now, id, stream, head);
                            // Loop: the body (or a pipelined request) may already be here.
                        }
                        Ok(RequestEvent::NeedMore) => {
                            if down.read_closed {
                                // The client gave up mid-head: nothing to answer.
                                self.mark_closing(id, true);
                            }
                            break;
                        }
                        Ok(event) => {
                            debug_assert!(false, "{id:?}: {event:?} between requests");
                            break;
                        }
                        Err(DecodeError::Head(err)) => {
                            self.protocol_error(now, id, err.status(), &err.to_string());
                            return;
                        }
                        Err(DecodeError::Body { stream, error }) => {
                            debug_assert!(false, "{id:?}: {stream:?} body error between requests");
                            self.protocol_error(now, id, 400, &error.to_string());
                            return;
                        }
                    }
                }
                DownState::Active(req) => {
                    let progressed = self.feed_request_body(now, req);
                    if !progressed {
                        break;
                    }
                }
                DownState::Tunnel(up) => {
                    let data = down.recv.split().freeze();
                    if !data.is_empty() {
                        self.write(up, &data);
                    }
                    break;
                }
                DownState::Tcp => {
                    self.on_tcp_down_data(now, id);
                    break;
                }
            }
        }
        self.refresh_backpressure_from_down(now, id);
    }

    /// Decode whatever request body is buffered. Returns true if the state changed in a way
    /// that may let the connection make more progress (the body completed).
    fn feed_request_body(&mut self, now: Instant, req_id: RequestId) -> bool {
        loop {
            let Some(req) = self.requests.get_mut(req_id) else {
                return false;
            };
            // Request policy comes from the request's snapshot, not the one running now.
            let http = &req.snapshot.config.http;
            let (limit, idle) = (http.retry_buffer_bytes, http.stream_idle_timeout);
            let down_id = req.down;
            if req.body.inbound.is_done() {
                return false; // body complete; the rest of the buffer is the next request
            }
            let Some(down) = self.conns.down_mut(down_id) else {
                return false;
            };
            let cx = DecodeContext {
                limits: &self.limits,
                pool: &mut self.header_pool,
            };
            let event = down.codec.decode(&mut down.recv, down.read_closed, cx);
            match event {
                Ok(RequestEvent::Data { stream, data }) => {
                    debug_assert_eq!(stream, req.stream, "{req_id}: data of another stream");
                    req.timers.idle_deadline = Some(now + idle);
                    (self.timers).arm(
                        &mut req.timers.wake,
                        now + idle,
                        TimerOwner::Request(req_id),
                    );
                    let mirrored = (!req.mirrors.is_empty()).then(|| data.clone());
                    req.body.received(data, limit);
                    self.pump_request_body(now, req_id);
                    if let Some(data) = mirrored {
                        self.mirror_body(now, req_id, &data);
                    }
                }
                Ok(RequestEvent::End { stream, trailers }) => {
                    debug_assert_eq!(stream, req.stream, "{req_id}: end of another stream");
                    req.body.inbound = Inbound::Done { trailers };
                    let attempting = matches!(
                        req.phase,
                        Phase::Pending | Phase::Connecting(_) | Phase::Upstream { .. }
                    );
                    let mirrored = !req.mirrors.is_empty();
                    self.pump_request_body(now, req_id);
                    if mirrored {
                        self.mirror_end(now, req_id);
                    }
                    if attempting {
                        self.arm_try_timeout(now, req_id);
                    }
                    return true;
                }
                Ok(RequestEvent::NeedMore) => return false,
                Ok(RequestEvent::Head { stream, .. }) => {
                    debug_assert!(false, "{req_id}: {stream:?} opened while reading a body");
                    return false;
                }
                Err(DecodeError::Head(err)) => {
                    debug_assert!(false, "{req_id}: head error while reading a body: {err}");
                    return false;
                }
                Err(DecodeError::Body { error: err, .. }) => {
                    let started = self
                        .requests
                        .get(req_id)
                        .is_some_and(|r| r.response_started());
                    if started {
                        self.abort_downstream(now, req_id, ResponseFlag::DownstreamProtocolError);
                    } else {
                        let reason = err.to_string();
                        self.local_reply(
                            now,
                            req_id,
                            400,
                            Some(ResponseFlag::DownstreamProtocolError),
                            &reason,
                            &[],
                        );
                    }
                    return false;
                }
            }
        }
    }

    /// Answer a request that could not be parsed, then close (the framing can't be trusted).
    fn protocol_error(&mut self, now: Instant, id: DownstreamId, status: u16, reason: &str) {
        let flag = if status == 408 {
            ResponseFlag::StreamIdleTimeout
        } else {
            ResponseFlag::DownstreamProtocolError
        };
        if let Some((codec, out)) = down_writer(&mut self.conns, &mut self.dirty, id) {
            let local = LocalResponse {
                status,
                headers: &[("x-trellis-response-flags", flag.code())],
                body: reason.as_bytes(),
                close: true,
            };
            codec.encode_connection_error(local, out);
        }
        self.mark_closing(id, true);
        *self.stats.flags.entry(flag).or_default() += 1;
        self.stats.downstream_rq_total += 1;
        if let Some(n) = self
            .stats
            .downstream_rq_by_class
            .get_mut((status / 100) as usize)
        {
            *n += 1;
        }
        let peer = self.conns.down(id).map(|d| d.peer);
        self.logs.push(RequestLog {
            downstream: id.conn(),
            peer,
            start: now,
            duration: std::time::Duration::ZERO,
            method: std::borrow::Cow::Borrowed(""),
            authority: HeadStr::default(),
            path: HeadStr::default(),
            status,
            flags: vec![flag],
            route: None,
            cluster: None,
            upstream_host: None,
            attempts: 0,
            request_body_bytes: 0,
            response_body_bytes: reason.len() as u64,
        });
    }

    pub(crate) fn on_downstream_eof(&mut self, now: Instant, id: DownstreamId) {
        let Some(down) = self.down_mut(id) else {
            return;
        };
        match down.state {
            DownState::Idle | DownState::ReadingHead => {
                if down.recv.is_empty() {
                    self.mark_closing(id, true);
                } else {
                    self.on_downstream_data(now, id);
                }
            }
            DownState::Active(req) => {
                let body_done = self.requests.get(req).is_none_or(|r| r.body_done());
                if body_done {
                    // Half-closed after a whole request: answer it, then close.
                    if let Some(down) = self.down_mut(id) {
                        down.close_after_response = true;
                    }
                } else {
                    // A close-delimited body can't exist in a request; EOF mid-body is an abort,
                    // unless the decoder accepts it (it reports truncation otherwise).
                    self.on_downstream_data(now, id);
                    let still_open = self.requests.get(req).is_some_and(|r| !r.body_done());
                    if still_open {
                        self.on_downstream_gone(now, id);
                        self.mark_closing(id, false);
                    }
                }
            }
            DownState::Tunnel(up) => {
                self.close_upstream(now, up, true);
                self.mark_closing(id, true);
            }
            DownState::Tcp => self.on_tcp_down_eof(now, id),
        }
    }

    /// The client vanished: abandon its request and anything upstream working for it.
    pub(crate) fn on_downstream_gone(&mut self, now: Instant, id: DownstreamId) {
        let Some(down) = self.down_mut(id) else {
            return;
        };
        match down.state {
            DownState::Active(req) => {
                if let Some(r) = self.requests.get_mut(req) {
                    r.response
                        .flags
                        .push(ResponseFlag::DownstreamConnectionTermination);
                }
                *self
                    .stats
                    .flags
                    .entry(ResponseFlag::DownstreamConnectionTermination)
                    .or_default() += 1;
                self.finish_request(now, req);
            }
            DownState::Tunnel(up) => self.close_upstream(now, up, true),
            DownState::Tcp => self.on_tcp_down_gone(now, id),
            _ => {}
        }
    }

    pub(crate) fn on_downstream_timer(&mut self, now: Instant, id: DownstreamId) {
        let Some(down) = self.down_mut(id) else {
            return;
        };
        match down.state {
            DownState::Tcp => self.on_tcp_timer(now, id),
            DownState::ReadingHead if down.head_deadline.is_some_and(|d| d <= now) => {
                self.protocol_error(now, id, 408, "request header read timeout");
            }
            DownState::Idle if down.idle_deadline.is_some_and(|d| d <= now) => {
                self.mark_closing(id, true);
            }
            _ => {
                let next = [down.head_deadline, down.idle_deadline]
                    .into_iter()
                    .flatten()
                    .min();
                if let Some(at) = next {
                    self.arm_conn_timer(id, at);
                }
            }
        }
    }
}
