//! The proxy engine: one instance is one core's worth of state (connections, requests,
//! upstream pools, balancer and outlier state), driven by inputs and drained of outputs.
//!
//! Life of a request, and where each step lives:
//! 1. `downstream`: bytes from a client are parsed into a request head (RFC 9112 rules and
//!    limits from [`crate::http1`]); protocol errors answer 4xx/5xx and close.
//! 2. `routing`: the head is routed ([`crate::route`]), faults are injected, the upstream
//!    head is prepared; `request` holds the request's state (an enum per concern).
//! 3. `attempt`: a host is picked ([`crate::cluster`]), failures are retried with jittered
//!    backoff within the route's policy; `timeouts` fire the route, per-try and idle limits.
//! 4. `pool`: a pooled connection (or a new one, within the circuit breaker's limits)
//!    carries the request; `upstream` takes the connection's events, `response` validates
//!    and streams the answer back and returns the connection to the pool.
//! 5. `reply`: mesh-generated answers, the end of the request, its access-log record, and
//!    the connection's next request (queued as deferred work, never a recursive call).
//!
//! Files are layered: each calls only files listed below it, never one above.
//!
//! ```text
//!   mod         public surface, dispatch, the deferred-work loop, flush
//!   upstream    upstream connection events  ┐
//!   downstream  client connection events    ├ handlers, called only by mod
//!   timeouts    a request's timers firing   ┘
//!   response    relaying an upstream answer
//!   routing     a new request: route, faults, upstream head
//!   attempt     hosts and retries
//!   reply       ending a request
//!   pool        upstream connections and cluster slots
//!   relay       backpressure and tunnels
//!   outbox      writes, closes, read interest, timers, deferred work
//!   mirror      copies of a request to mirror clusters, called by the handlers above
//! ```
//!
//! Data and views with no engine logic: `request`, `conn`, `clusters`, `ids`, `slab`,
//! `timers`, `snapshot`, `api`, `log`, `stats`; `inspect` (probes for tests and the
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
mod downstream;
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
mod stats;
mod timeouts;
mod timers;
mod upstream;

pub use api::{Accepted, ConnId, Event, Input, Output};
pub use inspect::Inspect;
pub use intake::ADOPT_MIN;
pub use log::{RequestLog, ResponseFlag};
pub use mirror::{MirrorLog, MirrorOutcome, MAX_MIRROR_LOGS};
pub use snapshot::{CompiledConfig, ConfigError};
pub use stats::EngineStats;

use std::collections::VecDeque;
use std::sync::Arc;

use crate::config::Config;
use crate::http1::Limits;
use crate::rng::EngineRng;
use crate::time::Instant;
use crate::transport::{PlainTransports, TransformError, TransportFactory};

use clusters::Clusters;
use conn::{Conn, Side};
use ids::{DownstreamId, RequestId, UpstreamId};
use outbox::out_buf;
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
        self.snapshot = compiled.0;
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

    /// `now` as whole seconds since the UNIX epoch, on the engine's clock.
    pub(crate) fn unix_seconds(&self, now: Instant) -> u64 {
        (self.unix_base + std::time::Duration::from_nanos(now.as_nanos())).as_secs()
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
    pub fn drain_logs_into(&mut self, into: &mut Vec<RequestLog>) {
        into.append(&mut self.logs);
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

    // ---- the dispatcher: deferred work, timers, flushing, and inputs routed to handlers ----

    /// Do the deferred work, including whatever it defers in turn. The queue holds at most one
    /// entry per downstream connection, and each handler runs from here with a flat stack.
    fn run_work(&mut self, now: Instant) {
        while let Some(work) = self.work.pop_front() {
            match work {
                Work::Resume(id) => {
                    let Some(down) = self.conns.down_mut(id) else {
                        continue;
                    };
                    debug_assert!(down.resume_queued, "a queued resume is flagged");
                    down.resume_queued = false;
                    self.on_downstream_data(now, id);
                }
            }
        }
    }

    fn on_sweep_timer(&mut self, now: Instant, at: Instant, slot: usize) {
        let Some(s) = self.clusters.slot_mut(slot) else {
            return;
        };
        if s.sweep_at != Some(at) {
            return;
        }
        s.sweep_at = None;
        let returned = s.state.on_timer(now);
        self.stats.outlier_returns += returned.len() as u64;
        self.arm_sweep(slot);
    }

    /// Removes stale timer entries once they clearly outnumber the live owners. Without this a
    /// finished request's entry (e.g. its 5-minute stream idle deadline) would stay in the heap
    /// until it expired: memory proportional to request rate × timeout.
    fn compact_timers(&mut self) {
        let live = self.conns.len() + self.requests.len() + self.clusters.slots.len();
        if self.timers.len() <= 2 * live + 1024 {
            return;
        }
        let (conns, requests, clusters) = (&self.conns, &self.requests, &self.clusters);
        self.timers.retain(|at, owner| match owner {
            TimerOwner::Conn(id) => conns.get(id).is_some_and(|c| c.wake == Some(at)),
            TimerOwner::Request(id) => requests.get(id).is_some_and(|r| r.timers.wake == Some(at)),
            TimerOwner::ClusterSweep(slot) => {
                clusters.slot(slot).is_some_and(|s| s.sweep_at == Some(at))
            }
        });
    }

    /// Turn buffered writes and decided closes into outputs, in connection order of marking.
    fn flush(&mut self) {
        debug_assert!(
            self.work.is_empty(),
            "deferred work is done before a call returns"
        );
        self.compact_timers();
        #[cfg(debug_assertions)]
        self.check_invariants();
        // Take the list and give it back afterwards, keeping its capacity.
        let mut dirty = std::mem::take(&mut self.dirty);
        for id in dirty.drain(..) {
            let Some(c) = self.conns.get_mut(id) else {
                continue;
            };
            c.dirty = false;
            if c.transport.is_plain() {
                if !c.out.is_empty() {
                    let data = c.out.split().freeze();
                    c.unacked += data.len();
                    self.outputs.push_back(Output::Send { conn: id, data });
                }
            } else {
                let mut wire = bytes::BytesMut::new();
                c.transport.seal_into(&mut c.out, &mut wire);
                if c.closing == Some(true) {
                    // The protocol's close (TLS close_notify) goes after the last bytes the
                    // codec wrote: a peer stops reading at close_notify, so a response
                    // sealed behind it would be lost.
                    c.transport.close();
                    c.transport.seal_into(&mut c.out, &mut wire);
                }
                if !wire.is_empty() {
                    c.unacked += wire.len();
                    let data = wire.freeze();
                    self.outputs.push_back(Output::Send { conn: id, data });
                }
            }
            if let Some(graceful) = c.closing {
                debug_assert!(graceful || c.out.is_empty(), "{id}: a reset sends nothing");
                self.outputs.push_back(Output::Close { conn: id, graceful });
                self.conns.remove(id);
            }
        }
        self.dirty = dirty;
    }

    fn on_conn_timer(&mut self, now: Instant, at: Instant, id: ConnId) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        if c.wake != Some(at) || !c.is_open() {
            return;
        }
        c.wake = None;
        match c.side {
            Side::Down(_) => self.on_downstream_timer(now, DownstreamId::new(id)),
            Side::Up(_) => self.on_upstream_timer(now, UpstreamId::new(id)),
        }
    }

    fn on_write_drained(&mut self, now: Instant, id: ConnId) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        c.unacked = 0;
        match &c.side {
            Side::Down(down) => {
                // A pipelined request may have waited for the client to take its answers.
                let waiting = down.state == conn::DownState::Idle && !down.recv.is_empty();
                let id = DownstreamId::new(id);
                self.refresh_backpressure_from_down(now, id);
                if waiting {
                    self.queue_resume(id);
                }
            }
            Side::Up(_) => self.refresh_backpressure_from_up(now, UpstreamId::new(id)),
        }
    }

    fn on_received(&mut self, now: Instant, id: ConnId, data: bytes::Bytes) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        if !c.is_open() {
            return;
        }
        let (recv, read_closed) = match &mut c.side {
            Side::Down(down) => (&mut down.recv, down.read_closed),
            Side::Up(up) => (&mut up.recv, up.read_closed),
        };
        if c.transport.is_plain() {
            // Plain bytes are the codec's bytes: adopted whole when large (see `intake`).
            intake::take_in(recv, data);
        } else if let Err(error) = c.transport.receive(now, &data, recv) {
            // The transform turns socket bytes into the codec's bytes.
            self.on_transport_failed(now, id, error);
            return;
        }
        let peer_closed = c.transport.is_peer_closed() && !read_closed;
        let is_down = matches!(c.side, Side::Down(_));
        if c.transport.wants_write() {
            // A handshake step or an alert to answer, whatever the codec does.
            self.mark_dirty(id);
        }
        if is_down {
            self.on_downstream_data(now, DownstreamId::new(id));
        } else {
            self.on_upstream_data(now, UpstreamId::new(id));
        }
        if peer_closed {
            // The transform's own close (TLS close_notify) is the codec's EOF.
            self.on_read_closed(now, id);
        }
    }

    /// A connection's transform failed: say why, send its alert, and end the connection as if
    /// the peer had reset it (its request fails or retries as for a reset).
    fn on_transport_failed(&mut self, now: Instant, id: ConnId, error: TransformError) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        c.transport.fail();
        let (peer, upstream) = match &c.side {
            Side::Down(d) => (d.peer, false),
            Side::Up(u) => (u.addr, true),
        };
        self.stats.transport_failures += 1;
        self.push_event(Event::TransportFailed {
            conn: id,
            peer,
            upstream,
            error,
        });
        if upstream {
            let up = UpstreamId::new(id);
            self.on_upstream_gone(now, up);
        } else {
            let down = DownstreamId::new(id);
            self.on_downstream_gone(now, down);
            // Graceful: the alert goes out before the close.
            self.mark_closing(down, true);
        }
    }

    /// Keep `event` for [`Engine::poll_event`], dropping the oldest beyond [`MAX_EVENTS`].
    fn push_event(&mut self, event: Event) {
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    fn on_read_closed(&mut self, now: Instant, id: ConnId) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        if !c.is_open() {
            return;
        }
        match &mut c.side {
            Side::Down(down) => {
                down.read_closed = true;
                self.on_downstream_eof(now, DownstreamId::new(id));
            }
            Side::Up(up) => {
                up.read_closed = true;
                self.on_upstream_eof(now, UpstreamId::new(id));
            }
        }
    }

    fn on_closed(&mut self, now: Instant, id: ConnId) {
        let Some(c) = self.conns.get(id) else {
            return;
        };
        if !c.is_open() {
            // We asked for it; the driver confirms.
            self.conns.remove(id);
            return;
        }
        match c.side {
            Side::Down(_) => self.on_downstream_gone(now, DownstreamId::new(id)),
            Side::Up(_) => self.on_upstream_gone(now, UpstreamId::new(id)),
        }
        // The peer is gone: nothing more to send, and no Close output is owed.
        self.conns.remove(id);
    }
}

/// Work a handler leaves for the engine's top-level loop instead of calling into another
/// handler (which could call back into it: a request the mesh answers itself used to re-enter
/// `on_downstream_data` through `finish_request`, several stack frames per pipelined request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Work {
    /// A request on this downstream connection finished and more bytes are buffered: read
    /// the next request.
    Resume(DownstreamId),
}

#[cfg(test)]
mod authn_tests;
#[cfg(test)]
mod authz_tests;
#[cfg(test)]
mod hash_tests;
#[cfg(test)]
mod istio_tests;
#[cfg(test)]
mod mirror_tests;
#[cfg(test)]
mod mtls_policy_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
#[cfg(test)]
mod transport_tests;
