//! One connection as the event loop sees it, whatever the backend: which side of the proxy it
//! is on, where it is in its life, what the engine asked of it, and the bytes queued to write.
//!
//! The backend's own per-socket state (a registration with epoll, operations in flight in the
//! ring) lives in `socket`; everything else is decided here, once, for both backends. What a
//! connection wants from its socket is derived from this state, never set ad hoc: it wants
//! bytes only while open, while the engine wants them (backpressure) and until the peer or the
//! engine finished.

use std::time::Instant as StdInstant;

use mio::Token;
use trellis_engine::ConnId;

use crate::sendq::SendQueue;

/// Which side of the proxy a connection is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// Accepted by a listener.
    Downstream,
    /// Opened for the engine (`Output::Connect`).
    Upstream,
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// A connect is in progress.
    Connecting,
    /// Established; bytes flow both ways.
    Open,
    /// The engine closed it gracefully: our write side is shut and we read and discard until
    /// the peer closes or `until`, so unread bytes do not turn our close into a reset that
    /// destroys the response in flight (the lingering close of nginx and Apache).
    Lingering { until: StdInstant },
}

/// A connection: the shared state plus the backend's socket.
pub(crate) struct Conn<S> {
    pub id: ConnId,
    /// The connection's slot in the table (epoll registers sockets under it).
    pub token: Token,
    pub socket: S,
    pub side: Side,
    pub phase: Phase,
    /// Bytes the engine sent that the socket has not taken yet (io_uring: including those a
    /// send in flight is writing; they leave the queue when its completion says so).
    pub sendq: SendQueue,
    /// The engine wants bytes from this connection (`Output::ReadInterest`).
    pub read_enabled: bool,
    /// The peer finished sending (EOF seen).
    pub read_closed: bool,
    /// The engine asked for a graceful close once the queue is written.
    pub close_requested: bool,
    /// The engine asked for a half-close (`Output::Shutdown`): FIN once the queue is written,
    /// reading goes on. `write_shut` once it was done.
    pub shutdown_requested: bool,
    pub write_shut: bool,
    /// Bytes were queued since the last `WriteDrained`.
    pub drained_owed: bool,
}

impl<S> Conn<S> {
    pub fn new(id: ConnId, socket: S, side: Side, phase: Phase) -> Self {
        Conn {
            id,
            token: Token(usize::MAX),
            socket,
            side,
            phase,
            sendq: SendQueue::new(),
            read_enabled: true,
            read_closed: false,
            close_requested: false,
            shutdown_requested: false,
            write_shut: false,
            drained_owed: false,
        }
    }

    pub fn is_lingering(&self) -> bool {
        matches!(self.phase, Phase::Lingering { .. })
    }

    /// Whether the engine should be handed this connection's bytes now.
    pub fn wants_bytes(&self) -> bool {
        self.phase == Phase::Open && self.read_enabled && !self.read_closed && !self.close_requested
    }

    /// Whether the socket should be read at all: for the engine, or to discard while lingering.
    pub fn wants_reads(&self) -> bool {
        self.wants_bytes() || self.is_lingering()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wants_follow_state() {
        let mut c = Conn::new(ConnId(1), (), Side::Upstream, Phase::Connecting);
        assert!(!c.wants_reads(), "connecting: only the connect");
        c.phase = Phase::Open;
        assert!(c.wants_bytes());
        c.read_enabled = false;
        assert!(!c.wants_reads(), "backpressure");
        c.read_enabled = true;
        c.close_requested = true;
        assert!(!c.wants_reads(), "closing: only the flush matters");
        c.close_requested = false;
        c.read_closed = true;
        assert!(!c.wants_reads());
        c.phase = Phase::Lingering {
            until: StdInstant::now(),
        };
        assert!(
            c.wants_reads() && !c.wants_bytes(),
            "lingering reads to discard"
        );
    }
}
