//! # trellis-io: runtimes that drive the sans-IO engine with real sockets
//!
//! The engine (`trellis-engine`) decides everything and touches nothing; a runtime owns the
//! sockets, the clock and the poller, turns readiness into engine inputs and engine outputs into
//! socket operations, and holds no routing or policy logic of its own.
//!
//! Two drivers run the same engine: an io_uring completion loop ([`UringDriver`]) and an
//! epoll readiness loop on `mio` ([`Driver`], [`run`]), the fallback DESIGN.md asks for where
//! io_uring is unavailable. The thread-per-core [`Runtime`] runs one of them per core, picked
//! once by [`backend`]. Modules, one concept each:
//!
//! - [`runtime`]: thread-per-core — one engine, driver and set of SO_REUSEPORT listeners per
//!   core, config fan-out, pinning, readiness.
//! - [`backend`]: io_uring probe and the auto/forced choice between the two drivers.
//! - [`uring`]: the io_uring driver (operations in flight, owned buffers, completions).
//! - [`driver`]: the epoll driver (the event loop and what is done to each socket).
//! - [`clock`]: OS monotonic time → engine [`trellis_engine::Instant`].
//! - [`slab`]: the connection table, engine ids ↔ poller tokens.
//! - [`sendq`]: per-connection write queue and partial writes (epoll).
//! - `conn` (private): one socket's state and the readiness it needs (epoll).
//! - `drain` (private): when a draining driver may stop (one policy for both drivers).
//! - `listeners` (private): binding (SO_REUSEPORT, shared ephemeral ports) and reconciling
//!   listening sockets with the config.
//! - [`sockopt`]: SO_ORIGINAL_DST and CPU pinning.
//! - [`control`]: [`ControlHandle`], to push configs and request shutdown from other threads
//!   (fanned out to every core).
//! - [`health`]: the `/healthz/ready` endpoint (Istio's 15021).
//! - [`reload`]: reload on config-file change or SIGHUP.
//! - [`access_log`]: Envoy-like access-log lines through `tracing`.
//! - [`signal`]: Ctrl-C / SIGTERM → graceful shutdown.
//! - [`engine`]: the [`ProxyEngine`] trait the drivers run (implemented by the real engine).

pub mod access_log;
pub mod backend;
pub mod clock;
mod conn;
pub mod control;
mod drain;
pub mod driver;
pub mod engine;
pub mod error;
pub mod health;
mod listeners;
pub mod reload;
pub mod runtime;
pub mod sendq;
pub mod signal;
pub mod slab;
pub mod sockopt;
pub mod uring;

pub use backend::{Backend, BackendChoice};
pub use control::ControlHandle;
pub use driver::{run, Driver, RunOptions};
pub use engine::ProxyEngine;
pub use error::IoError;
pub use runtime::{run_runtime, Runtime, RuntimeOptions};
pub use signal::install_ctrl_c;
pub use uring::UringDriver;
