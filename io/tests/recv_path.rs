//! The receive path under stress, on both backends: io_uring's multishot receives with a
//! provided-buffer ring made deliberately tiny (so the kernel runs out of buffers and ends
//! receives with ENOBUFS), io_uring's single-shot fallback, and epoll with the same traffic.
//!
//! Each test checks bytes end to end, never timings:
//! - more concurrent connections than provided buffers, with responses larger than a buffer;
//! - a slow reader of a large response (the engine pauses the upstream's reads: the multishot
//!   is cancelled with bytes in flight, and armed again when reading resumes);
//! - connections closed while their receive is armed (idle, mid-request, before the
//!   response), then normal traffic again (a buffer not given back trips a debug assertion
//!   on the core thread and the later requests fail);
//! - pipelined requests written in one burst, answered in order.

mod common;

use std::io::{BufReader, Cursor, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use common::one_core::{content, read_some, request, response, OneCore};
use trellis_io::{BackendChoice, RunOptions};

/// Each test runs on io_uring's multishot path, its single-shot path (no provided buffers:
/// what kernels before 6.0 get) and epoll.
const PATHS: [(BackendChoice, bool); 3] = [
    (BackendChoice::IoUring, true),
    (BackendChoice::IoUring, false),
    (BackendChoice::Epoll, false),
];

/// `buffers` provided buffers on the multishot path (`multishot` false: none, single-shot).
fn start(backend: BackendChoice, multishot: bool, buffers: usize) -> OneCore {
    let provided_buffers = if multishot { buffers } else { 0 };
    let run = RunOptions {
        seed: 11,
        provided_buffers,
        ..RunOptions::default()
    };
    OneCore::start(backend, run, "")
}

/// Whether this kernel has multishot receive (6.0+); older ones take the single-shot path.
fn kernel_has_multishot() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(['.', '-']);
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    major >= 6
}

#[test]
fn more_connections_than_provided_buffers() {
    const CLIENTS: usize = 48;
    const LEN: usize = 40_000;
    let expected = Arc::new(content(LEN));
    for (backend, multishot) in PATHS {
        let setup = start(backend, multishot, 2);
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (addr, expected) = (setup.addr, expected.clone());
                std::thread::spawn(move || {
                    let mut r = BufReader::new(TcpStream::connect(addr).expect("connect"));
                    for _ in 0..4 {
                        let req = request(&format!("/bytes/{LEN}"), false);
                        r.get_mut().write_all(req.as_bytes()).expect("send");
                        let (status, body) = response(&mut r);
                        assert_eq!(status, 200);
                        assert!(body == *expected, "body differs");
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().expect("client");
        }
        let stats = setup.stats();
        println!("{backend} (multishot: {multishot}): {stats:?}");
        if multishot && backend == BackendChoice::IoUring && kernel_has_multishot() {
            assert!(
                stats.recv_buffers_exhausted > 0,
                "two buffers for {CLIENTS} connections: the kernel ran out and receives were \
                 armed again"
            );
        }
        setup.stop();
    }
}

#[test]
fn a_slow_reader_pauses_and_resumes_the_upstream() {
    const LEN: usize = 6_000_000;
    let expected = content(LEN);
    for (backend, multishot) in PATHS {
        let setup = start(backend, multishot, 4);
        let mut s = TcpStream::connect(setup.addr).expect("connect");
        s.write_all(request(&format!("/bytes/{LEN}"), true).as_bytes())
            .expect("send");
        // Slow at first (the proxy's buffers fill and it stops reading the upstream), then
        // at full speed until the proxy closes.
        let mut raw = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = read_some(&mut s, &mut buf).expect("read");
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
            if raw.len() < 1_500_000 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let (status, body) = response(&mut Cursor::new(raw));
        assert_eq!(status, 200);
        assert_eq!(body.len(), LEN, "{backend}");
        assert!(body == expected, "{backend}: body differs");
        setup.stop();
    }
}

#[test]
fn connections_closed_while_armed_leave_the_proxy_healthy() {
    for (backend, multishot) in PATHS {
        let setup = start(backend, multishot, 2);
        for round in 0..40 {
            // Idle: the receive is armed and nothing ever comes.
            drop(TcpStream::connect(setup.addr).expect("connect"));
            // Half a request head.
            let mut s = TcpStream::connect(setup.addr).expect("connect");
            s.write_all(b"GET /bytes/100 HTTP/1.1\r\nhost: bu")
                .expect("send");
            drop(s);
            // A whole request, gone before the (large) response.
            let mut s = TcpStream::connect(setup.addr).expect("connect");
            s.write_all(request("/bytes/200000", false).as_bytes())
                .expect("send");
            if round % 2 == 0 {
                // Reset rather than FIN.
                socket2::SockRef::from(&s)
                    .set_linger(Some(Duration::ZERO))
                    .expect("SO_LINGER");
            }
            drop(s);
        }
        setup.still_serves(&backend.to_string());
        setup.stop();
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    const N: usize = 40;
    for (backend, multishot) in PATHS {
        let setup = start(backend, multishot, 2);
        let mut r = BufReader::new(TcpStream::connect(setup.addr).expect("connect"));
        let burst: String = (0..N)
            .map(|i| request(&format!("/bytes/{}", 1000 + i * 500), false))
            .collect();
        r.get_mut().write_all(burst.as_bytes()).expect("send");
        for i in 0..N {
            let (status, body) = response(&mut r);
            assert_eq!(status, 200, "{backend}: response {i}");
            assert!(
                body == content(1000 + i * 500),
                "{backend}: response {i} differs"
            );
        }
        setup.stop();
    }
}
