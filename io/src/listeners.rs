//! Listening sockets: bind what the configuration lists, and keep them in step with new
//! configurations (Envoy's LDS, in miniature). One table and one reconciliation for both
//! backends; what a backend does with a listening socket (register it with epoll, keep an
//! accept in flight on it) is behind [`Listen`].
//!
//! Listeners are bound with SO_REUSEADDR (a restarted proxy can bind while old connections sit
//! in TIME_WAIT). A listener configured on port 0 gets an ephemeral port; the configuration
//! handed to the engine is rewritten with the address actually bound, because the engine
//! matches accepted connections to listeners by local address.
//!
//! On a new configuration, a listener with the same name and configured address is kept (its
//! queued connections are not lost); others are bound, and those no longer listed are closed.
//! A listener that cannot be bound at start-up is an error; one added later is logged and
//! skipped, so a bad push cannot take down a running proxy. At most [`MAX_LISTENERS`] are
//! open at once (epoll names each with a token below the connections').
//!
//! Thread-per-core ([`crate::runtime`]): every core binds its own socket on each address with
//! SO_REUSEPORT, and the kernel spreads incoming connections across them. A listener configured
//! on port 0 must land on the *same* ephemeral port on every core, so the cores share a
//! [`PortMap`]: the first to bind records the port it got, the others bind to that port.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant};

use socket2::{Domain, Protocol, Socket, Type};
use trellis_engine::config::Config;

use crate::error::IoError;

/// Listeners open at once, at most.
pub(crate) const MAX_LISTENERS: usize = 4096;
/// After an accept error (EMFILE ...), how long a listener rests before accepting again.
pub(crate) const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// What a backend does with a listening socket.
pub(crate) trait Listen {
    /// The backend's state for one listening socket.
    type Listener;

    /// Take over a bound socket that lives in slot `index` (epoll registers it under a token
    /// derived from the index; io_uring names the index in its accept operations).
    fn listen(
        &mut self,
        index: usize,
        socket: std::net::TcpListener,
    ) -> Result<Self::Listener, IoError>;

    /// Stop listening (deregister, or cancel the accept in flight); the socket closes.
    fn unlisten(&mut self, listener: Self::Listener);
}

pub(crate) struct ListenerSlot<L> {
    pub name: String,
    /// The address the configuration asked for (may have port 0).
    pub configured: SocketAddr,
    /// The address actually bound.
    pub bound: SocketAddr,
    /// After an accept error, when to try again.
    pub resting_until: Option<StdInstant>,
    pub socket: L,
}

/// The listeners of one event loop, by slot.
pub(crate) struct Listeners<L> {
    slots: Vec<Option<ListenerSlot<L>>>,
    /// Listeners open at once, at most ([`MAX_LISTENERS`]; smaller in tests).
    cap: usize,
}

impl<L> Default for Listeners<L> {
    fn default() -> Self {
        Listeners {
            slots: Vec::new(),
            cap: MAX_LISTENERS,
        }
    }
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
    /// Non-blocking (epoll) or blocking (io_uring: the kernel parks the accept instead of
    /// failing it with EAGAIN).
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
    // An IPv6 listener serves IPv6 only (Envoy's default, `ipv4_compat: false`), so a sidecar
    // can listen on both 0.0.0.0:15001 and [::]:15001 for dual-stack capture.
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
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

impl<L> Listeners<L> {
    pub fn get_mut(&mut self, index: usize) -> Option<&mut ListenerSlot<L>> {
        self.slots.get_mut(index)?.as_mut()
    }

    /// Slot indexes of the open listeners.
    pub fn indexes(&self) -> impl Iterator<Item = usize> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|_| i))
    }

    /// Bound addresses, by listener name, in slot order.
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

    /// The earliest time a resting listener may accept again.
    pub fn next_retry(&self) -> Option<StdInstant> {
        self.slots
            .iter()
            .flatten()
            .filter_map(|s| s.resting_until)
            .min()
    }

    /// End the rest of listeners whose time has come; returns their slots.
    pub fn wake_rested(&mut self, now: StdInstant) -> Vec<usize> {
        let mut woken = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if let Some(s) = slot {
                if s.resting_until.is_some_and(|at| at <= now) {
                    s.resting_until = None;
                    woken.push(i);
                }
            }
        }
        woken
    }

    /// Close every listener (shutdown: stop accepting).
    pub fn close_all<B: Listen<Listener = L>>(&mut self, backend: &mut B) {
        for slot in self.slots.iter_mut() {
            if let Some(s) = slot.take() {
                tracing::info!(listener = %s.name, addr = %s.bound, "listener closed");
                backend.unlisten(s.socket);
            }
        }
    }

    /// Close the listeners named in `names` (an inbound drain's end: stop accepting there).
    pub fn close_named<B: Listen<Listener = L>>(&mut self, backend: &mut B, names: &[String]) {
        for slot in self.slots.iter_mut() {
            if slot.as_ref().is_some_and(|s| names.contains(&s.name)) {
                if let Some(s) = slot.take() {
                    tracing::info!(listener = %s.name, addr = %s.bound, "listener drained and closed");
                    backend.unlisten(s.socket);
                }
            }
        }
    }

    /// Make the bound listeners match `config`, and return `config` with each listener's
    /// address replaced by the one bound. `strict`: fail on a listener that cannot be bound
    /// (start-up) instead of logging it.
    pub fn reconcile<B: Listen<Listener = L>>(
        &mut self,
        backend: &mut B,
        config: &Config,
        opts: &BindOptions,
        strict: bool,
    ) -> Result<Config, IoError> {
        let wanted = |s: &ListenerSlot<L>| {
            config
                .listeners
                .iter()
                .any(|l| l.name == s.name && l.address == s.configured)
        };
        for slot in self.slots.iter_mut() {
            if slot.as_ref().is_some_and(|s| !wanted(s)) {
                if let Some(s) = slot.take() {
                    tracing::info!(listener = %s.name, addr = %s.bound, "listener removed");
                    backend.unlisten(s.socket);
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
            match self.add(backend, &listener.name, listener.address, opts) {
                Ok(bound) => listener.address = bound,
                Err(e) if strict => return Err(e),
                Err(e) => tracing::error!(error = %e, "listener not added"),
            }
        }
        Ok(rewritten)
    }

    fn add<B: Listen<Listener = L>>(
        &mut self,
        backend: &mut B,
        name: &str,
        addr: SocketAddr,
        opts: &BindOptions,
    ) -> Result<SocketAddr, IoError> {
        let index = match self.slots.iter().position(Option::is_none) {
            Some(i) => i,
            None if self.slots.len() < self.cap => {
                self.slots.push(None);
                self.slots.len() - 1
            }
            None => return Err(IoError::TooManyListeners(self.slots.len() + 1, self.cap)),
        };
        let (socket, bound) = bind_listener(name, addr, opts).map_err(|source| IoError::Bind {
            name: name.to_string(),
            addr,
            source,
        })?;
        let socket = backend.listen(index, socket)?;
        tracing::info!(listener = %name, addr = %bound, "listening");
        debug_assert!(
            self.slots.get(index).is_some_and(Option::is_none),
            "listener slot {index} taken twice"
        );
        if let Some(slot) = self.slots.get_mut(index) {
            *slot = Some(ListenerSlot {
                name: name.to_string(),
                configured: addr,
                bound,
                resting_until: None,
                socket,
            });
        }
        Ok(bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_engine::config::{Direction, Listener};

    /// A backend that only keeps the sockets (and counts what it was asked).
    #[derive(Default)]
    struct Keep {
        listening: usize,
    }

    impl Listen for Keep {
        type Listener = std::net::TcpListener;

        fn listen(
            &mut self,
            _index: usize,
            socket: std::net::TcpListener,
        ) -> Result<Self::Listener, IoError> {
            self.listening += 1;
            Ok(socket)
        }

        fn unlisten(&mut self, _listener: Self::Listener) {
            self.listening -= 1;
        }
    }

    fn listener(name: &str, addr: &str) -> Listener {
        Listener {
            tls: None,
            mtls: Default::default(),
            name: name.into(),
            address: addr.parse().unwrap(),
            route_table: "rt".into(),
            direction: Direction::Outbound,
            passthrough: false,
            authorization: None,
            local_forward: None,
            inbound_protocols: None,
            outbound_capture: None,
            authentication: None,
            edge: None,
        }
    }

    #[test]
    fn port_zero_is_rewritten_and_kept_across_reconciles() {
        let mut keep = Keep::default();
        let mut ls = Listeners::default();
        let config = Config {
            listeners: vec![listener("a", "127.0.0.1:0"), listener("b", "127.0.0.1:0")],
            ..Config::default()
        };
        let bound = ls
            .reconcile(&mut keep, &config, &BindOptions::single(128), true)
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
            .reconcile(&mut keep, &config2, &BindOptions::single(128), true)
            .unwrap();
        assert_eq!(bound2.listeners[0].address, a);
        assert_eq!(ls.addrs(), vec![("a".to_string(), a)]);
        assert!(std::net::TcpStream::connect(b).is_err());
        ls.close_all(&mut keep);
        assert!(ls.is_empty());
        assert_eq!(keep.listening, 0, "every socket handed back to the backend");
    }

    #[test]
    fn bind_failure_is_typed_at_startup_and_logged_later() {
        let mut keep = Keep::default();
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let config = Config {
            listeners: vec![listener("dup", &addr)],
            ..Config::default()
        };
        let mut ls = Listeners::default();
        match ls.reconcile(&mut keep, &config, &BindOptions::single(128), true) {
            Err(IoError::Bind { name, .. }) => assert_eq!(name, "dup"),
            other => panic!("expected a bind error, got {:?}", other.map(|_| ())),
        }
        let kept = ls
            .reconcile(&mut keep, &config, &BindOptions::single(128), false)
            .unwrap();
        assert_eq!(kept.listeners[0].address.to_string(), addr);
        assert!(ls.is_empty());
    }

    #[test]
    fn the_listener_cap_holds_at_startup_and_on_later_pushes() {
        let mut keep = Keep::default();
        let mut ls = Listeners {
            slots: Vec::new(),
            cap: 2,
        };
        let three = Config {
            listeners: vec![
                listener("a", "127.0.0.1:0"),
                listener("b", "127.0.0.1:0"),
                listener("c", "127.0.0.1:0"),
            ],
            ..Config::default()
        };
        match ls.reconcile(&mut keep, &three, &BindOptions::single(128), true) {
            Err(IoError::TooManyListeners(3, 2)) => {}
            other => panic!("expected the cap, got {:?}", other.map(|_| ())),
        }
        // A later push is not refused as a whole: the listeners that fit are served.
        let served = ls
            .reconcile(&mut keep, &three, &BindOptions::single(128), false)
            .unwrap();
        assert_eq!(ls.addrs().len(), 2);
        assert_eq!(keep.listening, 2);
        assert_eq!(served.listeners[2].address.port(), 0, "c is not bound");
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
