//! # trellis-io: runtimes that drive the sans-IO engine with real sockets
//!
//! The engine (`trellis-engine`) decides everything and touches nothing; a runtime owns the
//! sockets, the clock and the poller, turns what the kernel reports into engine inputs and
//! engine outputs into socket operations, and holds no routing or policy logic of its own.
//!
//! One event loop (`event_loop`) runs the engine over either of two backends: io_uring
//! (completions: [`UringDriver`]) or epoll through `mio` (readiness: [`EpollDriver`], [`run`]),
//! the fallback DESIGN.md asks for where io_uring is unavailable. The thread-per-core
//! [`Runtime`] runs one loop per core, on the backend picked once by [`backend`]. Modules,
//! one concept each:
//!
//! - [`runtime`]: thread-per-core — one engine, event loop and set of SO_REUSEPORT listeners
//!   per core, config fan-out, pinning, readiness.
//! - [`backend`]: io_uring probe and the auto/forced choice between the two backends.
//! - `event_loop` (private): the loop both backends share — run loop, control, drain, timers,
//!   engine glue, accepting, close paths — and the small trait a backend implements.
//! - `epoll` (private): the epoll backend (registration by interest, syscalls on readiness).
//! - `uring` (private): the io_uring backend (operations in flight, owned buffers,
//!   completions).
//! - `drivers` (private): the public driver types, one per backend.
//! - `listeners` (private): binding (SO_REUSEPORT, shared ephemeral ports), reconciling
//!   listening sockets with the config, the listener cap.
//! - `drain` (private): when a draining loop may stop.
//! - [`clock`]: OS monotonic time → engine [`trellis_engine::Instant`].
//! - [`slab`]: the connection table, engine ids ↔ poller tokens.
//! - [`sendq`]: per-connection write queue and partial writes.
//! - [`sockopt`]: SO_ORIGINAL_DST and CPU pinning.
//! - [`control`]: [`ControlHandle`], to push configs and request shutdown from other threads
//!   (fanned out to every core).
//! - [`health`]: the `/healthz/ready` endpoint (Istio's 15021).
//! - [`reload`]: reload on config-file change or SIGHUP.
//! - [`access_log`]: Envoy-like access-log lines through `tracing`.
//! - [`signal`]: Ctrl-C / SIGTERM → graceful shutdown.
//! - [`capture`]: `trellis init`, the nat rules (nft or iptables) that send a pod's traffic
//!   to the sidecar, as Istio's istio-iptables.
//! - [`engine`]: the [`ProxyEngine`] trait the loop runs (implemented by the real engine).

pub mod access_log;
pub mod backend;
pub mod capture;
pub mod clock;
pub mod control;
mod drain;
mod drivers;
pub mod engine;
mod epoll;
pub mod error;
mod event_loop;
pub mod health;
mod listeners;
pub mod reload;
pub mod runtime;
pub mod sendq;
pub mod signal;
pub mod slab;
pub mod sockopt;
mod uring;

pub use backend::{Backend, BackendChoice};
pub use control::ControlHandle;
pub use drivers::{run, EpollDriver, UringDriver};
pub use engine::ProxyEngine;
pub use error::IoError;
pub use event_loop::{IoStats, RunOptions};
pub use runtime::{run_runtime, Runtime, RuntimeOptions};
pub use signal::install_ctrl_c;
