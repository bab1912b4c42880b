//! The thread-per-core runtime: one engine per core, shared nothing.
//!
//! Each core gets a thread (pinned to one allowed CPU when asked), its own event loop on the
//! backend [`crate::backend`] decides once for the process (io_uring or epoll), its own engine seeded from
//! the base seed and the core index, its own SO_REUSEPORT listening sockets (the kernel
//! spreads connections across them), and therefore its own upstream connection pools.
//! Nothing is shared on the request path. Configuration reaches the cores through the
//! caller's [`ControlHandle`], which forwards every snapshot (an `Arc<Config>`) and the
//! shutdown request to a child handle per core; each core picks its snapshot up when woken.
//!
//! The runtime also serves the health endpoint ([`crate::health`]) and reports readiness once
//! every core has bound its listeners.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use trellis_engine::config::Config;
use trellis_engine::Engine;

use crate::backend::{self, Backend, BackendChoice, Selection, Unavailable};
use crate::control::ControlHandle;
use crate::epoll::Epoll;
use crate::error::IoError;
use crate::event_loop::backend::IoBackend;
use crate::event_loop::{EventLoop, IoCounters, IoStats, RunOptions};
use crate::health::{Health, HealthServer};
use crate::listeners::{BindOptions, PortMap};
use crate::sockopt;
use crate::uring::Uring;

/// Knobs of the runtime.
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// Cores (threads, engines) to run; 0 = one per CPU this process may use.
    pub cores: usize,
    /// Which I/O backend.
    pub backend: BackendChoice,
    /// Per-driver options; `seed` is the base from which each core's seed is derived.
    pub run: RunOptions,
    /// Where to serve `/healthz/ready` (`None`: no health endpoint).
    pub health: Option<SocketAddr>,
    /// Pin core `i` to the `i`-th allowed CPU (wrapping when there are more cores than CPUs).
    pub pin: bool,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            cores: 0,
            backend: BackendChoice::Auto,
            run: RunOptions::default(),
            health: None,
            pin: true,
        }
    }
}

/// The seed of core `core`'s engine: distinct per core, a pure function of the base seed
/// (SplitMix64 of the two), so a run is reproducible from the one seed it logs.
pub fn core_seed(base: u64, core: usize) -> u64 {
    let mut z = base.wrapping_add((core as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A started runtime: cores serving, listeners bound.
pub struct Runtime {
    selection: Selection,
    addrs: Vec<(String, SocketAddr)>,
    cores: Vec<JoinHandle<Result<(), IoError>>>,
    /// Each core's published counters.
    counters: Vec<Arc<IoCounters>>,
    health: Option<HealthServer>,
}

impl Runtime {
    /// Start the cores over `config`, steered through `control`; returns once every core has
    /// bound its listeners (or the first error, after stopping the cores that did start).
    pub fn start(
        config: Arc<Config>,
        opts: RuntimeOptions,
        control: ControlHandle,
    ) -> Result<Runtime, IoError> {
        Runtime::start_with_probe(config, opts, control, backend::probe_io_uring)
    }

    /// [`Runtime::start`] with the io_uring probe injected (tests play an unavailable ring).
    pub fn start_with_probe(
        config: Arc<Config>,
        opts: RuntimeOptions,
        control: ControlHandle,
        probe: impl FnOnce() -> Result<(), Unavailable>,
    ) -> Result<Runtime, IoError> {
        let selection = backend::select(opts.backend, probe)?;
        match (selection.backend, opts.backend) {
            (Backend::Epoll, BackendChoice::Auto) => {
                tracing::warn!(backend = %selection.backend, reason = %selection.reason, "I/O backend")
            }
            _ => {
                tracing::info!(backend = %selection.backend, reason = %selection.reason, "I/O backend")
            }
        }
        let cpus = sockopt::allowed_cpus();
        let n = match opts.cores {
            0 => cpus.len().max(1),
            n => n,
        };
        let health = Arc::new(Health::default());
        let health_server = match opts.health {
            Some(addr) => Some(
                HealthServer::start(addr, health.clone(), control.clone())
                    .map_err(|source| IoError::Health { addr, source })?,
            ),
            None => None,
        };
        let bind = BindOptions {
            backlog: opts.run.backlog,
            reuse_port: true,
            nonblocking: true,
            ports: Some(Arc::new(PortMap::default())),
        };
        let (tx, rx) = mpsc::channel();
        let mut cores = Vec::with_capacity(n);
        for core in 0..n {
            let cpu = if opts.pin && !cpus.is_empty() {
                cpus.get(core % cpus.len()).copied()
            } else {
                None
            };
            let spec = CoreSpec {
                core,
                cpu,
                backend: selection.backend,
                config: config.clone(),
                run: RunOptions {
                    seed: core_seed(opts.run.seed, core),
                    ..opts.run.clone()
                },
                control: control.child(),
                bind: bind.clone(),
                bound: tx.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("trellis-core-{core}"))
                .spawn(move || spec.run());
            match spawned {
                Ok(handle) => cores.push(handle),
                Err(e) => {
                    control.shutdown();
                    let _ = join_all(cores); // each error is logged there
                    return Err(IoError::Thread(format!("cannot start core {core}: {e}")));
                }
            }
        }
        drop(tx);
        let mut addrs = None;
        let mut counters = Vec::with_capacity(n);
        let mut failure = None;
        for _ in 0..n {
            match rx.recv() {
                Ok((core, Ok((a, c)))) => {
                    if core == 0 {
                        addrs = Some(a);
                    }
                    counters.push(c);
                }
                Ok((core, Err(e))) => {
                    tracing::error!(core, error = %e, "core failed to start");
                    failure.get_or_insert(e);
                }
                Err(_) => {
                    failure.get_or_insert(IoError::Thread("a core exited while starting".into()));
                }
            }
        }
        if let Some(e) = failure {
            control.shutdown();
            let _ = join_all(cores); // each error is logged there
            return Err(e);
        }
        health.set_ready();
        tracing::info!(cores = n, backend = %selection.backend, "runtime ready");
        Ok(Runtime {
            selection,
            addrs: addrs.unwrap_or_default(),
            cores,
            counters,
            health: health_server,
        })
    }

    /// The backend running and why.
    pub fn backend(&self) -> &Selection {
        &self.selection
    }

    /// Cores running.
    pub fn cores(&self) -> usize {
        self.cores.len()
    }

    /// The listeners' bound addresses (the same on every core), by name.
    pub fn local_addrs(&self) -> &[(String, SocketAddr)] {
        &self.addrs
    }

    /// What the cores' event loops did so far, summed (turns, syscalls, accepts): divided by
    /// the requests proxied meanwhile, the syscalls and wake-ups per request.
    pub fn io_stats(&self) -> IoStats {
        self.counters
            .iter()
            .map(|c| c.load())
            .fold(IoStats::default(), |sum, c| sum + c)
    }

    /// The health endpoint's address, when served.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health.as_ref().map(HealthServer::local_addr)
    }

    /// Wait until every core has finished (after a shutdown request through the control
    /// handle); the first core's error, if any.
    pub fn join(mut self) -> Result<(), IoError> {
        let result = join_all(std::mem::take(&mut self.cores));
        if let Some(h) = self.health.take() {
            h.stop();
        }
        result
    }
}

/// Start the runtime and run it until shutdown completes.
pub fn run_runtime(
    config: Arc<Config>,
    opts: RuntimeOptions,
    control: ControlHandle,
) -> Result<(), IoError> {
    Runtime::start(config, opts, control)?.join()
}

fn join_all(cores: Vec<JoinHandle<Result<(), IoError>>>) -> Result<(), IoError> {
    let mut first = Ok(());
    for (core, handle) in cores.into_iter().enumerate() {
        let result = handle
            .join()
            .unwrap_or_else(|_| Err(IoError::Thread(format!("core {core} panicked"))));
        if let Err(e) = result {
            tracing::error!(core, error = %e, "core stopped with an error");
            if first.is_ok() {
                first = Err(e);
            }
        }
    }
    first
}

/// What a core reports once bound: its listeners' addresses and its counters, or the error.
type Bound = (
    usize,
    Result<(Vec<(String, SocketAddr)>, Arc<IoCounters>), IoError>,
);

/// What one core thread needs.
struct CoreSpec {
    core: usize,
    cpu: Option<usize>,
    backend: Backend,
    config: Arc<Config>,
    run: RunOptions,
    control: ControlHandle,
    bind: BindOptions,
    bound: mpsc::Sender<Bound>,
}

impl CoreSpec {
    fn run(self) -> Result<(), IoError> {
        // Every log line of this thread says which core it came from.
        let _span = tracing::info_span!("core", id = self.core).entered();
        if let Some(cpu) = self.cpu {
            if let Err(e) = sockopt::pin_current_thread(cpu) {
                tracing::warn!(core = self.core, cpu, error = %e, "thread not pinned");
            }
        }
        match self.backend {
            Backend::Epoll => self.serve::<Epoll>(),
            Backend::IoUring => self.serve::<Uring>(),
        }
    }

    /// Bind, report the addresses (or the error) to [`Runtime::start`], and run the loop.
    fn serve<B: IoBackend>(self) -> Result<(), IoError> {
        let seed = self.run.seed;
        let make = move |cfg| crate::engine::production_engine(cfg, seed);
        let built =
            EventLoop::<Engine, B>::with_bind(self.config, self.run, self.control, self.bind, make);
        // The receiver only goes away if start-up already failed elsewhere.
        match built {
            Ok(event_loop) => {
                let bound = (event_loop.local_addrs(), event_loop.counters());
                let _ = self.bound.send((self.core, Ok(bound)));
                event_loop.run()
            }
            Err(e) => {
                let _ = self.bound.send((self.core, Err(e)));
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_seeds_differ_and_are_reproducible() {
        let seeds: Vec<u64> = (0..16).map(|c| core_seed(42, c)).collect();
        let mut unique = seeds.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), seeds.len());
        assert_eq!(core_seed(42, 3), seeds[3]);
        assert_ne!(core_seed(43, 3), seeds[3]);
    }
}
