//! The proxy engine: one instance is one core's worth of state (connections, requests,
//! upstream pools, balancer and outlier state), driven by inputs and drained of outputs.
//!
//! Life of a request, and where each step lives:
//! 1. `downstream`: bytes from a client are parsed into a request head (RFC 9112 rules and
//!    limits from [`crate::http1`]); protocol errors answer 4xx/5xx and close.
//! 2. `routing`: the head is routed ([`crate::route`]), `faults` are injected, `head_edits`
//!    prepares the upstream head; `request` holds the request's state (an enum per concern).
//! 3. `attempt`: a host is picked ([`crate::cluster`]), failures are retried with jittered
//!    backoff within the route's policy; `timeouts` fire the route, per-try and idle limits.
//! 4. `pool`: a pooled connection (or a new one, within the circuit breaker's limits)
//!    carries the request; `upstream` takes the connection's events, `response` validates
//!    and streams the answer back and returns the connection to the pool.
//! 5. `reply`: mesh-generated answers, the end of the request, its access-log record, and
//!    the connection's next request (queued as deferred work, never a recursive call).
//!
//! Files are layered: each calls only files listed below it, never one above
//! (`engine/tests/layering.rs` checks it).
//!
//! ```text
//!   mod         public surface
//!   dispatch    inputs routed to handlers, the deferred-work loop, timers popped, flush
//!   upstream    upstream connection events  ┐
//!   downstream  client connection events    ├ handlers, called only by dispatch and mod
//!   timeouts    a request's timers firing   ┘
//!   tcp         L4 connections: protocol sniff, chain, destination, relay, half-close, record
//!   tcp_rbac    authorization policy on an L4 connection (Envoy's network RBAC filter)
//!   response    relaying an upstream answer
//!   routing     a new request: checks, route, destination
//!   authorize   authorization policy (RBAC) on a new request
//!   authenticate request authentication (JWT)
//!   faults      fault delay and abort, a route's own answers
//!   head_edits  client certificate forwarding, the upstream head
//!   edge        forwarding headers at a gateway (Envoy's use_remote_address)
//!   cors        a route's CORS policy: preflights answered, responses decorated
//!   attempt     hosts and retries
//!   reply       ending a request
//!   mirror      copies of a request to mirror clusters
//!   pool        upstream connections and cluster slots
//!   relay       backpressure and tunnels
//!   drain       draining listeners: connections close after their next answer
//!   outbox      writes, closes, read interest, timers, events, deferred work
//! ```
//!
//! Data and views with no engine logic: `request`, `conn`, `clusters`, `ids`, `slab`,
//! `timers`, `snapshot`, `api`, `log`, `stats`, `intake`, `tcp_session`, `tcp_match`, `sni`
//! and `http_sniff` (the L4 session, Envoy's filter-chain match, its `server_names` match on the
//! transport's ClientHello peek, the `http_inspector`'s protocol detection), `cors_encode` (the CORS fields of a response);
//! `inspect` (probes for tests and the
//! simulator) and `invariants` (the debug-build cross-checks run after every call).
//!
//! Everything is single-threaded and deterministic: time comes in with each call, randomness
//! from the engine's seeded RNG, and nothing iterates a hash map to make a decision.

mod api;
mod attempt;
mod authenticate;
mod authorize;
mod clusters;
mod conn;
mod cors;
mod cors_encode;
mod dispatch;
mod downstream;
mod drain;
mod edge;
mod faults;
mod head_edits;
mod http_sniff;
mod ids;
mod inspect;
mod intake;
#[cfg(debug_assertions)]
mod invariants;
mod log;
mod mirror;
mod outbox;
mod pool;
mod relay;
mod reply;
mod request;
mod response;
mod routing;
mod slab;
mod snapshot;
mod sni;
mod stats;
mod tcp;
mod tcp_match;
mod tcp_rbac;
mod tcp_session;
mod timeouts;
mod timers;
mod upstream;

pub use api::{Accepted, ConnId, Event, Input, Output};
pub use inspect::Inspect;
pub use intake::ADOPT_MIN;
pub use log::{RequestLog, ResponseFlag};
pub use mirror::{MirrorLog, MirrorOutcome, MAX_MIRROR_LOGS};
pub use snapshot::{CompiledConfig, ConfigError};
pub use sni::{peek as peek_client_hello, Peek};
pub use stats::EngineStats;
pub use tcp_match::{choose_chain, ChainChoice};

use std::collections::VecDeque;
use std::sync::Arc;

use crate::config::Config;
use crate::http1::Limits;
use crate::rng::EngineRng;
use crate::time::Instant;
use crate::transport::{PlainTransports, TransportFactory};

use clusters::Clusters;
use conn::Conn;
use ids::{RequestId, UpstreamId};
use outbox::{out_buf, Work};
use request::Request;
use slab::Slab;
use snapshot::Snapshot;
use timers::{TimerOwner, Timers};

/// Events kept for [`Engine::poll_event`] when the driver does not poll them.
pub const MAX_EVENTS: usize = 16;

/// The sans-IO proxy engine.
pub struct Engine {
    snapshot: Arc<Snapshot>,
    limits: Limits,
    clusters: Clusters,
    conns: Slab<ConnId, Conn>,
    requests: Slab<RequestId, Request>,
    timers: Timers,
    rng: EngineRng,
    outputs: VecDeque<Output>,
    /// Events for the driver to log, oldest first; bounded by [`MAX_EVENTS`].
    events: VecDeque<Event>,
    /// Work deferred to the top of the current call instead of done by re-entering the
    /// handler that caused it (see [`Work`]). Drained before every call returns.
    work: VecDeque<Work>,
    dirty: Vec<ConnId>,
    logs: Vec<RequestLog>,
    /// Records of finished mirrored requests (`mirror`), bounded by [`MAX_MIRROR_LOGS`].
    mirror_logs: Vec<MirrorLog>,
    /// Header maps of finished heads, reused by the next ones (saves four allocations per
    /// proxied request).
    header_pool: crate::http1::HeaderPool,
    /// The timer heap's entries, sorted, for the invariant check (kept to reuse its capacity).
    #[cfg(debug_assertions)]
    armed_scratch: Vec<(Instant, TimerOwner)>,
    stats: EngineStats,
    /// The listeners being drained (`Input::DrainListeners`), if any: their HTTP connections
    /// close after their next response (`drain`).
    draining: Option<drain::DrainScope>,
    last_config_error: Option<ConfigError>,
    /// Chooses each new connection's transport (plaintext, or a transform such as TLS).
    transports: Box<dyn TransportFactory>,
    /// The UNIX time of engine instant zero: JWT `exp`/`nbf` are checked at
    /// `unix_base + now` (see [`Engine::set_unix_base`]).
    unix_base: std::time::Duration,
    /// Planted bugs switched on in this engine (feature `mutants` only).
    #[cfg(feature = "mutants")]
    mutations: crate::mutants::Mutations,
}

impl Engine {
    /// An engine running `config`, whose random decisions all derive from `seed`.
    ///
    /// A config that does not compile (see [`Engine::try_new`]) leaves the engine with an empty
    /// configuration and the error in [`Engine::last_config_error`].
    pub fn new(config: Arc<Config>, seed: u64) -> Self {
        match Engine::try_new(config, seed) {
            Ok(engine) => engine,
            Err(err) => {
                let mut engine = Engine::try_new(Arc::new(Config::default()), seed)
                    .unwrap_or_else(|_| unreachable!("the empty config always compiles"));
                engine.last_config_error = Some(err);
                engine
            }
        }
    }

    /// An engine running `config`, or why `config` cannot run.
    pub fn try_new(config: Arc<Config>, seed: u64) -> Result<Self, ConfigError> {
        Ok(Engine::with_compiled(
            CompiledConfig::compile(config)?,
            seed,
        ))
    }

    /// An engine running a configuration compiled once for several engines.
    pub fn with_compiled(compiled: CompiledConfig, seed: u64) -> Self {
        #[cfg(feature = "mutants")]
        crate::mutants::reset_route();
        let snapshot = compiled.0;
        let mut engine = Engine {
            limits: Limits::from(&snapshot.config.http),
            snapshot,
            clusters: Clusters::default(),
            conns: Slab::new(),
            requests: Slab::new(),
            timers: Timers::default(),
            rng: EngineRng::with_seed(seed),
            outputs: VecDeque::new(),
            events: VecDeque::new(),
            work: VecDeque::new(),
            dirty: Vec::new(),
            logs: Vec::new(),
            mirror_logs: Vec::new(),
            header_pool: Default::default(),
            #[cfg(debug_assertions)]
            armed_scratch: Vec::new(),
            stats: EngineStats::default(),
            draining: None,
            last_config_error: None,
            transports: Box::new(PlainTransports),
            unix_base: std::time::Duration::ZERO,
            #[cfg(feature = "mutants")]
            mutations: crate::mutants::Mutations::default(),
        };
        let config = engine.snapshot.config.clone();
        engine.install_clusters(&config, Instant::ZERO);
        engine
    }

    /// A listener accepted a connection; returns the id the engine will use for it.
    pub fn accept(&mut self, now: Instant, accepted: Accepted) -> ConnId {
        let id = self.accept_downstream(now, accepted);
        self.flush();
        id.conn()
    }

    /// Feed one input.
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Received { conn, data } => self.on_received(now, conn, data),
            Input::ReadClosed { conn } => self.on_read_closed(now, conn),
            Input::Closed { conn } => self.on_closed(now, conn),
            Input::Connected { conn } => {
                if self.conns.up(UpstreamId::new(conn)).is_some() {
                    self.on_connected(now, UpstreamId::new(conn));
                }
            }
            Input::ConnectFailed { conn } => {
                if self.conns.up(UpstreamId::new(conn)).is_some() {
                    self.on_connect_failed(now, UpstreamId::new(conn));
                }
            }
            Input::WriteDrained { conn } => self.on_write_drained(now, conn),
            Input::DrainListeners { inbound_only } => self.drain_listeners(now, inbound_only),
            Input::Config(config) => {
                // A bad snapshot is refused whole; the last good one keeps serving, and the
                // driver hears why.
                let version = config.version.clone();
                if let Err(error) = self.apply_config(now, config) {
                    self.push_event(Event::ConfigRejected { version, error });
                }
            }
        }
        self.run_work(now);
        self.flush();
    }

    /// Install a new configuration snapshot. Requests in flight finish on the snapshot they
    /// started with; new requests use this one. On error nothing changes.
    pub fn apply_config(&mut self, now: Instant, config: Arc<Config>) -> Result<(), ConfigError> {
        match CompiledConfig::compile(config) {
            Ok(compiled) => {
                self.apply_compiled(now, compiled);
                Ok(())
            }
            Err(err) => {
                self.stats.config_rejected += 1;
                self.last_config_error = Some(err.clone());
                Err(err)
            }
        }
    }

    /// Install a configuration compiled once for several engines (see
    /// [`Engine::apply_config`]).
    pub fn apply_compiled(&mut self, now: Instant, compiled: CompiledConfig) {
        #[cfg(feature = "mutants")]
        let identity_changed = self.snapshot.config.identity != compiled.0.config.identity;
        self.snapshot = compiled.0;
        #[cfg(feature = "mutants")]
        if identity_changed && self.mutations.identity_update_closes_connections {
            let open: Vec<ConnId> = (self.conns.iter())
                .filter(|(_, c)| c.is_open() && matches!(c.side, conn::Side::Down(_)))
                .map(|(conn, _)| conn)
                .collect();
            for conn in open {
                self.mark_closing(conn, false);
            }
        }
        self.limits = Limits::from(&self.snapshot.config.http);
        self.stats.config_applied += 1;
        self.last_config_error = None;
        let config = self.snapshot.config.clone();
        self.install_clusters(&config, now);
        self.run_work(now);
        self.flush();
    }

    /// The time returned by [`Engine::poll_timeout`] has come (or passed).
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, owner)) = self.timers.pop_due(now) {
            match owner {
                TimerOwner::Conn(id) => self.on_conn_timer(now, at, id),
                TimerOwner::Request(id) => self.on_request_timer(now, at, id),
                TimerOwner::ClusterSweep(slot) => self.on_sweep_timer(now, at, slot),
            }
            // Each timer's consequences play out before the next one fires.
            self.run_work(now);
        }
        self.flush();
    }

    /// Choose how new connections carry their bytes (see [`crate::transport`]); connections
    /// already open keep theirs. The default is plaintext everywhere.
    pub fn set_transports(&mut self, factory: Box<dyn TransportFactory>) {
        self.transports = factory;
    }

    /// Say which UNIX time engine instant zero is (default: the epoch itself). Request
    /// authentication checks a JWT's `exp` and `nbf` at `unix_base + now`, never at the wall
    /// clock: a runtime sets this once from the wall clock at start, a simulation picks a
    /// fixed date and ages tokens in simulated time.
    pub fn set_unix_base(&mut self, unix_base: std::time::Duration) {
        self.unix_base = unix_base;
    }

    /// The next output to perform, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The next event to log, if any (at most [`MAX_EVENTS`] are kept; older ones go first).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When the engine next wants [`Engine::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Take the access-log records of requests finished since the last call.
    pub fn drain_logs(&mut self) -> Vec<RequestLog> {
        std::mem::take(&mut self.logs)
    }

    /// Move the access-log records of requests finished since the last call into `into`,
    /// keeping both buffers' capacity (no allocation per call once warm).
    ///
    /// An empty `into` (the drivers empty theirs after each call) trades buffers with the
    /// engine's list instead of taking a copy of each ~270-byte record: the same records in
    /// the same order, and each buffer's capacity stays in use.
    pub fn drain_logs_into(&mut self, into: &mut Vec<RequestLog>) {
        if into.is_empty() {
            std::mem::swap(into, &mut self.logs);
        } else {
            into.append(&mut self.logs);
        }
    }

    /// The configuration new requests use.
    pub fn config(&self) -> &Arc<Config> {
        &self.snapshot.config
    }

    /// Why the last configuration offered was refused, if it was.
    pub fn last_config_error(&self) -> Option<&ConfigError> {
        self.last_config_error.as_ref()
    }

    /// Counters since the engine started.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Live connections (downstream + upstream) and requests.
    pub fn live(&self) -> (usize, usize) {
        (self.conns.len(), self.requests.len())
    }

    /// A read-only view of the engine's runtime state, for tests and the simulator: what a
    /// driver never needs (a driver's surface is inputs, outputs, timers, logs and events).
    pub fn inspect(&self) -> Inspect<'_> {
        Inspect { engine: self }
    }

    /// Switch planted bugs on or off (feature `mutants`; for the simulator's self-test only).
    #[cfg(feature = "mutants")]
    pub fn set_mutations(&mut self, mutations: crate::mutants::Mutations) {
        self.mutations = mutations;
        self.spread_mutations();
    }
}

#[cfg(test)]
mod authn_tests;
#[cfg(test)]
mod authz_tests;
#[cfg(test)]
mod config_swap_tests;
#[cfg(test)]
mod cors_tests;
#[cfg(test)]
mod drain_tests;
#[cfg(test)]
mod foreign_tls_tests;
#[cfg(test)]
mod hash_tests;
#[cfg(test)]
mod inbound_protocol_tests;
#[cfg(test)]
mod interim_tests;
#[cfg(test)]
mod istio_tests;
#[cfg(test)]
mod mirror_tests;
#[cfg(test)]
mod mtls_policy_tests;
#[cfg(test)]
mod outbound_capture_tests;
#[cfg(test)]
mod path_tests;
#[cfg(test)]
mod tcp_rbac_tests;
#[cfg(test)]
mod tcp_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
#[cfg(test)]
mod transport_tests;
