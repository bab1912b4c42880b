//! The L4 world's loop: client connections redirected to one sidecar (a real engine) and the
//! echo servers behind its clusters and at the original destinations, on a virtual clock.
//!
//! The driver attributes every upstream `Connect` to the client connection whose input (or
//! accept) the engine was handling: L4 sessions connect while handling their own connection's
//! accept or first bytes. Every send is written at once; every connect takes 1 ms. As in
//! [`crate::sim::mesh`]: engine timers before queued events at the same instant, queued events
//! in scheduling order, no wall clock, no hash-map order.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use trellis_engine::proxy::RequestLog;
use trellis_engine::{ConnId, Engine, Input, Instant, Output};

use super::chains::{DEFAULT_DST, DESTINATIONS, LABEL_SETS};
use super::config::{addr, config};
use super::spec::{
    client_hello, EchoServer, Target, TcpConn, TcpSpec, HTTP_PORT, SNI_NAMES, TCP_PORT, TLS_PORT,
    UNKNOWN_PORT,
};
use crate::build;
use crate::sim::check::{Invariant, Violations};
use crate::sim::queue::EventQueue;
use crate::sim::report::TraceHash;
use crate::sim::side_world::{self, SideWorld};

/// A run needing more events than this is stuck.
const MAX_EVENTS: u64 = 200_000;
/// How long the world runs on after the last connection starts.
const TAIL_MS: u64 = 3_000;

/// Byte `offset` of what client connection `conn` sends after its ClientHello (if any): a NUL
/// first (no HTTP method starts so, so the sniffed port decides at once), then a pattern of
/// its own.
pub(crate) fn byte_of(conn: usize, offset: usize) -> u8 {
    if offset == 0 {
        0
    } else {
        b'a' + ((conn * 7 + offset) % 26) as u8
    }
}

/// The address a connection to a TCP service's port dialled.
pub(crate) fn dialled_ip(conn: &TcpConn) -> [u8; 4] {
    conn.dst.map_or(DEFAULT_DST, |d| DESTINATIONS[d])
}

/// Where client connection `conn` was headed.
pub(crate) fn original_dst(conn: &TcpConn) -> SocketAddr {
    match conn.target {
        Target::Service(i) => SocketAddr::from((dialled_ip(conn), TCP_PORT + i as u16)),
        Target::HttpPort => SocketAddr::from(([240, 0, 0, 2], HTTP_PORT)),
        Target::Unknown => SocketAddr::from(([192, 0, 2, 77], UNKNOWN_PORT)),
        Target::Tls(_) => SocketAddr::from(([240, 0, 0, 3], TLS_PORT)),
    }
}

enum Ev {
    Start { c: usize },
    Chunk { c: usize, k: usize },
    ClientEof { c: usize },
    Connected { conn: ConnId, ok: bool },
    Echo { conn: ConnId, data: Bytes },
    ServerFin { conn: ConnId },
    ServerReset { conn: ConnId },
}

/// Which server an upstream connection reached: cluster `c`'s endpoint `i`, or the echo
/// server at the original destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reached {
    Cluster(usize, usize),
    Original,
}

/// Everything seen of one client connection.
#[derive(Default)]
pub(crate) struct ConnState {
    pub down: Option<ConnId>,
    pub sent: Vec<u8>,
    pub eof_sent: bool,
    pub received: Vec<u8>,
    /// The proxy half-closed towards the client (its EOF arrived).
    pub client_saw_eof: bool,
    pub closed_at: Option<Instant>,
    /// Upstream connects attributed to it: the server each one was for, and whether it was
    /// refused.
    pub connects: Vec<(Reached, bool)>,
    pub up: Option<ConnId>,
    pub server_received: Vec<u8>,
    pub server_sent: Vec<u8>,
    pub server_saw_eof: bool,
    pub server_reset: bool,
    /// When bytes last moved on either side (client sends, echoes delivered), or the
    /// upstream connected.
    pub last_activity: Option<Instant>,
    /// When the server's EOF reached the proxy, and when the client read one.
    pub server_fin_at: Option<Instant>,
    pub client_eof_at: Option<Instant>,
}

impl ConnState {
    /// The client and the server both sent their EOF.
    pub(crate) fn ended_by_peers(&self) -> bool {
        self.eof_sent && self.server_fin_at.is_some()
    }

    /// What the failure reports print of it.
    pub(crate) fn summary(&self) -> String {
        format!(
            "sent {} (EOF {}), server got {} (EOF {}), server sent {}, client got {} (EOF {}), connects {:?}, last byte at {:?}",
            self.sent.len(),
            self.eof_sent,
            self.server_received.len(),
            self.server_saw_eof,
            self.server_sent.len(),
            self.received.len(),
            self.client_saw_eof,
            self.connects,
            self.last_activity,
        )
    }
}

struct Up {
    c: usize,
    server: EchoServer,
    open: bool,
    /// Bytes it has echoed (scheduled), and whether it sent its EOF (then it echoes no more).
    echoed: usize,
    finished: bool,
}

pub(crate) struct World<'a> {
    pub(crate) spec: &'a TcpSpec,
    now: Instant,
    queue: EventQueue<Ev>,
    engine: Engine,
    /// The client connection whose input the engine is handling.
    feeding: Option<usize>,
    downs: BTreeMap<ConnId, usize>,
    ups: BTreeMap<ConnId, Up>,
    pub(crate) conns: Vec<ConnState>,
    pub(crate) logs: Vec<RequestLog>,
    pub(crate) violations: Violations,
    trace: TraceHash,
    pub(crate) outcomes: BTreeMap<String, u64>,
}

impl SideWorld for World<'_> {
    fn next_event(&self) -> Option<Instant> {
        self.queue.next_time()
    }

    fn next_timer(&self) -> Option<Instant> {
        self.engine.poll_timeout()
    }

    fn advance(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    fn fire_timers(&mut self) {
        self.trace.bytes(&[0x7c]);
        self.engine.handle_timeout(self.now);
        self.after_engine();
    }

    fn fire_next(&mut self) {
        if let Some((_, ev)) = self.queue.pop() {
            self.fire(ev);
        }
    }

    fn report(&mut self, invariant: Invariant, detail: String) {
        self.violation(invariant, detail);
    }
}

impl<'a> World<'a> {
    pub(crate) fn new(
        spec: &'a TcpSpec,
        seed: u64,
        hook: Option<fn(usize, &mut Engine)>,
    ) -> Result<World<'a>, String> {
        let engine_seed = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x7c9b;
        let mut engine = Engine::try_new(Arc::new(config(spec)), engine_seed)
            .map_err(|e| format!("the L4 sidecar refused its config: {e}"))?;
        if let Some(hook) = hook {
            hook(30_000, &mut engine);
        }
        let mut queue = EventQueue::default();
        for (c, conn) in spec.conns.iter().enumerate() {
            queue.push(Instant::from_millis(conn.at_ms), Ev::Start { c });
        }
        Ok(World {
            spec,
            now: Instant::ZERO,
            queue,
            engine,
            feeding: None,
            downs: BTreeMap::new(),
            ups: BTreeMap::new(),
            conns: (0..spec.conns.len())
                .map(|_| ConnState::default())
                .collect(),
            logs: Vec::new(),
            violations: Violations::default(),
            trace: TraceHash::default(),
            outcomes: BTreeMap::new(),
        })
    }

    pub(crate) fn violation(&mut self, invariant: Invariant, detail: impl Into<String>) {
        self.violations.report(invariant, self.now, detail);
    }

    pub(crate) fn count(&mut self, outcome: &str) {
        *self.outcomes.entry(format!("tcp:{outcome}")).or_default() += 1;
    }

    /// Run to the end; the checks read the world afterwards.
    pub(crate) fn run(&mut self) -> u64 {
        let hard_stop = Instant::from_millis(self.spec.duration_ms + TAIL_MS);
        side_world::drive(self, hard_stop, MAX_EVENTS, "L4");
        std::mem::take(&mut self.trace).finish()
    }

    fn input(&mut self, feeding: Option<usize>, input: Input) {
        self.feeding = feeding;
        self.engine.handle(self.now, input);
        self.after_engine();
        self.feeding = None;
    }

    fn open_down(&self, c: usize) -> Option<ConnId> {
        let conn = &self.conns[c];
        conn.down.filter(|_| conn.closed_at.is_none())
    }

    fn fire(&mut self, ev: Ev) {
        match ev {
            Ev::Start { c } => self.start(c),
            Ev::Chunk { c, k } => {
                let Some(down) = self.open_down(c) else {
                    return;
                };
                let len = self.spec.conns[c].chunks[k].1;
                let hello = match (k, self.spec.conns[c].target) {
                    (0, Target::Tls(name)) => client_hello(name.map(|n| SNI_NAMES[n])),
                    _ => Vec::new(),
                };
                let from = self.conns[c].sent.len();
                let mut data = hello;
                data.extend((from..from + len).map(|o| byte_of(c, o)));
                self.conns[c].sent.extend_from_slice(&data);
                self.conns[c].last_activity = Some(self.now);
                self.trace.u64(down.0 ^ ((data.len() as u64) << 32));
                self.input(
                    Some(c),
                    Input::Received {
                        conn: down,
                        data: Bytes::from(data),
                    },
                );
                self.schedule_next(c, k + 1);
            }
            Ev::ClientEof { c } => {
                if let Some(down) = self.open_down(c) {
                    self.conns[c].eof_sent = true;
                    self.input(Some(c), Input::ReadClosed { conn: down });
                }
            }
            Ev::Connected { conn, ok } => {
                let c = self.ups.get(&conn).map(|u| u.c);
                if ok {
                    // The relay starts here: the idle timeout counts from it too.
                    if let Some(c) = c {
                        self.conns[c].last_activity = Some(self.now);
                    }
                    self.input(c, Input::Connected { conn });
                } else {
                    self.ups.remove(&conn);
                    self.input(c, Input::ConnectFailed { conn });
                }
            }
            Ev::Echo { conn, data } => {
                let Some(c) = self.ups.get(&conn).filter(|u| u.open).map(|u| u.c) else {
                    return;
                };
                self.conns[c].server_sent.extend_from_slice(&data);
                self.conns[c].last_activity = Some(self.now);
                self.input(Some(c), Input::Received { conn, data });
            }
            Ev::ServerFin { conn } => {
                let Some(c) = self.ups.get(&conn).filter(|u| u.open).map(|u| u.c) else {
                    return;
                };
                self.conns[c].server_fin_at.get_or_insert(self.now);
                self.input(Some(c), Input::ReadClosed { conn });
            }
            Ev::ServerReset { conn } => {
                let Some(u) = self.ups.get_mut(&conn).filter(|u| u.open) else {
                    return;
                };
                u.open = false;
                let c = u.c;
                self.conns[c].server_reset = true;
                self.count("server-reset");
                self.input(Some(c), Input::Closed { conn });
            }
        }
    }

    fn schedule_next(&mut self, c: usize, k: usize) {
        let spec = &self.spec.conns[c];
        match spec.chunks.get(k) {
            Some(&(gap, _)) => {
                let at = self.now + Duration::from_millis(gap);
                self.queue.push(at, Ev::Chunk { c, k });
            }
            None if spec.eof => self.queue.push(self.now, Ev::ClientEof { c }),
            None => {}
        }
    }

    fn start(&mut self, c: usize) {
        let spec = &self.spec.conns[c];
        let port = 20_000 + (c % 40_000) as u16;
        let mut accepted = trellis_engine::proxy::Accepted::new(
            SocketAddr::from(([127, 0, 0, 1], port)),
            build::LISTENER.parse().expect("a socket address"),
        );
        accepted.original_dst = Some(original_dst(spec));
        if let Some(set) = spec.client {
            accepted.source_labels = Arc::new(
                (LABEL_SETS[set].iter())
                    .map(|&(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            );
        }
        self.feeding = Some(c);
        let down = self.engine.accept(self.now, accepted);
        self.downs.insert(down, c);
        self.conns[c].down = Some(down);
        self.after_engine();
        self.feeding = None;
        self.schedule_next(c, 0);
    }

    fn after_engine(&mut self) {
        while let Some(output) = self.engine.poll_output() {
            match output {
                Output::Connect { conn, addr } => self.connect(conn, addr),
                Output::Send { conn, data } => {
                    self.trace.u64(conn.0 ^ ((data.len() as u64) << 32));
                    if let Some(&c) = self.downs.get(&conn) {
                        self.conns[c].received.extend_from_slice(&data);
                    } else {
                        self.server_read(conn, &data);
                    }
                    self.engine.handle(self.now, Input::WriteDrained { conn });
                }
                Output::Shutdown { conn } => {
                    if let Some(&c) = self.downs.get(&conn) {
                        self.conns[c].client_saw_eof = true;
                        self.conns[c].client_eof_at.get_or_insert(self.now);
                    } else if let Some(u) = self.ups.get_mut(&conn).filter(|u| u.open) {
                        let c = u.c;
                        self.conns[c].server_saw_eof = true;
                        // The server answers the EOF with its own once its echoes are out.
                        if !u.finished {
                            u.finished = true;
                            let at = self.now + Duration::from_millis(u.server.latency_ms);
                            self.queue.push(at, Ev::ServerFin { conn });
                        }
                    }
                }
                Output::ReadInterest { .. } => {}
                Output::Close { conn, graceful } => {
                    self.trace.u64(conn.0 ^ 0xc105e ^ u64::from(graceful));
                    // A graceful close ends with a FIN after the pending sends: the peer
                    // reads an EOF; a reset is no EOF.
                    if let Some(c) = self.downs.remove(&conn) {
                        self.conns[c].closed_at = Some(self.now);
                        if graceful {
                            self.conns[c].client_saw_eof = true;
                            self.conns[c].client_eof_at.get_or_insert(self.now);
                        }
                    }
                    if let Some(u) = self.ups.get_mut(&conn) {
                        if u.open && graceful {
                            self.conns[u.c].server_saw_eof = true;
                        }
                        u.open = false;
                    }
                }
            }
        }
        while self.engine.poll_event().is_some() {}
        self.engine.drain_logs_into(&mut self.logs);
    }

    fn connect(&mut self, conn: ConnId, addr: SocketAddr) {
        let reached = (self.spec.clusters.iter().enumerate())
            .find_map(|(c, servers)| {
                (0..servers.len())
                    .find(|&i| super::world::addr(c, i) == addr)
                    .map(|i| Reached::Cluster(c, i))
            })
            .unwrap_or(Reached::Original);
        let server = match reached {
            Reached::Cluster(c, i) => self.spec.clusters[c][i].clone(),
            Reached::Original => self.spec.original.clone(),
        };
        let ok = !server.refuse;
        let Some(c) = self.feeding else {
            let msg =
                format!("a connect to {addr} the driver cannot attribute to a client connection");
            self.violation(Invariant::Routing, msg);
            return;
        };
        self.conns[c].connects.push((reached, !ok));
        if ok {
            self.conns[c].up = Some(conn);
        }
        self.ups.insert(
            conn,
            Up {
                c,
                server,
                open: ok,
                echoed: 0,
                finished: false,
            },
        );
        self.trace.u64(conn.0 ^ (u64::from(ok) << 40));
        let at = self.now + Duration::from_millis(1);
        self.queue.push(at, Ev::Connected { conn, ok });
    }

    /// A server reads bytes: recorded, echoed after its latency, or the connection reset once
    /// it has read `reset_after` bytes.
    fn server_read(&mut self, conn: ConnId, data: &[u8]) {
        let Some(u) = self.ups.get_mut(&conn).filter(|u| u.open) else {
            return;
        };
        let (c, latency, reset_after) = (u.c, u.server.latency_ms, u.server.reset_after);
        let state = &mut self.conns[c];
        let room = reset_after.map_or(usize::MAX, |n| {
            n.saturating_sub(state.server_received.len())
        });
        let taken = &data[..data.len().min(room)];
        state.server_received.extend_from_slice(taken);
        if reset_after.is_some_and(|n| state.server_received.len() >= n) {
            self.queue.push(self.now, Ev::ServerReset { conn });
            return;
        }
        if u.finished || taken.is_empty() {
            return;
        }
        // Echo up to `fin_after` bytes in all, then finish first.
        let room = u
            .server
            .fin_after
            .map_or(usize::MAX, |n| n.saturating_sub(u.echoed));
        let echo = &taken[..taken.len().min(room)];
        u.echoed += echo.len();
        let at = self.now + Duration::from_millis(latency);
        if !echo.is_empty() {
            let data = Bytes::copy_from_slice(echo);
            self.queue.push(at, Ev::Echo { conn, data });
        }
        if u.server.fin_after.is_some_and(|n| u.echoed >= n) {
            u.finished = true;
            self.queue.push(at, Ev::ServerFin { conn });
        }
    }
}
