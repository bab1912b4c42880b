//! Sending on io_uring: a direct send first, a ring send for what the socket would not take.
//!
//! Why not just a ring send per `Output::Send`: its completion is a wake-up of its own. A
//! proxied request sends once on each side, so two of the four loop turns per request were
//! send completions carrying nothing but "done" (bench/RESULTS.md, "Runtime syscalls and
//! wake-ups per request").
//!
//! Why not `IOSQE_CQE_SKIP_SUCCESS` on the sends, the lever the issue named. Read exactly,
//! the kernel's rules make it unusable here:
//! - without `MSG_WAITALL` a short send is a success (`io_uring_prep_send(3)`: "a short send
//!   isn't considered an error condition"; `io_sendmsg` fails the request only when
//!   `ret < min_ret`, and `min_ret` is 1 unless `MSG_WAITALL` is set), so its completion is
//!   skipped and the bytes it did not write would be lost without a word;
//! - with `MSG_WAITALL` (Linux 5.19, commit 4c3c0943 "support MSG_WAITALL for
//!   IORING_OP_SEND(MSG)") the kernel retries a stream socket's short send until all is
//!   written, and a send that fails after a partial write posts its completion with the bytes
//!   written (`req_set_fail` clears the skip flag). That part is exact. But a send that
//!   succeeds then posts nothing at all, ever, and this backend needs to know when it ended:
//!   the chunks it points at must stay alive until the kernel has copied them, and the next
//!   send on the socket may only start after it (two sends in flight on one socket may
//!   interleave: io_uring orders nothing without links, and links only join entries of one
//!   submission). A send that could not run inline (socket full) is parked in the kernel
//!   with no way to ask whether it is done.
//!
//! So the send is made directly instead: a non-blocking `sendmsg` (`MSG_DONTWAIT`) from the
//! send queue, in the turn the engine asked for it. Its return value is exact, the socket
//! takes a request or a response whole nearly always, and nothing is left to complete, so
//! no completion and no wake-up follow. What the socket does not take (a short send or
//! EAGAIN: its buffer is full) goes to a ring send with `MSG_WAITALL`, which the kernel
//! finishes on its own as space frees and completes once, with the bytes written or the
//! error; its result is applied at the next write, which starts the next send. Per proxied
//! request that is two `sendmsg` syscalls in place of two completion turns: the syscalls
//! stay at four (two `io_uring_enter`s, two `sendmsg`s), the wake-ups halve and the ring
//! operations go to zero. `RunOptions::direct_sends` false keeps the ring-only path (for
//! the before/after figures and its tests).

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, RawFd};

use bytes::Bytes;
use trellis_engine::ConnId;

use super::ops::{SendBufs, MAX_IOVECS};
use super::{os_error, Uring, UringSocket};
use crate::event_loop::backend::{Conns, Event, Write};
use crate::event_loop::conn::Conn;
use crate::sendq::Flush;

/// A non-blocking `sendmsg` on a socket the ring also uses, counted as a syscall.
struct DirectSend<'a> {
    fd: RawFd,
    calls: &'a mut u64,
}

impl io::Write for DirectSend<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        *self.calls += 1;
        // SAFETY: msghdr is plain old data; zeroed is "no name, no control".
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        // `IoSlice` is ABI-compatible with `iovec` on Unix (std documents it); sendmsg only
        // reads through the pointer.
        msg.msg_iov = bufs.as_ptr().cast_mut().cast();
        msg.msg_iovlen = bufs.len() as _;
        // The socket itself is blocking (a ring receive may be armed on it): MSG_DONTWAIT
        // makes this one call non-blocking. MSG_NOSIGNAL: a closed peer is EPIPE, not SIGPIPE.
        // SAFETY: `msg` points at `bufs`, which outlive the call.
        let rc = unsafe { libc::sendmsg(self.fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(usize::try_from(rc).unwrap_or(0))
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Uring {
    /// Write from the connection's send queue: apply the last ring send's result, then send
    /// directly, then hand the rest to a ring send.
    pub(super) fn write_queue(&mut self, conn: &mut Conn<UringSocket>) -> Write {
        let socket = &mut conn.socket;
        if let Some(sent) = socket.sent.take() {
            match sent {
                Ok(n) => conn.sendq.advance(n),
                Err(e) => return Write::Failed(e),
            }
        }
        if socket.send_op.is_some() {
            // One send in flight per socket: the next starts from its completion.
            return Write::Pending;
        }
        if conn.sendq.is_empty() {
            return Write::Drained;
        }
        if self.direct_sends {
            let mut direct = DirectSend {
                fd: socket.fd.as_raw_fd(),
                calls: &mut self.direct_syscalls,
            };
            match conn.sendq.write_to(&mut direct) {
                Ok(Flush::Drained) => return Write::Drained,
                Ok(Flush::Blocked) => {}
                Err(e) => return Write::Failed(e),
            }
        }
        // The chunks stay queued while the kernel reads them (the send holds references);
        // the completion says how many bytes leave the queue.
        let mut bufs = self.ring.send_bufs();
        bufs.chunks
            .extend(conn.sendq.chunks().take(MAX_IOVECS).cloned());
        socket.send_op = Some(self.ring.send(conn.id, socket.fd.clone(), bufs));
        Write::Pending
    }

    /// A ring send completed: keep its result with the socket for the next write.
    pub(super) fn sent(
        &mut self,
        conn: ConnId,
        user_data: u64,
        result: i32,
        bufs: SendBufs,
        conns: &mut Conns<Self>,
    ) -> Option<Event> {
        let total: usize = bufs.chunks.iter().map(Bytes::len).sum();
        self.ring.recycle(bufs);
        // A connection closed with its send in flight finds nothing: the send was cancelled
        // (or finished) and its chunks were freed just now, with its entry.
        let c = conns
            .get_mut(conn)
            .filter(|c| c.socket.send_op == Some(user_data))?;
        c.socket.send_op = None;
        debug_assert!(c.socket.sent.is_none(), "{conn}: send result overwritten");
        debug_assert!(
            usize::try_from(result).map_or(true, |n| n <= total),
            "{conn}: {result} bytes sent of {total}"
        );
        c.socket.sent = Some(match result {
            // All of it, or (MSG_WAITALL) what was written before an error: the next write
            // sends the rest and meets the error itself.
            r if r > 0 => Ok(usize::try_from(r).unwrap_or(0).min(total)),
            r if r < 0 && matches!(-r, libc::EINTR | libc::EAGAIN) => Ok(0),
            0 if total > 0 => Err(io::Error::from(io::ErrorKind::WriteZero)),
            0 => Ok(0),
            r => Err(os_error(r)),
        });
        Some(Event::Conn {
            id: conn,
            error: false,
        })
    }
}
