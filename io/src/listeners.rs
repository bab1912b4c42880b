//! Listening sockets: bind what the configuration lists, and keep them in step with new
//! configurations (Envoy's LDS, in miniature).
//!
//! Listeners are bound with SO_REUSEADDR (a restarted proxy can bind while old connections sit
//! in TIME_WAIT) and are non-blocking. A listener configured on port 0 gets an ephemeral port;
//! the configuration handed to the engine is rewritten with the address actually bound,
//! because the engine matches accepted connections to listeners by local address.
//!
//! On a new configuration, a listener with the same name and configured address is kept (its
//! queued connections are not lost); others are bound, and those no longer listed are closed.
//! A listener that cannot be bound at start-up is an error; one added later is logged and
//! skipped, so a bad push cannot take down a running proxy.

use std::io;
use std::net::SocketAddr;

use mio::net::TcpListener;
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};
use trellis_engine::config::Config;

use crate::error::IoError;

/// First listener token; the waker uses `Token(0)`.
pub(crate) const LISTENER_TOKEN_BASE: usize = 1;
/// Listener tokens available; connection tokens start after them.
pub(crate) const MAX_LISTENERS: usize = 4096;

pub(crate) struct ListenerSlot {
    pub name: String,
    /// The address the configuration asked for (may have port 0).
    pub configured: SocketAddr,
    /// The address actually bound.
    pub bound: SocketAddr,
    pub socket: TcpListener,
}

/// The listeners of one driver, indexed by token.
#[derive(Default)]
pub(crate) struct Listeners {
    slots: Vec<Option<ListenerSlot>>,
}

/// Bind a non-blocking listening socket with SO_REUSEADDR.
pub(crate) fn bind(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(TcpListener::from_std(socket.into()))
}

impl Listeners {
    /// The slot of a listener token.
    pub fn get_mut(&mut self, token: Token) -> Option<&mut ListenerSlot> {
        let i = token.0.checked_sub(LISTENER_TOKEN_BASE)?;
        self.slots.get_mut(i)?.as_mut()
    }

    /// Bound addresses, by listener name, in configuration order of binding.
    pub fn addrs(&self) -> Vec<(String, SocketAddr)> {
        self.slots
            .iter()
            .flatten()
            .map(|s| (s.name.clone(), s.bound))
            .collect()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(Option::is_none)
    }

    /// Close every listener (shutdown: stop accepting).
    pub fn close_all(&mut self, registry: &Registry) {
        for slot in self.slots.iter_mut() {
            if let Some(mut s) = slot.take() {
                if let Err(e) = registry.deregister(&mut s.socket) {
                    tracing::debug!(listener = %s.name, error = %e, "deregister failed");
                }
                tracing::info!(listener = %s.name, addr = %s.bound, "listener closed");
            }
        }
    }

    /// Make the bound listeners match `config`, and return `config` with each listener's
    /// address replaced by the one bound. `strict`: fail on a listener that cannot be bound
    /// (start-up) instead of logging it.
    pub fn reconcile(
        &mut self,
        registry: &Registry,
        config: &Config,
        backlog: i32,
        strict: bool,
    ) -> Result<Config, IoError> {
        let wanted = |s: &ListenerSlot| {
            config
                .listeners
                .iter()
                .any(|l| l.name == s.name && l.address == s.configured)
        };
        for slot in self.slots.iter_mut() {
            if slot.as_ref().is_some_and(|s| !wanted(s)) {
                if let Some(mut s) = slot.take() {
                    if let Err(e) = registry.deregister(&mut s.socket) {
                        tracing::debug!(listener = %s.name, error = %e, "deregister failed");
                    }
                    tracing::info!(listener = %s.name, addr = %s.bound, "listener removed");
                }
            }
        }
        let mut rewritten = config.clone();
        for listener in rewritten.listeners.iter_mut() {
            let existing = self
                .slots
                .iter()
                .flatten()
                .find(|s| s.name == listener.name && s.configured == listener.address);
            if let Some(s) = existing {
                listener.address = s.bound;
                continue;
            }
            match self.add(registry, &listener.name, listener.address, backlog) {
                Ok(bound) => listener.address = bound,
                Err(e) if strict => return Err(e),
                Err(e) => tracing::error!(error = %e, "listener not added"),
            }
        }
        Ok(rewritten)
    }

    fn add(
        &mut self,
        registry: &Registry,
        name: &str,
        addr: SocketAddr,
        backlog: i32,
    ) -> Result<SocketAddr, IoError> {
        let bind_err = |source| IoError::Bind {
            name: name.to_string(),
            addr,
            source,
        };
        let mut socket = bind(addr, backlog).map_err(bind_err)?;
        let bound = socket.local_addr().map_err(bind_err)?;
        let index = match self.slots.iter().position(Option::is_none) {
            Some(i) => i,
            None if self.slots.len() < MAX_LISTENERS => {
                self.slots.push(None);
                self.slots.len() - 1
            }
            None => {
                return Err(IoError::TooManyListeners(
                    self.slots.len() + 1,
                    MAX_LISTENERS,
                ))
            }
        };
        registry
            .register(
                &mut socket,
                Token(LISTENER_TOKEN_BASE + index),
                Interest::READABLE,
            )
            .map_err(IoError::Register)?;
        tracing::info!(listener = %name, addr = %bound, "listening");
        if let Some(slot) = self.slots.get_mut(index) {
            *slot = Some(ListenerSlot {
                name: name.to_string(),
                configured: addr,
                bound,
                socket,
            });
        }
        Ok(bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::Poll;
    use trellis_engine::config::{Direction, Listener};

    fn listener(name: &str, addr: &str) -> Listener {
        Listener {
            name: name.into(),
            address: addr.parse().unwrap(),
            route_table: "rt".into(),
            direction: Direction::Outbound,
            passthrough: false,
        }
    }

    #[test]
    fn port_zero_is_rewritten_and_kept_across_reconciles() {
        let poll = Poll::new().unwrap();
        let mut ls = Listeners::default();
        let config = Config {
            listeners: vec![listener("a", "127.0.0.1:0"), listener("b", "127.0.0.1:0")],
            ..Config::default()
        };
        let bound = ls.reconcile(poll.registry(), &config, 128, true).unwrap();
        let a = bound.listeners[0].address;
        let b = bound.listeners[1].address;
        assert_ne!(a.port(), 0);
        assert_ne!(a, b);
        // A real socket is listening there.
        std::net::TcpStream::connect(a).unwrap();

        // Same config again: same sockets; dropping "b" closes it.
        let config2 = Config {
            listeners: vec![listener("a", "127.0.0.1:0")],
            ..Config::default()
        };
        let bound2 = ls.reconcile(poll.registry(), &config2, 128, true).unwrap();
        assert_eq!(bound2.listeners[0].address, a);
        assert_eq!(ls.addrs(), vec![("a".to_string(), a)]);
        assert!(std::net::TcpStream::connect(b).is_err());
        ls.close_all(poll.registry());
        assert!(ls.is_empty());
    }

    #[test]
    fn bind_failure_is_typed_at_startup_and_logged_later() {
        let poll = Poll::new().unwrap();
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let config = Config {
            listeners: vec![listener("dup", &addr)],
            ..Config::default()
        };
        let mut ls = Listeners::default();
        match ls.reconcile(poll.registry(), &config, 128, true) {
            Err(IoError::Bind { name, .. }) => assert_eq!(name, "dup"),
            other => panic!("expected a bind error, got {:?}", other.map(|_| ())),
        }
        let kept = ls.reconcile(poll.registry(), &config, 128, false).unwrap();
        assert_eq!(kept.listeners[0].address.to_string(), addr);
        assert!(ls.is_empty());
    }
}
