//! The epoll backend (through `mio`): readiness in, syscalls done by us.
//!
//! The fallback DESIGN.md asks for where io_uring is blocked (Docker's default seccomp
//! profile, `io_uring_disabled`, old kernels). A socket is registered for the readiness its
//! connection wants ([`wanted_interest`]: writable while connecting or while bytes are
//! queued, readable while the connection wants reads); when `epoll_wait` says it is ready,
//! the event loop pulls, and each pull here is the syscall itself: `accept`, `read`,
//! `writev`, or `SO_ERROR` for a connect. `WouldBlock` means "wait for the next event".
//!
//! Registration is edge-triggered, and re-registering re-arms the edge, so reads resumed after
//! a pause report data that arrived meanwhile. Received bytes are read into one buffer shared
//! by all connections and copied out for the engine: one copy, but no buffer per idle
//! connection.

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
use crate::event_loop::conn::{Conn, Phase};
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
    ready: VecDeque<(Token, bool)>,
    waker: Arc<Waker>,
    /// Every read lands here first.
    read_buf: Vec<u8>,
    syscalls: u64,
}

/// A connection's socket and what epoll watches on it.
pub(crate) struct EpollSocket {
    stream: TcpStream,
    /// The interest registered, `None` when not registered.
    registered: Option<Interest>,
}

impl AsFd for EpollSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

/// The readiness a connection needs to hear about now.
fn wanted_interest<S>(conn: &Conn<S>) -> Option<Interest> {
    let (readable, writable) = match conn.phase {
        Phase::Connecting => (false, true),
        Phase::Open | Phase::Lingering { .. } => (conn.wants_reads(), conn.wants_writes()),
    };
    match (readable, writable) {
        (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
        (true, false) => Some(Interest::READABLE),
        (false, true) => Some(Interest::WRITABLE),
        (false, false) => None,
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
            .extend(self.events.iter().map(|e| (e.token(), e.is_error())));
        Ok(())
    }

    fn next_event(
        &mut self,
        conns: &mut Conns<Self>,
        _listeners: &mut Listeners<TcpListener>,
    ) -> Option<Event> {
        while let Some((token, error)) = self.ready.pop_front() {
            if token == WAKER_TOKEN {
                // Control requests are picked up at the top of the loop.
                continue;
            }
            if token.0 < CONN_TOKEN_BASE {
                return Some(Event::Listener(token.0 - LISTENER_TOKEN_BASE));
            }
            // A connection closed earlier in this turn has no id: its token is not reused
            // before the turn ends (`ConnSlab::release_freed`).
            if let Some(id) = conns.id_of(token) {
                return Some(Event::Conn { id, error });
            }
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
        EpollSocket {
            stream: TcpStream::from_std(stream),
            registered: None,
        }
    }

    fn connect(&mut self, _id: ConnId, addr: SocketAddr) -> io::Result<EpollSocket> {
        self.syscalls += 2; // socket, connect
        let stream = TcpStream::connect(addr)?;
        self.syscalls += 1;
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        Ok(EpollSocket {
            stream,
            registered: None,
        })
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
        let wanted = wanted_interest(conn);
        let socket = &mut conn.socket;
        if wanted == socket.registered {
            return Ok(());
        }
        let registry = self.poll.registry();
        self.syscalls += 1;
        match (socket.registered, wanted) {
            (None, Some(i)) => registry.register(&mut socket.stream, conn.token, i)?,
            (Some(_), Some(i)) => registry.reregister(&mut socket.stream, conn.token, i)?,
            (Some(_), None) => registry.deregister(&mut socket.stream)?,
            (None, None) => {}
        }
        socket.registered = wanted;
        Ok(())
    }

    fn read(&mut self, conn: &mut Conn<EpollSocket>, purpose: Purpose) -> Read {
        loop {
            self.syscalls += 1;
            return match conn.socket.stream.read(&mut self.read_buf) {
                Ok(0) => Read::Eof,
                Ok(n) => match purpose {
                    Purpose::Engine => Read::Data(Bytes::copy_from_slice(
                        self.read_buf.get(..n).unwrap_or(&[]),
                    )),
                    Purpose::Discard => Read::Data(Bytes::new()),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Read::Pending,
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
            // Wait for writable.
            Ok(Flush::Blocked) => match self.update(conn) {
                Ok(()) => Write::Pending,
                Err(e) => Write::Failed(e),
            },
            Err(e) => Write::Failed(e),
        }
    }

    fn close(&mut self, mut conn: Conn<EpollSocket>) {
        if conn.socket.registered.is_some() {
            self.syscalls += 1;
            if let Err(e) = self.poll.registry().deregister(&mut conn.socket.stream) {
                tracing::debug!(conn = %conn.id, error = %e, "deregister failed");
            }
        }
    }

    fn syscalls(&self) -> u64 {
        self.syscalls
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_loop::conn::Side;

    #[test]
    fn interest_follows_state() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let mut c = Conn::new(ConnId(1), stream, Side::Upstream, Phase::Connecting);
        assert_eq!(wanted_interest(&c), Some(Interest::WRITABLE));
        c.phase = Phase::Open;
        assert_eq!(wanted_interest(&c), Some(Interest::READABLE));
        c.sendq.push(Bytes::from_static(b"x"));
        assert_eq!(
            wanted_interest(&c),
            Some(Interest::READABLE | Interest::WRITABLE)
        );
        c.read_enabled = false;
        assert_eq!(wanted_interest(&c), Some(Interest::WRITABLE));
        c.sendq.clear();
        assert_eq!(wanted_interest(&c), None);
        c.read_enabled = true;
        c.close_requested = true;
        assert_eq!(wanted_interest(&c), None, "closing: only the flush matters");
        c.close_requested = false;
        c.read_closed = true;
        assert_eq!(wanted_interest(&c), None);
        c.phase = Phase::Lingering {
            until: std::time::Instant::now(),
        };
        assert_eq!(wanted_interest(&c), Some(Interest::READABLE));
    }
}
