//! What the io_uring driver does for each operation's completion, and how it starts the next:
//! accept, connect, receive, send, close.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant as StdInstant};

use bytes::{Buf, Bytes, BytesMut};
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use trellis_engine::config::Direction;
use trellis_engine::proxy::Accepted;
use trellis_engine::{ConnId, Input};

use super::ops::{SendBufs, MAX_IOVECS};
use super::{Parked, UConn, UringDriver, ACCEPT_RETRY, MIN_RECV_SPARE, RECV_BUFFER};
use crate::conn::{Phase, Side};
use crate::engine::ProxyEngine;
use crate::sockopt::original_dst;

fn os_error(result: i32) -> io::Error {
    io::Error::from_raw_os_error(-result)
}

impl<E: ProxyEngine> UringDriver<E> {
    // ---- accepting -------------------------------------------------------------------------

    /// Keep one accept in flight on every listener that is not resting after an error.
    pub(super) fn arm_accepts(&mut self) {
        for (i, slot) in self.listeners.slots.iter_mut().enumerate() {
            if let Some(l) = slot {
                if l.accept_op.is_none() && l.retry_at.is_none() {
                    l.accept_op = Some(self.ring.accept(i, l.socket.clone()));
                }
            }
        }
    }

    pub(super) fn accepted(&mut self, index: usize, user_data: u64, result: i32) {
        let slot = self
            .listeners
            .slots
            .get_mut(index)
            .and_then(Option::as_mut)
            .filter(|l| l.accept_op == Some(user_data));
        let Some(listener) = slot else {
            // The listener was closed while this accept was in flight.
            if result >= 0 {
                // SAFETY: a successful accept returns a new descriptor we own.
                drop(unsafe { OwnedFd::from_raw_fd(result) });
            }
            return;
        };
        listener.accept_op = None;
        if result < 0 {
            match -result {
                libc::ECANCELED => return,
                libc::EINTR | libc::ECONNABORTED | libc::EAGAIN => {}
                _ => {
                    // EMFILE and friends: rest a moment rather than spin.
                    tracing::warn!(error = %os_error(result), "accept failed");
                    listener.retry_at = StdInstant::now().checked_add(ACCEPT_RETRY);
                }
            }
            self.arm_accepts();
            return;
        }
        let (fallback_local, outbound) =
            (listener.bound, listener.direction == Direction::Outbound);
        // SAFETY: a successful accept returns a new descriptor we own.
        let stream = unsafe { TcpStream::from_raw_fd(result) };
        self.arm_accepts();
        let peer = match stream.peer_addr() {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, "accepted connection already gone");
                return;
            }
        };
        let local = stream.local_addr().unwrap_or(fallback_local);
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let mut accepted = Accepted::new(peer, local);
        if outbound {
            accepted.original_dst = original_dst(stream.as_raw_fd(), local);
        }
        let id = self.engine.accept(self.now, accepted);
        let conn = UConn::new(OwnedFd::from(stream), Side::Downstream, Phase::Open);
        if self.conns.insert(id, conn).is_none() {
            tracing::error!(conn = %id, "engine reused a connection id");
            return;
        }
        tracing::debug!(conn = %id, %peer, %local, "accepted");
        self.arm_recv(id);
        self.pump();
    }

    // ---- connecting ------------------------------------------------------------------------

    pub(super) fn connect(&mut self, id: ConnId, addr: SocketAddr) {
        let socket = match Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(conn = %id, %addr, error = %e, "cannot create a socket");
                self.pending.push_back(Input::ConnectFailed { conn: id });
                return;
            }
        };
        if let Err(e) = socket.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let conn = UConn::new(OwnedFd::from(socket), Side::Upstream, Phase::Connecting);
        let fd = conn.socket.clone();
        if self.conns.insert(id, conn).is_none() {
            tracing::error!(conn = %id, "engine reused a connection id");
            self.pending.push_back(Input::ConnectFailed { conn: id });
            return;
        }
        let op = self.ring.connect(id, fd, addr.into());
        if let Some(c) = self.conns.get_mut(id) {
            c.connect_op = Some(op);
        }
    }

    pub(super) fn connected(&mut self, id: ConnId, user_data: u64, result: i32) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if conn.connect_op != Some(user_data) {
            return;
        }
        conn.connect_op = None;
        if result < 0 {
            tracing::debug!(conn = %id, error = %os_error(result), "connect failed");
            self.drop_conn(id);
            self.feed(Input::ConnectFailed { conn: id });
            return;
        }
        conn.phase = Phase::Open;
        self.pending.push_back(Input::Connected { conn: id });
        // Sends queued while connecting go out now.
        self.submit_send(id);
        self.arm_recv(id);
        self.pump();
    }

    // ---- receiving -------------------------------------------------------------------------

    /// Start a receive if the connection wants bytes and has none in flight or parked.
    pub(super) fn arm_recv(&mut self, id: ConnId) {
        let read_size = self
            .opts
            .read_buffer_bytes
            .clamp(MIN_RECV_SPARE, RECV_BUFFER);
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let wanted = match conn.phase {
            Phase::Connecting => false,
            Phase::Lingering { .. } => true,
            Phase::Open => conn.read_enabled && !conn.read_closed && !conn.close_requested,
        };
        if !wanted || conn.recv_op.is_some() || conn.parked.is_some() {
            return;
        }
        let mut buf = conn.buf.take().unwrap_or_default();
        if buf.capacity() - buf.len() < MIN_RECV_SPARE {
            // The previous allocation stays alive only through the Bytes given out of it.
            buf = BytesMut::with_capacity(read_size);
        }
        conn.recv_op = Some(self.ring.recv(id, conn.socket.clone(), buf));
    }

    pub(super) fn received(&mut self, id: ConnId, user_data: u64, result: i32, mut buf: BytesMut) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if conn.recv_op != Some(user_data) {
            return;
        }
        conn.recv_op = None;
        if result < 0 {
            match -result {
                libc::EINTR | libc::EAGAIN => {
                    conn.buf = Some(buf);
                    self.arm_recv(id);
                }
                libc::ECANCELED => conn.buf = Some(buf),
                _ => {
                    let lingering = matches!(conn.phase, Phase::Lingering { .. });
                    if lingering {
                        self.drop_conn(id);
                    } else {
                        self.fail(id, &os_error(result));
                        self.pump();
                    }
                }
            }
            return;
        }
        let n = usize::try_from(result).unwrap_or(0);
        if let Phase::Lingering { .. } = conn.phase {
            // Discard what the peer still sends; done at EOF.
            buf.clear();
            conn.buf = Some(buf);
            if n == 0 {
                self.drop_conn(id);
            } else {
                self.arm_recv(id);
            }
            return;
        }
        let parked = if n == 0 {
            conn.buf = Some(buf);
            Parked::Eof
        } else {
            // SAFETY: the kernel initialised `n` bytes of the spare capacity it was given.
            unsafe { buf.set_len(buf.len() + n.min(buf.capacity() - buf.len())) };
            let data = buf.split().freeze();
            conn.buf = Some(buf);
            Parked::Data(data)
        };
        if conn.close_requested {
            // The engine is done with this connection; only the flush and FIN remain.
            if matches!(parked, Parked::Eof) {
                conn.read_closed = true;
            }
            return;
        }
        if !conn.read_enabled {
            conn.parked = Some(parked);
            return;
        }
        self.deliver(id, parked);
        self.arm_recv(id);
        self.pump();
    }

    /// Queue received bytes (or EOF) as an engine input.
    fn deliver(&mut self, id: ConnId, what: Parked) {
        match what {
            Parked::Data(data) => self.pending.push_back(Input::Received { conn: id, data }),
            Parked::Eof => {
                if let Some(c) = self.conns.get_mut(id) {
                    c.read_closed = true;
                }
                self.pending.push_back(Input::ReadClosed { conn: id });
            }
        }
    }

    /// `Output::ReadInterest`: pausing keeps no receive armed after the one in flight (whose
    /// bytes are parked); resuming hands over what was parked and receives again.
    pub(super) fn set_read_interest(&mut self, id: ConnId, enabled: bool) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        conn.read_enabled = enabled;
        if !enabled {
            return;
        }
        if let Some(parked) = conn.parked.take() {
            self.deliver(id, parked);
        }
        self.arm_recv(id);
    }

    // ---- sending ---------------------------------------------------------------------------

    pub(super) fn send(&mut self, id: ConnId, data: Bytes) {
        let Some(conn) = self.conns.get_mut(id) else {
            tracing::debug!(conn = %id, "send on a connection that is gone");
            return;
        };
        if conn.close_requested || matches!(conn.phase, Phase::Lingering { .. }) {
            tracing::warn!(conn = %id, "send after close ignored");
            return;
        }
        if data.is_empty() {
            return;
        }
        conn.sendq.push_back(data);
        conn.drained_owed = true;
        self.submit_send(id);
    }

    /// Hand queued chunks to one `sendmsg`, unless one is in flight or the socket is not open.
    pub(super) fn submit_send(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if conn.phase != Phase::Open || conn.send_op.is_some() || conn.sendq.is_empty() {
            return;
        }
        let n = conn.sendq.len().min(MAX_IOVECS);
        let mut bufs = self.ring.send_bufs();
        bufs.chunks.extend(conn.sendq.drain(..n));
        conn.send_op = Some(self.ring.send(id, conn.socket.clone(), bufs));
    }

    pub(super) fn sent(&mut self, id: ConnId, user_data: u64, result: i32, mut bufs: SendBufs) {
        let Some(conn) = self.conns.get_mut(id) else {
            self.ring.recycle(bufs);
            return;
        };
        if conn.send_op != Some(user_data) {
            self.ring.recycle(bufs);
            return;
        }
        conn.send_op = None;
        let total: usize = bufs.chunks.iter().map(Bytes::len).sum();
        let written = match result {
            r if r > 0 => usize::try_from(r).unwrap_or(0),
            r if r < 0 && matches!(-r, libc::EINTR | libc::EAGAIN) => 0,
            0 if total > 0 => {
                self.fail(id, &io::Error::from(io::ErrorKind::WriteZero));
                self.pump();
                return;
            }
            0 => 0,
            r => {
                self.fail(id, &os_error(r));
                self.pump();
                return;
            }
        };
        // Put back what was not written, in order, ahead of anything queued since.
        let mut skip = written;
        let mut sent_whole = 0;
        for chunk in bufs.chunks.iter_mut() {
            if skip < chunk.len() {
                chunk.advance(skip);
                break;
            }
            skip -= chunk.len();
            sent_whole += 1;
        }
        for chunk in bufs.chunks.drain(sent_whole..).rev() {
            conn.sendq.push_front(chunk);
        }
        self.ring.recycle(bufs);
        if !conn.sendq.is_empty() {
            self.submit_send(id);
            return;
        }
        let owed = std::mem::take(&mut conn.drained_owed);
        let closing = conn.close_requested;
        if owed {
            self.pending.push_back(Input::WriteDrained { conn: id });
        }
        if closing {
            self.finish_graceful(id);
        }
        self.pump();
    }

    // ---- closing ---------------------------------------------------------------------------

    pub(super) fn close_gracefully(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        conn.close_requested = true;
        conn.parked = None;
        match conn.phase {
            Phase::Connecting => {
                self.drop_conn(id);
            }
            Phase::Lingering { .. } => {}
            Phase::Open => {
                if !conn.has_unsent() {
                    self.finish_graceful(id);
                }
            }
        }
    }

    /// Everything is written: send FIN, then linger discarding input until the peer closes.
    pub(super) fn finish_graceful(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if let Err(e) = SockRef::from(&*conn.socket).shutdown(std::net::Shutdown::Write) {
            tracing::debug!(conn = %id, error = %e, "shutdown(write) failed");
            self.drop_conn(id);
            return;
        }
        if conn.read_closed {
            self.drop_conn(id);
            return;
        }
        let now = StdInstant::now();
        let until = now.checked_add(self.opts.linger_timeout).unwrap_or(now);
        conn.phase = Phase::Lingering { until };
        self.lingering.push_back((until, id));
        self.arm_recv(id);
    }

    /// Abortive close: SO_LINGER 0 makes the kernel send RST when the socket closes.
    pub(super) fn reset(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get(id) {
            if let Err(e) = SockRef::from(&*conn.socket).set_linger(Some(Duration::ZERO)) {
                tracing::debug!(conn = %id, error = %e, "SO_LINGER not set");
            }
        }
        self.drop_conn(id);
    }

    /// The socket failed: tell the engine it is gone (unless the engine already closed it).
    pub(super) fn fail(&mut self, id: ConnId, error: &io::Error) {
        tracing::debug!(conn = %id, %error, "connection error");
        let engine_closed = self.conns.get(id).is_some_and(|c| c.close_requested);
        if self.drop_conn(id) && !engine_closed {
            self.pending.push_back(Input::Closed { conn: id });
        }
    }

    /// Forget a connection and cancel its operations; the socket closes when the last of
    /// them has completed. Returns whether it existed.
    pub(super) fn drop_conn(&mut self, id: ConnId) -> bool {
        match self.conns.remove(id) {
            Some(conn) => {
                for op in conn.ops() {
                    self.ring.cancel(op);
                }
                true
            }
            None => false,
        }
    }
}
