//! What one call leaves for the driver, and the wake-ups it arms: bytes gathered per
//! connection (flushed as one `Output::Send` when the call returns), decided closes, read
//! interest, timers of connections and cluster sweeps, events for the driver to log, and the
//! deferred-work queue ([`Work`]). The lowest layer of the proxy: everything calls it, it
//! calls nothing else.

use super::conn::{Conn, Side};
use super::ids::{ConnId, DownstreamId};
use super::slab::Slab;
use super::timers::TimerOwner;
use super::{Engine, Event, Output, MAX_EVENTS};
use crate::codec::ServerCodec;
use crate::time::Instant;

impl Engine {
    /// Keep `event` for [`Engine::poll_event`], dropping the oldest beyond [`MAX_EVENTS`].
    pub(super) fn push_event(&mut self, event: Event) {
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// Let downstream `id` read its next (pipelined) request once the current call unwinds.
    pub(super) fn queue_resume(&mut self, id: DownstreamId) {
        if let Some(down) = self.conns.open_down_mut(id) {
            if !down.resume_queued {
                down.resume_queued = true;
                self.work.push_back(Work::Resume(id));
            }
        }
    }

    pub(super) fn arm_sweep(&mut self, slot: usize) {
        let Some(s) = self.clusters.slot_mut(slot) else {
            return;
        };
        let Some(at) = s.state.next_timer() else {
            return;
        };
        (self.timers).arm(&mut s.sweep_at, at, TimerOwner::ClusterSweep(slot));
    }

    /// Queue `bytes` for `conn`; flushed at the end of the current call.
    pub(super) fn write(&mut self, conn: impl Into<ConnId>, bytes: &[u8]) {
        let conn = conn.into();
        if let Some(c) = self.conns.get_mut(conn) {
            if c.is_open() {
                c.out.extend_from_slice(bytes);
                if !c.dirty {
                    c.dirty = true;
                    self.dirty.push(conn);
                }
            }
        }
    }

    pub(super) fn mark_dirty(&mut self, conn: ConnId) {
        mark_dirty(&mut self.conns, &mut self.dirty, conn);
    }

    /// Decide to close `conn`; its buffered bytes still go out first when graceful.
    pub(super) fn mark_closing(&mut self, conn: impl Into<ConnId>, graceful: bool) {
        let conn = conn.into();
        if let Some(c) = self.conns.get_mut(conn) {
            if c.closing.is_none() {
                c.closing = Some(graceful);
                if !graceful {
                    c.out.clear();
                }
            }
        }
        self.mark_dirty(conn);
    }

    /// Half-close `conn` (L4 relay): its FIN follows the bytes written so far, at the flush.
    pub(super) fn half_close(&mut self, conn: impl Into<ConnId>) {
        let conn = conn.into();
        if let Some(c) = self.conns.get_mut(conn) {
            if c.is_open() && c.shutdown == super::conn::Shutdown::Open {
                c.shutdown = super::conn::Shutdown::Wanted;
                self.mark_dirty(conn);
            }
        }
    }

    pub(super) fn set_reading(&mut self, conn: impl Into<ConnId>, enabled: bool) {
        let conn = conn.into();
        if let Some(c) = self.conns.get_mut(conn) {
            if c.is_open() && c.reading != enabled {
                c.reading = enabled;
                self.outputs
                    .push_back(Output::ReadInterest { conn, enabled });
            }
        }
    }

    /// Arm the connection's timer for `at` unless an earlier one is already armed.
    pub(super) fn arm_conn_timer(&mut self, conn: impl Into<ConnId>, at: Instant) {
        let conn = conn.into();
        if let Some(c) = self.conns.get_mut(conn) {
            (self.timers).arm(&mut c.wake, at, TimerOwner::Conn(conn));
        }
    }
}

/// The outgoing buffer of an open connection, marked for flushing. A free function over the
/// two fields, so callers can encode straight from a request borrowed from `requests`.
pub(super) fn out_buf<'a>(
    conns: &'a mut Slab<ConnId, Conn>,
    dirty: &mut Vec<ConnId>,
    conn: impl Into<ConnId>,
) -> Option<&'a mut bytes::BytesMut> {
    open_marked(conns, dirty, conn.into()).map(|c| &mut c.out)
}

/// An open connection, marked for flushing (what is written to it goes out with the call).
/// Inline, as `down_writer` (two callers).
#[inline]
fn open_marked<'a>(
    conns: &'a mut Slab<ConnId, Conn>,
    dirty: &mut Vec<ConnId>,
    conn: ConnId,
) -> Option<&'a mut Conn> {
    let c = conns.get_mut(conn)?;
    if !c.is_open() {
        return None;
    }
    if !c.dirty {
        c.dirty = true;
        dirty.push(conn);
    }
    Some(c)
}

/// A client connection's codec and outgoing buffer (marked for flushing), to encode a response
/// into: the codec owns the response's framing, the buffer takes its bytes. `None` once the
/// connection is closing. Inline: a few lines over `open_marked`, and whether it was inlined
/// across codegen units moved with unrelated changes (out of line, ~35 instructions a request).
#[inline]
pub(super) fn down_writer<'a>(
    conns: &'a mut Slab<ConnId, Conn>,
    dirty: &mut Vec<ConnId>,
    down: DownstreamId,
) -> Option<(&'a mut dyn ServerCodec, &'a mut bytes::BytesMut)> {
    let c = open_marked(conns, dirty, down.conn())?;
    match &mut c.side {
        Side::Down(d) => Some((&mut *d.codec, &mut c.out)),
        Side::Up(_) => None,
    }
}

pub(super) fn mark_dirty(conns: &mut Slab<ConnId, Conn>, dirty: &mut Vec<ConnId>, conn: ConnId) {
    if let Some(c) = conns.get_mut(conn) {
        if !c.dirty {
            c.dirty = true;
            dirty.push(conn);
        }
    }
}

/// Work a handler leaves for the engine's top-level loop instead of calling into another
/// handler (which could call back into it: a request the mesh answers itself used to re-enter
/// `on_downstream_data` through `finish_request`, several stack frames per pipelined request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Work {
    /// A request on this downstream connection finished and more bytes are buffered: read
    /// the next request.
    Resume(DownstreamId),
}
