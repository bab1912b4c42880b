//! This engine's upstream connection pools: getting a connection for an attempt (idle, new
//! within `maxConnections`, or queued within `http1MaxPendingRequests`), sending the request
//! on it, giving back what an attempt held, returning connections to the pool, and keeping
//! the cluster slots in line with the configuration.

use bytes::BytesMut;

use crate::cluster::Outcome;
use crate::config::Config;
use crate::http1;
use crate::time::Instant;

use crate::transport::{Endpoint, Transport};

use super::api::{Event, Output};
use super::conn::{Conn, Side, UpState, Upstream};
use super::ids::{RequestId, UpstreamId};
use super::request::{Inbound, Phase};
use super::{out_buf, Engine};

impl Engine {
    pub(super) fn up_mut(&mut self, id: UpstreamId) -> Option<&mut Upstream> {
        self.conns.open_up_mut(id)
    }

    /// Give request `req` a connection to `host` of `slot`.
    pub(super) fn acquire_connection(
        &mut self,
        now: Instant,
        req: RequestId,
        slot: usize,
        host: usize,
    ) -> Acquired {
        let Some(s) = self.clusters.slot_mut(slot) else {
            return Acquired::Yes;
        };
        // Most recently used first: warm connections, and idle ones age out.
        if let Some(up) = s.idle.get_mut(host).and_then(|l| l.pop()) {
            self.attach(now, req, up);
            return Acquired::Yes;
        }
        if s.state.breaker_mut().try_open_connection() {
            let _ = self.open_connection(now, slot, host, Some(req));
            return Acquired::Yes;
        }
        if s.state.breaker_mut().try_add_pending() {
            s.pending.push_back(req);
            if let Some(r) = self.requests.get_mut(req) {
                r.set_phase(Phase::Pending);
            }
            return Acquired::Yes;
        }
        // No connection, no room to wait: the caller undoes the attempt and answers overflow.
        Acquired::Overflow
    }

    pub(super) fn open_connection(
        &mut self,
        now: Instant,
        slot: usize,
        host: usize,
        req: Option<RequestId>,
    ) -> Option<UpstreamId> {
        let s = self.clusters.slot(slot)?;
        let addr = s.state.host_address(host);
        let generation = s.generation;
        let connect_timeout = s.state.config().pool.connect_timeout;
        let deadline = now + connect_timeout;
        let config = s.state.config();
        let sidecar = config.endpoints.get(host).is_some_and(|e| e.sidecar);
        let endpoint = Endpoint::Upstream {
            cluster: &s.name,
            addr,
            tls: config.tls.for_endpoint(sidecar),
        };
        let identity = self.snapshot.config.identity.as_deref();
        // A transport that cannot be set up fails the connection once it is established
        // (the driver knows the connection from then on); the event says why now.
        let (transport, refused) = match self.transports.transport(now, endpoint, identity) {
            Ok(t) => (t, None),
            Err(error) => {
                let failed = Transport::Failed {
                    last_words: BytesMut::new(),
                };
                (failed, Some(error))
            }
        };
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
            mirror: None,
        };
        let id = UpstreamId::new(
            self.conns
                .insert_with(|_| Conn::new(Side::Up(up), transport)),
        );
        if let Some(error) = refused {
            self.stats.transport_failures += 1;
            self.push_event(Event::TransportFailed {
                conn: id.conn(),
                peer: addr,
                upstream: true,
                error,
            });
        }
        self.stats.upstream_cx_total += 1;
        self.outputs.push_back(Output::Connect {
            conn: id.conn(),
            addr,
        });
        self.arm_conn_timer(id, deadline);
        if let Some(r) = req.and_then(|r| self.requests.get_mut(r)) {
            r.set_phase(Phase::Connecting(id));
        }
        Some(id)
    }

    /// The request no longer wants the connection being established for it.
    pub(super) fn unclaim_connecting(&mut self, up: UpstreamId) {
        if let Some(u) = self.up_mut(up) {
            if let UpState::Connecting(_) = u.state {
                u.state = UpState::Connecting(None);
            }
        }
    }

    /// Put request `req` on connection `up` and send its head and buffered body.
    pub(super) fn attach(&mut self, now: Instant, req_id: RequestId, up_id: UpstreamId) {
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
        req.set_host(host_gen, host, addr);
        if let Some(out) = out_buf(&mut self.conns, &mut self.dirty, up_id) {
            http1::encode_request_head(&req.head, out);
        }
        self.pump_request_body(now, req_id);
        self.set_reading(up_id, true);
    }

    /// Close an upstream connection and give its budget to the next waiting request.
    pub(super) fn close_upstream(&mut self, now: Instant, id: UpstreamId, graceful: bool) {
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
    pub(super) fn serve_pending(&mut self, now: Instant, slot: usize) {
        let Some(s) = self.clusters.slot_mut(slot) else {
            return;
        };
        let Some(req) = s.pending.pop_front() else {
            return;
        };
        s.state.breaker_mut().pending_removed();
        // A request leaves the queue when it stops waiting (`detach_attempt`): whatever is
        // queued is waiting, with the host it was picked for.
        let waiting = self.requests.get(req);
        debug_assert!(
            waiting.is_some_and(|r| r.phase == Phase::Pending && r.tries.host.is_some()),
            "{req} queued on slot {slot} while {:?}",
            waiting.map(|r| r.phase)
        );
        let Some(host) = waiting.and_then(|r| r.tries.host).map(|(_, h, _)| h) else {
            return;
        };
        if let Some(up) = s.idle.get_mut(host).and_then(|l| l.pop()) {
            self.attach(now, req, up);
        } else if s.state.breaker_mut().try_open_connection() {
            let _ = self.open_connection(now, slot, host, Some(req));
        } else {
            s.pending.push_front(req);
            let _ = s.state.breaker_mut().try_add_pending();
        }
    }

    /// A connection finished a request (or connected with nobody waiting): pool it, or pass it
    /// straight to a pending request.
    pub(super) fn release_upstream(&mut self, now: Instant, id: UpstreamId) {
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
            debug_assert!(
                self.requests
                    .get(req)
                    .is_some_and(|r| r.phase == Phase::Pending),
                "{req} queued on slot {slot} is not waiting"
            );
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
        #[cfg(feature = "mutants")]
        if crate::mutants::route().pool_idle_timer_never_armed {
            up.idle_deadline = None;
        }
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

    /// Move buffered body bytes to the attempt's upstream connection once the head went out.
    pub(super) fn pump_request_body(&mut self, _now: Instant, req_id: RequestId) {
        let Some(req) = self.requests.get_mut(req_id) else {
            return;
        };
        // Only an attached attempt has sent its head: the body follows it.
        let Phase::Upstream { up, end_sent } = req.phase else {
            return;
        };
        let trailers = match &req.body.inbound {
            Inbound::Done { trailers } if !end_sent => Some(trailers),
            _ => None,
        };
        if req.body.unsent.is_empty() && trailers.is_none() {
            return;
        }
        let Some(out) = out_buf(&mut self.conns, &mut self.dirty, up) else {
            return;
        };
        while let Some(chunk) = req.body.unsent.pop_front() {
            req.encoder.encode_data(&chunk, out);
        }
        req.body.unsent_bytes = 0;
        if let Some(trailers) = trailers {
            // Trailers stay with the request: a retry replays them too.
            req.encoder.encode_end(trailers, out);
            req.set_phase(Phase::Upstream { up, end_sent: true });
        }
    }

    /// Give up the current attempt's upstream resources; `outcome` feeds outlier detection.
    pub(super) fn detach_attempt(&mut self, now: Instant, id: RequestId, outcome: Option<Outcome>) {
        let Some(req) = self.requests.get_mut(id) else {
            return;
        };
        let phase = req.phase;
        req.set_phase(Phase::Done);
        let host = req.tries.host.take();
        let slot = req.slot;
        let holds_request = std::mem::take(&mut req.tries.holds_request);
        req.timers.try_deadline = None;
        match phase {
            Phase::Pending => {
                if let Some(s) = slot.and_then(|s| self.clusters.slot_mut(s)) {
                    if let Some(pos) = s.pending.iter().position(|&r| r == id) {
                        s.pending.remove(pos);
                        s.state.breaker_mut().pending_removed();
                    }
                }
            }
            Phase::Connecting(up) => {
                // Let the connection finish; it joins the pool for someone else.
                self.unclaim_connecting(up);
            }
            Phase::Upstream { up, .. } => {
                self.close_upstream(now, up, false);
            }
            _ => {}
        }
        if let (Some(slot), Some((generation, host, addr))) = (slot, host) {
            if let Some(s) = self.clusters.slot_mut(slot) {
                let host = s.resolve_host(generation, host, addr);
                if let Some(host) = host {
                    if matches!(phase, Phase::Upstream { .. }) {
                        s.state.request_finished(host);
                    }
                    if let Some(outcome) = outcome {
                        s.state.report(now, host, outcome);
                        self.arm_sweep(slot);
                    }
                }
            }
        }
        if holds_request {
            if let Some(s) = slot.and_then(|s| self.clusters.slot_mut(s)) {
                s.state.breaker_mut().request_done();
            }
        }
    }

    /// The passthrough cluster slot for `addr`; retired slots are collected when too many
    /// destinations have been seen, so memory stays bounded.
    pub(super) fn passthrough_slot(
        &mut self,
        now: Instant,
        target: super::routing::PassthroughTarget,
    ) -> usize {
        const MAX_UNCONFIGURED: usize = 256;
        if self.clusters.unconfigured_count() >= MAX_UNCONFIGURED {
            self.collect_cluster_garbage();
        }
        self.clusters
            .passthrough(target.addr, target.cluster, now)
            .0
    }

    pub(super) fn install_clusters(&mut self, config: &Config, now: Instant) {
        let conns = &self.conns;
        let result = self
            .clusters
            .apply(config, now, |id| conns.up(id).map(|up| up.addr));
        for conn in result.orphaned_idle {
            self.close_upstream(now, conn, false);
        }
        for slot in result.rearm {
            self.arm_sweep(slot);
        }
        self.collect_cluster_garbage();
    }

    /// Frees retired and passthrough cluster slots no live request or connection refers to.
    pub(super) fn collect_cluster_garbage(&mut self) {
        let mut referenced = vec![false; self.clusters.slots.len()];
        for (_, req) in self.requests.iter() {
            if let Some(r) = req.slot.and_then(|slot| referenced.get_mut(slot)) {
                *r = true;
            }
        }
        for (_, conn) in self.conns.iter() {
            if let Side::Up(up) = &conn.side {
                if let Some(r) = referenced.get_mut(up.slot) {
                    *r = true;
                }
            }
        }
        self.clusters.collect_garbage(&referenced);
        #[cfg(feature = "mutants")]
        self.spread_mutations();
    }

    /// Switch this engine's planted bugs on in the route matcher and every cluster slot.
    #[cfg(feature = "mutants")]
    pub(super) fn spread_mutations(&mut self) {
        crate::mutants::set_route(&self.mutations);
        for s in self.clusters.slots.iter_mut().flatten() {
            s.state.set_mutations(self.mutations);
        }
    }
}

/// Whether a request got a connection (attached, connecting, or queued for one).
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Acquired {
    Yes,
    /// No connection and no room to wait: the circuit breaker's overflow.
    Overflow,
}
