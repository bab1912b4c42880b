//! The io_uring backend: operations kept in flight in the kernel, completions in.
//!
//! Where epoll waits for readiness and then makes the syscall, this backend has the kernel
//! work ahead: an accept per listener, a receive per connection that wants reads, at most one
//! `sendmsg` per connection while bytes are queued, connects. A completion's result is kept
//! with its socket and the event loop is told to look at it; when the loop pulls (a read, a
//! write, an accept), it takes that result and the next operation starts. One `io_uring_enter`
//! both submits what the turn queued and waits for the next completions.
//!
//! Two receive paths, chosen once at start-up ([`probe`]) and logged:
//!
//! - **multishot** (Linux 6.0+): one multishot accept per listener and one multishot receive
//!   per connection stay armed across requests, so a keep-alive request costs no new
//!   submission to read it; receives select buffers from a ring shared by all connections
//!   ([`bufring`]), so an idle connection holds no buffer. What [`recv`] does about buffer
//!   exhaustion, paused reads and closes while armed is documented there.
//! - **single-shot** (older kernels, or `RunOptions::provided_buffers` 0): one accept and one
//!   receive at a time, each re-armed after its completion is taken; each connection receives
//!   into the spare capacity of its own `BytesMut`.
//!
//! Sends go out directly (a non-blocking `sendmsg` in the turn they are asked for), and only
//! what the socket would not take goes to a ring send of the engine's own `Bytes` chunks:
//! [`send`] says why, and why `IOSQE_CQE_SKIP_SUCCESS` cannot do this for a send.
//!
//! [`ops`] owns the ring and everything an operation in flight points at.

mod bufring;
mod ops;
mod probe;
mod recv;
mod send;

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use io_uring::cqueue;
use socket2::{Domain, Protocol, Socket, Type};
use trellis_engine::ConnId;

use crate::control::Wake;
use crate::error::IoError;
use crate::event_loop::backend::{Accept, Conns, Event, IoBackend, Purpose, Read, Write};
use crate::event_loop::conn::Conn;
use crate::event_loop::RunOptions;
use crate::listeners::{Listen, Listeners};
use ops::{EventFd, Op, Ring};
use recv::Received;

/// Submission queue entries (the completion queue is twice as large; with
/// IORING_FEAT_NODROP an overflowing completion is kept by the kernel, not lost).
const RING_ENTRIES: u32 = 1024;
/// Size of a receive buffer (at most `RunOptions::read_buffer_bytes`): a connection's own on
/// the single-shot path, where the kernel fills it front to back across receives and its size
/// is resident memory per connection (16 KiB keeps 64 keep-alive pairs near 2 MiB where 64 KiB
/// cost 8 MiB); one provided buffer on the multishot path.
const RECV_BUFFER: usize = 16 * 1024;
/// A single-shot receive is armed only with at least this much spare buffer; below it a fresh
/// buffer is allocated (the old one lives on in the `Bytes` handed to the engine).
const MIN_RECV_SPARE: usize = 2048;
/// Queued submissions that trigger a submit in the middle of a batch of completions.
const EARLY_SUBMIT: usize = 16;

fn os_error(result: i32) -> io::Error {
    io::Error::from_raw_os_error(-result)
}

/// The io_uring backend of one event loop. Not `Send`: operations share sockets through `Rc`,
/// so it is built on the thread that runs it.
pub(crate) struct Uring {
    ring: Ring,
    eventfd: Arc<EventFd>,
    /// This turn's completions, `(user_data, result, flags)`.
    completions: VecDeque<(u64, i32, u32)>,
    /// Connections to look at again without a completion: received bytes were kept while
    /// the engine paused reading, and it wants bytes again.
    nudged: VecDeque<ConnId>,
    read_size: usize,
    /// Multishot accepts and receives with provided buffers (else single-shot).
    multishot: bool,
    /// Multishot receives the kernel ended for want of a provided buffer (ENOBUFS).
    buffers_exhausted: u64,
    /// Send directly before queueing a ring send ([`send`]).
    direct_sends: bool,
    /// `sendmsg` syscalls made by direct sends.
    direct_syscalls: u64,
}

/// A connection's socket, the operations it has in flight and the results not yet taken.
pub(crate) struct UringSocket {
    fd: Rc<OwnedFd>,
    /// Single-shot path: the spare receive buffer (absent while a receive owns it).
    buf: Option<BytesMut>,
    recv_op: Option<u64>,
    /// The multishot receive in `recv_op` was asked to stop (paused reads, a close); its
    /// last completion is still to come.
    recv_stopping: bool,
    /// What receives delivered and the loop has not pulled yet, in order.
    inbox: VecDeque<Received>,
    send_op: Option<u64>,
    /// A send's result not yet applied to the send queue: bytes written, or the error.
    sent: Option<io::Result<usize>>,
    connect_op: Option<u64>,
    connected: Option<io::Result<()>>,
    /// The connection did not want reads at the last update (the engine paused them): bytes
    /// kept meanwhile need a nudge when reads resume, as no event will come.
    paused: bool,
}

impl UringSocket {
    fn new(fd: OwnedFd) -> Self {
        UringSocket {
            fd: Rc::new(fd),
            buf: None,
            recv_op: None,
            recv_stopping: false,
            inbox: VecDeque::new(),
            send_op: None,
            sent: None,
            connect_op: None,
            connected: None,
            paused: false,
        }
    }
}

impl AsFd for UringSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A listening socket, its accept in flight and the accepts' results not yet taken (several
/// when the accept is multishot).
pub(crate) struct UringListener {
    fd: Rc<OwnedFd>,
    accept_op: Option<u64>,
    accepted: VecDeque<io::Result<TcpStream>>,
}

impl Uring {
    /// Keep a completion's result with its socket; the event that tells the loop, if any.
    fn complete(
        &mut self,
        (user_data, result, flags): (u64, i32, u32),
        conns: &mut Conns<Self>,
        listeners: &mut Listeners<UringListener>,
    ) -> Option<Event> {
        // A provided buffer: its bytes are copied out if its connection takes them, and it
        // goes back to the kernel whatever became of the connection.
        let mut lent = cqueue::buffer_select(flags);
        let event = self.dispatch(user_data, result, flags, &mut lent, conns, listeners);
        if let Some(bid) = lent {
            self.give_back(bid);
        }
        event
    }

    /// [`Uring::complete`] for one operation; takes `lent` (the provided buffer) if it copies
    /// its bytes out.
    fn dispatch(
        &mut self,
        user_data: u64,
        result: i32,
        flags: u32,
        lent: &mut Option<u16>,
        conns: &mut Conns<Self>,
        listeners: &mut Listeners<UringListener>,
    ) -> Option<Event> {
        if user_data == ops::CANCEL {
            return None;
        }
        if cqueue::more(flags) {
            // A multishot operation goes on: its entry (and what it points at) stays.
            return match self.ring.ops.get(user_data) {
                Some(Op::Accept { listener, .. }) => {
                    let listener = *listener;
                    self.accepted(listener, user_data, result, true, listeners)
                }
                Some(Op::RecvMulti { conn, .. }) => {
                    let conn = *conn;
                    self.received_multi(conn, user_data, result, true, lent, conns)
                }
                _ => {
                    tracing::error!(user_data, "more completions for a single-shot operation");
                    None
                }
            };
        }
        let Some(op) = self.ring.ops.take(user_data) else {
            tracing::error!(user_data, "completion for an unknown operation");
            return None;
        };
        match op {
            Op::Wake { .. } => {
                // Control requests are picked up at the top of the loop; watch again.
                self.ring.watch_wake(self.eventfd.raw());
                None
            }
            Op::Accept { listener, .. } => {
                self.accepted(listener, user_data, result, false, listeners)
            }
            Op::Recv { conn, buf, .. } => self.received(conn, user_data, result, buf, conns),
            Op::RecvMulti { conn, .. } => {
                self.received_multi(conn, user_data, result, false, lent, conns)
            }
            Op::Send { conn, bufs, .. } => self.sent(conn, user_data, result, bufs, conns),
            Op::Connect { conn, .. } => {
                let c = conns
                    .get_mut(conn)
                    .filter(|c| c.socket.connect_op == Some(user_data))?;
                c.socket.connect_op = None;
                c.socket.connected = Some(if result < 0 {
                    Err(os_error(result))
                } else {
                    Ok(())
                });
                Some(Event::Conn {
                    id: conn,
                    error: false,
                })
            }
        }
    }

    /// An accept completed (`more`: a multishot accept that goes on).
    fn accepted(
        &mut self,
        listener: usize,
        user_data: u64,
        result: i32,
        more: bool,
        listeners: &mut Listeners<UringListener>,
    ) -> Option<Event> {
        let slot = listeners
            .get_mut(listener)
            .filter(|l| l.socket.accept_op == Some(user_data));
        let Some(slot) = slot else {
            // The listener was closed while this accept was in flight.
            if result >= 0 {
                // SAFETY: a successful accept returns a new descriptor we own.
                drop(unsafe { OwnedFd::from_raw_fd(result) });
            }
            return None;
        };
        if !more {
            slot.socket.accept_op = None;
        }
        match result {
            // SAFETY: a successful accept returns a new descriptor we own.
            r if r >= 0 => slot
                .socket
                .accepted
                .push_back(Ok(unsafe { TcpStream::from_raw_fd(r) })),
            r if -r == libc::ECANCELED => return None,
            // Transient: the loop's next accept starts another if this one ended.
            r if matches!(-r, libc::EINTR | libc::ECONNABORTED | libc::EAGAIN) => {}
            r => slot.socket.accepted.push_back(Err(os_error(r))),
        }
        Some(Event::Listener(listener))
    }
}

impl Listen for Uring {
    type Listener = UringListener;

    fn listen(
        &mut self,
        _index: usize,
        socket: std::net::TcpListener,
    ) -> Result<UringListener, IoError> {
        // Accepts start when the loop first accepts on it.
        Ok(UringListener {
            fd: Rc::new(OwnedFd::from(socket)),
            accept_op: None,
            accepted: VecDeque::new(),
        })
    }

    fn unlisten(&mut self, listener: UringListener) {
        if let Some(op) = listener.accept_op {
            self.ring.cancel(op);
        }
    }
}

impl IoBackend for Uring {
    type Socket = UringSocket;

    const FIRST_CONN_TOKEN: usize = 0;
    const NONBLOCKING_LISTENERS: bool = false;
    const NAME: &'static str = "io_uring";

    fn new(opts: &RunOptions) -> Result<Self, IoError> {
        let mut ring = Ring::new(RING_ENTRIES).map_err(IoError::Uring)?;
        let read_size = opts.read_buffer_bytes.clamp(MIN_RECV_SPARE, RECV_BUFFER);
        let multishot = probe::choose_receive_path(&mut ring, opts.provided_buffers, read_size);
        let eventfd = Arc::new(EventFd::new().map_err(IoError::Uring)?);
        ring.watch_wake(eventfd.raw());
        Ok(Uring {
            ring,
            eventfd,
            completions: VecDeque::with_capacity(RING_ENTRIES as usize),
            nudged: VecDeque::new(),
            read_size,
            multishot,
            buffers_exhausted: 0,
            direct_sends: opts.direct_sends,
            direct_syscalls: 0,
        })
    }

    fn waker(&self) -> Arc<dyn Wake> {
        self.eventfd.clone()
    }

    fn wait(&mut self, timeout: Option<Duration>) -> Result<(), IoError> {
        let timeout = if self.nudged.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        self.ring.submit_and_wait(timeout).map_err(IoError::Uring)?;
        self.completions.extend(
            self.ring
                .ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        Ok(())
    }

    fn next_event(
        &mut self,
        conns: &mut Conns<Self>,
        listeners: &mut Listeners<UringListener>,
    ) -> Option<Event> {
        while let Some(id) = self.nudged.pop_front() {
            if conns.get(id).is_some() {
                return Some(Event::Conn { id, error: false });
            }
        }
        while let Some(completion) = self.completions.pop_front() {
            if let Some(event) = self.complete(completion, conns, listeners) {
                return Some(event);
            }
        }
        self.check_buffers();
        None
    }

    fn after_event(&mut self) {
        if self.ring.ring.submission().len() >= EARLY_SUBMIT {
            self.ring.submit();
        }
    }

    fn accept(&mut self, index: usize, listener: &mut UringListener) -> Accept {
        match listener.accepted.pop_front() {
            Some(Ok(stream)) => Accept::Stream { stream, peer: None },
            Some(Err(e)) => Accept::Failed(e),
            None => {
                if listener.accept_op.is_none() {
                    let fd = listener.fd.clone();
                    listener.accept_op = Some(self.ring.accept(index, fd, self.multishot));
                }
                Accept::Pending
            }
        }
    }

    fn adopt(&mut self, stream: TcpStream) -> UringSocket {
        UringSocket::new(OwnedFd::from(stream))
    }

    fn connect(&mut self, id: ConnId, addr: SocketAddr) -> io::Result<UringSocket> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        if let Err(e) = socket.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let mut socket = UringSocket::new(OwnedFd::from(socket));
        socket.connect_op = Some(self.ring.connect(id, socket.fd.clone(), addr.into()));
        Ok(socket)
    }

    fn connect_result(&mut self, conn: &mut Conn<UringSocket>) -> Option<io::Result<()>> {
        conn.socket.connected.take()
    }

    fn update(&mut self, conn: &mut Conn<UringSocket>) -> io::Result<()> {
        if !conn.wants_reads() {
            conn.socket.paused = true;
            self.stop_multishot(&mut conn.socket);
        } else if !conn.socket.inbox.is_empty() {
            if std::mem::take(&mut conn.socket.paused) {
                // Kept while reading was paused: have the loop pull it now.
                self.nudged.push_back(conn.id);
            }
        } else {
            conn.socket.paused = false;
            self.arm_recv(conn);
        }
        Ok(())
    }

    fn read(&mut self, conn: &mut Conn<UringSocket>, purpose: Purpose) -> Read {
        let outcome = match conn.socket.inbox.pop_front() {
            None => Read::Pending,
            Some(Received::Data(data)) => match purpose {
                Purpose::Engine => Read::Data(data),
                Purpose::Discard => Read::Data(Bytes::new()),
            },
            Some(Received::Eof) => return Read::Eof,
            Some(Received::Failed(e)) => return Read::Failed(e),
        };
        self.arm_recv(conn);
        outcome
    }

    fn write(&mut self, conn: &mut Conn<UringSocket>) -> Write {
        self.write_queue(conn)
    }

    fn close(&mut self, conn: Conn<UringSocket>) {
        let mut socket = conn.socket;
        // A multishot receive may already be stopping: one cancel is enough. Either way its
        // entry (and the descriptor) lives until its last completion.
        if socket.recv_stopping {
            socket.recv_op = None;
        }
        for op in [socket.recv_op, socket.send_op, socket.connect_op]
            .into_iter()
            .flatten()
        {
            self.ring.cancel(op);
        }
    }

    fn syscalls(&self) -> u64 {
        self.ring.enters + self.direct_syscalls
    }

    fn ring_operations(&self) -> u64 {
        self.ring.entries
    }

    fn buffers_exhausted(&self) -> u64 {
        self.buffers_exhausted
    }
}
