//! The single-threaded epoll driver: real sockets in, engine inputs; engine outputs, real
//! socket operations out.
//!
//! One loop turn: wait in `epoll_wait` (via mio) until a socket is ready, the control handle
//! wakes us, or the engine's next timer is due; read the clock once; turn each readiness into
//! inputs (accepts, received bytes, EOF, connect results, drained writes), and after every
//! input drain the engine's outputs until it has nothing more to say; then fire the engine's
//! timer if due and print the access logs of requests that finished.
//!
//! The driver holds no routing or policy logic (DESIGN.md, "Runtimes"): everything it decides
//! is about sockets — when to read, what to write, how to close.
//!
//! This file is the loop and its bookkeeping; [`sockets`] is what happens to each socket.

mod sockets;

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use mio::{Events, Poll, Token, Waker};
use trellis_engine::config::Config;
use trellis_engine::{ConnId, Engine, Input, Instant, Output};

use crate::access_log;
use crate::clock::Clock;
use crate::conn::{Conn, Phase, Side};
use crate::control::ControlHandle;
use crate::engine::ProxyEngine;
use crate::error::IoError;
use crate::listeners::{BindOptions, Listeners, LISTENER_TOKEN_BASE, MAX_LISTENERS};
use crate::slab::ConnSlab;

const WAKER_TOKEN: Token = Token(0);
const CONN_TOKEN_BASE: usize = LISTENER_TOKEN_BASE + MAX_LISTENERS;
/// Reads of discarded bytes per readiness event on a lingering connection.
const LINGER_READS_PER_EVENT: usize = 16;

/// Knobs of the driver.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Seed of the engine's RNG.
    pub seed: u64,
    /// Size of the read buffer (one read syscall at most this much).
    pub read_buffer_bytes: usize,
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

/// Bind the configured listeners and run an engine over them until shutdown is requested
/// through `control` and connections have finished (or the grace period ran out).
pub fn run(config: Arc<Config>, opts: RunOptions, control: ControlHandle) -> Result<(), IoError> {
    Driver::new(config, opts, control)?.run()
}

/// The epoll driver. Build it (which binds the listeners), read [`Driver::local_addrs`], then
/// [`Driver::run`] it, usually on its own thread.
pub struct Driver<E: ProxyEngine = Engine> {
    poll: Poll,
    events: Events,
    /// The current batch's readiness, reused across loop turns.
    ready: Vec<(Token, bool)>,
    clock: Clock,
    now: Instant,
    engine: E,
    /// Access-log records between the engine and the log, reused across batches.
    logs: Vec<trellis_engine::proxy::RequestLog>,
    control: ControlHandle,
    opts: RunOptions,
    listeners: Listeners,
    bind: BindOptions,
    conns: ConnSlab<Conn>,
    /// Inputs produced while performing outputs, fed once the output queue is empty.
    pending: VecDeque<Input>,
    read_buf: Vec<u8>,
    /// Lingering connections in deadline order (the timeout is the same for all).
    lingering: VecDeque<(StdInstant, ConnId)>,
    /// When shutdown was requested, and the time it must be done by.
    drain_deadline: Option<StdInstant>,
}

impl Driver<Engine> {
    /// A driver running a fresh [`Engine`] over `config`, with its listeners bound.
    pub fn new(
        config: Arc<Config>,
        opts: RunOptions,
        control: ControlHandle,
    ) -> Result<Self, IoError> {
        let seed = opts.seed;
        Driver::with_engine(config, opts, control, |cfg| Engine::new(cfg, seed))
    }
}

impl<E: ProxyEngine> Driver<E> {
    /// A driver whose engine is built by `make` from the configuration as bound (listener
    /// addresses with port 0 replaced by the ports actually bound).
    pub fn with_engine(
        config: Arc<Config>,
        opts: RunOptions,
        control: ControlHandle,
        make: impl FnOnce(Arc<Config>) -> E,
    ) -> Result<Self, IoError> {
        let bind = BindOptions::single(opts.backlog);
        Driver::with_bind(config, opts, control, bind, make)
    }

    /// [`Driver::with_engine`] with explicit listener binding (the runtime's SO_REUSEPORT).
    pub(crate) fn with_bind(
        config: Arc<Config>,
        opts: RunOptions,
        control: ControlHandle,
        bind: BindOptions,
        make: impl FnOnce(Arc<Config>) -> E,
    ) -> Result<Self, IoError> {
        let poll = Poll::new().map_err(IoError::Poll)?;
        let waker = Waker::new(poll.registry(), WAKER_TOKEN).map_err(IoError::Poll)?;
        let mut listeners = Listeners::default();
        let bound = listeners.reconcile(poll.registry(), &config, &bind, true)?;
        control.attach_waker(Arc::new(waker));
        let clock = Clock::new();
        Ok(Driver {
            events: Events::with_capacity(opts.events_capacity.max(16)),
            ready: Vec::with_capacity(opts.events_capacity.max(16)),
            now: clock.now(),
            clock,
            engine: make(Arc::new(bound)),
            logs: Vec::new(),
            control,
            read_buf: vec![0; opts.read_buffer_bytes.max(512)],
            opts,
            listeners,
            bind,
            conns: ConnSlab::new(CONN_TOKEN_BASE),
            pending: VecDeque::new(),
            lingering: VecDeque::new(),
            drain_deadline: None,
            poll,
        })
    }

    /// The listeners' bound addresses, by name.
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.listeners.addrs()
    }

    /// The engine (for inspection in tests and tools).
    pub fn engine(&self) -> &E {
        &self.engine
    }

    /// Run until shutdown completes.
    pub fn run(mut self) -> Result<(), IoError> {
        loop {
            self.apply_control();
            if self.drain_complete() {
                break;
            }
            let timeout = self.next_timeout();
            if let Err(e) = self.poll.poll(&mut self.events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(IoError::Poll(e));
            }
            self.now = self.clock.now();
            // Copied out (into a buffer reused across turns) so handlers can borrow self.
            let mut ready = std::mem::take(&mut self.ready);
            ready.clear();
            ready.extend(self.events.iter().map(|e| (e.token(), e.is_error())));
            for &(token, is_error) in &ready {
                if token == WAKER_TOKEN {
                    // Handled by apply_control at the top of the loop.
                } else if token.0 < CONN_TOKEN_BASE {
                    self.accept_all(token);
                } else {
                    self.conn_ready(token, is_error);
                }
            }
            self.ready = ready;
            // Inputs queued by socket handlers that fed nothing after them (a flush that
            // drained: WriteDrained; a failed connect: ConnectFailed) must reach the engine now,
            // not at its next timer.
            self.pump();
            self.fire_timers();
            self.engine.drain_logs_into(&mut self.logs);
            access_log::emit(&mut self.logs);
            self.conns.release_freed();
        }
        self.engine.drain_logs_into(&mut self.logs);
        access_log::emit(&mut self.logs);
        tracing::info!(open = self.conns.len(), "driver stopped");
        Ok(())
    }

    /// Pick up config pushes and shutdown requests.
    fn apply_control(&mut self) {
        let requests = self.control.take();
        if let Some(config) = requests.config {
            self.now = self.clock.now();
            let bound = if self.drain_deadline.is_some() {
                (*config).clone()
            } else {
                match self
                    .listeners
                    .reconcile(self.poll.registry(), &config, &self.bind, false)
                {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(error = %e, "listeners not updated");
                        (*config).clone()
                    }
                }
            };
            tracing::info!(version = %bound.version, "configuration applied");
            self.pending.push_back(Input::Config(Arc::new(bound)));
            self.pump();
        }
        if requests.shutdown && self.drain_deadline.is_none() {
            let now = StdInstant::now();
            self.drain_deadline = Some(now.checked_add(self.opts.shutdown_grace).unwrap_or(now));
            self.listeners.close_all(self.poll.registry());
            tracing::info!(
                open = self.conns.len(),
                grace = ?self.opts.shutdown_grace,
                "shutting down: no longer accepting"
            );
        }
    }

    /// See [`crate::drain::drain_complete`].
    fn drain_complete(&self) -> bool {
        crate::drain::drain_complete(
            self.drain_deadline,
            self.conns.iter().map(|(_, c)| crate::drain::ConnState {
                downstream: c.side == Side::Downstream,
                lingering: matches!(c.phase, Phase::Lingering { .. }),
                unsent: !c.sendq.is_empty(),
            }),
            self.engine.requests_in_flight(),
            !self.pending.is_empty(),
        )
    }

    /// How long `epoll_wait` may sleep: until the engine's timer, the first linger deadline or
    /// the shutdown deadline, whichever is first; forever if none.
    fn next_timeout(&mut self) -> Option<Duration> {
        let now_std = StdInstant::now();
        let now = self.clock.to_engine(now_std);
        let mut timeout: Option<Duration> =
            self.engine.poll_timeout().map(|at| Clock::until(now, at));
        let mut consider = |at: StdInstant| {
            let d = at.saturating_duration_since(now_std);
            timeout = Some(timeout.map_or(d, |t| t.min(d)));
        };
        if let Some(&(at, _)) = self.lingering.front() {
            consider(at);
        }
        if let Some(at) = self.drain_deadline {
            consider(at);
        }
        timeout
    }

    /// Fire the engine's timer if due, and end lingering closes that ran out of time.
    fn fire_timers(&mut self) {
        self.now = self.clock.now();
        if self.engine.poll_timeout().is_some_and(|at| at <= self.now) {
            self.engine.handle_timeout(self.now);
            self.pump();
        }
        let now_std = StdInstant::now();
        while let Some(&(at, id)) = self.lingering.front() {
            if at > now_std {
                break;
            }
            self.lingering.pop_front();
            if let Some(conn) = self.conns.get(id) {
                if matches!(conn.phase, Phase::Lingering { .. }) {
                    self.drop_conn(id);
                }
            }
        }
    }

    /// Feed pending inputs and perform outputs until the engine is quiet.
    fn pump(&mut self) {
        loop {
            while let Some(output) = self.engine.poll_output() {
                self.perform(output);
            }
            match self.pending.pop_front() {
                Some(input) => self.engine.handle(self.now, input),
                None => break,
            }
        }
    }

    fn feed(&mut self, input: Input) {
        self.pending.push_back(input);
        self.pump();
    }

    fn perform(&mut self, output: Output) {
        match output {
            Output::Connect { conn, addr } => self.connect(conn, addr),
            Output::Send { conn, data } => self.send(conn, data),
            Output::ReadInterest { conn, enabled } => {
                if let Some(c) = self.conns.get_mut(conn) {
                    c.read_enabled = enabled;
                    self.update_interest(conn);
                }
            }
            Output::Close { conn, graceful } => {
                if graceful {
                    self.close_gracefully(conn);
                } else {
                    self.reset(conn);
                }
            }
        }
    }
}
