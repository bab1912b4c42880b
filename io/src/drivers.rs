//! The two public drivers: the shared event loop ([`crate::event_loop`]) on each backend.
//!
//! Why wrappers and not the generic loop itself: the backend trait is the crate's own
//! business (it names the connection table, the listener slots, the pull outcomes), so the
//! public types are one concrete driver per backend, with the same methods.

use std::net::SocketAddr;
use std::sync::Arc;

use trellis_engine::config::Config;
use trellis_engine::Engine;

use crate::control::ControlHandle;
use crate::engine::ProxyEngine;
use crate::epoll::Epoll;
use crate::error::IoError;
use crate::event_loop::{EventLoop, RunOptions};
use crate::listeners::BindOptions;
use crate::uring::Uring;

/// Bind the configured listeners and run an engine over them on epoll until shutdown is
/// requested through `control` and connections have finished (or the grace period ran out).
pub fn run(config: Arc<Config>, opts: RunOptions, control: ControlHandle) -> Result<(), IoError> {
    EpollDriver::new(config, opts, control)?.run()
}

macro_rules! driver {
    ($(#[$doc:meta])* $name:ident, $backend:ty) => {
        $(#[$doc])*
        pub struct $name<E: ProxyEngine = Engine>(EventLoop<E, $backend>);

        impl $name<Engine> {
            /// A driver running a fresh [`Engine`] over `config`, with its listeners bound.
            pub fn new(
                config: Arc<Config>,
                opts: RunOptions,
                control: ControlHandle,
            ) -> Result<Self, IoError> {
                let seed = opts.seed;
                Self::with_engine(config, opts, control, |cfg| {
                    crate::engine::production_engine(cfg, seed)
                })
            }
        }

        impl<E: ProxyEngine> $name<E> {
            /// A driver whose engine is built by `make` from the configuration as bound
            /// (listener addresses with port 0 replaced by the ports actually bound).
            pub fn with_engine(
                config: Arc<Config>,
                opts: RunOptions,
                control: ControlHandle,
                make: impl FnOnce(Arc<Config>) -> E,
            ) -> Result<Self, IoError> {
                let bind = BindOptions::single(opts.backlog);
                EventLoop::with_bind(config, opts, control, bind, make).map($name)
            }

            /// The listeners' bound addresses, by name.
            pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
                self.0.local_addrs()
            }

            /// The engine (for inspection in tests and tools).
            pub fn engine(&self) -> &E {
                self.0.engine()
            }

            /// Run until shutdown completes.
            pub fn run(self) -> Result<(), IoError> {
                self.0.run()
            }
        }
    };
}

driver!(
    /// The epoll driver. Build it (which binds the listeners), read
    /// [`EpollDriver::local_addrs`], then [`EpollDriver::run`] it, usually on its own thread.
    EpollDriver,
    Epoll
);

driver!(
    /// The io_uring driver. Build it on the thread that runs it (it is not `Send`: operations
    /// share sockets through `Rc`), read [`UringDriver::local_addrs`], then
    /// [`UringDriver::run`].
    UringDriver,
    Uring
);
