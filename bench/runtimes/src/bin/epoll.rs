//! The responder on `mio` (epoll, edge-triggered): the readiness model the project's fallback
//! driver (`io/src/driver/`) uses. Read until `WouldBlock`, answer, and only register for
//! writability when a response did not fit in the socket buffer.

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use runtime_compare::{drain_front, listen_addr, parse, responses, RECV_BUF};
use std::io::{ErrorKind, Read, Write};

const LISTENER: Token = Token(usize::MAX);

struct Conn {
    stream: TcpStream,
    inbuf: Vec<u8>,
    /// Response bytes the socket has not taken yet.
    out: Vec<u8>,
    writable_registered: bool,
}

fn main() -> std::io::Result<()> {
    let mut listener = TcpListener::bind(listen_addr())?;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; RECV_BUF];
    loop {
        poll.poll(&mut events, None)?;
        for event in events.iter() {
            if event.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            stream.set_nodelay(true)?;
                            let slot = free.pop().unwrap_or_else(|| {
                                conns.push(None);
                                conns.len() - 1
                            });
                            poll.registry().register(
                                &mut stream,
                                Token(slot),
                                Interest::READABLE,
                            )?;
                            conns[slot] = Some(Conn {
                                stream,
                                inbuf: Vec::new(),
                                out: Vec::new(),
                                writable_registered: false,
                            });
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                continue;
            }
            let slot = event.token().0;
            let Some(conn) = conns.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            if serve(conn, &mut scratch, &poll, slot).is_err() {
                if let Some(mut conn) = conns[slot].take() {
                    let _ = poll.registry().deregister(&mut conn.stream);
                }
                free.push(slot);
            }
        }
    }
}

/// Reads everything available, answers complete requests, flushes. `Err` closes the connection.
fn serve(conn: &mut Conn, scratch: &mut [u8], poll: &Poll, slot: usize) -> std::io::Result<()> {
    loop {
        match conn.stream.read(scratch) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                let (count, used) = if conn.inbuf.is_empty() {
                    let (count, used) = parse(&scratch[..n]);
                    conn.inbuf.extend_from_slice(&scratch[used..n]);
                    (count, 0)
                } else {
                    conn.inbuf.extend_from_slice(&scratch[..n]);
                    parse(&conn.inbuf)
                };
                drain_front(&mut conn.inbuf, used);
                if count > 0 {
                    write_out(conn, &responses(count))?;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    if !conn.out.is_empty() {
        flush(conn)?;
    }
    let want_writable = !conn.out.is_empty();
    if want_writable != conn.writable_registered {
        let interest = if want_writable {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        poll.registry()
            .reregister(&mut conn.stream, Token(slot), interest)?;
        conn.writable_registered = want_writable;
    }
    Ok(())
}

/// Writes `bytes` directly when nothing is queued, keeping what the socket refused.
fn write_out(conn: &mut Conn, bytes: &[u8]) -> std::io::Result<()> {
    if !conn.out.is_empty() {
        conn.out.extend_from_slice(bytes);
        return Ok(());
    }
    let mut done = 0;
    while done < bytes.len() {
        match conn.stream.write(&bytes[done..]) {
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    conn.out.extend_from_slice(&bytes[done..]);
    Ok(())
}

fn flush(conn: &mut Conn) -> std::io::Result<()> {
    while !conn.out.is_empty() {
        match conn.stream.write(&conn.out) {
            Ok(n) => {
                conn.out.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
