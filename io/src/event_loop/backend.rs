//! What differs between the two backends, and nothing else: how sockets are registered with
//! the kernel, and how reads, writes, accepts and connects are started and finished.
//!
//! The event loop asks, the backend answers. Both backends answer in the same terms:
//!
//! - an [`Event`] says "look at this listener / connection again" (epoll: it became ready;
//!   io_uring: an operation on it completed, and its result is kept with the socket);
//! - then the loop *pulls*: [`IoBackend::read`], [`IoBackend::write`], [`IoBackend::accept`]
//!   and [`IoBackend::connect_result`] either have an outcome now or say [`Read::Pending`]
//!   (and friends), in which case the backend sees to it that an event follows.
//!
//! For epoll a pull is the syscall itself, done when readiness says it will not block. For
//! io_uring a pull takes the result a completion left behind and starts the next operation
//! (a receive is kept in flight while the connection wants bytes; a send while bytes are
//! queued), so the kernel works ahead of the loop. Pulling keeps the loop in charge of pace:
//! it asks for the next chunk only after the engine took the previous one, which is how
//! backpressure (`Output::ReadInterest`) takes effect between two chunks on both backends.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use trellis_engine::ConnId;

use super::conn::Conn;
use super::RunOptions;
use crate::control::Wake;
use crate::error::IoError;
use crate::listeners::{Listen, Listeners};
use crate::slab::ConnSlab;

/// The connection table of a backend.
pub(crate) type Conns<B> = ConnSlab<Conn<<B as IoBackend>::Socket>>;

/// Something to look at again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// The listener in this slot may have connections to accept.
    Listener(usize),
    /// This connection may be readable, writable, connected or failed. `error`: epoll
    /// reported an error condition on the socket (its `SO_ERROR` says which).
    Conn { id: ConnId, error: bool },
}

/// What one accept gave.
pub(crate) enum Accept {
    /// A new connection, with the peer's address when the backend already has it.
    Stream {
        stream: TcpStream,
        peer: Option<SocketAddr>,
    },
    /// Nothing to accept now; an [`Event::Listener`] follows when there is.
    Pending,
    /// A transient failure (EINTR, a connection aborted before it was accepted): try again.
    Retry,
    /// EMFILE and friends: the listener should rest before trying again.
    Failed(io::Error),
}

/// Whether the bytes read are for the engine or only to be thrown away (lingering close).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    Engine,
    Discard,
}

/// What one read gave.
pub(crate) enum Read {
    /// Bytes (empty when read for [`Purpose::Discard`]).
    Data(Bytes),
    /// The peer finished sending.
    Eof,
    /// Nothing now; an [`Event::Conn`] follows when there is.
    Pending,
    Failed(io::Error),
}

/// What one write gave.
pub(crate) enum Write {
    /// The send queue is empty: everything the engine sent has been taken by the socket.
    Drained,
    /// Bytes are still queued; an [`Event::Conn`] follows when the socket can take more.
    Pending,
    Failed(io::Error),
}

/// A socket backend the event loop runs on: epoll ([`crate::epoll`]) or io_uring
/// ([`crate::uring`]).
pub(crate) trait IoBackend: Listen + Sized {
    /// Per-connection socket and the backend's I/O state for it.
    type Socket: AsFd;

    /// The first connection token (epoll reserves the ones below for its waker and listeners).
    const FIRST_CONN_TOKEN: usize;
    /// Listening sockets are non-blocking (readiness) or blocking (the kernel parks accepts).
    const NONBLOCKING_LISTENERS: bool;
    /// For log lines.
    const NAME: &'static str;

    fn new(opts: &RunOptions) -> Result<Self, IoError>;

    /// What the control handle uses to wake a loop that is waiting in [`IoBackend::wait`].
    fn waker(&self) -> Arc<dyn Wake>;

    /// Start what is queued and wait until there are events or `timeout` passes (`None`:
    /// no limit). Returns at once if events are already waiting.
    fn wait(&mut self, timeout: Option<Duration>) -> Result<(), IoError>;

    /// The next event of this turn; may update the sockets and listeners it names (io_uring
    /// keeps each completion's result with its socket).
    fn next_event(
        &mut self,
        conns: &mut Conns<Self>,
        listeners: &mut Listeners<Self::Listener>,
    ) -> Option<Event>;

    /// Called after each event is handled (io_uring submits a long queue early, so the first
    /// requests of a large batch are not held back until the whole batch is processed).
    fn after_event(&mut self) {}

    /// Accept one connection on the listener in slot `index`.
    fn accept(&mut self, index: usize, listener: &mut Self::Listener) -> Accept;

    /// Take over an accepted connection.
    fn adopt(&mut self, stream: TcpStream) -> Self::Socket;

    /// Open a socket to `addr` and start connecting it for connection `id`.
    fn connect(&mut self, id: ConnId, addr: SocketAddr) -> io::Result<Self::Socket>;

    /// The connect's outcome, `None` while it is still in progress.
    fn connect_result(&mut self, conn: &mut Conn<Self::Socket>) -> Option<io::Result<()>>;

    /// Bring the backend in line with what the connection wants now (its phase, its read
    /// interest, its send queue): epoll (re)registers interest, io_uring keeps a receive in
    /// flight while the connection wants reads.
    fn update(&mut self, conn: &mut Conn<Self::Socket>) -> io::Result<()>;

    /// Read once from a connection that wants reads.
    fn read(&mut self, conn: &mut Conn<Self::Socket>, purpose: Purpose) -> Read;

    /// Write from the connection's send queue, as far as the socket takes it.
    fn write(&mut self, conn: &mut Conn<Self::Socket>) -> Write;

    /// Forget a connection (removed from the table): deregister it or cancel what it has in
    /// flight. The descriptor closes once nothing in the kernel names it any more.
    fn close(&mut self, conn: Conn<Self::Socket>);

    /// System calls made so far (io_uring: `io_uring_enter`s), for the per-request figures.
    fn syscalls(&self) -> u64;

    /// Operations handed to the kernel's ring so far (io_uring's SQEs; none for epoll).
    fn ring_operations(&self) -> u64 {
        0
    }

    /// Multishot receives the kernel ended for want of a provided buffer (io_uring's
    /// ENOBUFS; none for epoll).
    fn buffers_exhausted(&self) -> u64 {
        0
    }
}
