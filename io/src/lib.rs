//! # trellis-io: runtimes that drive the sans-IO engine with real sockets
//!
//! The engine (`trellis-engine`) decides everything and touches nothing; a runtime owns the
//! sockets, the clock and the poller, turns readiness into engine inputs and engine outputs into
//! socket operations, and holds no routing or policy logic of its own.
//!
//! This crate's first runtime is a single-threaded epoll driver on `mio` ([`Driver`], [`run`]):
//! the fallback DESIGN.md asks for where io_uring is unavailable, and the reference the
//! thread-per-core io_uring runtime will be checked against. Modules, one concept each:
//!
//! - [`clock`]: OS monotonic time → engine [`trellis_engine::Instant`].
//! - [`slab`]: the connection table, engine ids ↔ poller tokens.
//! - [`sendq`]: per-connection write queue and partial writes.
//! - [`conn`] (private): one socket's state and the readiness it needs.
//! - [`listeners`] (private): binding and reconciling listening sockets with the config.
//! - [`driver`]: the event loop (and, inside it, what is done to each socket).
//! - [`control`]: [`ControlHandle`], to push configs and request shutdown from other threads.
//! - [`access_log`]: Envoy-like access-log lines through `tracing`.
//! - [`signal`]: Ctrl-C / SIGTERM → graceful shutdown.
//! - [`engine`]: the [`ProxyEngine`] trait the driver runs (implemented by the real engine).
//! - [`local_mesh`]: the embedded demo: three upstreams, a proxy, routes, a self-check.

pub mod access_log;
pub mod backend;
pub mod clock;
mod conn;
pub mod control;
pub mod driver;
pub mod engine;
pub mod error;
pub mod health;
mod listeners;
pub mod local_mesh;
pub mod sendq;
pub mod signal;
pub mod reload;
pub mod runtime;
pub mod slab;
pub mod sockopt;
pub mod uring;

pub use control::ControlHandle;
pub use driver::{run, Driver, RunOptions};
pub use backend::{Backend, BackendChoice};
pub use engine::ProxyEngine;
pub use error::IoError;
pub use runtime::{run_runtime, Runtime, RuntimeOptions};
pub use uring::UringDriver;
pub use local_mesh::{run_local_mesh, LocalMesh, LocalMeshOptions};
pub use signal::install_ctrl_c;
