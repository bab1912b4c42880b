//! The responder on the raw `io-uring` crate: a completion loop with no async runtime, the
//! model the project's driver (`io/src/uring/`) uses. Each connection has one operation in
//! flight at a time (recv, then send until the response is gone, then recv), the same serial
//! chain a task per connection runs under monoio or tokio-uring, so the comparison is of the
//! machinery, not of the I/O pattern.
//!
//! The ring is set up like the project's: `SINGLE_ISSUER | DEFER_TASKRUN | SUBMIT_ALL`, falling
//! back to a plain ring on EINVAL. Pass `plain` as the second argument to force a plain ring
//! (what monoio and tokio-uring build), to see what the flags are worth.

use io_uring::{opcode, squeue, types, IoUring};
use runtime_compare::{drain_front, listen_addr, parse, responses, RECV_BUF};
use std::borrow::Cow;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};

const ACCEPT: u64 = 0;
const RECV: u64 = 1;
const SEND: u64 = 2;

struct Conn {
    stream: TcpStream,
    inbuf: Vec<u8>,
    out: Cow<'static, [u8]>,
    sent: usize,
}

fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind(listen_addr())?;
    let plain = std::env::args().nth(2).as_deref() == Some("plain");
    let mut ring = build_ring(256, plain)?;
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut done: Vec<(u64, i32)> = Vec::with_capacity(256);
    push(&mut ring, accept_entry(&listener));
    loop {
        ring.submit_and_wait(1)?;
        done.clear();
        done.extend(ring.completion().map(|c| (c.user_data(), c.result())));
        for &(data, res) in &done {
            let (slot, kind) = ((data >> 8) as usize, data & 0xff);
            match kind {
                ACCEPT => {
                    if res >= 0 {
                        // SAFETY: a successful accept returns a new fd that nothing else owns.
                        let stream = unsafe { TcpStream::from_raw_fd(res) };
                        stream.set_nodelay(true)?;
                        let slot = free.pop().unwrap_or_else(|| {
                            conns.push(None);
                            conns.len() - 1
                        });
                        let mut conn = Conn {
                            stream,
                            inbuf: Vec::with_capacity(RECV_BUF),
                            out: Cow::Borrowed(&[]),
                            sent: 0,
                        };
                        push(&mut ring, recv_entry(&mut conn, slot));
                        conns[slot] = Some(conn);
                    }
                    push(&mut ring, accept_entry(&listener));
                }
                RECV => {
                    let Some(conn) = conns.get_mut(slot).and_then(Option::as_mut) else {
                        continue;
                    };
                    if res <= 0 {
                        close(&mut conns, &mut free, slot);
                        continue;
                    }
                    // SAFETY: the kernel initialised `res` bytes past the old length, inside the
                    // spare capacity `recv_entry` handed it.
                    unsafe { conn.inbuf.set_len(conn.inbuf.len() + res as usize) };
                    let (count, used) = parse(&conn.inbuf);
                    drain_front(&mut conn.inbuf, used);
                    if count > 0 {
                        conn.out = responses(count);
                        conn.sent = 0;
                        push(&mut ring, send_entry(conn, slot));
                    } else if conn.inbuf.len() == conn.inbuf.capacity() {
                        close(&mut conns, &mut free, slot); // a request head over 16 KiB
                    } else {
                        push(&mut ring, recv_entry(conn, slot));
                    }
                }
                SEND => {
                    let Some(conn) = conns.get_mut(slot).and_then(Option::as_mut) else {
                        continue;
                    };
                    if res < 0 {
                        close(&mut conns, &mut free, slot);
                        continue;
                    }
                    conn.sent += res as usize;
                    if conn.sent < conn.out.len() {
                        push(&mut ring, send_entry(conn, slot));
                    } else {
                        push(&mut ring, recv_entry(conn, slot));
                    }
                }
                _ => unreachable!("user_data kinds are ours"),
            }
        }
    }
}

fn build_ring(entries: u32, plain: bool) -> std::io::Result<IoUring> {
    if plain {
        return IoUring::new(entries);
    }
    match IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_submit_all()
        .build(entries)
    {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => IoUring::new(entries),
        other => other,
    }
}

/// Drops the connection (closing its fd). Safe because its only operation has completed.
fn close(conns: &mut [Option<Conn>], free: &mut Vec<usize>, slot: usize) {
    conns[slot] = None;
    free.push(slot);
}

fn push(ring: &mut IoUring, entry: squeue::Entry) {
    loop {
        // SAFETY: every pointer in an entry points into a connection's heap buffers (or the
        // static response), which stay put until the operation's completion is handled: a
        // connection has one operation in flight and is only dropped after it completes.
        if unsafe { ring.submission().push(&entry) }.is_ok() {
            return;
        }
        if let Err(e) = ring.submit() {
            eprintln!("io_uring submit failed: {e}");
        }
    }
}

fn accept_entry(listener: &TcpListener) -> squeue::Entry {
    opcode::Accept::new(
        types::Fd(listener.as_raw_fd()),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    )
    .build()
    .user_data(ACCEPT)
}

fn recv_entry(conn: &mut Conn, slot: usize) -> squeue::Entry {
    let len = conn.inbuf.len();
    let spare = conn.inbuf.capacity() - len;
    // SAFETY: `len <= capacity`, so the pointer stays inside the allocation.
    let ptr = unsafe { conn.inbuf.as_mut_ptr().add(len) };
    opcode::Recv::new(types::Fd(conn.stream.as_raw_fd()), ptr, spare as u32)
        .build()
        .user_data(((slot as u64) << 8) | RECV)
}

fn send_entry(conn: &Conn, slot: usize) -> squeue::Entry {
    let rest = &conn.out[conn.sent..];
    opcode::Send::new(
        types::Fd(conn.stream.as_raw_fd()),
        rest.as_ptr(),
        rest.len() as u32,
    )
    .flags(libc::MSG_NOSIGNAL)
    .build()
    .user_data(((slot as u64) << 8) | SEND)
}
