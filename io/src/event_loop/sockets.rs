//! What the event loop does to sockets, for both backends: accept, connect, read, write and
//! close, with the engine's inputs they produce queued in order.
//!
//! Nothing here feeds the engine: inputs go to [`Sockets::inputs`] and the loop
//! ([`super::EventLoop`]) hands them over, so handling a socket never re-enters the engine
//! and the engine never re-enters a socket handler.
//!
//! Closing follows TCP's two ways: graceful (flush what is queued, send FIN, then linger
//! reading and discarding until the peer closes, so unread input cannot turn the close into a
//! reset that destroys the response) and abortive (`SO_LINGER` 0: the kernel sends RST).

use std::collections::VecDeque;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant as StdInstant};

use bytes::Bytes;
use socket2::SockRef;
use trellis_engine::proxy::Accepted;
use trellis_engine::{ConnId, Input};

use super::backend::{Accept, Conns, Event, IoBackend, Purpose, Read, Write};
use super::conn::{Conn, Phase, Side};
use crate::drain::ConnState;
use crate::listeners::{BindOptions, Listeners, ACCEPT_RETRY};
use crate::slab::ConnSlab;
use crate::sockopt::original_dst;

/// Reads of discarded bytes per event on a lingering connection; a peer that keeps sending
/// past them is cut off.
const LINGER_READS_PER_EVENT: usize = 16;

/// The sockets of one event loop and the backend that drives them.
pub(crate) struct Sockets<B: IoBackend> {
    /// First, so that it is dropped first: io_uring cancels and waits for what is in flight
    /// while the sockets it names are still open.
    pub backend: B,
    pub conns: Conns<B>,
    pub listeners: Listeners<B::Listener>,
    pub bind: BindOptions,
    /// Inputs for the engine, in the order the sockets produced them.
    pub inputs: VecDeque<Input>,
    /// Lingering connections in deadline order (the timeout is the same for all).
    lingering: VecDeque<(StdInstant, ConnId)>,
    linger_timeout: Duration,
}

impl<B: IoBackend> Sockets<B> {
    pub fn new(backend: B, bind: BindOptions, linger_timeout: Duration) -> Self {
        Sockets {
            backend,
            conns: ConnSlab::new(B::FIRST_CONN_TOKEN),
            listeners: Listeners::default(),
            bind,
            inputs: VecDeque::new(),
            lingering: VecDeque::new(),
            linger_timeout,
        }
    }

    /// The backend's next event of this turn.
    pub fn next_event(&mut self) -> Option<Event> {
        self.backend
            .next_event(&mut self.conns, &mut self.listeners)
    }

    // ---- accepting -------------------------------------------------------------------------

    /// Accept one connection on listener `index`, set it up, and describe it for the engine;
    /// `None` when there is nothing (more) to accept now or the listener is resting.
    pub fn accept_one(&mut self, index: usize) -> Option<(TcpStream, Accepted)> {
        loop {
            let listener = self.listeners.get_mut(index)?;
            if listener.resting_until.is_some() {
                return None;
            }
            let (stream, peer) = match self.backend.accept(index, &mut listener.socket) {
                Accept::Stream { stream, peer } => (stream, peer),
                Accept::Pending => return None,
                Accept::Retry => continue,
                Accept::Failed(e) => {
                    // EMFILE and friends: rest a moment rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    listener.resting_until = StdInstant::now().checked_add(ACCEPT_RETRY);
                    return None;
                }
            };
            let peer = match peer.map_or_else(|| stream.peer_addr(), Ok) {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(error = %e, "accepted connection already gone");
                    continue;
                }
            };
            let local = stream.local_addr().unwrap_or(listener.bound);
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY not set");
            }
            let mut accepted = Accepted::new(peer, local);
            // Both directions: capture redirects outbound connections to 15001 and inbound
            // ones to 15006, and each is routed by the port its client dialled.
            accepted.original_dst = original_dst(stream.as_raw_fd(), local);
            return Some((stream, accepted));
        }
    }

    /// Take over an accepted connection under the id the engine gave it.
    pub fn adopt(&mut self, id: ConnId, stream: TcpStream) {
        let socket = self.backend.adopt(stream);
        if self.insert(Conn::new(id, socket, Side::Downstream, Phase::Open)) {
            self.update(id);
        }
    }

    /// Put a new connection in the table; false (logged) if the engine reused its id.
    fn insert(&mut self, conn: Conn<B::Socket>) -> bool {
        let id = conn.id;
        debug_assert!(self.conns.get(id).is_none(), "the engine reused {id}");
        match self.conns.insert(id, conn) {
            Some(token) => {
                if let Some(c) = self.conns.get_mut(id) {
                    c.token = token;
                }
                true
            }
            None => {
                tracing::error!(conn = %id, "engine reused a connection id");
                false
            }
        }
    }

    // ---- connecting ------------------------------------------------------------------------

    pub fn connect(&mut self, id: ConnId, addr: SocketAddr) {
        if self.conns.get(id).is_some() {
            tracing::error!(conn = %id, "engine reused a connection id");
            debug_assert!(false, "the engine reused {id}");
            self.inputs.push_back(Input::ConnectFailed { conn: id });
            return;
        }
        match self.backend.connect(id, addr) {
            Ok(socket) => {
                if self.insert(Conn::new(id, socket, Side::Upstream, Phase::Connecting)) {
                    self.update(id);
                }
            }
            Err(e) => {
                tracing::debug!(conn = %id, %addr, error = %e, "connect failed at once");
                self.inputs.push_back(Input::ConnectFailed { conn: id });
            }
        }
    }

    /// A connecting socket had news: established, failed, or (spuriously) neither yet.
    pub fn finish_connect(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        debug_assert_eq!(conn.phase, Phase::Connecting);
        match self.backend.connect_result(conn) {
            None => {}
            Some(Err(e)) => {
                tracing::debug!(conn = %id, error = %e, "connect failed");
                self.drop_conn(id);
                self.inputs.push_back(Input::ConnectFailed { conn: id });
            }
            Some(Ok(())) => {
                conn.phase = Phase::Open;
                self.inputs.push_back(Input::Connected { conn: id });
                // Sends queued while connecting go out now.
                self.flush(id);
                self.update(id);
            }
        }
    }

    // ---- reading ---------------------------------------------------------------------------

    /// Read once for the engine, if it wants this connection's bytes; the input to feed it.
    pub fn read_one(&mut self, id: ConnId) -> Option<Input> {
        let conn = self.conns.get_mut(id)?;
        if !conn.wants_bytes() {
            return None;
        }
        match self.backend.read(conn, Purpose::Engine) {
            Read::Data(data) => Some(Input::Received { conn: id, data }),
            Read::Eof => {
                conn.read_closed = true;
                self.update(id);
                Some(Input::ReadClosed { conn: id })
            }
            Read::Pending => None,
            Read::Failed(e) => {
                self.fail(id, &e);
                None
            }
        }
    }

    /// Read and throw away what a lingering connection's peer still sends; drop it at EOF.
    pub fn discard(&mut self, id: ConnId) {
        for _ in 0..LINGER_READS_PER_EVENT {
            let Some(conn) = self.conns.get_mut(id) else {
                return;
            };
            match self.backend.read(conn, Purpose::Discard) {
                Read::Data(_) => continue,
                Read::Pending => return,
                Read::Eof | Read::Failed(_) => break,
            }
        }
        // EOF, an error, or a peer that keeps sending: done lingering.
        if self.conns.get(id).is_some_and(Conn::is_lingering) {
            self.drop_conn(id);
        }
    }

    /// `Output::ReadInterest`: pause or resume handing the engine this connection's bytes.
    pub fn set_read_interest(&mut self, id: ConnId, enabled: bool) {
        if let Some(conn) = self.conns.get_mut(id) {
            conn.read_enabled = enabled;
            self.update(id);
        }
    }

    // ---- writing ---------------------------------------------------------------------------

    pub fn send(&mut self, id: ConnId, data: Bytes) {
        let Some(conn) = self.conns.get_mut(id) else {
            tracing::debug!(conn = %id, "send on a connection that is gone");
            return;
        };
        if conn.close_requested || conn.is_lingering() {
            tracing::warn!(conn = %id, "send after close ignored");
            return;
        }
        let was_empty = conn.sendq.is_empty();
        conn.sendq.push(data);
        conn.drained_owed = true;
        // A queue that was not empty is already being written (or waits for the socket).
        if conn.phase == Phase::Open && was_empty {
            self.flush(id);
        }
    }

    /// Write what the socket takes; report `WriteDrained` and finish a pending graceful close
    /// once the queue is empty.
    pub fn flush(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if conn.phase != Phase::Open {
            return;
        }
        match self.backend.write(conn) {
            Write::Drained => {
                debug_assert!(conn.sendq.is_empty(), "drained with bytes queued");
                if std::mem::take(&mut conn.drained_owed) {
                    self.inputs.push_back(Input::WriteDrained { conn: id });
                }
                if conn.close_requested {
                    self.finish_graceful(id);
                } else if conn.shutdown_requested && !conn.write_shut {
                    self.shut_write(id);
                } else {
                    self.update(id);
                }
            }
            Write::Pending => {}
            Write::Failed(e) => self.fail(id, &e),
        }
    }

    // ---- closing ---------------------------------------------------------------------------

    pub fn close_gracefully(&mut self, id: ConnId) {
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

    /// `Output::Shutdown`: a half-close. The FIN follows what is queued; the connection stays
    /// open for reading (an L4 relay passing one side's EOF on to the other).
    pub fn shutdown_write(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        conn.shutdown_requested = true;
        if conn.phase == Phase::Open && conn.sendq.is_empty() && !conn.write_shut {
            self.shut_write(id);
        }
    }

    fn shut_write(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        conn.write_shut = true;
        if let Err(e) = SockRef::from(&conn.socket).shutdown(Shutdown::Write) {
            tracing::debug!(conn = %id, error = %e, "shutdown(write) failed");
        }
        self.update(id);
    }

    /// Everything is written: send FIN, then linger reading until the peer closes.
    fn finish_graceful(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        debug_assert!(
            conn.phase == Phase::Open && conn.close_requested && conn.sendq.is_empty(),
            "{id}: FIN before the close was asked for and the queue written"
        );
        let shut = if conn.write_shut {
            Ok(()) // already half-closed: a second shutdown may fail once the peer's FIN came
        } else {
            SockRef::from(&conn.socket).shutdown(Shutdown::Write)
        };
        if let Err(e) = shut {
            tracing::debug!(conn = %id, error = %e, "shutdown(write) failed");
            self.drop_conn(id);
            return;
        }
        if conn.read_closed {
            self.drop_conn(id);
            return;
        }
        let now = StdInstant::now();
        let until = now.checked_add(self.linger_timeout).unwrap_or(now);
        conn.phase = Phase::Lingering { until };
        self.lingering.push_back((until, id));
        self.update(id);
        self.discard(id);
    }

    /// Abortive close: SO_LINGER 0 makes the kernel send RST instead of FIN.
    pub fn reset(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get(id) {
            if let Err(e) = SockRef::from(&conn.socket).set_linger(Some(Duration::ZERO)) {
                tracing::debug!(conn = %id, error = %e, "SO_LINGER not set");
            }
        }
        self.drop_conn(id);
    }

    /// The socket's pending error (`SO_ERROR`), if it has one.
    pub fn socket_error(&self, id: ConnId) -> Option<io::Error> {
        let conn = self.conns.get(id)?;
        match SockRef::from(&conn.socket).take_error() {
            Ok(Some(e)) | Err(e) => Some(e),
            Ok(None) => None,
        }
    }

    /// The socket failed: tell the engine it is gone (unless the engine already closed it).
    pub fn fail(&mut self, id: ConnId, error: &io::Error) {
        tracing::debug!(conn = %id, %error, "connection error");
        let engine_closed = self.conns.get(id).is_some_and(|c| c.close_requested);
        if self.drop_conn(id) && !engine_closed {
            self.inputs.push_back(Input::Closed { conn: id });
        }
    }

    /// Remove a connection and let the backend close it; returns whether it existed (a
    /// connection is only ever removed once: its id is never reused).
    pub fn drop_conn(&mut self, id: ConnId) -> bool {
        match self.conns.remove(id) {
            Some(conn) => {
                debug_assert_eq!(conn.id, id);
                self.backend.close(conn);
                true
            }
            None => false,
        }
    }

    /// Every connection, at exit.
    pub fn drop_all(&mut self) {
        for id in self.conns.ids() {
            self.drop_conn(id);
        }
    }

    /// Bring the backend in line with the connection's state; a failure fails the connection.
    fn update(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if let Err(e) = self.backend.update(conn) {
            self.fail(id, &e);
        }
    }

    // ---- time ------------------------------------------------------------------------------

    /// End lingering closes that ran out of time.
    pub fn expire_lingering(&mut self, now: StdInstant) {
        while let Some(&(at, id)) = self.lingering.front() {
            if at > now {
                break;
            }
            self.lingering.pop_front();
            if self.conns.get(id).is_some_and(Conn::is_lingering) {
                self.drop_conn(id);
            }
        }
    }

    /// The next linger deadline or end of a listener's rest.
    pub fn next_deadline(&self) -> Option<StdInstant> {
        let linger = self.lingering.front().map(|&(at, _)| at);
        match (linger, self.listeners.next_retry()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// What the drain decision needs to know about each connection.
    pub fn drain_states(&self) -> impl Iterator<Item = ConnState> + '_ {
        self.conns.iter().map(|(_, c)| ConnState {
            downstream: c.side == Side::Downstream,
            lingering: c.is_lingering(),
            unsent: !c.sendq.is_empty(),
        })
    }
}
