//! The driver's socket handling on its own, with a small scripted engine instead of the proxy:
//! a line-oriented echo server whose commands make it ask the driver for each kind of output
//! (pause and resume reads on a timer, reset, graceful close, large sends, connects).
//! Independent of routing or HTTP, so a failure here is the driver's.
//!
//! Every test runs against both drivers, epoll and io_uring (`*_epoll`, `*_io_uring`): the
//! io_uring driver must behave the same to the byte and to the close.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant as StdInstant};

use bytes::Bytes;
use trellis_engine::config::{Config, Direction, Listener};
use trellis_engine::proxy::{Accepted, RequestLog};
use trellis_engine::{ConnId, Input, Instant, Output};
use trellis_io::{
    Backend, ControlHandle, EpollDriver, IoError, ProxyEngine, RunOptions, UringDriver,
};

#[derive(Default)]
struct ScriptEngine {
    next: u64,
    out: VecDeque<Output>,
    lines: BTreeMap<ConnId, Vec<u8>>,
    /// Upstream conn → the downstream that asked for it.
    connects: BTreeMap<ConnId, ConnId>,
    /// Reads paused until this time, per connection.
    paused: BTreeMap<ConnId, Instant>,
    /// Paused connections whose resume is silent (no "resumed" line, so no send whose
    /// completion could happen to wake the driver for that connection).
    silent: BTreeSet<ConnId>,
}

impl ScriptEngine {
    fn send(&mut self, conn: ConnId, text: &str) {
        self.out.push_back(Output::Send {
            conn,
            data: Bytes::copy_from_slice(text.as_bytes()),
        });
    }

    fn command(&mut self, now: Instant, conn: ConnId, line: &str) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("reset"), _) => self.out.push_back(Output::Close {
                conn,
                graceful: false,
            }),
            (Some("close"), _) => {
                self.send(conn, "bye\n");
                self.out.push_back(Output::Close {
                    conn,
                    graceful: true,
                });
            }
            (Some(word @ ("pause" | "hold")), Some(ms)) => {
                if word == "hold" {
                    self.silent.insert(conn);
                }
                let ms: u64 = ms.parse().unwrap();
                self.out.push_back(Output::ReadInterest {
                    conn,
                    enabled: false,
                });
                self.paused.insert(conn, now + Duration::from_millis(ms));
            }
            (Some("big"), Some(n)) => {
                let n: usize = n.parse().unwrap();
                for chunk in pattern(n).chunks(1000) {
                    self.out.push_back(Output::Send {
                        conn,
                        data: Bytes::copy_from_slice(chunk),
                    });
                }
            }
            (Some("connect"), Some(addr)) => {
                let up = ConnId(self.next);
                self.next += 1;
                self.connects.insert(up, conn);
                self.out.push_back(Output::Connect {
                    conn: up,
                    addr: addr.parse().unwrap(),
                });
            }
            _ => self.send(conn, &format!("{line}\n")),
        }
    }
}

impl ProxyEngine for ScriptEngine {
    fn accept(&mut self, _now: Instant, _conn: Accepted) -> ConnId {
        self.next += 1;
        ConnId(self.next - 1)
    }

    fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Received { conn, data } => {
                let buf = self.lines.entry(conn).or_default();
                buf.extend_from_slice(&data);
                let mut complete = Vec::new();
                while let Some(i) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    complete.push(String::from_utf8_lossy(&line).trim().to_string());
                }
                for line in complete {
                    self.command(now, conn, &line);
                }
            }
            Input::ReadClosed { conn } => self.out.push_back(Output::Close {
                conn,
                graceful: true,
            }),
            Input::Connected { conn } => {
                let down = self.connects[&conn];
                self.send(down, "connected\n");
                self.out.push_back(Output::Close {
                    conn,
                    graceful: true,
                });
            }
            Input::ConnectFailed { conn } => {
                let down = self.connects[&conn];
                self.send(down, "connect failed\n");
            }
            Input::Closed { .. }
            | Input::WriteDrained { .. }
            | Input::Config(_)
            | Input::DrainListeners { .. } => {}
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<ConnId> = self
            .paused
            .iter()
            .filter(|(_, &at)| at <= now)
            .map(|(&c, _)| c)
            .collect();
        for conn in due {
            self.paused.remove(&conn);
            if !self.silent.remove(&conn) {
                self.send(conn, "resumed\n");
            }
            self.out.push_back(Output::ReadInterest {
                conn,
                enabled: true,
            });
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.paused.values().min().copied()
    }

    fn drain_logs_into(&mut self, _into: &mut Vec<RequestLog>) {}
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

struct Running {
    addr: SocketAddr,
    control: ControlHandle,
    thread: JoinHandle<Result<(), IoError>>,
}

impl Running {
    fn stop(self) {
        self.control.shutdown();
        self.thread.join().unwrap().unwrap();
    }
}

fn start(backend: Backend) -> Running {
    let config = Arc::new(Config {
        listeners: vec![Listener {
            tls: None,
            mtls: Default::default(),
            name: "script".into(),
            address: "127.0.0.1:0".parse().unwrap(),
            route_table: "none".into(),
            direction: Direction::Outbound,
            passthrough: false,
            authorization: None,
            local_forward: None,
            inbound_protocols: None,
            outbound_capture: None,
            authentication: None,
            edge: None,
        }],
        ..Config::default()
    });
    let control = ControlHandle::new();
    let opts = RunOptions {
        shutdown_grace: Duration::from_secs(2),
        ..RunOptions::default()
    };
    // The io_uring driver is built on the thread that runs it (it is not Send).
    let (tx, rx) = std::sync::mpsc::channel();
    let c = control.clone();
    let thread = std::thread::spawn(move || match backend {
        Backend::Epoll => {
            let d = EpollDriver::with_engine(config, opts, c, |_| ScriptEngine::default())?;
            tx.send(d.local_addrs()[0].1).unwrap();
            d.run()
        }
        Backend::IoUring => {
            let d = UringDriver::with_engine(config, opts, c, |_| ScriptEngine::default())?;
            tx.send(d.local_addrs()[0].1).unwrap();
            d.run()
        }
    });
    let addr = rx.recv().expect("driver started");
    Running {
        addr,
        control,
        thread,
    }
}

/// `both!(name)`: `name_epoll` and `name_io_uring` tests calling `name(backend)`.
macro_rules! both {
    ($name:ident) => {
        mod $name {
            use super::*;
            #[test]
            fn epoll() {
                super::$name(Backend::Epoll);
            }
            #[test]
            fn io_uring() {
                super::$name(Backend::IoUring);
            }
        }
    };
}

both!(echo_and_timer_driven_read_pause);
both!(bytes_received_while_paused_arrive_after_a_silent_resume);
both!(abortive_close_resets_and_graceful_close_flushes_then_fins);
both!(large_sends_survive_partial_writes);
both!(connects_report_success_and_failure);
both!(shutdown_waits_for_open_connections_until_grace_ends);

fn client(addr: SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

fn line(r: &mut BufReader<TcpStream>) -> String {
    let mut l = String::new();
    r.read_line(&mut l).unwrap();
    l
}

fn echo_and_timer_driven_read_pause(backend: Backend) {
    let run = start(backend);
    let (mut w, mut r) = client(run.addr);
    w.write_all(b"hi\n").unwrap();
    assert_eq!(line(&mut r), "hi\n");
    let t0 = StdInstant::now();
    // "after" arrives while reads are paused: the driver must not read it (so it cannot be
    // echoed) before the engine resumes reading on its timer.
    w.write_all(b"pause 200\n").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    w.write_all(b"after\n").unwrap();
    assert_eq!(line(&mut r), "resumed\n");
    assert!(
        t0.elapsed() >= Duration::from_millis(190),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(line(&mut r), "after\n");
    drop((w, r));
    run.stop();
}

/// What arrived while reads were paused must reach the engine when they resume, even when
/// nothing else happens on the connection then (io_uring keeps the receive's result; epoll
/// re-arms readiness).
fn bytes_received_while_paused_arrive_after_a_silent_resume(backend: Backend) {
    let run = start(backend);
    let (mut w, mut r) = client(run.addr);
    w.write_all(b"hold 150\n").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let t0 = StdInstant::now();
    w.write_all(b"after\n").unwrap();
    assert_eq!(line(&mut r), "after\n");
    assert!(
        t0.elapsed() >= Duration::from_millis(80),
        "echoed while paused ({:?})",
        t0.elapsed()
    );
    drop((w, r));
    run.stop();
}

fn abortive_close_resets_and_graceful_close_flushes_then_fins(backend: Backend) {
    let run = start(backend);
    let (mut w, mut r) = client(run.addr);
    w.write_all(b"reset\n").unwrap();
    let mut buf = [0u8; 16];
    let err = read_retrying(&mut r, &mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);

    let (mut w, mut r) = client(run.addr);
    w.write_all(b"close\n").unwrap();
    assert_eq!(line(&mut r), "bye\n");
    assert_eq!(read_retrying(&mut r, &mut buf).unwrap(), 0, "FIN, not RST");
    drop((w, r));
    run.stop();
}

fn large_sends_survive_partial_writes(backend: Backend) {
    let run = start(backend);
    let (mut w, mut r) = client(run.addr);
    let n = 8 * 1024 * 1024;
    w.write_all(format!("big {n}\n").as_bytes()).unwrap();
    // Read slowly at first so the socket buffer fills and the driver sees WouldBlock.
    std::thread::sleep(Duration::from_millis(200));
    let mut got = vec![0u8; n];
    r.read_exact(&mut got).unwrap();
    assert!(got == pattern(n), "bytes differ");
    w.write_all(b"still here\n").unwrap();
    assert_eq!(line(&mut r), "still here\n");
    drop((w, r));
    run.stop();
}

fn connects_report_success_and_failure(backend: Backend) {
    let run = start(backend);
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (mut w, mut r) = client(run.addr);
    w.write_all(format!("connect {}\n", target.local_addr().unwrap()).as_bytes())
        .unwrap();
    assert_eq!(line(&mut r), "connected\n");
    // The engine closed it gracefully; the driver lingers until this side closes too.
    let (mut accepted, _) = target.accept().unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(
        read_retrying(&mut accepted, &mut buf).unwrap(),
        0,
        "the driver sent FIN"
    );
    drop(accepted);
    w.write_all(format!("connect {closed}\n").as_bytes())
        .unwrap();
    assert_eq!(line(&mut r), "connect failed\n");
    drop((w, r));
    let t0 = StdInstant::now();
    run.stop();
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "lingering ended at the peer's FIN, not at its timeout: {:?}",
        t0.elapsed()
    );
}

fn shutdown_waits_for_open_connections_until_grace_ends(backend: Backend) {
    let run = start(backend);
    let (mut w, mut r) = client(run.addr);
    w.write_all(b"x\n").unwrap();
    assert_eq!(line(&mut r), "x\n");
    let t0 = StdInstant::now();
    // The script engine does not report requests in flight: the driver waits for the
    // downstream to leave, or the 2 s grace period.
    let addr = run.addr;
    run.control.shutdown();
    std::thread::sleep(Duration::from_millis(100));
    assert!(TcpStream::connect(addr).is_err(), "no longer accepting");
    w.write_all(b"y\n").unwrap();
    assert_eq!(line(&mut r), "y\n", "open connections keep being served");
    drop((w, r));
    run.thread.join().unwrap().unwrap();
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
}

/// One `read`, retried if a signal interrupts it (io_uring's task work can interrupt blocking
/// reads of other threads of the process; real clients retry too).
fn read_retrying(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}
