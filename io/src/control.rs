//! The handle other threads use to steer a running driver: push a new configuration snapshot,
//! ask it to drain its inbound listeners (Istio's preStop drain), ask it to shut down, and
//! wait for that.
//!
//! The driver thread sleeps in its backend's wait (`epoll_wait` or `io_uring_enter`); a request
//! is recorded under a mutex and the driver is woken through [`Wake`] (a `mio::Waker`, or an
//! eventfd the ring watches). Requests are coalesced: only the latest pending configuration
//! is kept (each is a complete snapshot, so an older pending one has nothing the newer lacks),
//! which keeps the inbox bounded however fast configs are pushed.
//!
//! A handle can be created and used before the driver starts; whatever was requested by then is
//! picked up when the driver attaches its waker.
//!
//! Thread-per-core: the runtime gives each core's driver its own *child* handle
//! ([`ControlHandle::child`]); a request made on the parent is forwarded to every child, each of
//! which wakes only its own core. The lock is on the control path (a push, a wake-up), never on
//! the request path: a core takes its `Arc<Config>` out of its own inbox once per push.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use trellis_engine::config::Config;

/// Something that wakes a driver sleeping in its poller (a `mio::Waker` for epoll, an eventfd
/// watched by the ring for io_uring).
pub trait Wake: Send + Sync {
    fn wake(&self) -> std::io::Result<()>;
}

impl Wake for mio::Waker {
    fn wake(&self) -> std::io::Result<()> {
        mio::Waker::wake(self)
    }
}

#[derive(Default)]
struct State {
    pending_config: Option<Arc<Config>>,
    drain_inbound: bool,
    shutdown: bool,
    waker: Option<Arc<dyn Wake>>,
    /// Per-core handles requests are forwarded to.
    children: Vec<ControlHandle>,
}

struct Inner {
    state: Mutex<State>,
    shutdown_signal: Condvar,
}

/// A cloneable, `Send` handle to a driver.
#[derive(Clone)]
pub struct ControlHandle {
    inner: Arc<Inner>,
}

/// What the driver picks up from its inbox on a wake-up.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    pub config: Option<Arc<Config>>,
    /// Sticky, as `shutdown`: the inbound listeners were asked to drain.
    pub drain_inbound: bool,
    pub shutdown: bool,
}

impl ControlHandle {
    pub fn new() -> Self {
        ControlHandle {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                shutdown_signal: Condvar::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the plain fields inconsistent.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Deliver a new configuration snapshot (the driver feeds it as `Input::Config`).
    pub fn update_config(&self, config: Arc<Config>) {
        let (waker, children) = {
            let mut state = self.lock();
            state.pending_config = Some(config.clone());
            (state.waker.clone(), state.children.clone())
        };
        for child in &children {
            child.update_config(config.clone());
        }
        wake(waker);
    }

    /// A handle for one more driver (one core), fed every request made on this one from now
    /// on; it starts with this handle's shutdown flag and latest configuration, if any.
    pub fn child(&self) -> ControlHandle {
        let child = ControlHandle::new();
        let mut state = self.lock();
        {
            let mut c = child.lock();
            c.shutdown = state.shutdown;
            c.drain_inbound = state.drain_inbound;
            c.pending_config = state.pending_config.clone();
        }
        state.children.push(child.clone());
        child
    }

    /// Ask the driver to drain its inbound listeners without stopping (Envoy's
    /// `drain_listeners?inboundonly&graceful&skip_exit`, which pilot-agent's `/drain` calls from
    /// a native sidecar's preStop hook): their HTTP connections close after their next
    /// response, and after the grace period they stop accepting. The outbound side keeps
    /// serving the application while it shuts down.
    pub fn drain_inbound(&self) {
        let (waker, children) = {
            let mut state = self.lock();
            state.drain_inbound = true;
            (state.waker.clone(), state.children.clone())
        };
        for child in &children {
            child.drain_inbound();
        }
        wake(waker);
    }

    /// Whether an inbound drain was requested.
    pub fn is_draining_inbound(&self) -> bool {
        self.lock().drain_inbound
    }

    /// Ask the driver to stop accepting, let connections finish up to its grace period, and
    /// return.
    pub fn shutdown(&self) {
        let (waker, children) = {
            let mut state = self.lock();
            state.shutdown = true;
            (state.waker.clone(), state.children.clone())
        };
        self.inner.shutdown_signal.notify_all();
        for child in &children {
            child.shutdown();
        }
        wake(waker);
    }

    /// Whether shutdown was requested.
    pub fn is_shutdown(&self) -> bool {
        self.lock().shutdown
    }

    /// Block until shutdown is requested or `timeout` (if any) elapses; returns whether it was
    /// requested.
    pub fn wait_shutdown(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut state = self.lock();
        loop {
            if state.shutdown {
                return true;
            }
            state = match deadline {
                None => self
                    .inner
                    .shutdown_signal
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    self.inner
                        .shutdown_signal
                        .wait_timeout(state, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    /// Called by the driver once its poller exists.
    pub(crate) fn attach_waker(&self, waker: Arc<dyn Wake>) {
        self.lock().waker = Some(waker);
    }

    /// Take pending requests (the shutdown flag stays set).
    pub(crate) fn take(&self) -> Requests {
        let mut state = self.lock();
        Requests {
            config: state.pending_config.take(),
            drain_inbound: state.drain_inbound,
            shutdown: state.shutdown,
        }
    }
}

impl Default for ControlHandle {
    fn default() -> Self {
        ControlHandle::new()
    }
}

fn wake(waker: Option<Arc<dyn Wake>>) {
    if let Some(w) = waker {
        if let Err(e) = w.wake() {
            tracing::warn!(error = %e, "cannot wake the driver");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll, Token, Waker};

    #[test]
    fn latest_config_wins_and_shutdown_sticks() {
        let h = ControlHandle::new();
        let a = Arc::new(Config {
            version: "a".into(),
            ..Config::default()
        });
        let b = Arc::new(Config {
            version: "b".into(),
            ..Config::default()
        });
        h.update_config(a);
        h.update_config(b);
        let r = h.take();
        assert_eq!(r.config.map(|c| c.version.clone()), Some("b".to_string()));
        assert!(!r.shutdown);
        assert!(h.take().config.is_none());
        h.clone().shutdown();
        assert!(h.take().shutdown);
        assert!(h.take().shutdown);
        assert!(h.is_shutdown());
    }

    #[test]
    fn requests_wake_the_poller() {
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(0)).unwrap());
        let h = ControlHandle::new();
        h.attach_waker(waker);
        let h2 = h.clone();
        let t = std::thread::spawn(move || h2.shutdown());
        let mut events = Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert!(events.iter().any(|e| e.token() == Token(0)));
        t.join().unwrap();
    }

    #[test]
    fn children_receive_every_request_made_on_the_parent() {
        let parent = ControlHandle::new();
        let early = Arc::new(Config {
            version: "early".into(),
            ..Config::default()
        });
        parent.update_config(early);
        let a = parent.child();
        let b = parent.child();
        // A child starts with what the parent already had.
        assert_eq!(
            a.take().config.map(|c| c.version.clone()),
            Some("early".into())
        );
        let late = Arc::new(Config {
            version: "late".into(),
            ..Config::default()
        });
        parent.update_config(late);
        for child in [&a, &b] {
            assert_eq!(
                child.take().config.map(|c| c.version.clone()),
                Some("late".to_string())
            );
        }
        parent.shutdown();
        assert!(a.take().shutdown && b.take().shutdown);
        assert!(parent.child().is_shutdown());
    }

    #[test]
    fn wait_shutdown_times_out_or_returns() {
        let h = ControlHandle::new();
        assert!(!h.wait_shutdown(Some(Duration::from_millis(20))));
        let h2 = h.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            h2.shutdown();
        });
        assert!(h.wait_shutdown(Some(Duration::from_secs(5))));
        t.join().unwrap();
    }
}
