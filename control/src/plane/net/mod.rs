//! The push protocol's transport on tokio: it moves frames, keeps time and reconnects, and
//! makes no decision of its own (those are [`crate::plane::push`]'s sans-IO machines).
//!
//! - [`server`]: [`serve`] accepts sidecars, feeds their messages and the source's snapshots to
//!   one [`push::Server`](crate::plane::push::Server), and writes what it sends.
//! - [`client`]: [`run_client`] connects, says hello with what it holds, answers each push
//!   through a [`push::Client`](crate::plane::push::Client), and reconnects with backoff.
//! - [`link`]: one connection's frames, keepalives and silence timeout.
//! - [`backoff`]: the reconnect delays.
//! - [`tls`]: the channel over TLS (the server's certificate from the mesh CA, the sidecar's
//!   when it has one), and [`issuer`]: the CA answering certificate requests on it.
//! - [`reload`]: server TLS whose certificate and roots are replaced while it serves, and
//!   [`upkeep`]: the control plane's serving certificates renewed at half life and root
//!   rotations applied.
//!
//! Both are generic over how a connection is made ([`Listener`], [`Connector`]): production
//! passes `tokio::net` sockets, the tests turmoil's simulated ones, so the same code runs under
//! a simulated network with partitions and restarts (control/tests/plane_turmoil.rs). Time is
//! tokio's (`tokio::time::Instant`), which turmoil drives in tests; the state machines get it as
//! a [`trellis_engine::Instant`] counted from the transport's start ([`Clock`]).

pub mod backoff;
pub mod client;
pub mod issuer;
pub mod link;
pub mod reload;
pub mod server;
pub mod tls;
pub mod upkeep;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use trellis_engine::Instant;

pub use backoff::{Backoff, BackoffConfig};
pub use client::{run_client, ClientConfig, ClientReport};
pub use issuer::{Issuer, Outcome, TokenReviewer};
pub use link::LinkError;
pub use server::{serve, ServerConfig, ServerReport};
pub use tls::{ClientTls, TlsConnector};

/// Where a server's connections come from.
pub trait Listener {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The next connection (cancel-safe: the server waits on it beside other things).
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>>;
}

impl Listener for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept(&mut self) -> io::Result<(Self::Stream, SocketAddr)> {
        let (stream, peer) = tokio::net::TcpListener::accept(self).await?;
        // Frames are small and answered one at a time: do not hold them back (Nagle).
        stream.set_nodelay(true)?;
        Ok((stream, peer))
    }
}

/// How a client reaches its server: any `FnMut() -> impl Future<Output = io::Result<S>>`, so
/// the address is resolved again on each attempt (in a cluster it is a Service's DNS name).
pub trait Connector {
    type Stream: AsyncRead + AsyncWrite + Unpin;
    fn connect(&mut self) -> impl Future<Output = io::Result<Self::Stream>>;
}

impl<F, Fut, S> Connector for F
where
    F: FnMut() -> Fut,
    Fut: Future<Output = io::Result<S>>,
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Stream = S;
    fn connect(&mut self) -> impl Future<Output = io::Result<S>> {
        self()
    }
}

/// A connector for `HOST:PORT` over TCP.
pub fn tcp_connector(address: String) -> impl Connector<Stream = tokio::net::TcpStream> + 'static {
    move || {
        let address = address.clone();
        async move {
            let stream = tokio::net::TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            Ok(stream)
        }
    }
}

/// Liveness of a connection: each side sends a keepalive frame after `interval` without
/// sending anything, and closes a connection it has heard nothing on for `timeout`. A
/// partition can leave TCP silent for many minutes (retransmissions, no keepalive by default);
/// this bounds how long a sidecar stays on a dead connection, and so how long it takes to
/// converge once the network heals. Istio's gRPC keepalive pings every 30 s and waits 10 s
/// (pkg/keepalive/options.go, `DefaultOption`); these defaults are shorter because the bound
/// they set is part of the convergence bound (RESEARCH.md, "Push transport").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    pub interval: Duration,
    pub timeout: Duration,
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
        }
    }
}

/// The state machines' time: a [`trellis_engine::Instant`] counted from when the transport
/// started, read from tokio's clock (turmoil's simulated one in tests).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: tokio::time::Instant,
}

impl Clock {
    pub fn start() -> Self {
        Clock {
            start: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> Instant {
        Instant::from_nanos(u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    /// The tokio instant of a state machine's deadline.
    pub fn deadline(&self, at: Instant) -> tokio::time::Instant {
        // `Instant::FAR_FUTURE` does not fit tokio's instant: a year ahead is as good.
        self.start
            .checked_add(Duration::from_nanos(at.as_nanos()))
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(365 * 86_400))
    }
}
