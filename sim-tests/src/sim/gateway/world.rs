//! The gateway world's loop: one gateway proxy (a real engine with the TLS transport, seeded)
//! configured by the control plane, clients that each open one connection for one request
//! (HTTPS through a real rustls client, seeded too), and HTTP backends behind it, on a
//! virtual clock.
//!
//! Backends are told which request they serve by an `x-sim-req` field the client adds, so the
//! checks need not guess which pooled upstream connection carried what. Every write arrives
//! at once, every connect and every backend answer takes 1 ms; as in [`crate::sim::mesh`]:
//! engine timers before queued events at the same instant, queued events in scheduling order,
//! no wall clock, no hash-map order.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use trellis_engine::proxy::RequestLog;
use trellis_engine::transport::policy::{ClientCertificate, OriginationTls, ResolvedUpstreamTls};
use trellis_engine::transport::tls::{MtlsSettings, MtlsTransports, Randomness};
use trellis_engine::transport::{ByteTransform, Endpoint, Transport, TransportFactory};
use trellis_engine::{ConnId, Engine, Input, Instant, Output};

use super::config::{
    backend_addr, backend_tcp_addr, backend_tls_addr, server_san, translate, yaml, Certificates,
    GATEWAY_IP,
};
use super::reference::{expected, Expected};
use super::spec::{AutoClient, ClientCert, GatewaySpec};
use super::wire::{parse_request, parse_response, BackendHead, Response};
use crate::sim::check::{Invariant, Violations};
use crate::sim::mtls::ca::UNIX_BASE;
use crate::sim::queue::EventQueue;
use crate::sim::report::TraceHash;
use crate::sim::side_world::{self, SideWorld};

/// A run needing more events than this is stuck.
const MAX_EVENTS: u64 = 100_000;
/// How long the world runs on after the last request starts.
const TAIL_MS: u64 = 2_000;

enum Ev {
    Start {
        r: usize,
    },
    /// Bytes from client `r`'s socket to the gateway.
    ToGateway {
        r: usize,
        data: Bytes,
    },
    /// Bytes from the gateway to client `r`.
    ToClient {
        r: usize,
        data: Bytes,
    },
    /// Client `r` has its answer and goes away.
    Leave {
        r: usize,
    },
    Connected {
        conn: ConnId,
    },
    BackendReply {
        conn: ConnId,
        data: Bytes,
    },
}

/// Everything seen of one request.
#[derive(Default)]
pub(crate) struct ReqState {
    pub expected: Option<Expected>,
    pub down: Option<ConnId>,
    tls: Option<Box<dyn ByteTransform>>,
    /// Nothing listened: the connect was refused before the engine saw it.
    pub refused: bool,
    /// The client's TLS failed (its own verification, or the gateway's alert).
    pub tls_error: Option<String>,
    plain: BytesMut,
    pub response: Option<Response>,
    pub closed: bool,
    /// What backends received of it: the backend, and what it read of the head.
    pub reached: Vec<(usize, BackendHead)>,
    /// The bytes the client wrote first (its ClientHello, over TLS).
    pub first_flight: Bytes,
    /// The plaintext the client wrote (over TLS: inside it).
    pub plain_sent: Vec<u8>,
    /// Connections to backends' TLS or TCP ports made while the gateway handled this client's
    /// bytes: the backend, the port, and every byte it received.
    pub relayed: Vec<(usize, u16, Vec<u8>)>,
}

struct Upstream {
    backend: usize,
    /// A connection to the backend's TLS port, relaying for this request (an index into
    /// `relayed` of its [`ReqState`]); `None`: its HTTP port.
    relay: Option<(usize, usize)>,
    buf: Vec<u8>,
}

pub(crate) struct World<'a> {
    pub(crate) spec: &'a GatewaySpec,
    now: Instant,
    queue: EventQueue<Ev>,
    engine: Engine,
    clients: MtlsTransports,
    pub(crate) certs: Certificates,
    /// The addresses the gateway's listeners bind.
    listening: Vec<SocketAddr>,
    /// The client whose bytes the engine is handling: connects it makes then are its.
    feeding: Option<usize>,
    downs: BTreeMap<ConnId, usize>,
    ups: BTreeMap<ConnId, Upstream>,
    pub(crate) reqs: Vec<ReqState>,
    /// The gateway's access log, every record it wrote.
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
        self.trace.bytes(&[0x6a]);
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
        spec: &'a GatewaySpec,
        seed: u64,
        hook: Option<fn(usize, &mut Engine)>,
    ) -> Result<World<'a>, String> {
        let certs = Certificates::new(seed, spec.servers.len()).map_err(|e| e.to_string())?;
        let istio_mutual = (spec.servers.iter()).any(|s| s.mode == super::spec::Mode::IstioMutual);
        let config = translate(
            &yaml(spec, &certs),
            istio_mutual.then_some(&certs.mesh.gateway),
            spec.trusted_proxies,
        )?;
        let listening = config.listeners.iter().map(|l| l.address).collect();
        let engine_seed = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x6a7e;
        let mut engine = Engine::try_new(Arc::new(config), engine_seed)
            .map_err(|e| format!("the gateway refused its config: {e}"))?;
        engine.set_unix_base(UNIX_BASE);
        engine.set_transports(Box::new(MtlsTransports::from_config(MtlsSettings {
            unix_base: UNIX_BASE,
            randomness: Randomness::Seeded(engine_seed ^ 0x7157),
        })));
        if let Some(hook) = hook {
            hook(40_000, &mut engine);
        }
        let clients = MtlsTransports::from_config(MtlsSettings {
            unix_base: UNIX_BASE,
            randomness: Randomness::Seeded(engine_seed ^ 0xc11e),
        });
        let mut queue = EventQueue::default();
        for (r, req) in spec.requests.iter().enumerate() {
            queue.push(Instant::from_millis(req.at_ms), Ev::Start { r });
        }
        Ok(World {
            spec,
            now: Instant::ZERO,
            queue,
            engine,
            clients,
            certs,
            listening,
            feeding: None,
            downs: BTreeMap::new(),
            ups: BTreeMap::new(),
            reqs: (0..spec.requests.len())
                .map(|_| ReqState::default())
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
        *self
            .outcomes
            .entry(format!("gateway:{outcome}"))
            .or_default() += 1;
    }

    /// Run to the end; the checks read the world afterwards.
    pub(crate) fn run(&mut self) -> u64 {
        let last = self
            .spec
            .requests
            .iter()
            .map(|r| r.at_ms)
            .max()
            .unwrap_or(0);
        let hard_stop = Instant::from_millis(last + TAIL_MS);
        side_world::drive(self, hard_stop, MAX_EVENTS, "gateway");
        std::mem::take(&mut self.trace).finish()
    }

    fn fire(&mut self, ev: Ev) {
        match ev {
            Ev::Start { r } => self.start(r),
            Ev::ToGateway { r, data } => {
                if let Some(down) = self.open_down(r) {
                    self.feeding = Some(r);
                    self.engine
                        .handle(self.now, Input::Received { conn: down, data });
                    self.after_engine();
                    self.feeding = None;
                }
            }
            Ev::ToClient { r, data } => self.client_read(r, &data),
            Ev::Leave { r } => {
                if let Some(down) = self.open_down(r) {
                    self.reqs[r].closed = true;
                    self.downs.remove(&down);
                    self.engine.handle(self.now, Input::Closed { conn: down });
                    self.after_engine();
                }
            }
            Ev::Connected { conn } => {
                if self.ups.contains_key(&conn) {
                    self.engine.handle(self.now, Input::Connected { conn });
                    self.after_engine();
                }
            }
            Ev::BackendReply { conn, data } => {
                if self.ups.contains_key(&conn) {
                    self.engine.handle(self.now, Input::Received { conn, data });
                    self.after_engine();
                }
            }
        }
    }

    fn open_down(&self, r: usize) -> Option<ConnId> {
        let state = &self.reqs[r];
        state.down.filter(|_| !state.closed)
    }

    /// The name server `s`'s certificate gives: its own DNS name, or for `ISTIO_MUTUAL` the
    /// gateway proxy's SPIFFE id (the client checks URI SANs too).
    fn san_of(&self, s: usize) -> String {
        match self.spec.servers[s].mode {
            super::spec::Mode::IstioMutual => super::config::GATEWAY_ID.to_string(),
            _ => server_san(s),
        }
    }

    /// What the client presents when asked: none, or a certificate and its key.
    fn client_certificate(&self, cert: ClientCert) -> Option<ClientCertificate> {
        let (chain_pem, key_pem) = match cert {
            ClientCert::None => return None,
            ClientCert::Trusted => (&self.certs.client.cert, &self.certs.client.key),
            ClientCert::Untrusted => (&self.certs.untrusted.cert, &self.certs.untrusted.key),
            ClientCert::Mesh => {
                let mesh = &self.certs.mesh.client.identity;
                (&mesh.chain_pem, &mesh.key_pem)
            }
        };
        Some(ClientCertificate {
            chain_pem: chain_pem.clone(),
            key_pem: key_pem.clone(),
        })
    }

    /// Client `r`'s TLS, expecting the certificate of the server the reference says serves
    /// it (any server's when none should).
    fn client_tls(
        &mut self,
        r: usize,
        expected: &Expected,
    ) -> Result<Box<dyn ByteTransform>, String> {
        let req = &self.spec.requests[r];
        let sans = match expected {
            Expected::Served { chain: Some(s), .. }
            | Expected::ClientRefused(s)
            | Expected::TcpRelay { server: s, .. } => vec![self.san_of(*s)],
            _ => (0..self.spec.servers.len())
                .map(|s| self.san_of(s))
                .collect(),
        };
        let addr = SocketAddr::from((GATEWAY_IP, req.port));
        if let Some(auto) = req.auto.filter(|a| a.client == AutoClient::Sidecar) {
            // A sidecar's own mTLS, as it dials a cluster behind an east-west gateway: its
            // workload certificate, the mesh's ALPNs, the cluster's name as SNI, any identity
            // of the trust domain accepted.
            let sni = auto.name();
            let endpoint = Endpoint::Upstream {
                cluster: "sim-sidecar",
                addr,
                tls: ResolvedUpstreamTls::Mesh {
                    subject_alt_names: &[],
                    sni: Some(&sni),
                },
            };
            let identity = Some(&*self.certs.mesh.client.identity);
            return match self.clients.transport(self.now, endpoint, identity) {
                Ok(Transport::Transformed(t)) => Ok(t),
                Ok(_) => Err("the sidecar factory gave no TLS transform".into()),
                Err(e) => Err(format!("the sidecar's TLS: {e}")),
            };
        }
        let tls = Arc::new(OriginationTls {
            // An address as the name sends no server_name (RFC 6066 §3).
            sni: req
                .sni_name()
                .unwrap_or_else(|| std::net::Ipv4Addr::from(GATEWAY_IP).to_string()),
            subject_alt_names: sans,
            ca_pem: Some(format!(
                "{}{}",
                self.certs.server_root, self.certs.mesh.root_pem
            )),
            insecure_skip_verify: false,
            client_cert: self.client_certificate(req.cert),
        });
        let endpoint = Endpoint::Upstream {
            cluster: "sim-client",
            addr,
            tls: ResolvedUpstreamTls::Origination(&tls),
        };
        match self.clients.transport(self.now, endpoint, None) {
            Ok(Transport::Transformed(t)) => Ok(t),
            Ok(_) => Err("the client factory gave no TLS transform".into()),
            Err(e) => Err(format!("the client's TLS: {e}")),
        }
    }

    fn start(&mut self, r: usize) {
        let req = self.spec.requests[r].clone();
        let expected = expected(self.spec, &req, &self.certs.jwt);
        self.reqs[r].expected = Some(expected.clone());
        let local = SocketAddr::from((GATEWAY_IP, req.port));
        if !self.listening.contains(&local) {
            self.reqs[r].refused = true;
            self.count("refused");
            return;
        }
        let plain = super::edge::request_head(r, &req, &self.certs.jwt);
        let plain_copy = plain.clone();
        let first = if req.port == super::spec::HTTPS_PORT {
            let mut tls = match self.client_tls(r, &expected) {
                Ok(t) => t,
                Err(e) => {
                    self.violation(Invariant::Routing, format!("request {r}: {e}"));
                    return;
                }
            };
            tls.seal(&plain);
            let mut wire = BytesMut::new();
            tls.poll_wire(&mut wire);
            self.reqs[r].tls = Some(tls);
            wire.freeze()
        } else {
            Bytes::from(plain)
        };
        let peer = SocketAddr::from((super::authz::CLIENT_IP, 20_000 + r as u16));
        let accepted = trellis_engine::proxy::Accepted::new(peer, local);
        // An L4 chain the port alone can choose connects upstream at once.
        self.feeding = Some(r);
        let down = self.engine.accept(self.now, accepted);
        self.downs.insert(down, r);
        self.reqs[r].down = Some(down);
        self.trace.u64(down.0 ^ ((r as u64) << 40));
        self.after_engine();
        self.feeding = None;
        self.reqs[r].first_flight = first.clone();
        self.reqs[r].plain_sent = plain_copy;
        self.queue.push(self.now, Ev::ToGateway { r, data: first });
    }

    /// The gateway's bytes reach client `r`: through its TLS, if any, then the response parse.
    fn client_read(&mut self, r: usize, data: &[u8]) {
        let now = self.now;
        let state = &mut self.reqs[r];
        if state.closed {
            return;
        }
        match state.tls.as_mut() {
            Some(tls) => {
                if state.tls_error.is_some() {
                    return;
                }
                let mut plain = BytesMut::new();
                if let Err(e) = tls.receive(now, data, &mut plain) {
                    state.tls_error = Some(e.to_string());
                }
                state.plain.extend_from_slice(&plain);
                let mut wire = BytesMut::new();
                tls.poll_wire(&mut wire);
                if !wire.is_empty() {
                    let data = wire.freeze();
                    self.queue.push(now, Ev::ToGateway { r, data });
                }
            }
            None => state.plain.extend_from_slice(data),
        }
        if self.reqs[r].response.is_none() {
            if let Some(response) = parse_response(&self.reqs[r].plain) {
                self.reqs[r].response = Some(response);
                self.queue.push(self.now, Ev::Leave { r });
            }
        }
    }

    fn after_engine(&mut self) {
        while let Some(output) = self.engine.poll_output() {
            match output {
                Output::Connect { conn, addr } => self.connect(conn, addr),
                Output::Send { conn, data } => {
                    self.trace.u64(conn.0 ^ ((data.len() as u64) << 32));
                    if let Some(&r) = self.downs.get(&conn) {
                        self.queue.push(self.now, Ev::ToClient { r, data });
                    } else {
                        self.backend_read(conn, &data);
                    }
                    self.engine.handle(self.now, Input::WriteDrained { conn });
                }
                Output::Shutdown { conn } | Output::Close { conn, .. } => {
                    self.trace.u64(conn.0 ^ 0xc105e);
                    if let Some(r) = self.downs.remove(&conn) {
                        self.reqs[r].closed = true;
                    }
                    self.ups.remove(&conn);
                }
                Output::ReadInterest { .. } => {}
            }
        }
        while self.engine.poll_event().is_some() {}
        self.engine.drain_logs_into(&mut self.logs);
    }

    fn connect(&mut self, conn: ConnId, addr: SocketAddr) {
        let http = (0..self.spec.backends).find(|&k| backend_addr(k) == addr);
        // An east-west client's bytes may go to any port of the cluster it named, its HTTP
        // one included: relayed, not parsed.
        let auto = self
            .feeding
            .is_some_and(|r| matches!(self.reqs[r].expected, Some(Expected::AutoRelay { .. })));
        let tls = (0..self.spec.backends).find(|&k| {
            backend_tls_addr(k) == addr
                || backend_tcp_addr(k) == addr
                || (auto && backend_addr(k).ip() == addr.ip())
        });
        let relay = match (tls, self.feeding) {
            (Some(k), Some(r)) => {
                self.reqs[r].relayed.push((k, addr.port(), Vec::new()));
                Some((r, self.reqs[r].relayed.len() - 1))
            }
            _ => None,
        };
        let Some(backend) = http.or(tls).filter(|_| tls.is_none() || relay.is_some()) else {
            let msg = format!(
                "the gateway connected to {addr}, where no backend is (or not for a client)"
            );
            self.violation(Invariant::Routing, msg);
            return;
        };
        self.trace.u64(conn.0 ^ ((backend as u64) << 40));
        self.ups.insert(
            conn,
            Upstream {
                backend,
                relay,
                buf: Vec::new(),
            },
        );
        let at = self.now + Duration::from_millis(1);
        self.queue.push(at, Ev::Connected { conn });
    }

    /// A backend reads: every whole request head is recorded against the request it names
    /// and answered 1 ms later with `x-backend`.
    fn backend_read(&mut self, conn: ConnId, data: &[u8]) {
        let Some(up) = self.ups.get_mut(&conn) else {
            return;
        };
        if let Some((r, i)) = up.relay {
            // A TLS port only reads: the ClientHello it gets is not answered.
            self.reqs[r].relayed[i].2.extend_from_slice(data);
            return;
        }
        up.buf.extend_from_slice(data);
        let backend = up.backend;
        let mut heads = Vec::new();
        while let Some((len, head)) = parse_request(&up.buf) {
            up.buf.drain(..len);
            heads.push(head);
        }
        for head in heads {
            let reply =
                format!("HTTP/1.1 200 OK\r\nx-backend: {backend}\r\ncontent-length: 2\r\n\r\nok");
            let at = self.now + Duration::from_millis(1);
            let data = Bytes::from(reply);
            self.queue.push(at, Ev::BackendReply { conn, data });
            match head.req.filter(|&r| r < self.reqs.len()) {
                Some(r) => self.reqs[r].reached.push((backend, head)),
                None => {
                    let path = head.path;
                    let msg = format!("backend {backend} got a request naming no client: {path}");
                    self.violation(Invariant::Routing, msg);
                }
            }
        }
    }
}
