//! Errors of the runtimes, typed so a caller can tell a bad listen address from a broken poller.

use std::io;
use std::net::SocketAddr;

/// What can stop a driver.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// A configured listener could not be bound (address in use, permission ...).
    #[error("cannot listen on {addr} (listener {name}): {source}")]
    Bind {
        name: String,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The OS poller (epoll) failed to start or to wait.
    #[error("poller failed: {0}")]
    Poll(#[source] io::Error),
    /// The io_uring ring failed to start or to wait.
    #[error("io_uring failed: {0}")]
    Uring(#[source] io::Error),
    /// Registering a socket with the poller failed.
    #[error("cannot register a socket with the poller: {0}")]
    Register(#[source] io::Error),
    /// `--backend io-uring` was forced where io_uring is unavailable.
    #[error(transparent)]
    Backend(#[from] crate::backend::ForcedUnavailable),
    /// The health endpoint could not be bound.
    #[error("cannot serve the health endpoint on {addr}: {source}")]
    Health {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// A core thread could not start, or died.
    #[error("runtime thread: {0}")]
    Thread(String),
    /// More listeners than the driver has tokens for.
    #[error("too many listeners: {0} (at most {1})")]
    TooManyListeners(usize, usize),
}
