//! What the driver does to sockets: accept, connect, read, write, close, and keep each one's
//! poller registration in line with its state.
//!
//! Closing follows TCP's two ways: graceful (flush what is queued, send FIN, then linger
//! reading and discarding until the peer closes, so unread input cannot turn the close into a
//! reset that destroys the response) and abortive (`SO_LINGER` 0: the kernel sends RST).

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant as StdInstant};

use bytes::Bytes;
use mio::net::TcpStream;
use mio::Token;
use trellis_engine::config::Direction;
use trellis_engine::proxy::Accepted;
use trellis_engine::{ConnId, Input};

use super::{Driver, LINGER_READS_PER_EVENT};
use crate::conn::{Conn, Phase, Side};
use crate::engine::ProxyEngine;
use crate::sendq::Flush;
use crate::sockopt::original_dst;

impl<E: ProxyEngine> Driver<E> {
    // ---- accepting -------------------------------------------------------------------------

    pub(super) fn accept_all(&mut self, token: Token) {
        loop {
            let Some(slot) = self.listeners.get_mut(token) else {
                return;
            };
            let fallback_local = slot.bound;
            let outbound = slot.direction == Direction::Outbound;
            match slot.socket.accept() {
                Ok((stream, peer)) => {
                    let local = stream.local_addr().unwrap_or(fallback_local);
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(error = %e, "TCP_NODELAY not set");
                    }
                    let mut accepted = Accepted::new(peer, local);
                    if outbound {
                        accepted.original_dst = original_dst(stream.as_raw_fd(), local);
                    }
                    let id = self.engine.accept(self.now, accepted);
                    let mut conn = Conn::new(stream, Side::Downstream, Phase::Open);
                    conn.read_enabled = true;
                    if self.conns.insert(id, conn).is_none() {
                        tracing::error!(conn = %id, "engine reused a connection id");
                        continue;
                    }
                    tracing::debug!(conn = %id, %peer, %local, "accepted");
                    self.update_interest(id);
                    self.pump();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    // EMFILE and friends: give up on this batch; the next arrival retries.
                    tracing::warn!(error = %e, "accept failed");
                    return;
                }
            }
        }
    }

    // ---- connecting ------------------------------------------------------------------------

    pub(super) fn connect(&mut self, id: ConnId, addr: SocketAddr) {
        let stream = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(conn = %id, %addr, error = %e, "connect failed at once");
                self.pending.push_back(Input::ConnectFailed { conn: id });
                return;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        if self
            .conns
            .insert(id, Conn::new(stream, Side::Upstream, Phase::Connecting))
            .is_none()
        {
            tracing::error!(conn = %id, "engine reused a connection id");
            self.pending.push_back(Input::ConnectFailed { conn: id });
            return;
        }
        self.update_interest(id);
    }

    /// A connecting socket became ready: established, failed, or (spuriously) neither yet.
    pub(super) fn finish_connect(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let failed = match conn.stream.take_error() {
            Ok(Some(e)) | Err(e) => Some(e),
            Ok(None) => match conn.stream.peer_addr() {
                Ok(_) => None,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return, // still in progress
                Err(e) => Some(e),
            },
        };
        match failed {
            Some(e) => {
                tracing::debug!(conn = %id, error = %e, "connect failed");
                self.drop_conn(id);
                self.feed(Input::ConnectFailed { conn: id });
            }
            None => {
                conn.phase = Phase::Open;
                self.update_interest(id);
                self.feed(Input::Connected { conn: id });
                // Sends queued while connecting go out now.
                self.flush(id);
            }
        }
    }

    // ---- readiness -------------------------------------------------------------------------

    pub(super) fn conn_ready(&mut self, token: Token, is_error: bool) {
        let Some(id) = self.conns.id_of(token) else {
            return; // closed earlier in this batch
        };
        let phase = match self.conns.get(id) {
            Some(c) => c.phase,
            None => return,
        };
        match phase {
            Phase::Connecting => self.finish_connect(id),
            Phase::Lingering { .. } => self.discard(id),
            Phase::Open => {
                if is_error {
                    if let Some(c) = self.conns.get(id) {
                        if let Ok(Some(e)) | Err(e) = c.stream.take_error() {
                            self.fail(id, &e);
                            return;
                        }
                    }
                }
                // Readable and writable are both attempted: each stops at WouldBlock, so a
                // spurious attempt costs one syscall and a missed one would stall.
                self.flush(id);
                self.read(id);
            }
        }
    }

    /// Read while the engine wants bytes and the socket has them, feeding each chunk at once
    /// so backpressure (`ReadInterest { enabled: false }`) takes effect mid-stream.
    pub(super) fn read(&mut self, id: ConnId) {
        loop {
            let Some(conn) = self.conns.get_mut(id) else {
                return;
            };
            if conn.phase != Phase::Open
                || !conn.read_enabled
                || conn.read_closed
                || conn.close_requested
            {
                return;
            }
            match conn.stream.read(&mut self.read_buf) {
                Ok(0) => {
                    conn.read_closed = true;
                    self.update_interest(id);
                    self.feed(Input::ReadClosed { conn: id });
                    return;
                }
                Ok(n) => {
                    let data = Bytes::copy_from_slice(self.read_buf.get(..n).unwrap_or(&[]));
                    self.feed(Input::Received { conn: id, data });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.fail(id, &e);
                    return;
                }
            }
        }
    }

    // ---- writing ---------------------------------------------------------------------------

    pub(super) fn send(&mut self, id: ConnId, data: Bytes) {
        let Some(conn) = self.conns.get_mut(id) else {
            tracing::debug!(conn = %id, "send on a connection that is gone");
            return;
        };
        if conn.close_requested || matches!(conn.phase, Phase::Lingering { .. }) {
            tracing::warn!(conn = %id, "send after close ignored");
            return;
        }
        let was_empty = conn.sendq.is_empty();
        conn.sendq.push(data);
        conn.drained_owed = true;
        if conn.phase == Phase::Open && was_empty {
            self.flush(id);
        }
    }

    /// Write what the socket takes; report `WriteDrained` and finish a pending graceful close
    /// once the queue is empty.
    pub(super) fn flush(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if conn.phase != Phase::Open {
            return;
        }
        match conn.sendq.write_to(&mut conn.stream) {
            Ok(Flush::Drained) => {
                let owed = std::mem::take(&mut conn.drained_owed);
                let closing = conn.close_requested;
                if owed {
                    self.pending.push_back(Input::WriteDrained { conn: id });
                }
                if closing {
                    self.finish_graceful(id);
                } else {
                    self.update_interest(id);
                }
            }
            Ok(Flush::Blocked) => self.update_interest(id),
            Err(e) => {
                self.fail(id, &e);
            }
        }
    }

    // ---- closing ---------------------------------------------------------------------------

    pub(super) fn close_gracefully(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        conn.close_requested = true;
        match conn.phase {
            Phase::Connecting => {
                self.drop_conn(id);
            }
            Phase::Lingering { .. } => {}
            Phase::Open => {
                if conn.sendq.is_empty() {
                    self.finish_graceful(id);
                }
            }
        }
    }

    /// Everything is written: send FIN, then linger reading until the peer closes.
    pub(super) fn finish_graceful(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if let Err(e) = conn.stream.shutdown(Shutdown::Write) {
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
        self.update_interest(id);
        self.discard(id);
    }

    /// Read and throw away what a lingering connection's peer still sends; drop it at EOF.
    pub(super) fn discard(&mut self, id: ConnId) {
        for _ in 0..LINGER_READS_PER_EVENT {
            let Some(conn) = self.conns.get_mut(id) else {
                return;
            };
            match conn.stream.read(&mut self.read_buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        // EOF, an error, or a peer that keeps sending: done lingering.
        if self
            .conns
            .get(id)
            .is_some_and(|c| matches!(c.phase, Phase::Lingering { .. }))
        {
            self.drop_conn(id);
        }
    }

    /// Abortive close: SO_LINGER 0 makes the kernel send RST instead of FIN.
    pub(super) fn reset(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get(id) {
            if let Err(e) = socket2::SockRef::from(&conn.stream).set_linger(Some(Duration::ZERO)) {
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

    /// Deregister and close; returns whether it existed.
    pub(super) fn drop_conn(&mut self, id: ConnId) -> bool {
        match self.conns.remove(id) {
            Some(mut conn) => {
                if conn.registered.is_some() {
                    if let Err(e) = self.poll.registry().deregister(&mut conn.stream) {
                        tracing::debug!(conn = %id, error = %e, "deregister failed");
                    }
                }
                true
            }
            None => false,
        }
    }

    /// Bring the poller's registration in line with what the connection wants.
    pub(super) fn update_interest(&mut self, id: ConnId) {
        let Some(token) = self.conns.token(id) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let wanted = conn.wanted_interest();
        if wanted == conn.registered {
            return;
        }
        let registry = self.poll.registry();
        let result = match (conn.registered, wanted) {
            (None, Some(i)) => registry.register(&mut conn.stream, token, i),
            (Some(_), Some(i)) => registry.reregister(&mut conn.stream, token, i),
            (Some(_), None) => registry.deregister(&mut conn.stream),
            (None, None) => Ok(()),
        };
        match result {
            Ok(()) => conn.registered = wanted,
            Err(e) => self.fail(id, &e),
        }
    }
}
