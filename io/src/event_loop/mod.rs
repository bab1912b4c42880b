//! The event loop both backends share: real sockets in, engine inputs; engine outputs, socket
//! operations out.
//!
//! One loop turn: pick up control requests (a config push, shutdown); stop if draining is
//! done; wait in the backend (`epoll_wait`, or `io_uring_enter`) until a socket has news, the
//! control handle wakes us, or the next deadline (the engine's timer, a lingering close, a
//! resting listener, the drain deadline) comes; read the clock once; handle each event,
//! handing the engine every input it produced and performing its outputs until it is quiet;
//! then fire timers and print the access logs of requests that finished.
//!
//! Why one loop: the run loop, control, drain, timers, the engine glue, the close paths,
//! accepting and the listener table are the same whether the kernel reports readiness (epoll)
//! or completions (io_uring). Written twice they drifted (only epoll capped listeners, only
//! io_uring rested a listener after EMFILE); written once, each backend ([`backend`]) is only
//! what truly differs: how sockets are registered, and how reads, writes, accepts and
//! connects are started and finished.
//!
//! The loop holds no routing or policy logic (DESIGN.md, "Runtimes"): everything it decides
//! is about sockets: when to read, what to write, how to close.
//!
//! Modules: [`backend`] (the trait a backend implements), [`conn`] (a connection's shared
//! state), [`sockets`] (what is done to sockets; it never calls the engine, this file does).

pub(crate) mod backend;
pub(crate) mod conn;
mod sockets;
mod stats;

use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use trellis_engine::config::{Config, Direction};
use trellis_engine::proxy::RequestLog;
use trellis_engine::{ConnId, Input, Instant, Output};

use crate::access_log;
use crate::clock::Clock;
use crate::control::ControlHandle;
use crate::engine::ProxyEngine;
use crate::error::IoError;
use crate::listeners::BindOptions;
use backend::{Event, IoBackend};
use sockets::Sockets;
pub(crate) use stats::IoCounters;
pub use stats::IoStats;

/// Knobs of a driver.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Seed of the engine's RNG.
    pub seed: u64,
    /// Size of a read (epoll: the one shared read buffer; io_uring: one provided buffer, or
    /// on the single-shot path a connection's own receive buffer; capped at 16 KiB there).
    pub read_buffer_bytes: usize,
    /// io_uring: receive buffers shared by a core's connections (rounded up to a power of
    /// two), for multishot receives. 0 turns multishot accepts and receives off (the
    /// single-shot path older kernels get anyway).
    pub provided_buffers: usize,
    /// io_uring: send with a non-blocking `sendmsg` first and hand only what the socket does
    /// not take to a ring send, so a send that fits costs no completion and no wake-up
    /// (`uring::send`). False: every send is a ring send. epoll always writes directly.
    pub direct_sends: bool,
    /// After shutdown is requested, how long open downstream connections may take to finish.
    pub shutdown_grace: Duration,
    /// How long a gracefully closed connection keeps discarding what the peer still sends.
    pub linger_timeout: Duration,
    /// Readiness events taken per `epoll_wait`.
    pub events_capacity: usize,
    /// Listen backlog.
    pub backlog: i32,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            seed: random_seed(),
            read_buffer_bytes: 64 * 1024,
            provided_buffers: 64,
            direct_sends: true,
            shutdown_grace: Duration::from_secs(5),
            linger_timeout: Duration::from_secs(2),
            events_capacity: 1024,
            backlog: 1024,
        }
    }
}

/// A seed from the OS's per-process hash keys: no extra dependency, different per run.
fn random_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x0074_7265_6c6c_6973);
    h.finish()
}

/// An inbound drain in progress (Envoy's `drain_listeners?inboundonly&graceful`).
#[derive(Clone, Copy, Debug)]
struct InboundDrain {
    /// When the inbound listeners stop accepting (the drain period's end).
    close_at: StdInstant,
    /// They did.
    closed: bool,
}

/// The names of `config`'s inbound listeners.
fn inbound_names(config: &Config) -> Vec<String> {
    (config.listeners.iter())
        .filter(|l| l.direction == Direction::Inbound)
        .map(|l| l.name.clone())
        .collect()
}

/// One engine, one backend, the sockets between them.
pub(crate) struct EventLoop<E: ProxyEngine, B: IoBackend> {
    sockets: Sockets<B>,
    clock: Clock,
    now: Instant,
    engine: E,
    /// Access-log records between the engine and the log, reused across turns.
    logs: Vec<RequestLog>,
    control: ControlHandle,
    opts: RunOptions,
    /// When shutdown was requested, and the time it must be done by.
    drain_deadline: Option<StdInstant>,
    /// The inbound drain (preStop's `/drain`): `None` until asked; then when its listeners
    /// stop accepting, and whether they did.
    inbound_drain: Option<InboundDrain>,
    /// The inbound listeners of the configuration last applied, by name.
    inbound_listeners: Vec<String>,
    stats: IoStats,
    /// `stats`, published once per turn for other threads (the runtime).
    counters: Arc<IoCounters>,
}

impl<E: ProxyEngine, B: IoBackend> EventLoop<E, B> {
    /// Bind the listeners and build the engine with `make`, from the configuration as bound
    /// (listener addresses with port 0 replaced by the ports actually bound).
    pub fn with_bind(
        config: Arc<Config>,
        opts: RunOptions,
        control: ControlHandle,
        mut bind: BindOptions,
        make: impl FnOnce(Arc<Config>) -> E,
    ) -> Result<Self, IoError> {
        bind.nonblocking = B::NONBLOCKING_LISTENERS;
        let backend = B::new(&opts)?;
        let mut sockets = Sockets::new(backend, bind, opts.linger_timeout);
        let bound =
            sockets
                .listeners
                .reconcile(&mut sockets.backend, &config, &sockets.bind, true)?;
        control.attach_waker(sockets.backend.waker());
        let clock = Clock::new();
        Ok(EventLoop {
            sockets,
            now: clock.now(),
            clock,
            engine: make(Arc::new(bound)),
            logs: Vec::new(),
            control,
            opts,
            drain_deadline: None,
            inbound_drain: None,
            inbound_listeners: inbound_names(&config),
            stats: IoStats::default(),
            counters: Arc::default(),
        })
    }

    /// The listeners' bound addresses, by name.
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.sockets.listeners.addrs()
    }

    pub fn engine(&self) -> &E {
        &self.engine
    }

    /// Run until shutdown completes.
    pub fn run(mut self) -> Result<(), IoError> {
        self.accept_everywhere();
        loop {
            self.apply_control();
            if self.drain_complete() {
                break;
            }
            let timeout = self.next_timeout();
            self.sockets.backend.wait(timeout)?;
            self.stats.turns += 1;
            self.now = self.clock.now();
            while let Some(event) = self.sockets.next_event() {
                match event {
                    Event::Listener(index) => self.accept_all(index),
                    Event::Conn { id, error } => self.conn_ready(id, error),
                }
                self.sockets.backend.after_event();
            }
            self.fire_timers();
            self.engine.drain_logs_into(&mut self.logs);
            access_log::emit(&mut self.logs);
            self.sockets.conns.release_freed();
            self.counters.publish(&self.stats());
        }
        self.engine.drain_logs_into(&mut self.logs);
        access_log::emit(&mut self.logs);
        let stats = self.stats();
        self.counters.publish(&stats);
        tracing::info!(
            backend = B::NAME,
            open = self.sockets.conns.len(),
            turns = stats.turns,
            syscalls = stats.backend_syscalls,
            accepted = stats.accepted,
            "driver stopped"
        );
        self.sockets.drop_all();
        Ok(())
    }

    /// What the loop did so far.
    pub fn stats(&self) -> IoStats {
        IoStats {
            backend_syscalls: self.sockets.backend.syscalls(),
            ring_operations: self.sockets.backend.ring_operations(),
            recv_buffers_exhausted: self.sockets.backend.buffers_exhausted(),
            ..self.stats
        }
    }

    /// The loop's counters as it publishes them while running (once per turn).
    pub fn counters(&self) -> Arc<IoCounters> {
        self.counters.clone()
    }

    // ---- events ----------------------------------------------------------------------------

    /// Accept on every listener (at start, and after listeners were added): epoll may have
    /// connections queued from before; io_uring starts its accepts.
    fn accept_everywhere(&mut self) {
        let indexes: Vec<usize> = self.sockets.listeners.indexes().collect();
        for index in indexes {
            self.accept_all(index);
        }
    }

    /// Accept what listener `index` has, handing each connection to the engine at once.
    fn accept_all(&mut self, index: usize) {
        while let Some((stream, accepted)) = self.sockets.accept_one(index) {
            let (peer, local) = (accepted.peer, accepted.local);
            let id = self.engine.accept(self.now, accepted);
            tracing::debug!(conn = %id, %peer, %local, "accepted");
            self.stats.accepted += 1;
            self.sockets.adopt(id, stream);
            self.pump();
        }
    }

    /// A connection had news: finish its connect, discard what a lingering one receives, or
    /// write what is queued and read what the engine wants.
    fn conn_ready(&mut self, id: ConnId, error: bool) {
        let Some(conn) = self.sockets.conns.get(id) else {
            return; // closed earlier in this turn
        };
        match conn.phase {
            conn::Phase::Connecting => self.sockets.finish_connect(id),
            conn::Phase::Lingering { .. } => self.sockets.discard(id),
            conn::Phase::Open => {
                if let Some(e) = error.then(|| self.sockets.socket_error(id)).flatten() {
                    self.sockets.fail(id, &e);
                } else {
                    // Writing first: a response queued behind a full socket goes out before
                    // more requests are read. Each stops when the socket has nothing more.
                    self.sockets.flush(id);
                    self.read_all(id);
                }
            }
        }
        self.pump();
    }

    /// Read while the engine wants bytes and the socket has them, feeding each chunk at once
    /// so backpressure (`ReadInterest { enabled: false }`) takes effect between two chunks.
    fn read_all(&mut self, id: ConnId) {
        while let Some(input) = self.sockets.read_one(id) {
            let more = matches!(input, Input::Received { .. });
            self.sockets.inputs.push_back(input);
            self.pump();
            if !more {
                return;
            }
        }
    }

    // ---- the engine ------------------------------------------------------------------------

    /// Perform the engine's outputs and feed it the inputs they (and the sockets) produced,
    /// until it is quiet. Performing an output never feeds the engine directly ([`perform`]
    /// only has the sockets), so this loop is the only place the two meet and the stack
    /// stays flat however many requests one read carries.
    fn pump(&mut self) {
        loop {
            while let Some(output) = self.engine.poll_output() {
                perform(&mut self.sockets, output);
            }
            match self.sockets.inputs.pop_front() {
                Some(input) => self.engine.handle(self.now, input),
                None => break,
            }
        }
    }

    // ---- control, time and draining -----------------------------------------------------

    /// Pick up config pushes and shutdown requests.
    fn apply_control(&mut self) {
        let requests = self.control.take();
        if let Some(config) = requests.config {
            self.now = self.clock.now();
            self.inbound_listeners = inbound_names(&config);
            let bound = if self.drain_deadline.is_some() {
                (*config).clone()
            } else {
                let s = &mut self.sockets;
                // Drained inbound listeners stay closed whatever the new config says.
                let without_inbound = self.inbound_drain.filter(|d| d.closed).map(|_| {
                    let mut wanted = (*config).clone();
                    wanted
                        .listeners
                        .retain(|l| l.direction != Direction::Inbound);
                    wanted
                });
                let wanted = without_inbound.as_ref().unwrap_or(&config);
                match s
                    .listeners
                    .reconcile(&mut s.backend, wanted, &s.bind, false)
                {
                    Ok(bound) if without_inbound.is_some() => with_bound_addresses(&config, &bound),
                    Ok(bound) => bound,
                    Err(e) => {
                        tracing::error!(error = %e, "listeners not updated");
                        (*config).clone()
                    }
                }
            };
            tracing::info!(version = %bound.version, "configuration applied");
            self.sockets
                .inputs
                .push_back(Input::Config(Arc::new(bound)));
            self.pump();
            if self.drain_deadline.is_none() {
                self.accept_everywhere();
            }
        }
        if requests.drain_inbound && self.inbound_drain.is_none() && self.drain_deadline.is_none() {
            let now = StdInstant::now();
            let close_at = now.checked_add(self.opts.shutdown_grace).unwrap_or(now);
            self.inbound_drain = Some(InboundDrain {
                close_at,
                closed: false,
            });
            tracing::info!(
                listeners = ?self.inbound_listeners,
                grace = ?self.opts.shutdown_grace,
                "draining inbound listeners: connections close after their next response"
            );
            self.sockets
                .inputs
                .push_back(Input::DrainListeners { inbound_only: true });
            self.pump();
        }
        if requests.shutdown && self.drain_deadline.is_none() {
            let now = StdInstant::now();
            self.drain_deadline = Some(now.checked_add(self.opts.shutdown_grace).unwrap_or(now));
            let s = &mut self.sockets;
            s.listeners.close_all(&mut s.backend);
            tracing::info!(
                open = self.sockets.conns.len(),
                grace = ?self.opts.shutdown_grace,
                "shutting down: no longer accepting"
            );
        }
    }

    /// See [`crate::drain::drain_complete`].
    fn drain_complete(&self) -> bool {
        crate::drain::drain_complete(
            self.drain_deadline,
            self.sockets.drain_states(),
            self.engine.requests_in_flight(),
            !self.sockets.inputs.is_empty(),
        )
    }

    /// How long the backend may wait: until the engine's timer, a linger or listener-rest
    /// deadline, or the shutdown deadline, whichever is first; forever if none.
    fn next_timeout(&self) -> Option<Duration> {
        let now_std = StdInstant::now();
        let now = self.clock.to_engine(now_std);
        let engine = self.engine.poll_timeout().map(|at| Clock::until(now, at));
        let inbound_close = (self.inbound_drain)
            .filter(|d| !d.closed)
            .map(|d| d.close_at);
        let socket_deadlines = [
            self.sockets.next_deadline(),
            self.drain_deadline,
            inbound_close,
        ];
        socket_deadlines
            .into_iter()
            .flatten()
            .map(|at| at.saturating_duration_since(now_std))
            .chain(engine)
            .min()
    }

    /// Fire the engine's timer if due, end lingering closes that ran out of time, and let
    /// rested listeners accept again.
    fn fire_timers(&mut self) {
        self.now = self.clock.now();
        if self.engine.poll_timeout().is_some_and(|at| at <= self.now) {
            self.engine.handle_timeout(self.now);
            self.pump();
        }
        let now_std = StdInstant::now();
        self.sockets.expire_lingering(now_std);
        if let Some(drain) = self.inbound_drain.as_mut() {
            if !drain.closed && drain.close_at <= now_std {
                drain.closed = true;
                let s = &mut self.sockets;
                s.listeners
                    .close_named(&mut s.backend, &self.inbound_listeners);
            }
        }
        for index in self.sockets.listeners.wake_rested(now_std) {
            self.accept_all(index);
        }
    }
}

/// `config` with the addresses `bound` gave its listeners (a listener `bound` lacks keeps its
/// configured address: it is not listening).
fn with_bound_addresses(config: &Config, bound: &Config) -> Config {
    let mut out = config.clone();
    for listener in out.listeners.iter_mut() {
        if let Some(b) = bound.listeners.iter().find(|b| b.name == listener.name) {
            listener.address = b.address;
        }
    }
    out
}

/// Do what the engine asked. Takes the sockets only, so it cannot re-enter the engine.
fn perform<B: IoBackend>(sockets: &mut Sockets<B>, output: Output) {
    match output {
        Output::Connect { conn, addr } => sockets.connect(conn, addr),
        Output::Send { conn, data } => sockets.send(conn, data),
        Output::ReadInterest { conn, enabled } => sockets.set_read_interest(conn, enabled),
        Output::Close {
            conn,
            graceful: true,
        } => sockets.close_gracefully(conn),
        Output::Close {
            conn,
            graceful: false,
        } => sockets.reset(conn),
        Output::Shutdown { conn } => sockets.shutdown_write(conn),
    }
}
