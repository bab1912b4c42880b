//! The send path and the read-readiness shortcuts under stress, on both backends: io_uring
//! with direct sends (a non-blocking `sendmsg`, the rest handed to a ring send with
//! MSG_WAITALL), io_uring with ring sends only, and epoll (writable interest kept, reads
//! stopped at a short read).
//!
//! Each test checks bytes end to end, never timings:
//! - a client with a tiny receive window: sends come back short and then EAGAIN, and the
//!   rest must go out exactly once, in order;
//! - a peer that resets while a send is in flight (the proxy's socket full);
//! - the engine closing a connection while its send is in flight (a stalled reader hits the
//!   stream idle timeout, and the engine aborts the response);
//! - a request and the client's FIN in one segment, so the read that takes the request is
//!   short and no further edge comes for the FIN (epoll must read on to EOF).
//!
//! A panic on the core thread (a debug assertion about a send result, a provided buffer or
//! an operation slot) fails the test when the runtime is joined.

mod common;

use std::io::{BufReader, Cursor, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use common::one_core::{content, read_some, request, response, OneCore};
use socket2::{Domain, Socket, Type};
use trellis_io::{BackendChoice, RunOptions};

/// io_uring with direct sends (the default), io_uring with ring sends only, and epoll.
const PATHS: [(BackendChoice, bool); 3] = [
    (BackendChoice::IoUring, true),
    (BackendChoice::IoUring, false),
    (BackendChoice::Epoll, true),
];

fn start(backend: BackendChoice, direct_sends: bool, config_prefix: &str) -> OneCore {
    let run = RunOptions {
        seed: 13,
        direct_sends,
        ..RunOptions::default()
    };
    OneCore::start(backend, run, config_prefix)
}

/// A client whose receive buffer is as small as the kernel allows, so that the proxy's
/// socket fills after a few kilobytes; reads time out rather than hang a broken test.
fn tiny_window_client(addr: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&addr.into()).expect("connect");
    let stream = TcpStream::from(socket);
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    stream
}

/// Read until EOF or an error; what arrived, and whether it ended in an error (a reset).
fn read_to_end_or_error(s: &mut TcpStream) -> (Vec<u8>, Option<ErrorKind>) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match read_some(s, &mut buf) {
            Ok(0) => return (raw, None),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => return (raw, Some(e.kind())),
        }
    }
}

#[test]
fn short_writes_and_eagain_resume_where_they_stopped() {
    const LEN: usize = 3_000_000;
    let expected = content(LEN);
    for (backend, direct) in PATHS {
        let label = format!("{backend} (direct sends: {direct})");
        let core = start(backend, direct, "");
        for close in [false, true] {
            let mut s = tiny_window_client(core.addr);
            s.write_all(request(&format!("/bytes/{LEN}"), close).as_bytes())
                .expect("send");
            // Slowly at first, in small reads: each proxy send is cut short by the window
            // and the next meets a full socket.
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            while raw.len() < 200_000 {
                let n = read_some(&mut s, &mut buf).expect("read");
                assert!(n > 0, "{label}: closed early");
                raw.extend_from_slice(&buf[..n]);
                std::thread::sleep(Duration::from_millis(1));
            }
            let mut r = BufReader::new(Cursor::new(raw).chain(s));
            let (status, body) = response(&mut r);
            assert_eq!(status, 200, "{label}");
            assert_eq!(body.len(), LEN, "{label}");
            assert!(body == expected, "{label}: body differs");
        }
        core.still_serves(&label);
        core.stop();
    }
}

#[test]
fn a_peer_resetting_while_a_send_is_in_flight_leaves_the_proxy_healthy() {
    for (backend, direct) in PATHS {
        let label = format!("{backend} (direct sends: {direct})");
        let core = start(backend, direct, "");
        for _ in 0..8 {
            let mut s = tiny_window_client(core.addr);
            s.write_all(request("/bytes/8000000", false).as_bytes())
                .expect("send");
            // Take a little, so that the proxy's socket is full and its send waits.
            let mut taken = 0;
            let mut buf = [0u8; 4096];
            while taken < 32 * 1024 {
                let n = read_some(&mut s, &mut buf).expect("read");
                assert!(n > 0, "{label}: closed early");
                taken += n;
            }
            std::thread::sleep(Duration::from_millis(30));
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .expect("SO_LINGER");
            drop(s); // RST, with the proxy's send in flight
        }
        core.still_serves(&label);
        core.stop();
    }
}

#[test]
fn the_engine_closing_a_connection_with_a_send_in_flight_leaves_the_proxy_healthy() {
    const LEN: usize = 20_000_000;
    for (backend, direct) in PATHS {
        let label = format!("{backend} (direct sends: {direct})");
        // A reader that stalls past this is cut off: the engine aborts the response.
        let core = start(backend, direct, "http: {streamIdleTimeout: 300ms}\n");
        for _ in 0..3 {
            let mut s = tiny_window_client(core.addr);
            s.write_all(request(&format!("/bytes/{LEN}"), false).as_bytes())
                .expect("send");
            std::thread::sleep(Duration::from_millis(1200));
            let (raw, error) = read_to_end_or_error(&mut s);
            assert!(
                raw.len() < LEN,
                "{label}: the stalled response was cut off ({} bytes, {error:?})",
                raw.len()
            );
            assert!(
                raw.starts_with(b"HTTP/1.1 200"),
                "{label}: the response had started"
            );
        }
        core.still_serves(&label);
        core.stop();
    }
}

#[test]
fn a_request_and_its_fin_in_one_segment_are_both_seen() {
    for (backend, direct) in PATHS {
        let label = format!("{backend} (direct sends: {direct})");
        let core = start(backend, direct, "");
        for pipelined in [1usize, 3] {
            let mut s = TcpStream::connect(core.addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("read timeout");
            let burst: String = (0..pipelined)
                .map(|i| request(&format!("/bytes/{}", 100 + i), false))
                .collect();
            // One write, then FIN at once: the read that takes the requests is short, and
            // the FIN raises no edge of its own after it. Like Envoy (HTTP connections do
            // not allow half-close), the engine treats the FIN as the client going away;
            // what matters here is that it is seen: the proxy closes at once. Missed, the
            // connection would stay open (keep-alive) and the read below time out.
            s.write_all(burst.as_bytes()).expect("send");
            s.shutdown(Shutdown::Write).expect("FIN");
            let (_, error) = read_to_end_or_error(&mut s);
            assert!(
                !matches!(error, Some(ErrorKind::WouldBlock | ErrorKind::TimedOut)),
                "{label}: the proxy never saw the FIN that came with the request"
            );
        }
        core.still_serves(&label);
        core.stop();
    }
}
