//! The security world's loop: callers, sidecars (real engines with the TLS transport, seeded),
//! workloads and the pod network, on a virtual clock, advanced by an event queue.
//!
//! Engines `0..services` are the inbound sidecars (one per server workload, listener inbound
//! in the service's PeerAuthentication mode, its AuthorizationPolicies as the control plane
//! translates them, forwarding to the workload); the others are the outbound sidecars of mesh
//! callers (a cluster per service whose one endpoint is that service's inbound sidecar, with
//! auto mTLS, ISTIO_MUTUAL or DISABLE). Callers outside the mesh connect straight to an
//! inbound sidecar. Between sidecars (and from outside callers) every write crosses the
//! network: latency, loss (a retransmission delay, order kept), resets, partitions.
//! Certificates are renewed and policies and modes changed by config pushes, as istiod does.
//!
//! The loop mirrors [`crate::sim::mesh`]: engine timers before queued events at the same
//! instant, queued events in scheduling order, no wall clock, no hash-map order.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use trellis_engine::transport::tls::{MtlsSettings, MtlsTransports, Randomness};
use trellis_engine::{ConnId, Engine, Event, Input, Instant, Output};

use super::ca::{IssuedCert, SimCa, UNIX_BASE};
use super::checks::{Link, Req};
use super::spec::{CallerKind, PeerAuthMode, SecChange, SecuritySpec};
use super::SecOutcome;
use crate::sim::check::{Invariant, Violations};
use crate::sim::queue::EventQueue;
use crate::sim::report::TraceHash;
use crate::sim::side_world::{self, SideWorld};
use crate::sim::tcp::spec::client_hello_offering;

/// Where every workload listens behind its inbound sidecar.
pub(crate) const WORKLOAD: &str = "127.0.0.1:8080";
/// The outbound listener of every mesh caller's sidecar.
const OUTBOUND: &str = "127.0.0.1:15001";
/// A write lost once comes again after TCP's minimum retransmission timeout.
pub(crate) const RETRANSMIT: Duration = Duration::from_millis(200);
/// A run needing more events than this is stuck.
const MAX_EVENTS: u64 = 200_000;

/// The pod address of service `s`'s inbound sidecar.
pub(crate) fn pod(s: usize) -> SocketAddr {
    SocketAddr::from(([10, 20, s as u8, 1], 9080))
}

pub(crate) fn caller_addr(c: usize, port: u16) -> SocketAddr {
    SocketAddr::from(([10, 10, c as u8, 1], port))
}

pub(crate) enum Ev {
    Start {
        req: usize,
    },
    ConnectDone {
        link: usize,
        ok: bool,
    },
    Deliver {
        link: usize,
        to_server: bool,
        data: Bytes,
    },
    Eof {
        link: usize,
        to_server: bool,
        reset: bool,
    },
    WorkReply {
        e: usize,
        conn: ConnId,
        data: Bytes,
    },
    Push(usize),
    Renew {
        e: usize,
        cert: usize,
    },
    PartitionStart(usize),
    Rotation {
        e: usize,
        step: super::rotation::Step,
    },
}

/// Which side of a link an engine connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Server,
}

pub(crate) struct World<'a> {
    pub(crate) spec: &'a SecuritySpec,
    pub(crate) now: Instant,
    pub(crate) rng: fastrand::Rng,
    pub(crate) queue: EventQueue<Ev>,
    pub(crate) engines: Vec<Engine>,
    /// Per caller: its outbound sidecar's engine (mesh callers).
    pub(crate) out_engine: Vec<Option<usize>>,
    pub(crate) certs: Vec<IssuedCert>,
    /// Per engine: the certificate in its configuration now.
    pub(crate) current_cert: Vec<usize>,
    pub(crate) modes: Vec<PeerAuthMode>,
    /// The mesh's AuthorizationPolicies from each instant on (the first from zero).
    pub(crate) policy_gens: Vec<(Instant, Vec<crate::sim::mtls::policy::PolicySpec>)>,
    pub(crate) authz: Vec<Option<Arc<trellis_engine::authz::Authorization>>>,
    pub(crate) links: Vec<Link>,
    pub(crate) ends: BTreeMap<(usize, ConnId), (usize, Side)>,
    /// Outbound sidecar downstream connections → the caller's request.
    pub(crate) down_req: BTreeMap<(usize, ConnId), usize>,
    /// Inbound sidecar upstream connections → what the workload has read and not parsed.
    work: BTreeMap<(usize, ConnId), Vec<u8>>,
    pub(crate) requests: Vec<Req>,
    pub(crate) violations: Violations,
    pub(crate) trace: TraceHash,
    pub(crate) outcomes: BTreeMap<String, u64>,
    logs: Vec<trellis_engine::proxy::RequestLog>,
    /// RequestAuthentications and tokens, in the seeds whose world has JWT.
    pub(crate) jwt: Option<super::jwt::JwtState>,
    /// The root rotation's progress, in the seeds whose world has one.
    pub(crate) rotation: Option<super::rotation::RotationState>,
}

impl SideWorld for World<'_> {
    fn next_event(&self) -> Option<Instant> {
        self.queue.next_time()
    }

    fn next_timer(&self) -> Option<Instant> {
        self.engines.iter().filter_map(Engine::poll_timeout).min()
    }

    fn advance(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    /// Every engine whose timer is due, in engine order.
    fn fire_timers(&mut self) {
        for e in 0..self.engines.len() {
            if self.engines[e]
                .poll_timeout()
                .is_some_and(|t| t <= self.now)
            {
                self.trace.bytes(&[0x71, e as u8]);
                self.engines[e].handle_timeout(self.now);
                self.after_engine(e);
            }
        }
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
        spec: &'a SecuritySpec,
        seed: u64,
        hook: Option<fn(usize, &mut Engine)>,
    ) -> Result<World<'a>, String> {
        let mut ca = SimCa::new(seed).map_err(|e| e.to_string())?;
        let mut impostor_ca = SimCa::impostor(seed, &ca).map_err(|e| e.to_string())?;
        let far = spec.duration_ms + 86_400_000;
        let mut certs = Vec::new();
        let mut current_cert = Vec::new();
        let mut renewals = Vec::new();
        let mut issue = |ns: &str, sa: &str, life: &super::spec::CertLife, e: usize, fake: bool| {
            let ca = if fake { &mut impostor_ca } else { &mut ca };
            let first = ca.issue(ns, sa, 0, life.expires_ms.unwrap_or(far))?;
            current_cert.push(certs.len());
            certs.push(first);
            if let Some(at) = life.renew_ms {
                let renewed = ca.issue(ns, sa, at, at + 86_400_000)?;
                renewals.push((at, e, certs.len()));
                certs.push(renewed);
            }
            Ok::<(), super::ca::CaError>(())
        };
        for (s, svc) in spec.services.iter().enumerate() {
            issue(&svc.namespace, &svc.app, &svc.cert, s, false).map_err(|e| e.to_string())?;
        }
        let mut out_engine = Vec::new();
        let mut n = spec.services.len();
        for c in &spec.callers {
            if !c.kind.has_sidecar() {
                out_engine.push(None);
                continue;
            }
            // An impostor claims the first caller's identity.
            let fake = c.kind == CallerKind::Impostor;
            let who = if fake { &spec.callers[0] } else { c };
            issue(&who.namespace, &who.account, &c.cert, n, fake).map_err(|e| e.to_string())?;
            out_engine.push(Some(n));
            n += 1;
        }
        let mut world = World {
            spec,
            now: Instant::ZERO,
            rng: fastrand::Rng::with_seed(seed ^ 0x0e7_5ec0_0000_0006),
            queue: EventQueue::default(),
            engines: Vec::new(),
            out_engine,
            certs,
            current_cert,
            modes: spec.services.iter().map(|s| s.mode).collect(),
            policy_gens: vec![(Instant::ZERO, spec.policies.clone())],
            authz: Vec::new(),
            links: Vec::new(),
            ends: BTreeMap::new(),
            down_req: BTreeMap::new(),
            work: BTreeMap::new(),
            requests: Vec::new(),
            violations: Violations::default(),
            trace: TraceHash::default(),
            outcomes: BTreeMap::new(),
            logs: Vec::new(),
            jwt: None,
            rotation: None,
        };
        if let Some(j) = &spec.jwt {
            let apps: Vec<(&str, &str)> = (spec.services.iter())
                .map(|s| (s.app.as_str(), s.namespace.as_str()))
                .collect();
            world.jwt = Some(super::jwt::JwtState::new(seed, j, &apps)?);
        }
        world.authz = super::policy::translate(&spec.services, &spec.policies)?;
        for e in 0..n {
            let config = world.config_of(e);
            let engine_seed = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (0x5ec0 + e as u64);
            let mut engine = Engine::try_new(config, engine_seed)
                .map_err(|err| format!("sidecar {e} refused its first config: {err}"))?;
            // JWT expiry follows the same simulated clock as the certificates.
            engine.set_unix_base(UNIX_BASE);
            engine.set_transports(Box::new(MtlsTransports::from_config(MtlsSettings {
                unix_base: UNIX_BASE,
                randomness: Randomness::Seeded(engine_seed ^ 0x7157),
            })));
            if let Some(hook) = hook {
                hook(10_000 + e, &mut engine);
            }
            world.engines.push(engine);
        }
        super::rotation::setup(&mut world, seed)?;
        for (at, e, cert) in renewals {
            world
                .queue
                .push(Instant::from_millis(at), Ev::Renew { e, cert });
        }
        for (i, p) in spec.pushes.iter().enumerate() {
            world.queue.push(Instant::from_millis(p.at_ms), Ev::Push(i));
        }
        for (i, p) in spec.net.partitions.iter().enumerate() {
            if p.reset {
                let at = Instant::from_millis(p.from_ms);
                world.queue.push(at, Ev::PartitionStart(i));
            }
        }
        for (c, caller) in spec.callers.iter().enumerate() {
            for (i, q) in caller.requests.iter().enumerate() {
                let req = world.requests.len();
                world.requests.push(Req::new(c, i));
                world
                    .queue
                    .push(Instant::from_millis(q.at_ms), Ev::Start { req });
            }
        }
        Ok(world)
    }

    pub(crate) fn reconfigure(&mut self, e: usize) {
        let config = self.config_of(e);
        if let Err(err) = self.engines[e].apply_config(self.now, config) {
            let msg = format!("sidecar {e} refused a config push: {err}");
            self.violation(Invariant::ConfigApplied, msg);
        }
        self.after_engine(e);
    }

    pub(crate) fn violation(&mut self, invariant: Invariant, detail: impl Into<String>) {
        self.violations.report(invariant, self.now, detail);
    }

    pub(crate) fn count(&mut self, outcome: &str) {
        *self.outcomes.entry(format!("mtls:{outcome}")).or_default() += 1;
    }

    pub(crate) fn run(mut self) -> SecOutcome {
        let hard_stop = Instant::from_millis(self.spec.duration_ms + 30_000);
        side_world::drive(&mut self, hard_stop, MAX_EVENTS, "security");
        let unfinished = self.requests.iter().filter(|r| !r.done).count();
        for _ in 0..unfinished {
            self.count("unfinished");
        }
        SecOutcome {
            violations: self.violations.list,
            trace: self.trace.finish(),
            outcomes: self.outcomes,
        }
    }

    fn fire(&mut self, ev: Ev) {
        match ev {
            Ev::Start { req } => self.start(req),
            Ev::ConnectDone { link, ok } => self.connect_done(link, ok),
            Ev::Deliver {
                link,
                to_server,
                data,
            } => self.deliver(link, to_server, data),
            Ev::Eof {
                link,
                to_server,
                reset,
            } => self.eof(link, to_server, reset),
            Ev::WorkReply { e, conn, data } => {
                if self.work.contains_key(&(e, conn)) {
                    self.engine_input(e, Input::Received { conn, data });
                }
            }
            Ev::Push(i) => {
                let n_services = self.spec.services.len();
                match &self.spec.pushes[i].change {
                    SecChange::Mode { service, mode } => {
                        self.modes[*service] = *mode;
                        self.reconfigure(*service);
                    }
                    SecChange::Jwt { service, on } => {
                        if let Some(j) = &mut self.jwt {
                            j.set(self.now, *service, *on);
                        }
                        self.reconfigure(*service);
                    }
                    SecChange::Policies(set) => {
                        match super::policy::translate(&self.spec.services, set) {
                            Ok(authz) => self.authz = authz,
                            Err(msg) => self.violation(Invariant::ConfigApplied, msg),
                        }
                        self.policy_gens.push((self.now, set.clone()));
                        for s in 0..n_services {
                            self.reconfigure(s);
                        }
                    }
                }
            }
            Ev::Renew { e, cert } => self.renew(e, cert),
            Ev::Rotation { e, step } => self.rotation_step(e, step),
            Ev::PartitionStart(i) => {
                let service = self.spec.net.partitions[i].service;
                for l in 0..self.links.len() {
                    if self.links[l].service == service && self.links[l].closed_at.is_none() {
                        self.reset_link(l);
                    }
                }
            }
        }
    }

    /// A caller starts request `req`.
    fn start(&mut self, req: usize) {
        let (c, i) = (self.requests[req].caller, self.requests[req].index);
        self.requests[req].started = self.now;
        let q = &self.spec.callers[c].requests[i];
        let app = &self.spec.services[q.service].app;
        let mut head = format!(
            "{} {} HTTP/1.1\r\nhost: {app}\r\nx-sim-req: {req}\r\ncontent-length: 0\r\nconnection: close\r\n",
            q.method, q.path
        );
        if q.forged_xfcc {
            head += "x-forwarded-client-cert: By=spiffe://cluster.local/ns/ops/sa/forged;URI=spiffe://cluster.local/ns/ops/sa/admin\r\n";
        }
        if let (Some(j), Some(token)) = (&self.jwt, &q.token) {
            head += &j.header(token);
        }
        head += "\r\n";
        let port = 20_000 + (req % 40_000) as u16;
        match self.out_engine[c] {
            Some(e) => {
                let accepted = trellis_engine::proxy::Accepted::new(
                    caller_addr(c, port),
                    OUTBOUND.parse().expect("a socket address"),
                );
                let conn = self.engines[e].accept(self.now, accepted);
                self.down_req.insert((e, conn), req);
                self.engine_input(
                    e,
                    Input::Received {
                        conn,
                        data: Bytes::from(head),
                    },
                );
            }
            None => {
                // Sent once the connection is up (`connect_done`): a TLS client's ClientHello
                // names the service and offers what curl offers.
                let first = if self.spec.callers[c].kind == CallerKind::ExternalTls {
                    client_hello_offering(Some(app), &["h2", "http/1.1"])
                } else {
                    head.into_bytes()
                };
                self.requests[req].pending = Some(Bytes::from(first));
                let link = self.open_link(c, q.service, None, Some(req));
                self.requests[req].link = Some(link);
            }
        }
    }

    pub(crate) fn engine_input(&mut self, e: usize, input: Input) {
        self.engines[e].handle(self.now, input);
        self.after_engine(e);
    }

    pub(crate) fn after_engine(&mut self, e: usize) {
        let n_services = self.spec.services.len();
        while let Some(output) = self.engines[e].poll_output() {
            match output {
                Output::Connect { conn, addr } => {
                    if e < n_services {
                        // The workload is local: connected at once, so the request the
                        // sidecar just authorized reaches it in this same call (under the
                        // policies that decided it).
                        self.work.insert((e, conn), Vec::new());
                        self.engines[e].handle(self.now, Input::Connected { conn });
                        continue;
                    }
                    let service = (0..n_services).find(|&s| pod(s) == addr);
                    let caller = self.out_engine.iter().position(|o| *o == Some(e));
                    match (service, caller) {
                        (Some(s), Some(c)) => {
                            self.open_link(c, s, Some((e, conn)), None);
                        }
                        // Nothing listens there.
                        _ => self.engines[e].handle(self.now, Input::ConnectFailed { conn }),
                    }
                }
                Output::Send { conn, data } => {
                    self.trace.u64(conn.0 ^ ((e as u64) << 48));
                    if let Some(&(link, side)) = self.ends.get(&(e, conn)) {
                        self.net_send(link, side == Side::Client, data);
                    } else if let Some(&req) = self.down_req.get(&(e, conn)) {
                        self.requests[req].response.extend_from_slice(&data);
                    } else if self.work.contains_key(&(e, conn)) {
                        self.workload_read(e, conn, &data);
                    }
                    self.engines[e].handle(self.now, Input::WriteDrained { conn });
                }
                // Half-closes come from L4 (TCP) routes, which this world's configs never have.
                Output::Shutdown { .. } => {}
                Output::Close { conn, graceful } => {
                    self.trace
                        .u64(conn.0 ^ 0xc105e ^ (u64::from(graceful) << 50));
                    if let Some((link, side)) = self.ends.remove(&(e, conn)) {
                        if side == Side::Server && self.links[link].closed_at.is_none() {
                            self.links[link].closed_at = Some(self.now);
                        }
                        let to_server = side == Side::Client;
                        let l = &mut self.links[link];
                        let last = if to_server { l.c2s_last } else { l.s2c_last };
                        let at = last.max(self.now + Duration::from_millis(1));
                        let reset = !graceful;
                        self.queue.push(
                            at,
                            Ev::Eof {
                                link,
                                to_server,
                                reset,
                            },
                        );
                    } else if let Some(req) = self.down_req.remove(&(e, conn)) {
                        self.finish(req, "");
                    } else {
                        self.work.remove(&(e, conn));
                    }
                }
                Output::ReadInterest { .. } => {}
            }
        }
        while let Some(event) = self.engines[e].poll_event() {
            match event {
                Event::TransportFailed {
                    error,
                    upstream,
                    conn,
                    ..
                } => self.transport_failed(e, conn, upstream, &error),
                Event::AuthzDenied { .. } => self.count("rbac-denied"),
                Event::AuthzAudited { .. } => self.count("rbac-audited"),
                Event::AuthnDenied { .. } => self.count("jwt-denied"),
                Event::ConfigRejected { version, error } => {
                    let msg = format!("sidecar {e} rejected config {version}: {error}");
                    self.violation(Invariant::ConfigApplied, msg);
                }
            }
        }
        self.engines[e].drain_logs_into(&mut self.logs);
        self.logs.clear();
    }

    /// The workload behind inbound sidecar `e` reads bytes: every whole request is checked
    /// and answered.
    fn workload_read(&mut self, e: usize, conn: ConnId, data: &[u8]) {
        let Some(buf) = self.work.get_mut(&(e, conn)) else {
            return;
        };
        buf.extend_from_slice(data);
        loop {
            let Some(buf) = self.work.get_mut(&(e, conn)) else {
                return;
            };
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut head = httparse::Request::new(&mut headers);
            let len = match head.parse(buf) {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => return,
                Err(err) => {
                    buf.clear();
                    let msg = format!("workload {e} received an unparsable request: {err}");
                    self.violation(Invariant::Bytes, msg);
                    return;
                }
            };
            let seen = super::checks::Seen::of(&head);
            let body = seen.content_length;
            if buf.len() < len + body {
                return;
            }
            buf.drain(..len + body);
            self.on_workload_request(e, seen);
            let reply = Bytes::from_static(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
            self.queue.push(
                self.now,
                Ev::WorkReply {
                    e,
                    conn,
                    data: reply,
                },
            );
        }
    }
}
