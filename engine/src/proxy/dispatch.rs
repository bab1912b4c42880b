//! The dispatcher: inputs routed to the handlers of their connection's side, the
//! deferred-work loop that runs what handlers queued (instead of their calling back into each
//! other), timers popped to their owners, and the flush that turns each connection's gathered
//! writes and decided closes into outputs once a call is done.

use super::conn::{self, Side};
use super::ids::{ConnId, DownstreamId, UpstreamId};
use super::outbox::Work;
use super::timers::TimerOwner;
use super::{intake, Engine, Event, Output};
use crate::time::Instant;
use crate::transport::TransformError;

impl Engine {
    /// Do the deferred work, including whatever it defers in turn. The queue holds at most one
    /// entry per downstream connection, and each handler runs from here with a flat stack.
    pub(super) fn run_work(&mut self, now: Instant) {
        while let Some(work) = self.work.pop_front() {
            match work {
                Work::Resume(id) => {
                    let Some(down) = self.conns.down_mut(id) else {
                        continue;
                    };
                    debug_assert!(down.resume_queued, "a queued resume is flagged");
                    down.resume_queued = false;
                    self.on_downstream_data(now, id);
                }
            }
        }
    }

    pub(super) fn on_sweep_timer(&mut self, now: Instant, at: Instant, slot: usize) {
        let Some(s) = self.clusters.slot_mut(slot) else {
            return;
        };
        if s.sweep_at != Some(at) {
            return;
        }
        s.sweep_at = None;
        let returned = s.state.on_timer(now);
        self.stats.outlier_returns += returned.len() as u64;
        self.arm_sweep(slot);
    }

    /// Removes stale timer entries once they clearly outnumber the live owners. Without this a
    /// finished request's entry (e.g. its 5-minute stream idle deadline) would stay in the heap
    /// until it expired: memory proportional to request rate × timeout.
    pub(super) fn compact_timers(&mut self) {
        let live = self.conns.len() + self.requests.len() + self.clusters.slots.len();
        if self.timers.len() <= 2 * live + 1024 {
            return;
        }
        let (conns, requests, clusters) = (&self.conns, &self.requests, &self.clusters);
        self.timers.retain(|at, owner| match owner {
            TimerOwner::Conn(id) => conns.get(id).is_some_and(|c| c.wake == Some(at)),
            TimerOwner::Request(id) => requests.get(id).is_some_and(|r| r.timers.wake == Some(at)),
            TimerOwner::ClusterSweep(slot) => {
                clusters.slot(slot).is_some_and(|s| s.sweep_at == Some(at))
            }
        });
    }

    /// Turn buffered writes and decided closes into outputs, in connection order of marking.
    pub(super) fn flush(&mut self) {
        debug_assert!(
            self.work.is_empty(),
            "deferred work is done before a call returns"
        );
        self.compact_timers();
        #[cfg(debug_assertions)]
        self.check_invariants();
        // Take the list and give it back afterwards, keeping its capacity.
        let mut dirty = std::mem::take(&mut self.dirty);
        for id in dirty.drain(..) {
            let Some(c) = self.conns.get_mut(id) else {
                continue;
            };
            // The flag keeps a connection in the list once, so it is flushed once.
            debug_assert!(c.dirty, "{id} is in the dirty list unmarked");
            c.dirty = false;
            if c.transport.is_plain() {
                if !c.out.is_empty() {
                    let data = c.out.split().freeze();
                    c.unacked += data.len();
                    self.outputs.push_back(Output::Send { conn: id, data });
                }
            } else {
                let mut wire = bytes::BytesMut::new();
                c.transport.seal_into(&mut c.out, &mut wire);
                if c.closing == Some(true) || c.shutdown == conn::Shutdown::Wanted {
                    // The protocol's close (TLS close_notify) goes after the last bytes the
                    // codec wrote: a peer stops reading at close_notify, so a response
                    // sealed behind it would be lost.
                    c.transport.close();
                    c.transport.seal_into(&mut c.out, &mut wire);
                }
                if !wire.is_empty() {
                    c.unacked += wire.len();
                    let data = wire.freeze();
                    self.outputs.push_back(Output::Send { conn: id, data });
                }
            }
            if c.shutdown == conn::Shutdown::Wanted && c.closing.is_none() {
                // A half-close: the FIN goes after this call's bytes (L4 relays, `tcp`).
                c.shutdown = conn::Shutdown::Sent;
                self.outputs.push_back(Output::Shutdown { conn: id });
            }
            if let Some(graceful) = c.closing {
                debug_assert!(graceful || c.out.is_empty(), "{id}: a reset sends nothing");
                self.outputs.push_back(Output::Close { conn: id, graceful });
                self.conns.remove(id);
            }
        }
        self.dirty = dirty;
    }

    pub(super) fn on_conn_timer(&mut self, now: Instant, at: Instant, id: ConnId) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        if c.wake != Some(at) || !c.is_open() {
            return;
        }
        c.wake = None;
        match c.side {
            Side::Down(_) => self.on_downstream_timer(now, DownstreamId::new(id)),
            Side::Up(_) => self.on_upstream_timer(now, UpstreamId::new(id)),
        }
    }

    pub(super) fn on_write_drained(&mut self, now: Instant, id: ConnId) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        c.unacked = 0;
        match &c.side {
            Side::Down(down) => {
                // A pipelined request may have waited for the client to take its answers.
                let waiting = down.state == conn::DownState::Idle && !down.recv.is_empty();
                let id = DownstreamId::new(id);
                self.refresh_backpressure_from_down(now, id);
                if waiting {
                    self.queue_resume(id);
                }
            }
            Side::Up(_) => self.refresh_backpressure_from_up(now, UpstreamId::new(id)),
        }
    }

    pub(super) fn on_received(&mut self, now: Instant, id: ConnId, data: bytes::Bytes) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        if !c.is_open() {
            return;
        }
        let (recv, read_closed) = match &mut c.side {
            Side::Down(down) => (&mut down.recv, down.read_closed),
            Side::Up(up) => (&mut up.recv, up.read_closed),
        };
        if c.transport.is_plain() {
            // Plain bytes are the codec's bytes: adopted whole when large (see `intake`).
            intake::take_in(recv, data);
        } else if let Err(error) = c.transport.receive(now, &data, recv) {
            // The transform turns socket bytes into the codec's bytes.
            self.on_transport_failed(now, id, error);
            return;
        }
        let peer_closed = c.transport.is_peer_closed() && !read_closed;
        let is_down = matches!(c.side, Side::Down(_));
        if c.transport.wants_write() {
            // A handshake step or an alert to answer, whatever the codec does.
            self.mark_dirty(id);
        }
        if is_down {
            self.on_downstream_data(now, DownstreamId::new(id));
        } else {
            self.on_upstream_data(now, UpstreamId::new(id));
        }
        if peer_closed {
            // The transform's own close (TLS close_notify) is the codec's EOF.
            self.on_read_closed(now, id);
        }
    }

    /// A connection's transform failed: say why, send its alert, and end the connection as if
    /// the peer had reset it (its request fails or retries as for a reset).
    pub(super) fn on_transport_failed(&mut self, now: Instant, id: ConnId, error: TransformError) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        c.transport.fail();
        let (peer, upstream) = match &c.side {
            Side::Down(d) => (d.peer, false),
            Side::Up(u) => (u.addr, true),
        };
        self.stats.transport_failures += 1;
        self.push_event(Event::TransportFailed {
            conn: id,
            peer,
            upstream,
            error,
        });
        if upstream {
            let up = UpstreamId::new(id);
            self.on_upstream_gone(now, up);
        } else {
            let down = DownstreamId::new(id);
            self.on_downstream_gone(now, down);
            // Graceful: the alert goes out before the close.
            self.mark_closing(down, true);
        }
    }

    pub(super) fn on_read_closed(&mut self, now: Instant, id: ConnId) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        if !c.is_open() {
            return;
        }
        match &mut c.side {
            Side::Down(down) => {
                down.read_closed = true;
                self.on_downstream_eof(now, DownstreamId::new(id));
            }
            Side::Up(up) => {
                up.read_closed = true;
                self.on_upstream_eof(now, UpstreamId::new(id));
            }
        }
    }

    pub(super) fn on_closed(&mut self, now: Instant, id: ConnId) {
        let Some(c) = self.conns.get(id) else {
            return;
        };
        if !c.is_open() {
            // We asked for it; the driver confirms.
            self.conns.remove(id);
            return;
        }
        match c.side {
            Side::Down(_) => self.on_downstream_gone(now, DownstreamId::new(id)),
            Side::Up(_) => self.on_upstream_gone(now, UpstreamId::new(id)),
        }
        // The peer is gone: nothing more to send, and no Close output is owed.
        self.conns.remove(id);
    }
}
