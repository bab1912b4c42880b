//! # trellis-engine: the sans-IO core of the Trellis sidecar
//!
//! Every decision the data plane makes lives here, and nothing here touches a socket, a thread,
//! a clock or a global RNG. A driver (the io_uring/epoll runtime in `trellis-io`, or the
//! deterministic simulator in `sim-tests`) feeds [`Input`]s in with the current [`Instant`] and
//! pulls [`Output`]s out, in the style of quinn-proto and rustls:
//!
//! ```text
//!   driver ── Input (accepted, received, connected, closed, drained, config) ──▶ Engine
//!   driver ◀── Output (connect, send, close, read interest) ─────────────────── Engine
//!   driver ◀── poll_timeout() ── the next instant the engine wants handle_timeout()
//! ```
//!
//! Modules, one concept each:
//! - [`authz`]: Istio AuthorizationPolicy as Envoy's RBAC filter evaluates it (inbound).
//! - [`config`]: the configuration snapshot (listeners, routes, clusters, policies).
//! - [`http1`]: the HTTP/1.1 codec (heads, streaming bodies, RFC 9112 hardening).
//! - [`codec`]: the seam a client connection's protocol sits behind (HTTP/1.1 today, a
//!   multiplexed protocol next): bytes in, requests out as events tagged with a stream.
//! - [`path`]: request path normalization (Istio's `pathNormalization`, Envoy's
//!   `normalize_path`), applied once when a request head is accepted.
//! - [`route`]: VirtualService-style route matching and request rewriting.
//! - [`cluster`]: load balancing, outlier detection and circuit breaking per cluster.
//! - [`transport`]: the byte-transform slot between a connection's socket and its codec
//!   (where TLS goes), and the factory that picks each connection's transport; `transport::tls`
//!   is mutual TLS through rustls driven in memory, with SPIFFE identity checks at engine time
//!   and a seeded crypto provider so simulated handshakes replay.
//! - [`proxy`]: the engine itself, gluing connections, requests and upstream pools.
//! - [`time`], [`rng`]: the engine-owned clock value and seeded randomness.
//! - `hash`: the fast unkeyed hasher of the lookup-only maps.

pub mod authn;
pub mod authz;
pub mod cluster;
pub mod codec;
pub mod config;
mod hash;
pub mod http1;
pub mod locality;
#[cfg(feature = "mutants")]
pub mod mutants;
pub mod path;
pub mod proxy;
pub mod rng;
pub mod route;
pub mod time;
pub mod transport;

pub use proxy::{ConnId, Engine, Event, Input, Output};
pub use time::Instant;
