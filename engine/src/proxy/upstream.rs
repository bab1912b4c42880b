//! Upstream connections and this engine's pool: getting a connection for an attempt (idle,
//! new within `maxConnections`, or queued within `http1MaxPendingRequests`), sending the
//! request, connection life events, and returning connections to the pool.

use bytes::BytesMut;

use crate::cluster::Outcome;
use crate::http1::{self};
use crate::time::Instant;

use super::api::Output;
use super::conn::{Conn, Side, UpState, Upstream};
use super::ids::{RequestId, UpstreamId};
use super::log::ResponseFlag;
use super::request::{Failure, Phase};
use super::{out_buf, Engine};

impl Engine {
    pub(crate) fn up_mut(&mut self, id: UpstreamId) -> Option<&mut Upstream> {
        self.conns.open_up_mut(id)
    }

    /// Give request `req` a connection to `host` of `slot`.
    pub(crate) fn acquire_connection(
        &mut self,
        now: Instant,
        req: RequestId,
        slot: usize,
        host: usize,
    ) {
        let Some(s) = self.clusters.slot_mut(slot) else {
            return;
        };
        // Most recently used first: warm connections, and idle ones age out.
        if let Some(up) = s.idle.get_mut(host).and_then(|l| l.pop()) {
            self.attach(now, req, up);
            return;
        }
        if s.state.breaker_mut().try_open_connection() {
            self.open_connection(now, slot, host, Some(req));
            return;
        }
        if s.state.breaker_mut().try_add_pending() {
            s.pending.push_back(req);
            if let Some(r) = self.requests.get_mut(req) {
                r.set_phase(Phase::Pending);
            }
            return;
        }
        // No connection, no room to wait: undo the attempt and answer overflow.
        self.overflow(now, req);
    }

    fn open_connection(&mut self, now: Instant, slot: usize, host: usize, req: Option<RequestId>) {
        let Some(s) = self.clusters.slot(slot) else {
            return;
        };
        let addr = s.state.host_address(host);
        let generation = s.generation;
        let connect_timeout = s.state.config().pool.connect_timeout;
        let deadline = now + connect_timeout;
        let up = Upstream {
            slot,
            host,
            host_gen: generation,
            addr,
            recv: BytesMut::new(),
            state: UpState::Connecting(req),
            read_closed: false,
            requests: 0,
            connect_deadline: Some(deadline),
            idle_deadline: None,
        };
        let id = UpstreamId::new(self.conns.insert_with(|_| Conn::new(Side::Up(up))));
        self.stats.upstream_cx_total += 1;
        self.outputs.push_back(Output::Connect {
            conn: id.conn(),
            addr,
        });
        self.arm_conn_timer(id, deadline);
        if let Some(r) = req.and_then(|r| self.requests.get_mut(r)) {
            r.set_phase(Phase::Connecting(id));
        }
    }

    /// The request no longer wants the connection being established for it.
    pub(crate) fn unclaim_connecting(&mut self, up: UpstreamId) {
        if let Some(u) = self.up_mut(up) {
            if let UpState::Connecting(_) = u.state {
                u.state = UpState::Connecting(None);
            }
        }
    }

    /// Put request `req` on connection `up` and send its head and buffered body.
    fn attach(&mut self, now: Instant, req_id: RequestId, up_id: UpstreamId) {
        let Some(up) = self.up_mut(up_id) else {
            return;
        };
        // A connection carries one request at a time: a pooled one or a fresh one.
        debug_assert!(
            matches!(up.state, UpState::Idle | UpState::Connecting(_)),
            "{up_id:?} attached to {req_id} while {:?}",
            up.state
        );
        up.state = UpState::Busy(req_id);
        up.idle_deadline = None;
        up.requests += 1;
        let (slot, host, host_gen, addr) = (up.slot, up.host, up.host_gen, up.addr);
        if let Some(s) = self.clusters.slot_mut(slot) {
            let host = s.resolve_host(host_gen, host, addr);
            if let Some(h) = host {
                s.state.request_started(h);
            }
        }
        let Some(req) = self.requests.get_mut(req_id) else {
            return;
        };
        req.set_phase(Phase::Upstream {
            up: up_id,
            end_sent: false,
        });
        // The connection may serve another host than the one picked (pending hand-off).
        req.host = Some((host_gen, host, addr));
        if let Some(out) = out_buf(&mut self.conns, &mut self.dirty, up_id) {
            http1::encode_request_head(&req.head, out);
        }
        self.pump_request_body(now, req_id);
        self.set_reading(up_id, true);
    }

    pub(crate) fn on_connected(&mut self, now: Instant, id: UpstreamId) {
        let Some(up) = self.up_mut(id) else {
            return;
        };
        up.connect_deadline = None;
        let UpState::Connecting(req) = up.state else {
            return;
        };
        match req.filter(|r| self.requests.contains(*r)) {
            Some(req) => self.attach(now, req, id),
            None => self.release_upstream(now, id),
        }
    }

    pub(crate) fn on_connect_failed(&mut self, now: Instant, id: UpstreamId) {
        let Some(up) = self.up_mut(id) else {
            return;
        };
        let UpState::Connecting(req) = up.state else {
            return;
        };
        let (slot, host, host_gen, addr) = (up.slot, up.host, up.host_gen, up.addr);
        self.close_upstream(now, id, false);
        match req.filter(|r| self.requests.contains(*r)) {
            Some(req) => {
                if let Some(r) = self.requests.get_mut(req) {
                    r.set_phase(Phase::Done); // the connection is already gone
                    r.host = Some((host_gen, host, addr));
                }
                self.attempt_failed(now, req, Failure::ConnectFailed);
            }
            None => {
                // Nobody waited for it, but the host still failed to accept a connection.
                if let Some(s) = self.clusters.slot_mut(slot) {
                    let host = s.resolve_host(host_gen, host, addr);
                    if let Some(h) = host {
                        s.state.report(now, h, Outcome::ConnectFailed);
                    }
                }
                self.arm_sweep(slot);
            }
        }
    }

    /// Close an upstream connection and give its budget to the next waiting request.
    pub(crate) fn close_upstream(&mut self, now: Instant, id: UpstreamId, graceful: bool) {
        let Some(up) = self.up_mut(id) else {
            return;
        };
        let (slot, host, host_gen, addr, state) =
            (up.slot, up.host, up.host_gen, up.addr, up.state);
        self.mark_closing(id, graceful);
        let Some(s) = self.clusters.slot_mut(slot) else {
            return;
        };
        s.state.breaker_mut().connection_closed();
        if state == UpState::Idle {
            let host = s.resolve_host(host_gen, host, addr);
            if let Some(list) = host.and_then(|h| s.idle.get_mut(h)) {
                list.retain(|&c| c != id);
            }
        }
        // A connection's worth of budget is free: the oldest waiting request may open one.
        self.serve_pending(now, slot);
    }

    /// Hand a freed connection budget to the oldest pending request of `slot`.
    fn serve_pending(&mut self, now: Instant, slot: usize) {
        let Some(s) = self.clusters.slot_mut(slot) else {
            return;
        };
        let Some(req) = s.pending.pop_front() else {
            return;
        };
        s.state.breaker_mut().pending_removed();
        let host = self
            .requests
            .get(req)
            .and_then(|r| r.host)
            .map(|(_, h, _)| h);
        let Some(host) = host else {
            return;
        };
        let Some(s) = self.clusters.slot_mut(slot) else {
            return;
        };
        if let Some(up) = s.idle.get_mut(host).and_then(|l| l.pop()) {
            self.attach(now, req, up);
        } else if s.state.breaker_mut().try_open_connection() {
            self.open_connection(now, slot, host, Some(req));
        } else {
            s.pending.push_front(req);
            let _ = s.state.breaker_mut().try_add_pending();
        }
    }

    /// A connection finished a request (or connected with nobody waiting): pool it, or pass it
    /// straight to a pending request.
    pub(crate) fn release_upstream(&mut self, now: Instant, id: UpstreamId) {
        let Some(up) = self.up_mut(id) else {
            return;
        };
        let (slot, host, host_gen, addr) = (up.slot, up.host, up.host_gen, up.addr);
        let Some(s) = self.clusters.slot_mut(slot) else {
            self.close_upstream(now, id, true);
            return;
        };
        let limit = s.state.config().pool.max_requests_per_connection;
        let idle_timeout = s.state.config().pool.idle_timeout;
        let host = s.resolve_host(host_gen, host, addr);
        #[allow(unused_mut)]
        let mut spent = limit != 0 && self.up_mut(id).is_some_and(|u| u.requests >= limit);
        #[cfg(feature = "mutants")]
        if self.mutations.requests_per_connection_off_by_one {
            spent = limit != 0 && self.up_mut(id).is_some_and(|u| u.requests > limit);
        }
        let Some(host) = host.filter(|_| !spent) else {
            self.close_upstream(now, id, true);
            return;
        };
        let Some(s) = self.clusters.slot_mut(slot) else {
            return;
        };
        // A connection to an ejected host is not handed to a pending request either: that
        // request was picked for another host (or before the ejection, for a host whose own
        // connection then serves it), and the ejected host must get no new request. Closing
        // frees the budget, and `close_upstream` serves the pending request on its own host.
        #[allow(unused_mut)]
        let mut ejected = s.state.is_ejected(host);
        #[cfg(feature = "mutants")]
        if self.mutations.handoff_to_ejected {
            ejected = ejected && s.pending.is_empty();
        }
        if s.retired || ejected {
            self.close_upstream(now, id, true);
            return;
        }
        let generation = s.generation;
        if let Some(req) = s.pending.pop_front() {
            s.state.breaker_mut().pending_removed();
            if let Some(up) = self.up_mut(id) {
                up.state = UpState::Idle; // free, and handed over at once
                up.host = host;
                up.host_gen = generation;
            }
            self.attach(now, req, id);
            return;
        }
        let Some(up) = self.up_mut(id) else {
            return;
        };
        up.state = UpState::Idle;
        up.host = host;
        up.host_gen = generation;
        up.recv.clear();
        up.idle_deadline = idle_timeout.map(|t| now + t);
        let deadline = up.idle_deadline;
        if let Some(list) = self
            .clusters
            .slot_mut(slot)
            .and_then(|s| s.idle.get_mut(host))
        {
            list.push(id);
        }
        if let Some(at) = deadline {
            self.arm_conn_timer(id, at);
        }
        self.set_reading(id, true);
    }

    pub(crate) fn on_upstream_timer(&mut self, now: Instant, id: UpstreamId) {
        let Some(up) = self.up_mut(id) else {
            return;
        };
        match up.state {
            UpState::Connecting(_) if up.connect_deadline.is_some_and(|d| d <= now) => {
                self.on_connect_failed(now, id);
            }
            UpState::Idle if up.idle_deadline.is_some_and(|d| d <= now) => {
                self.close_upstream(now, id, true);
            }
            _ => {
                let next = match up.state {
                    UpState::Connecting(_) => up.connect_deadline,
                    UpState::Idle => up.idle_deadline,
                    _ => None,
                };
                if let Some(at) = next {
                    self.arm_conn_timer(id, at);
                }
            }
        }
    }

    pub(crate) fn on_upstream_data(&mut self, now: Instant, id: UpstreamId) {
        let Some(up) = self.up_mut(id) else {
            return;
        };
        match up.state {
            UpState::Busy(req) => self.relay_response(now, id, req),
            UpState::Tunnel(down) => {
                let data = up.recv.split().freeze();
                self.write(down, &data);
                self.refresh_backpressure_from_up(now, id);
            }
            UpState::Idle => {
                // Bytes nobody asked for: the connection's framing is lost; drop it.
                self.close_upstream(now, id, false);
            }
            UpState::Connecting(_) => {}
        }
    }

    pub(crate) fn on_upstream_eof(&mut self, now: Instant, id: UpstreamId) {
        let Some(up) = self.up_mut(id) else {
            return;
        };
        match up.state {
            UpState::Busy(req) => self.relay_response(now, id, req),
            UpState::Tunnel(down) => {
                self.mark_closing(down, true);
                self.close_upstream(now, id, true);
            }
            UpState::Idle => self.close_upstream(now, id, true),
            UpState::Connecting(_) => self.on_connect_failed(now, id),
        }
        // A response that needed more bytes than EOF allows was cut short.
        if let Some(up) = self.up_mut(id) {
            if let UpState::Busy(req) = up.state {
                let started = self.requests.get(req).is_some_and(|r| r.response_started());
                if started {
                    self.abort_downstream(now, req, ResponseFlag::UpstreamConnectionTermination);
                }
            }
        }
    }

    pub(crate) fn on_upstream_gone(&mut self, now: Instant, id: UpstreamId) {
        let Some(up) = self.up_mut(id) else {
            return;
        };
        up.read_closed = true;
        let reset = super::response::reset_kind(up);
        match up.state {
            UpState::Busy(req) => {
                let started = self.requests.get(req).is_some_and(|r| r.response_started());
                if started {
                    // Let a close-delimited body finish; anything else was truncated.
                    self.relay_response(now, id, req);
                    if self.requests.contains(req) {
                        self.abort_downstream(
                            now,
                            req,
                            ResponseFlag::UpstreamConnectionTermination,
                        );
                    }
                } else {
                    self.attempt_failed(now, req, reset);
                }
            }
            UpState::Tunnel(down) => self.mark_closing(down, true),
            UpState::Connecting(_) => self.on_connect_failed(now, id),
            UpState::Idle => {}
        }
        // The driver already closed it; release its breaker budget (the caller drops it
        // without a Close output).
        if self.up_mut(id).is_some() {
            self.close_upstream(now, id, false);
        }
    }

    /// Recompute read interest after the upstream side drained or buffered more.
    pub(crate) fn refresh_backpressure_from_up(&mut self, now: Instant, up_id: UpstreamId) {
        let down = match self.conns.up(up_id) {
            Some(up) => match up.state {
                UpState::Busy(req) => self.requests.get(req).map(|r| r.down),
                UpState::Tunnel(down) => Some(down),
                _ => None,
            },
            _ => None,
        };
        if let Some(down) = down {
            self.refresh_backpressure_from_down(now, down);
        }
    }
}
