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
//!
//! Thread-per-core ([`crate::runtime`]): every core binds its own socket on each address with
//! SO_REUSEPORT, and the kernel spreads incoming connections across them. A listener configured
//! on port 0 must land on the *same* ephemeral port on every core, so the cores share a
//! [`PortMap`]: the first to bind records the port it got, the others bind to that port.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use mio::net::TcpListener;
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};
use trellis_engine::config::{Config, Direction};

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
    /// Outbound listeners look up each connection's original destination.
    pub direction: Direction,
    pub socket: TcpListener,
}

/// The listeners of one driver, indexed by token.
#[derive(Default)]
pub(crate) struct Listeners {
    slots: Vec<Option<ListenerSlot>>,
}

/// Ports picked by the kernel for listeners configured on port 0, by (name, configured
/// address), shared by the cores of one runtime so all of them listen on the same port.
#[derive(Debug, Default)]
pub struct PortMap {
    bound: Mutex<BTreeMap<(String, SocketAddr), SocketAddr>>,
}

/// How listening sockets are bound.
#[derive(Clone, Debug)]
pub(crate) struct BindOptions {
    pub backlog: i32,
    /// SO_REUSEPORT: several cores listen on one address.
    pub reuse_port: bool,
    /// Non-blocking (epoll) or blocking (io_uring completes accepts asynchronously anyway).
    pub nonblocking: bool,
    pub ports: Option<Arc<PortMap>>,
}

impl BindOptions {
    pub fn single(backlog: i32) -> Self {
        BindOptions {
            backlog,
            reuse_port: false,
            nonblocking: true,
            ports: None,
        }
    }
}

fn bind_socket(addr: SocketAddr, opts: &BindOptions) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if opts.reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(opts.nonblocking)?;
    socket.bind(&addr.into())?;
    socket.listen(opts.backlog)?;
    Ok(socket.into())
}

/// Bind listener `name` on `addr`; returns the socket and the address actually bound. With a
/// [`PortMap`], port 0 resolves to the port another core already got for the same listener.
pub(crate) fn bind_listener(
    name: &str,
    addr: SocketAddr,
    opts: &BindOptions,
) -> io::Result<(std::net::TcpListener, SocketAddr)> {
    let map = match &opts.ports {
        Some(map) if addr.port() == 0 => map,
        _ => {
            let socket = bind_socket(addr, opts)?;
            let bound = socket.local_addr()?;
            return Ok((socket, bound));
        }
    };
    // Held across the bind so two cores cannot both pick a fresh port.
    let mut ports = map.bound.lock().unwrap_or_else(|p| p.into_inner());
    let key = (name.to_string(), addr);
    if let Some(&known) = ports.get(&key) {
        let socket = bind_socket(known, opts)?;
        return Ok((socket, known));
    }
    let socket = bind_socket(addr, opts)?;
    let bound = socket.local_addr()?;
    ports.insert(key, bound);
    Ok((socket, bound))
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
        opts: &BindOptions,
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
            match self.add(
                registry,
                &listener.name,
                listener.address,
                listener.direction,
                opts,
            ) {
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
        direction: Direction,
        opts: &BindOptions,
    ) -> Result<SocketAddr, IoError> {
        let (socket, bound) = bind_listener(name, addr, opts).map_err(|source| IoError::Bind {
            name: name.to_string(),
            addr,
            source,
        })?;
        let mut socket = TcpListener::from_std(socket);
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
                direction,
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
        let bound = ls
            .reconcile(poll.registry(), &config, &BindOptions::single(128), true)
            .unwrap();
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
        let bound2 = ls
            .reconcile(poll.registry(), &config2, &BindOptions::single(128), true)
            .unwrap();
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
        match ls.reconcile(poll.registry(), &config, &BindOptions::single(128), true) {
            Err(IoError::Bind { name, .. }) => assert_eq!(name, "dup"),
            other => panic!("expected a bind error, got {:?}", other.map(|_| ())),
        }
        let kept = ls
            .reconcile(poll.registry(), &config, &BindOptions::single(128), false)
            .unwrap();
        assert_eq!(kept.listeners[0].address.to_string(), addr);
        assert!(ls.is_empty());
    }

    #[test]
    fn port_zero_resolves_to_one_port_across_cores() {
        let opts = BindOptions {
            backlog: 128,
            reuse_port: true,
            nonblocking: true,
            ports: Some(Arc::new(PortMap::default())),
        };
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (_a, first) = bind_listener("l", addr, &opts).unwrap();
        let (_b, second) = bind_listener("l", addr, &opts).unwrap();
        assert_ne!(first.port(), 0);
        assert_eq!(first, second, "both cores share the port");
        let (_c, other) = bind_listener("m", addr, &opts).unwrap();
        assert_ne!(other, first, "another listener gets its own port");
    }
}
