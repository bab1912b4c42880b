//! In-flight io_uring operations and the buffers they own.
//!
//! The kernel writes into (or reads from) an operation's memory until its completion arrives,
//! so everything an operation points at — the receive buffer, the chunks being sent and their
//! iovecs, the connect address, the eventfd counter — is owned by its entry in [`Ops`] and
//! freed only when the completion is taken. The entry's index is the SQE's `user_data`.
//!
//! Multishot operations (an accept, a receive selecting from [`super::bufring`]) post many
//! completions under one `user_data`; their entry stays until the last one (no
//! IORING_CQE_F_MORE), so whatever they point at outlives every completion.
//!
//! Each operation also holds a reference to its socket, so closing a connection while an
//! operation is in flight (after asking the kernel to cancel it) only closes the descriptor
//! once the last completion has come back: a descriptor number is never reused under an
//! operation that still names it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use io_uring::{opcode, squeue, types, IoUring};
use trellis_engine::ConnId;

use super::bufring::{self, BufRing};
use crate::control::Wake;

/// `user_data` of cancel requests (their completions carry nothing we need).
pub(super) const CANCEL: u64 = u64::MAX;
/// Chunks handed to one `sendmsg` at most.
pub(super) const MAX_IOVECS: usize = 64;

/// What an in-flight operation is and what it owns.
pub(super) enum Op {
    /// A single-shot or multishot accept.
    Accept {
        listener: usize,
        _socket: Rc<OwnedFd>,
    },
    Recv {
        conn: ConnId,
        buf: BytesMut,
        _socket: Rc<OwnedFd>,
    },
    /// A multishot receive: the kernel picks each completion's buffer from the ring.
    RecvMulti {
        conn: ConnId,
        _socket: Rc<OwnedFd>,
    },
    Send {
        conn: ConnId,
        bufs: SendBufs,
        _socket: Rc<OwnedFd>,
    },
    Connect {
        conn: ConnId,
        _addr: Box<socket2::SockAddr>,
        _socket: Rc<OwnedFd>,
    },
    Wake {
        _buf: Box<[u8; 8]>,
    },
}

/// The memory of one `sendmsg`: the chunks (kept alive while the kernel reads them), their
/// iovecs and the msghdr. Recycled through [`Ring::send_bufs`] / [`Ring::recycle`], so a warm
/// driver sends without allocating.
pub(super) struct SendBufs {
    pub chunks: Vec<Bytes>,
    iovecs: Vec<libc::iovec>,
    msg: Box<libc::msghdr>,
}

impl SendBufs {
    fn new() -> Self {
        SendBufs {
            chunks: Vec::with_capacity(MAX_IOVECS),
            iovecs: Vec::with_capacity(MAX_IOVECS),
            // SAFETY: msghdr is plain old data; zeroed is "no name, no control".
            msg: Box::new(unsafe { std::mem::zeroed() }),
        }
    }
}

/// Idle [`SendBufs`] kept for reuse, at most.
const SEND_POOL: usize = 256;

/// The operation table. A `user_data` is a slot index (low 32 bits) plus that slot's
/// generation (high 32 bits), so it is never reused: an `AsyncCancel` submitted for an
/// operation that completes before the kernel sees the cancel must not cancel whatever
/// operation takes the slot next (that race reset unrelated connections).
#[derive(Default)]
pub(super) struct Ops {
    slots: Vec<(u32, Option<Op>)>,
    free: Vec<usize>,
    live: usize,
}

fn user_data_of(index: usize, generation: u32) -> u64 {
    (u64::from(generation) << 32) | index as u64
}

impl Ops {
    fn insert(&mut self, op: Op) -> u64 {
        self.live += 1;
        if let Some(i) = self.free.pop() {
            if let Some(slot) = self.slots.get_mut(i) {
                // The kernel still owns whatever a live operation points at: never overwrite one.
                debug_assert!(
                    slot.1.is_none(),
                    "operation slot {i} reused while in flight"
                );
                slot.0 = slot.0.wrapping_add(1);
                slot.1 = Some(op);
                return user_data_of(i, slot.0);
            }
        }
        self.slots.push((0, Some(op)));
        user_data_of(self.slots.len() - 1, 0)
    }

    /// Take the operation a completion belongs to (None for a stale or unknown `user_data`).
    pub fn take(&mut self, user_data: u64) -> Option<Op> {
        let i = usize::try_from(user_data & 0xffff_ffff).ok()?;
        let generation = (user_data >> 32) as u32;
        let slot = self.slots.get_mut(i)?;
        if slot.0 != generation {
            return None;
        }
        let op = slot.1.take()?;
        self.free.push(i);
        debug_assert!(self.live > 0, "more completions than operations");
        self.live -= 1;
        Some(op)
    }

    /// The operation a completion belongs to, left in place (a multishot's completion that
    /// is not its last).
    pub fn get(&self, user_data: u64) -> Option<&Op> {
        let i = usize::try_from(user_data & 0xffff_ffff).ok()?;
        let generation = (user_data >> 32) as u32;
        match self.slots.get(i)? {
            (g, Some(op)) if *g == generation => Some(op),
            _ => None,
        }
    }

    pub fn live(&self) -> usize {
        self.live
    }

    /// `user_data` of every in-flight operation.
    pub fn in_flight(&self) -> Vec<u64> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.1.is_some())
            .map(|(i, s)| user_data_of(i, s.0))
            .collect()
    }
}

/// The ring plus the table of what it is working on.
pub(super) struct Ring {
    pub ring: IoUring,
    pub ops: Ops,
    /// The provided buffers of multishot receives; `None` on the single-shot path.
    pub bufs: Option<BufRing>,
    send_pool: Vec<SendBufs>,
    /// `io_uring_enter` calls made (submits and waits): the backend's syscalls.
    pub enters: u64,
    /// Submission queue entries queued (operations and cancels).
    pub entries: u64,
    /// The kernel has `IOSQE_CQE_SKIP_SUCCESS` (5.17): cancels post a completion only when
    /// they fail.
    skip_cqe: bool,
}

impl Ring {
    /// A ring for the calling thread only. Where the kernel has them (Linux 6.1+), the ring
    /// is single-issuer with deferred task work: completions are processed when this thread
    /// waits for them, instead of interrupting it whenever a socket becomes ready — the
    /// difference between io_uring losing and winning against epoll on a busy proxy core.
    /// Older kernels reject the flags with EINVAL and get cooperative task running (5.19),
    /// or else a plain ring; the log says which, and what the kernel lacks.
    pub fn new(entries: u32) -> io::Result<Self> {
        let tuned = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_submit_all()
            .build(entries);
        let ring = match tuned {
            Ok(r) => {
                tracing::info!("io_uring ring: single issuer, deferred task work");
                r
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                match IoUring::builder().setup_coop_taskrun().build(entries) {
                    Ok(r) => {
                        tracing::warn!(
                            "io_uring ring: cooperative task running; the kernel lacks \
                             IORING_SETUP_DEFER_TASKRUN or SINGLE_ISSUER (Linux 6.1), so \
                             completions may interrupt the core"
                        );
                        r
                    }
                    Err(_) => {
                        tracing::warn!(
                            "io_uring ring: plain; the kernel lacks IORING_SETUP_COOP_TASKRUN \
                             (Linux 5.19) and DEFER_TASKRUN (6.1)"
                        );
                        IoUring::new(entries)?
                    }
                }
            }
            Err(e) => return Err(e),
        };
        let skip_cqe = ring.params().is_feature_skip_cqe_on_success();
        if !skip_cqe {
            tracing::info!(
                "io_uring: the kernel lacks IOSQE_CQE_SKIP_SUCCESS (Linux 5.17); cancels \
                 post a completion each"
            );
        }
        Ok(Ring {
            ring,
            ops: Ops::default(),
            bufs: None,
            send_pool: Vec::new(),
            enters: 0,
            entries: 0,
            skip_cqe,
        })
    }

    /// Submit what is queued without waiting.
    pub fn submit(&mut self) {
        self.enters += 1;
        if let Err(e) = self.ring.submit() {
            tracing::debug!(error = %e, "io_uring submit failed");
        }
    }

    /// Submit what is queued and wait for a completion, at most `timeout` (`None`: no limit).
    /// A timeout or a signal is not an error: the loop looks at the clock and goes on.
    pub fn submit_and_wait(&mut self, timeout: Option<std::time::Duration>) -> io::Result<()> {
        self.enters += 1;
        let submitter = self.ring.submitter();
        let result = match timeout {
            None => submitter.submit_and_wait(1),
            Some(d) => {
                let ts = types::Timespec::from(d);
                let args = types::SubmitArgs::new().timespec(&ts);
                submitter.submit_with_args(1, &args)
            }
        };
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Queue one SQE, submitting first if the submission queue is full.
    fn push(&mut self, entry: squeue::Entry) {
        self.entries += 1;
        loop {
            // SAFETY: every pointer in `entry` points into memory owned by `self.ops` (or, for
            // cancels, nothing), which lives until the completion is taken.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
            self.enters += 1;
            if let Err(e) = self.ring.submit() {
                tracing::warn!(error = %e, "io_uring submit failed");
            }
        }
    }

    fn start(&mut self, op: Op, build: impl FnOnce(&Op) -> squeue::Entry) -> u64 {
        let entry = build(&op);
        let ud = self.ops.insert(op);
        self.push(entry.user_data(ud));
        ud
    }

    /// Accept one connection, or (`multishot`) connections until cancelled or failed, one
    /// completion each.
    pub fn accept(&mut self, listener: usize, socket: Rc<OwnedFd>, multishot: bool) -> u64 {
        let fd = types::Fd(socket.as_raw_fd());
        let entry = if multishot {
            opcode::AcceptMulti::new(fd)
                .flags(libc::SOCK_CLOEXEC)
                .build()
        } else {
            opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut())
                .flags(libc::SOCK_CLOEXEC)
                .build()
        };
        self.start(
            Op::Accept {
                listener,
                _socket: socket,
            },
            |_| entry,
        )
    }

    /// Receive until cancelled, EOF, an error or ENOBUFS, one completion per chunk, each in
    /// a buffer the kernel picks from [`Ring::bufs`].
    pub fn recv_multi(&mut self, conn: ConnId, socket: Rc<OwnedFd>) -> u64 {
        let fd = types::Fd(socket.as_raw_fd());
        self.start(
            Op::RecvMulti {
                conn,
                _socket: socket,
            },
            |_| opcode::RecvMulti::new(fd, bufring::GROUP).build(),
        )
    }

    /// Receive into the spare capacity of `buf` (which the caller made non-empty).
    pub fn recv(&mut self, conn: ConnId, socket: Rc<OwnedFd>, mut buf: BytesMut) -> u64 {
        let fd = types::Fd(socket.as_raw_fd());
        let spare = buf.spare_capacity_mut();
        let ptr = spare.as_mut_ptr().cast::<u8>();
        let len = u32::try_from(spare.len()).unwrap_or(u32::MAX);
        self.start(
            Op::Recv {
                conn,
                buf,
                _socket: socket,
            },
            |_| opcode::Recv::new(fd, ptr, len).build(),
        )
    }

    /// Empty send buffers, recycled when possible.
    pub fn send_bufs(&mut self) -> SendBufs {
        self.send_pool.pop().unwrap_or_else(SendBufs::new)
    }

    /// Return send buffers (emptied) for reuse.
    pub fn recycle(&mut self, mut bufs: SendBufs) {
        bufs.chunks.clear();
        bufs.iovecs.clear();
        if self.send_pool.len() < SEND_POOL {
            self.send_pool.push(bufs);
        }
    }

    /// Send `bufs.chunks` in one `sendmsg` (MSG_NOSIGNAL: a closed peer is an error, not
    /// SIGPIPE). MSG_WAITALL (Linux 5.19; older kernels ignore it on a send): the kernel
    /// retries a short send until everything is written or the socket fails, so one
    /// completion ends it: all the bytes, or those written before the error.
    pub fn send(&mut self, conn: ConnId, socket: Rc<OwnedFd>, mut bufs: SendBufs) -> u64 {
        let fd = types::Fd(socket.as_raw_fd());
        bufs.iovecs.clear();
        bufs.iovecs.extend(bufs.chunks.iter().map(|c| libc::iovec {
            iov_base: c.as_ptr() as *mut libc::c_void,
            iov_len: c.len(),
        }));
        bufs.msg.msg_iov = bufs.iovecs.as_mut_ptr();
        bufs.msg.msg_iovlen = bufs.iovecs.len() as _;
        let msg_ptr: *const libc::msghdr = &*bufs.msg;
        self.start(
            Op::Send {
                conn,
                bufs,
                _socket: socket,
            },
            |_| {
                opcode::SendMsg::new(fd, msg_ptr)
                    .flags((libc::MSG_NOSIGNAL | libc::MSG_WAITALL) as u32)
                    .build()
            },
        )
    }

    pub fn connect(&mut self, conn: ConnId, socket: Rc<OwnedFd>, addr: socket2::SockAddr) -> u64 {
        let fd = types::Fd(socket.as_raw_fd());
        let addr = Box::new(addr);
        let (ptr, len) = (addr.as_ptr(), addr.len());
        self.start(
            Op::Connect {
                conn,
                _addr: addr,
                _socket: socket,
            },
            |_| opcode::Connect::new(fd, ptr, len).build(),
        )
    }

    /// Wait for the eventfd to be written (a control request).
    pub fn watch_wake(&mut self, eventfd: RawFd) -> u64 {
        let mut buf = Box::new([0u8; 8]);
        let ptr = buf.as_mut_ptr();
        self.start(Op::Wake { _buf: buf }, |_| {
            opcode::Read::new(types::Fd(eventfd), ptr, 8).build()
        })
    }

    /// Ask the kernel to cancel an in-flight operation; its completion still comes back.
    /// The cancel's own completion carries nothing we use, so where the kernel can skip it
    /// on success it does: only a cancel that found nothing (-ENOENT: the operation had
    /// completed) or came too late (-EALREADY) posts one, which the backend ignores.
    pub fn cancel(&mut self, user_data: u64) {
        let mut entry = opcode::AsyncCancel::new(user_data)
            .build()
            .user_data(CANCEL);
        if self.skip_cqe {
            entry = entry.flags(squeue::Flags::SKIP_SUCCESS);
        }
        self.push(entry);
    }
}

impl Drop for Ring {
    /// Cancel what is still in flight and wait (briefly) for it, so the kernel is done with
    /// every buffer before it is freed; if it is not done in time, leak the buffers instead.
    fn drop(&mut self) {
        for ud in self.ops.in_flight() {
            self.cancel(ud);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while self.ops.live() > 0 && std::time::Instant::now() < deadline {
            let ts = types::Timespec::new().nsec(10_000_000);
            let args = types::SubmitArgs::new().timespec(&ts);
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
                Err(_) => break,
            }
            let done: Vec<(u64, u32)> = self
                .ring
                .completion()
                .map(|c| (c.user_data(), c.flags()))
                .collect();
            for (ud, flags) in done {
                if !io_uring::cqueue::more(flags) {
                    self.ops.take(ud);
                }
            }
        }
        if self.ops.live() > 0 {
            tracing::warn!(ops = self.ops.live(), "io_uring ops outlived the driver");
            std::mem::forget(std::mem::take(&mut self.ops));
            // The kernel may still write into a provided buffer.
            std::mem::forget(self.bufs.take());
        }
    }
}

/// The eventfd other threads write to wake a driver waiting in the ring.
pub(super) struct EventFd(OwnedFd);

impl EventFd {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor owned by nobody else.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl Wake for EventFd {
    fn wake(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd.
        let rc = unsafe { libc::write(self.raw(), (&one as *const u64).cast(), 8) };
        if rc == 8 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}
