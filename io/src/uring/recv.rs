//! Receiving on io_uring: arming receives, taking their completions, and what a connection
//! has received but the loop has not pulled yet (its inbox).
//!
//! Both paths deliver into the socket's inbox, in order; the loop pulls one entry per read,
//! so backpressure still takes effect between two chunks.
//!
//! The multishot path keeps one receive armed per connection and has four cases the
//! single-shot path never meets:
//!
//! - **Buffer exhaustion.** More receives completed in one batch than the ring has buffers:
//!   the kernel ends the multishot with ENOBUFS. Every buffer is copied out and given back as
//!   its completion is handled, so by the time the loop reads the connection again (the
//!   ENOBUFS completion is an event) the ring is full again, and the read arms a new receive.
//!   Counted in `IoStats::recv_buffers_exhausted`.
//! - **Termination.** Any completion without IORING_CQE_F_MORE (EOF, an error, ENOBUFS, a
//!   cancel) ends the receive; the next read arms another if the connection still wants
//!   bytes.
//! - **Paused reads.** When the engine stops reading (`ReadInterest { enabled: false }`) or
//!   closes, a multishot would keep filling buffers, so it is cancelled. Bytes that arrive
//!   before the cancel lands are kept in the inbox (at most what the ring's buffers held: the
//!   bound is the ring, not the connection) and the loop is nudged to pull them when reading
//!   resumes; the receive is armed again once the cancelled one has ended.
//! - **Close while armed.** The receive is cancelled; its entry in the operation table holds
//!   the descriptor until its last completion, whose buffer (if any) goes back to the ring
//!   even though the connection is gone.

use std::io;

use bytes::{Bytes, BytesMut};
use trellis_engine::ConnId;

use trellis_engine::proxy::ADOPT_MIN;

use super::{os_error, Uring, UringSocket, MIN_RECV_SPARE};
use crate::event_loop::backend::{Conns, Event};
use crate::event_loop::conn::Conn;

/// The allocation small multishot chunks are staged in, per connection that receives.
const STAGING: usize = 4096;

/// One thing a connection received.
pub(super) enum Received {
    Data(Bytes),
    Eof,
    Failed(io::Error),
}

/// The connection a receive's completion is for, if it is still there and that receive is
/// still its own (a completion that outlived its connection finds nothing).
fn receiving(
    conns: &mut Conns<Uring>,
    conn: ConnId,
    user_data: u64,
) -> Option<&mut Conn<UringSocket>> {
    conns
        .get_mut(conn)
        .filter(|c| c.socket.recv_op == Some(user_data))
}

impl Uring {
    /// Keep a receive in flight while the connection wants reads and has nothing waiting.
    pub(super) fn arm_recv(&mut self, conn: &mut Conn<UringSocket>) {
        let wanted = conn.wants_reads();
        let socket = &mut conn.socket;
        if !wanted || socket.recv_op.is_some() || !socket.inbox.is_empty() {
            return;
        }
        if self.multishot {
            socket.recv_stopping = false;
            socket.recv_op = Some(self.ring.recv_multi(conn.id, socket.fd.clone()));
            return;
        }
        let mut buf = socket.buf.take().unwrap_or_default();
        debug_assert!(buf.is_empty(), "{}: receive over bytes not taken", conn.id);
        if buf.capacity() - buf.len() < MIN_RECV_SPARE {
            // The previous allocation stays alive only through the Bytes given out of it.
            buf = BytesMut::with_capacity(self.read_size);
        }
        socket.recv_op = Some(self.ring.recv(conn.id, socket.fd.clone(), buf));
    }

    /// Ask a multishot receive to stop (once); its last completion still comes.
    pub(super) fn stop_multishot(&mut self, socket: &mut UringSocket) {
        if !self.multishot || socket.recv_stopping {
            return;
        }
        if let Some(op) = socket.recv_op {
            self.ring.cancel(op);
            socket.recv_stopping = true;
        }
    }

    /// Give provided buffer `bid` back to the kernel (exactly once per completion).
    pub(super) fn give_back(&mut self, bid: u16) {
        match self.ring.bufs.as_mut() {
            Some(bufs) => bufs.give_back(bid),
            None => debug_assert!(false, "a provided buffer without a ring"),
        }
    }

    /// Copy the `len` bytes of provided buffer `bid` out for `socket`, and give it back.
    /// A chunk the engine will adopt ([`ADOPT_MIN`] bytes and more) gets an allocation of its
    /// own; a smaller one is staged in the socket's buffer, whose allocation serves many
    /// chunks (the engine copies those into its own buffer anyway).
    fn copy_out(&mut self, bid: u16, len: usize, socket: &mut UringSocket) -> Bytes {
        let Some(bufs) = self.ring.bufs.as_mut() else {
            debug_assert!(false, "a provided buffer without a ring");
            return Bytes::new();
        };
        let data = match bufs.filled(bid, len) {
            Some(bytes) if bytes.len() >= ADOPT_MIN => Bytes::copy_from_slice(bytes),
            Some(bytes) => {
                let staged = socket.buf.get_or_insert_with(BytesMut::new);
                if staged.capacity() - staged.len() < bytes.len() {
                    *staged = BytesMut::with_capacity(STAGING.max(bytes.len()));
                }
                staged.extend_from_slice(bytes);
                staged.split().freeze()
            }
            None => Bytes::new(),
        };
        bufs.give_back(bid);
        data
    }

    /// Between batches, every provided buffer is back with the kernel.
    pub(super) fn check_buffers(&self) {
        #[cfg(debug_assertions)]
        if let Some(bufs) = &self.ring.bufs {
            debug_assert_eq!(
                bufs.lent(),
                bufs.count(),
                "a provided buffer was not given back"
            );
        }
    }

    /// A single-shot receive completed into `buf`.
    pub(super) fn received(
        &mut self,
        conn: ConnId,
        user_data: u64,
        result: i32,
        mut buf: BytesMut,
        conns: &mut Conns<Self>,
    ) -> Option<Event> {
        let c = receiving(conns, conn, user_data)?;
        let lingering = c.is_lingering();
        let socket = &mut c.socket;
        socket.recv_op = None;
        // One receive in flight at a time, and none started over bytes not taken.
        debug_assert!(
            socket.inbox.is_empty(),
            "{conn}: receive over bytes not taken"
        );
        match result {
            r if r > 0 => {
                let n = usize::try_from(r).unwrap_or(0);
                let len = buf.len() + n.min(buf.capacity() - buf.len());
                // SAFETY: the kernel initialised `n` bytes of the spare capacity it was
                // given (and `len` never goes past the capacity).
                unsafe { buf.set_len(len) };
                let data = if lingering {
                    buf.clear();
                    Bytes::new()
                } else {
                    buf.split().freeze()
                };
                socket.inbox.push_back(Received::Data(data));
            }
            0 => socket.inbox.push_back(Received::Eof),
            r if -r == libc::ECANCELED => {
                socket.buf = Some(buf);
                return None;
            }
            // Transient: the loop's next read starts another receive.
            r if matches!(-r, libc::EINTR | libc::EAGAIN) => {}
            r => socket.inbox.push_back(Received::Failed(os_error(r))),
        }
        socket.buf = Some(buf);
        Some(Event::Conn {
            id: conn,
            error: false,
        })
    }

    /// A multishot receive completed (`more`: it goes on), with the bytes copied out of its
    /// provided buffer, if it had one.
    pub(super) fn received_multi(
        &mut self,
        conn: ConnId,
        user_data: u64,
        result: i32,
        more: bool,
        lent: &mut Option<u16>,
        conns: &mut Conns<Self>,
    ) -> Option<Event> {
        let c = receiving(conns, conn, user_data)?;
        let lingering = c.is_lingering();
        let socket = &mut c.socket;
        if !more {
            socket.recv_op = None;
            socket.recv_stopping = false;
        }
        match result {
            r if r > 0 => match lent.take() {
                // Lingering: the bytes are thrown away, so not copied.
                Some(bid) if lingering => {
                    self.give_back(bid);
                    socket.inbox.push_back(Received::Data(Bytes::new()));
                }
                Some(bid) => {
                    let len = usize::try_from(r).unwrap_or(0);
                    let data = self.copy_out(bid, len, socket);
                    socket.inbox.push_back(Received::Data(data));
                }
                None => {
                    debug_assert!(false, "{conn}: bytes received without a provided buffer");
                    let e = io::Error::other("multishot receive without a provided buffer");
                    socket.inbox.push_back(Received::Failed(e));
                }
            },
            0 => socket.inbox.push_back(Received::Eof),
            r if -r == libc::ECANCELED => {}
            // The next read arms a new receive, once this batch has given its buffers back.
            r if -r == libc::ENOBUFS => self.buffers_exhausted += 1,
            r if matches!(-r, libc::EINTR | libc::EAGAIN) => {}
            r => socket.inbox.push_back(Received::Failed(os_error(r))),
        }
        if more && !c.wants_reads() {
            // Closing, or the engine paused reads: stop filling buffers for it.
            self.stop_multishot(&mut c.socket);
        }
        Some(Event::Conn {
            id: conn,
            error: false,
        })
    }
}
