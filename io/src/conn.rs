//! One socket's state in the driver: where it is in its life, what is queued to write, and
//! which readiness it needs to be told about.
//!
//! Interest is derived from state, never set ad hoc: a connection wants `WRITABLE` only while
//! connecting or while bytes are queued, and `READABLE` only while the engine wants its bytes
//! (backpressure) and the peer has not finished. epoll is edge-triggered under mio, and
//! re-registering re-arms the edge, so resuming reads after a pause reports data that arrived
//! meanwhile.

use std::time::Instant as StdInstant;

use mio::net::TcpStream;
use mio::Interest;

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
    /// A non-blocking connect is in progress.
    Connecting,
    /// Established; bytes flow both ways.
    Open,
    /// The engine closed it gracefully: our write side is shut and we read and discard until
    /// the peer closes or `until`, so unread bytes do not turn our close into a reset that
    /// destroys the response in flight (the lingering close of nginx and Apache).
    Lingering { until: StdInstant },
}

pub(crate) struct Conn {
    pub stream: TcpStream,
    pub side: Side,
    pub phase: Phase,
    pub sendq: SendQueue,
    /// The engine wants bytes from this connection (`Output::ReadInterest`).
    pub read_enabled: bool,
    /// The peer finished sending (EOF seen).
    pub read_closed: bool,
    /// The engine asked for a graceful close once the queue is written.
    pub close_requested: bool,
    /// Bytes were queued since the last `WriteDrained`.
    pub drained_owed: bool,
    /// What the poller currently watches for, `None` when not registered.
    pub registered: Option<Interest>,
}

impl Conn {
    pub fn new(stream: TcpStream, side: Side, phase: Phase) -> Self {
        Conn {
            stream,
            side,
            phase,
            sendq: SendQueue::new(),
            read_enabled: true,
            read_closed: false,
            close_requested: false,
            drained_owed: false,
            registered: None,
        }
    }

    /// The readiness this connection needs to hear about now.
    pub fn wanted_interest(&self) -> Option<Interest> {
        let (readable, writable) = match self.phase {
            Phase::Connecting => (false, true),
            Phase::Open => (
                self.read_enabled && !self.read_closed && !self.close_requested,
                !self.sendq.is_empty(),
            ),
            Phase::Lingering { .. } => (true, false),
        };
        match (readable, writable) {
            (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
            (true, false) => Some(Interest::READABLE),
            (false, true) => Some(Interest::WRITABLE),
            (false, false) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn conn() -> Conn {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = TcpStream::connect(addr).unwrap();
        Conn::new(stream, Side::Upstream, Phase::Connecting)
    }

    #[test]
    fn interest_follows_state() {
        let mut c = conn();
        assert_eq!(c.wanted_interest(), Some(Interest::WRITABLE));
        c.phase = Phase::Open;
        assert_eq!(c.wanted_interest(), Some(Interest::READABLE));
        c.sendq.push(Bytes::from_static(b"x"));
        assert_eq!(
            c.wanted_interest(),
            Some(Interest::READABLE | Interest::WRITABLE)
        );
        c.read_enabled = false;
        assert_eq!(c.wanted_interest(), Some(Interest::WRITABLE));
        c.sendq.clear();
        assert_eq!(c.wanted_interest(), None);
        c.read_enabled = true;
        c.close_requested = true;
        assert_eq!(c.wanted_interest(), None, "closing: only the flush matters");
        c.close_requested = false;
        c.read_closed = true;
        assert_eq!(c.wanted_interest(), None);
        c.phase = Phase::Lingering {
            until: StdInstant::now(),
        };
        assert_eq!(c.wanted_interest(), Some(Interest::READABLE));
    }
}
