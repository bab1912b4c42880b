//! The mirroring world's loop: clients, one sidecar (a real engine), the primary cluster's and
//! the mirror clusters' upstreams, on a virtual clock advanced by an event queue.
//!
//! Every client request has a connection of its own; every upstream connection is made in a
//! millisecond (or refused, for a mirror cluster that is down). Upstreams answer whole
//! requests after their latency, unless they hang or reset; each records what it received,
//! which is what the checks ([`super::checks`]) read. As in [`crate::sim::mesh`]: engine timers
//! before queued events at the same instant, queued events in scheduling order, no wall clock,
//! no hash-map order.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use trellis_engine::config::{MirrorFraction, MirrorPolicy, RetryOn, RetryPolicy, Rewrite};
use trellis_engine::{ConnId, Engine, Input, Instant, Output};

use super::spec::{MirrorSpec, Upstream};
use crate::build;
use crate::sim::check::{Invariant, Violations};
use crate::sim::queue::EventQueue;
use crate::sim::report::TraceHash;
use crate::sim::side_world::{self, SideWorld};

/// The host clients ask for.
pub(crate) const HOST: &str = "primary";
/// A run needing more events than this is stuck.
const MAX_EVENTS: u64 = 200_000;
/// How long the world runs on after the last request starts (mirrors may hang that long).
const TAIL_MS: u64 = 10_000;

/// The address of endpoint `i` of cluster `c` (0: the primary, 1..: the mirrors).
fn addr(c: usize, i: usize) -> SocketAddr {
    SocketAddr::from(([10, 40, c as u8, (i + 1) as u8], 8080))
}

pub(crate) fn cluster_name(c: usize) -> String {
    match c {
        0 => "primary".to_string(),
        m => format!("mirror{}", m - 1),
    }
}

/// The client's request body: a pattern of its own per request.
pub(crate) fn body_of(req: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| b'a' + ((req * 7 + i) % 26) as u8)
        .collect()
}

enum Ev {
    Start {
        req: usize,
    },
    Connected {
        conn: ConnId,
        ok: bool,
    },
    Reply {
        conn: ConnId,
        data: Bytes,
        answer: Answered,
    },
    Reset {
        conn: ConnId,
    },
}

/// An upstream's answer as the checks remember it.
#[derive(Clone, Debug)]
pub(crate) struct Answered {
    pub req: usize,
    pub ep: usize,
    pub status: u16,
    pub body: String,
    /// When it reached the sidecar (set on delivery).
    pub at: Instant,
}

/// A request as an upstream received it.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub ep: usize,
    pub method: String,
    pub path: String,
    pub authority: String,
    pub request_id: Option<String>,
    pub body_ok: bool,
}

/// An endpoint of the world: its cluster (0 primary, m + 1 mirror m) and behaviour.
pub(crate) struct Ep {
    pub cluster: usize,
    pub addr: SocketAddr,
    pub spec: Upstream,
    pub down: bool,
}

/// What happened to one client request.
#[derive(Default)]
pub(crate) struct ReqState {
    pub started: bool,
    pub response: Vec<u8>,
    pub done_at: Option<Instant>,
    /// Arrivals at the primary cluster, in order (the first is the first attempt).
    pub primary: Vec<Seen>,
    /// Arrivals at mirror clusters: `(mirror index, what arrived)`.
    pub copies: Vec<(usize, Seen)>,
    /// Primary answers delivered to the sidecar.
    pub answers: Vec<Answered>,
}

struct UpConn {
    ep: usize,
    buf: Vec<u8>,
}

pub(crate) struct World<'a> {
    pub(crate) spec: &'a MirrorSpec,
    now: Instant,
    rng: fastrand::Rng,
    queue: EventQueue<Ev>,
    engine: Engine,
    pub(crate) eps: Vec<Ep>,
    down: BTreeMap<ConnId, usize>,
    ups: BTreeMap<ConnId, UpConn>,
    pub(crate) reqs: Vec<ReqState>,
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
        self.trace.bytes(&[0x31]);
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

fn config(spec: &MirrorSpec) -> trellis_engine::config::Config {
    let mut config = build::base();
    config.version = "mirror".into();
    let mut clusters = vec![(0, &spec.primary)];
    clusters.extend(
        spec.mirrors
            .iter()
            .enumerate()
            .map(|(m, d)| (m + 1, &d.endpoints)),
    );
    for (c, endpoints) in clusters {
        let addrs: Vec<String> = (0..endpoints.len())
            .map(|i| addr(c, i).to_string())
            .collect();
        let eps: Vec<(&str, &[(&str, &str)])> =
            addrs.iter().map(|a| (a.as_str(), &[][..])).collect();
        let mut cluster = build::cluster(&cluster_name(c), &eps);
        cluster.pool.connect_timeout = Duration::from_millis(500);
        config.clusters.push(cluster);
    }
    let mut route = build::route("mirrored", vec![], &[("primary", 100)]);
    route.timeout = spec.timeout_ms.map(Duration::from_millis);
    if spec.retries > 0 {
        route.retries = RetryPolicy {
            attempts: spec.retries,
            per_try_timeout: None,
            retry_on: RetryOn {
                server_error: true,
                reset: true,
                ..RetryOn::default()
            },
            backoff_base: Duration::from_millis(25),
        };
    }
    route.rewrite = spec.authority_rewrite.as_ref().map(|a| Rewrite {
        authority: Some(a.clone()),
        ..Rewrite::default()
    });
    route.mirrors = (spec.mirrors.iter().enumerate())
        .map(|(m, d)| {
            let (numerator, denominator) = d.fraction();
            MirrorPolicy {
                cluster: cluster_name(m + 1),
                fraction: MirrorFraction {
                    numerator,
                    denominator,
                },
                host_suffix: false,
            }
        })
        .collect();
    build::add_vhost(&mut config, HOST, &[HOST], vec![route]);
    config
}

impl<'a> World<'a> {
    pub(crate) fn new(
        spec: &'a MirrorSpec,
        seed: u64,
        hook: Option<fn(usize, &mut Engine)>,
    ) -> Result<World<'a>, String> {
        let engine_seed = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x3144;
        let mut engine = Engine::try_new(Arc::new(config(spec)), engine_seed)
            .map_err(|e| format!("the mirroring sidecar refused its config: {e}"))?;
        if let Some(hook) = hook {
            hook(20_000, &mut engine);
        }
        let mut eps: Vec<Ep> = (spec.primary.iter().enumerate())
            .map(|(i, u)| Ep {
                cluster: 0,
                addr: addr(0, i),
                spec: u.clone(),
                down: false,
            })
            .collect();
        for (m, d) in spec.mirrors.iter().enumerate() {
            eps.extend(d.endpoints.iter().enumerate().map(|(i, u)| Ep {
                cluster: m + 1,
                addr: addr(m + 1, i),
                spec: u.clone(),
                down: d.down,
            }));
        }
        let mut queue = EventQueue::default();
        for (req, q) in spec.requests.iter().enumerate() {
            queue.push(Instant::from_millis(q.at_ms), Ev::Start { req });
        }
        Ok(World {
            spec,
            now: Instant::ZERO,
            rng: fastrand::Rng::with_seed(seed ^ 0x3144_3144_0000_0015),
            queue,
            engine,
            eps,
            down: BTreeMap::new(),
            ups: BTreeMap::new(),
            reqs: (0..spec.requests.len())
                .map(|_| ReqState::default())
                .collect(),
            violations: Violations::default(),
            trace: TraceHash::default(),
            outcomes: BTreeMap::new(),
        })
    }

    pub(crate) fn violation(&mut self, invariant: Invariant, detail: impl Into<String>) {
        self.violations.report(invariant, self.now, detail);
    }

    pub(crate) fn count(&mut self, outcome: &str) {
        *self
            .outcomes
            .entry(format!("mirror:{outcome}"))
            .or_default() += 1;
    }

    /// Run to the end; the checks read the world afterwards.
    pub(crate) fn run(&mut self) -> u64 {
        let hard_stop = Instant::from_millis(self.spec.duration_ms + TAIL_MS);
        side_world::drive(self, hard_stop, MAX_EVENTS, "mirroring");
        std::mem::take(&mut self.trace).finish()
    }

    fn input(&mut self, input: Input) {
        self.engine.handle(self.now, input);
        self.after_engine();
    }

    fn fire(&mut self, ev: Ev) {
        match ev {
            Ev::Start { req } => self.start(req),
            Ev::Connected { conn, ok } => {
                if ok {
                    self.input(Input::Connected { conn });
                } else {
                    self.input(Input::ConnectFailed { conn });
                }
            }
            Ev::Reply { conn, data, answer } => {
                if !self.ups.contains_key(&conn) {
                    return;
                }
                if self.eps[answer.ep].cluster == 0 {
                    self.reqs[answer.req].answers.push(Answered {
                        at: self.now,
                        ..answer
                    });
                }
                self.input(Input::Received { conn, data });
            }
            Ev::Reset { conn } => {
                if self.ups.remove(&conn).is_some() {
                    self.input(Input::Closed { conn });
                }
            }
        }
    }

    fn start(&mut self, req: usize) {
        let q = &self.spec.requests[req];
        let method = if q.body_len > 0 { "POST" } else { "GET" };
        let mut data = format!(
            "{method} /m/{req} HTTP/1.1\r\nhost: {HOST}\r\nx-sim-req: {req}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            q.body_len
        )
        .into_bytes();
        data.extend_from_slice(&body_of(req, q.body_len));
        self.reqs[req].started = true;
        let port = 20_000 + (req % 40_000) as u16;
        let accepted = trellis_engine::proxy::Accepted::new(
            SocketAddr::from(([127, 0, 0, 1], port)),
            build::LISTENER.parse().expect("a socket address"),
        );
        let conn = self.engine.accept(self.now, accepted);
        self.down.insert(conn, req);
        let data = Bytes::from(data);
        self.input(Input::Received { conn, data });
    }

    fn after_engine(&mut self) {
        while let Some(output) = self.engine.poll_output() {
            match output {
                Output::Connect { conn, addr } => {
                    let ep = self.eps.iter().position(|e| e.addr == addr);
                    let ok = ep.is_some_and(|ep| !self.eps[ep].down);
                    if let (Some(ep), true) = (ep, ok) {
                        self.ups.insert(
                            conn,
                            UpConn {
                                ep,
                                buf: Vec::new(),
                            },
                        );
                    }
                    self.trace.u64(conn.0 ^ (u64::from(ok) << 40));
                    let at = self.now + Duration::from_millis(1);
                    self.queue.push(at, Ev::Connected { conn, ok });
                }
                Output::Send { conn, data } => {
                    self.trace.u64(conn.0 ^ ((data.len() as u64) << 32));
                    if let Some(&req) = self.down.get(&conn) {
                        self.reqs[req].response.extend_from_slice(&data);
                    } else if self.ups.contains_key(&conn) {
                        self.server_read(conn, &data);
                    }
                    self.engine.handle(self.now, Input::WriteDrained { conn });
                }
                Output::Shutdown { .. } | Output::ReadInterest { .. } => {}
                Output::Close { conn, .. } => {
                    self.trace.u64(conn.0 ^ 0xc105e);
                    if let Some(req) = self.down.remove(&conn) {
                        self.reqs[req].done_at = Some(self.now);
                    }
                    self.ups.remove(&conn);
                }
            }
        }
        while self.engine.poll_event().is_some() {}
        let mut logs = Vec::new();
        self.engine.drain_logs_into(&mut logs);
        for m in self.engine.drain_mirror_logs() {
            self.count(&format!("{:?}", m.outcome));
        }
    }

    /// An upstream reads bytes: every whole request is recorded and answered.
    fn server_read(&mut self, conn: ConnId, data: &[u8]) {
        let Some(u) = self.ups.get_mut(&conn) else {
            return;
        };
        u.buf.extend_from_slice(data);
        loop {
            let Some(u) = self.ups.get_mut(&conn) else {
                return;
            };
            let ep = u.ep;
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut head = httparse::Request::new(&mut headers);
            let len = match head.parse(&u.buf) {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => return,
                Err(err) => {
                    u.buf.clear();
                    let msg = format!("endpoint {ep} received an unparsable request: {err}");
                    self.violation(Invariant::Bytes, msg);
                    return;
                }
            };
            let header = |name: &str| {
                (head.headers.iter())
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .map(str::to_string)
            };
            let body_len: usize = header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if u.buf.len() < len + body_len {
                return;
            }
            let req = header("x-sim-req").and_then(|v| v.parse::<usize>().ok());
            let Some(req) = req.filter(|r| *r < self.reqs.len()) else {
                u.buf.clear();
                self.violation(
                    Invariant::Routing,
                    format!("endpoint {ep} got a request without a valid x-sim-req"),
                );
                return;
            };
            let body = &u.buf[len..len + body_len];
            let seen = Seen {
                ep,
                method: head.method.unwrap_or("").to_string(),
                path: head.path.unwrap_or("").to_string(),
                authority: header("host").unwrap_or_default(),
                request_id: header("x-request-id"),
                body_ok: body == body_of(req, self.spec.requests[req].body_len).as_slice(),
            };
            u.buf.drain(..len + body_len);
            self.serve(conn, req, seen);
        }
    }

    fn serve(&mut self, conn: ConnId, req: usize, seen: Seen) {
        let ep = seen.ep;
        let cluster = self.eps[ep].cluster;
        let r = &mut self.reqs[req];
        let nth = match cluster {
            0 => {
                r.primary.push(seen);
                r.primary.len()
            }
            m => {
                r.copies.push((m - 1, seen));
                r.copies.len()
            }
        };
        let spec = &self.eps[ep].spec;
        let at = self.now + Duration::from_millis(spec.latency_ms);
        let (hang, reset, error) = (spec.hang_percent, spec.reset_percent, spec.error_percent);
        if self.rng.u8(0..100) < hang {
            self.count("upstream-hang");
            return;
        }
        if self.rng.u8(0..100) < reset {
            self.count("upstream-reset");
            self.queue.push(at, Ev::Reset { conn });
            return;
        }
        let (status, body) = match (cluster, self.rng.u8(0..100) < error) {
            (_, true) => (503, format!("err{req}e{ep}n{nth}")),
            (0, false) => (200, format!("p{req}e{ep}n{nth}")),
            (_, false) => (203, format!("mirror{req}e{ep}n{nth}")),
        };
        let data = Bytes::from(format!(
            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nx-sim-ep: {ep}\r\n\r\n{body}",
            body.len()
        ));
        let answer = Answered {
            req,
            ep,
            status,
            body,
            at,
        };
        self.queue.push(at, Ev::Reply { conn, data, answer });
    }
}
