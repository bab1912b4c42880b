//! The epoll backend (through `mio`): readiness in, syscalls done by us.
//!
//! The fallback DESIGN.md asks for where io_uring is blocked (Docker's default seccomp
//! profile, `io_uring_disabled`, old kernels). When `epoll_wait` says a socket is ready, the
//! event loop pulls, and each pull here is the syscall itself: `accept`, `read`, `writev`,
//! or `SO_ERROR` for a connect. `WouldBlock` means "wait for the next event".
//!
//! Registration is edge-triggered and kept ([`wanted_interest`]): writable for the whole life
//! of the socket, readable while the connection wants reads. An edge-triggered writable
//! interest only fires when a write found the socket full and an ACK freed space (the kernel
//! raises write-space wake-ups only after `SOCK_NOSPACE` was set), so keeping it costs no
//! wake-up and saves an `epoll_ctl` each time a write blocks and later drains; a connect's
//! completion is its first edge. `epoll_ctl` is left for reads paused and resumed (the
//! re-registration re-arms the edge, so data that arrived meanwhile is reported) and for the
//! first registration; closing the descriptor removes it from the epoll set.
//!
//! Reads stop at the first short read instead of reading on to EAGAIN: each event's
//! readiness is kept with the socket ([`EpollSocket::readable`]), a read that returns less
//! than the buffer means the receive queue was empty, and any byte arriving later raises a
//! new edge (Tokio's `poll_read` relies on the same). The exception is a peer that closed
//! (EPOLLRDHUP, EPOLLHUP) or an error: no edge follows those, so the socket is read until
//! EOF or the error. Received bytes are read into one buffer shared by all connections and
//! copied out for the engine: one copy, but no buffer per idle connection.

use std::collections::VecDeque;
use std::io::{self, Read as _};
use std::net::{SocketAddr, TcpStream as StdStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use trellis_engine::ConnId;

use crate::control::Wake;
use crate::error::IoError;
use crate::event_loop::backend::{Accept, Conns, Event, IoBackend, Purpose, Read, Write};
use crate::event_loop::conn::Conn;
use crate::event_loop::RunOptions;
use crate::listeners::{Listen, Listeners, MAX_LISTENERS};
use crate::sendq::Flush;

const WAKER_TOKEN: Token = Token(0);
const LISTENER_TOKEN_BASE: usize = 1;
const CONN_TOKEN_BASE: usize = LISTENER_TOKEN_BASE + MAX_LISTENERS;

/// The epoll backend of one event loop.
pub(crate) struct Epoll {
    poll: Poll,
    events: Events,
    /// This turn's readiness, copied out of `events` so it can be handed out one at a time.
    ready: VecDeque<(Token, Readiness)>,
    waker: Arc<Waker>,
    /// Every read lands here first.
    read_buf: Vec<u8>,
    syscalls: u64,
}

/// What one readiness event said about a socket.
#[derive(Clone, Copy, Debug, Default)]
struct Readiness {
    readable: bool,
    /// The peer shut its side (EPOLLRDHUP, EPOLLHUP) or the socket has an error (EPOLLERR).
    closed: bool,
    error: bool,
}

impl Readiness {
    fn of(event: &mio::event::Event) -> Self {
        Readiness {
            readable: event.is_readable(),
            closed: event.is_read_closed() || event.is_error(),
            error: event.is_error(),
        }
    }
}

/// A connection's socket and what epoll watches on it.
pub(crate) struct EpollSocket {
    stream: TcpStream,
    /// The interest registered, `None` before the first registration.
    registered: Option<Interest>,
    /// An event said bytes may be waiting, and no read has since found the queue empty: a
    /// read is worth a syscall.
    readable: bool,
    /// An event said the peer closed or the socket failed: read on to EOF or the error, as
    /// no further edge will come.
    peer_closed: bool,
}

impl EpollSocket {
    fn new(stream: TcpStream) -> Self {
        EpollSocket {
            stream,
            registered: None,
            readable: false,
            peer_closed: false,
        }
    }
}

impl AsFd for EpollSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

/// The readiness a connection registers for now: writable always (edge-triggered, it fires
/// only after a write found the socket full, or when a connect completes), readable while it
/// wants reads. Only a change of read interest costs an `epoll_ctl`.
fn wanted_interest<S>(conn: &Conn<S>) -> Interest {
    if conn.wants_reads() {
        Interest::READABLE | Interest::WRITABLE
    } else {
        Interest::WRITABLE
    }
}

/// A writer that counts the syscalls `SendQueue::write_to` makes.
struct Counted<'a> {
    stream: &'a mut TcpStream,
    calls: &'a mut u64,
}

impl io::Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        *self.calls += 1;
        self.stream.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        *self.calls += 1;
        self.stream.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Listen for Epoll {
    type Listener = TcpListener;

    fn listen(
        &mut self,
        index: usize,
        socket: std::net::TcpListener,
    ) -> Result<TcpListener, IoError> {
        let mut socket = TcpListener::from_std(socket);
        self.syscalls += 1;
        self.poll
            .registry()
            .register(
                &mut socket,
                Token(LISTENER_TOKEN_BASE + index),
                Interest::READABLE,
            )
            .map_err(IoError::Register)?;
        Ok(socket)
    }

    fn unlisten(&mut self, mut listener: TcpListener) {
        self.syscalls += 1;
        if let Err(e) = self.poll.registry().deregister(&mut listener) {
            tracing::debug!(error = %e, "deregister failed");
        }
    }
}

impl IoBackend for Epoll {
    type Socket = EpollSocket;

    const FIRST_CONN_TOKEN: usize = CONN_TOKEN_BASE;
    const NONBLOCKING_LISTENERS: bool = true;
    const NAME: &'static str = "epoll";

    fn new(opts: &RunOptions) -> Result<Self, IoError> {
        let poll = Poll::new().map_err(IoError::Poll)?;
        let waker = Waker::new(poll.registry(), WAKER_TOKEN).map_err(IoError::Poll)?;
        let capacity = opts.events_capacity.max(16);
        Ok(Epoll {
            poll,
            events: Events::with_capacity(capacity),
            ready: VecDeque::with_capacity(capacity),
            waker: Arc::new(waker),
            read_buf: vec![0; opts.read_buffer_bytes.max(512)],
            syscalls: 0,
        })
    }

    fn waker(&self) -> Arc<dyn Wake> {
        self.waker.clone()
    }

    fn wait(&mut self, timeout: Option<Duration>) -> Result<(), IoError> {
        self.syscalls += 1;
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => self.events.clear(),
            Err(e) => return Err(IoError::Poll(e)),
        }
        self.ready.clear();
        self.ready
            .extend(self.events.iter().map(|e| (e.token(), Readiness::of(e))));
        Ok(())
    }

    fn next_event(
        &mut self,
        conns: &mut Conns<Self>,
        _listeners: &mut Listeners<TcpListener>,
    ) -> Option<Event> {
        while let Some((token, readiness)) = self.ready.pop_front() {
            if token == WAKER_TOKEN {
                // Control requests are picked up at the top of the loop.
                continue;
            }
            if token.0 < CONN_TOKEN_BASE {
                return Some(Event::Listener(token.0 - LISTENER_TOKEN_BASE));
            }
            // A connection closed earlier in this turn has no id: its token is not reused
            // before the turn ends (`ConnSlab::release_freed`).
            let Some(id) = conns.id_of(token) else {
                continue;
            };
            if let Some(conn) = conns.get_mut(id) {
                let socket = &mut conn.socket;
                socket.readable |= readiness.readable || readiness.closed;
                socket.peer_closed |= readiness.closed;
            }
            return Some(Event::Conn {
                id,
                error: readiness.error,
            });
        }
        None
    }

    fn accept(&mut self, _index: usize, listener: &mut TcpListener) -> Accept {
        self.syscalls += 1;
        match listener.accept() {
            Ok((stream, peer)) => Accept::Stream {
                stream: StdStream::from(stream),
                peer: Some(peer),
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Accept::Pending,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                ) =>
            {
                Accept::Retry
            }
            Err(e) => Accept::Failed(e),
        }
    }

    fn adopt(&mut self, stream: StdStream) -> EpollSocket {
        EpollSocket::new(TcpStream::from_std(stream))
    }

    fn connect(&mut self, _id: ConnId, addr: SocketAddr) -> io::Result<EpollSocket> {
        self.syscalls += 2; // socket, connect
        let stream = TcpStream::connect(addr)?;
        self.syscalls += 1;
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        Ok(EpollSocket::new(stream))
    }

    fn connect_result(&mut self, conn: &mut Conn<EpollSocket>) -> Option<io::Result<()>> {
        self.syscalls += 1;
        match conn.socket.stream.take_error() {
            Ok(Some(e)) | Err(e) => return Some(Err(e)),
            Ok(None) => {}
        }
        self.syscalls += 1;
        match conn.socket.stream.peer_addr() {
            Ok(_) => Some(Ok(())),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => None, // still in progress
            Err(e) => Some(Err(e)),
        }
    }

    fn update(&mut self, conn: &mut Conn<EpollSocket>) -> io::Result<()> {
        let wanted = Some(wanted_interest(conn));
        let socket = &mut conn.socket;
        if wanted == socket.registered {
            return Ok(());
        }
        let registry = self.poll.registry();
        self.syscalls += 1;
        match (socket.registered, wanted) {
            (None, Some(i)) => registry.register(&mut socket.stream, conn.token, i)?,
            (Some(_), Some(i)) => registry.reregister(&mut socket.stream, conn.token, i)?,
            (_, None) => {}
        }
        socket.registered = wanted;
        Ok(())
    }

    fn read(&mut self, conn: &mut Conn<EpollSocket>, purpose: Purpose) -> Read {
        let socket = &mut conn.socket;
        if !socket.readable {
            // The last read found the queue empty and no edge came since.
            return Read::Pending;
        }
        loop {
            self.syscalls += 1;
            return match socket.stream.read(&mut self.read_buf) {
                Ok(0) => Read::Eof,
                Ok(n) => {
                    if n < self.read_buf.len() && !socket.peer_closed {
                        // A short read emptied the queue; the next byte raises an edge.
                        socket.readable = false;
                    }
                    match purpose {
                        Purpose::Engine => Read::Data(Bytes::copy_from_slice(
                            self.read_buf.get(..n).unwrap_or(&[]),
                        )),
                        Purpose::Discard => Read::Data(Bytes::new()),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    socket.readable = false;
                    Read::Pending
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Read::Failed(e),
            };
        }
    }

    fn write(&mut self, conn: &mut Conn<EpollSocket>) -> Write {
        let mut counted = Counted {
            stream: &mut conn.socket.stream,
            calls: &mut self.syscalls,
        };
        match conn.sendq.write_to(&mut counted) {
            Ok(Flush::Drained) => Write::Drained,
            // The writable edge, registered for good, says when to go on.
            Ok(Flush::Blocked) => Write::Pending,
            Err(e) => Write::Failed(e),
        }
    }

    fn close(&mut self, conn: Conn<EpollSocket>) {
        // No `epoll_ctl(DEL)`: closing the descriptor (dropping the stream, now) removes it
        // from the epoll set, as nothing else holds the open file (never duplicated, and
        // close-on-exec). An event already taken for it this turn finds no connection.
        drop(conn);
    }

    fn syscalls(&self) -> u64 {
        self.syscalls
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_loop::conn::{Phase, Side};

    #[test]
    fn interest_follows_state() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let mut c = Conn::new(ConnId(1), stream, Side::Upstream, Phase::Connecting);
        let both = Interest::READABLE | Interest::WRITABLE;
        assert_eq!(
            wanted_interest(&c),
            Interest::WRITABLE,
            "connecting: the connect's edge"
        );
        c.phase = Phase::Open;
        assert_eq!(wanted_interest(&c), both);
        c.sendq.push(Bytes::from_static(b"x"));
        assert_eq!(
            wanted_interest(&c),
            both,
            "queued bytes change nothing: writable is kept"
        );
        c.read_enabled = false;
        assert_eq!(wanted_interest(&c), Interest::WRITABLE, "reads paused");
        c.sendq.clear();
        assert_eq!(wanted_interest(&c), Interest::WRITABLE);
        c.read_enabled = true;
        c.close_requested = true;
        assert_eq!(
            wanted_interest(&c),
            Interest::WRITABLE,
            "closing: only the flush matters"
        );
        c.close_requested = false;
        c.read_closed = true;
        assert_eq!(wanted_interest(&c), Interest::WRITABLE);
        c.phase = Phase::Lingering {
            until: std::time::Instant::now(),
        };
        assert_eq!(wanted_interest(&c), both, "lingering reads to discard");
    }
}
