//! Read backpressure, as a socket driver would honour it, and the invariant that makes it
//! matter: what a sidecar has written to a client but the client has not read stays bounded.
//!
//! * **Reads.** Bytes that reach a sidecar on an upstream connection are handed to the engine
//!   in read-sized pieces ([`READ_CHUNK`], one `Input::Received` each), like a read loop with a
//!   fixed buffer. After `Output::ReadInterest { enabled: false }` the rest waits in the
//!   connection's `held` queue (the kernel's receive buffer), and a FIN waits behind it; when
//!   reading is switched back on, a `Resume` event hands the held pieces over, one read at a
//!   time, stopping again as soon as the engine says so. A reset is not held: an RST discards
//!   unread data. Downstream connections get their whole request in one read at accept, so
//!   there is nothing to hold there.
//! * **Writes.** In seeds with slow clients (`client_read_bpms`), a sidecar's write to a client
//!   is drained (`Input::WriteDrained`) only once the client has read all of it, at that rate.
//! * **The bound.** The engine stops reading an upstream once its client's backlog reaches
//!   `connection_buffer_bytes`, so that backlog can pass the limit by at most one read (plus a
//!   re-encoded response head). The driver checks, after every write to a client, that its own
//!   count of unread bytes stays within `limit + READ_CHUNK + HEAD_SLACK`. A driver that ignores
//!   read interest ([`super::RunOptions::ignore_read_interest`]) breaks it within a few seeds,
//!   which is the self-test of this invariant.

use std::time::Duration;

use bytes::Bytes;
use trellis_engine::{ConnId, Input};

use super::check::Invariant;
use super::mesh::{Ev, Mesh, Piece};

/// The most bytes one read hands the engine.
pub const READ_CHUNK: usize = 4096;
/// Room for a response head the engine re-encodes on top of the body bytes it read.
const HEAD_SLACK: usize = 1024;

impl Mesh<'_> {
    /// Bytes from the network reach upstream connection `conn` of sidecar `sc`.
    pub(crate) fn arrive_up(
        &mut self,
        sc: usize,
        conn: ConnId,
        data: Bytes,
        completes: bool,
        status: u16,
    ) {
        let Some(up) = self.sidecars[sc].up.get_mut(&conn) else {
            return;
        };
        let mut at = 0;
        while at < data.len() || at == 0 {
            let end = (at + READ_CHUNK).min(data.len());
            up.held.push_back(Piece {
                data: data.slice(at..end),
                completes: completes && end == data.len(),
                status: if at == 0 { status } else { 0 },
            });
            if end == data.len() {
                break;
            }
            at = end;
        }
        self.deliver_up(sc, conn);
    }

    /// Hand held pieces to the engine while it wants to read, then a held FIN.
    pub(crate) fn deliver_up(&mut self, sc: usize, conn: ConnId) {
        loop {
            let Some(up) = self.sidecars[sc].up.get_mut(&conn) else {
                return;
            };
            if !up.reading && !self.opts.ignore_read_interest {
                return;
            }
            let Some(piece) = up.held.pop_front() else {
                break;
            };
            if piece.completes {
                up.busy = false;
                up.idle_since = Some(self.now);
            }
            // Before `attempt_back`, which lets go of an attempt whose response is whole.
            if piece.status != 0 && std::mem::take(&mut up.server.early_hints) {
                self.attempt_interim(sc, conn);
            }
            self.attempt_back(sc, conn, piece.status, piece.completes);
            let Some(up) = self.sidecars[sc].up.get_mut(&conn) else {
                return;
            };
            if piece.status != 0 {
                let (cluster, ep) = (up.cluster, up.ep);
                self.count_head(sc, cluster, ep, piece.status);
            }
            self.engine_input(
                sc,
                Input::Received {
                    conn,
                    data: piece.data,
                },
            );
        }
        if let Some(up) = self.sidecars[sc].up.get_mut(&conn) {
            if std::mem::take(&mut up.held_eof) {
                self.attempt_back(sc, conn, 0, false);
                self.note_conn_failure(sc, conn, true);
                self.engine_input(sc, Input::ReadClosed { conn });
            }
        }
    }

    /// `Output::ReadInterest` from sidecar `sc`'s engine.
    pub(crate) fn read_interest(&mut self, sc: usize, conn: ConnId, enabled: bool) {
        self.trace.u64(conn.0 ^ 0x5ead ^ u64::from(enabled));
        if let Some(d) = self.sidecars[sc].down.get_mut(&conn) {
            let was = d.reading;
            d.reading = enabled;
            if enabled && !was && !d.held.is_empty() {
                self.queue.push(self.now, Ev::Resume { sc, conn });
            }
            return;
        }
        let Some(up) = self.sidecars[sc].up.get_mut(&conn) else {
            return;
        };
        let was = up.reading;
        up.reading = enabled;
        if enabled && !was && (!up.held.is_empty() || up.held_eof) {
            self.queue.push(self.now, Ev::Resume { sc, conn });
        }
    }

    /// The sidecar wrote `len` bytes to the (slow) client of request `req`.
    pub(crate) fn client_written(&mut self, req: usize, len: usize) {
        let rate = self.scn.net.client_read_bpms.max(1);
        let limit = match self.scn.net.buffer_bytes {
            0 => trellis_engine::config::HttpSettings::default().connection_buffer_bytes,
            b => b as usize,
        };
        let now = self.now;
        let r = &mut self.requests[req];
        r.unread += len;
        let unread = r.unread;
        if let Some(d) = self.sidecars[r.sidecar].down.get_mut(&r.conn) {
            d.unread += len;
        }
        let start = r.read_until.max(now);
        r.read_until = start + Duration::from_nanos((len as u64).saturating_mul(1_000_000) / rate);
        let at = r.read_until;
        self.queue.push(at, Ev::ClientRead { req, bytes: len });
        let bound = limit + READ_CHUNK + HEAD_SLACK;
        if unread > bound {
            let msg = format!(
                "request {req}: its sidecar holds {unread} bytes written to the client and not yet \
                 read (buffer limit {limit}, bound {bound})"
            );
            self.violations.report(Invariant::Buffering, now, msg);
        }
    }

    /// The slow client of `req` has read `bytes` more; once it has read everything written,
    /// the sidecar's write is drained.
    pub(crate) fn client_read(&mut self, req: usize, bytes: usize) {
        let r = &mut self.requests[req];
        r.unread = r.unread.saturating_sub(bytes);
        let (sc, conn) = (r.sidecar, r.conn);
        // Drained once the client has read everything written on the connection.
        let Some(d) = self.sidecars[sc].down.get_mut(&conn) else {
            return;
        };
        d.unread = d.unread.saturating_sub(bytes);
        if d.unread == 0 {
            self.engine_input(sc, Input::WriteDrained { conn });
        }
    }
}
