//! The handle other threads use to steer a running driver: push a new configuration snapshot,
//! ask it to shut down, and wait for that.
//!
//! The driver thread sleeps in `epoll_wait`; a request is recorded under a mutex and the driver
//! is woken with a `mio::Waker`. Requests are coalesced: only the latest pending configuration
//! is kept (each is a complete snapshot, so an older pending one has nothing the newer lacks),
//! which keeps the inbox bounded however fast configs are pushed.
//!
//! A handle can be created and used before the driver starts; whatever was requested by then is
//! picked up when the driver attaches its waker.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mio::Waker;
use trellis_engine::config::Config;

#[derive(Default)]
struct State {
    pending_config: Option<Arc<Config>>,
    shutdown: bool,
    waker: Option<Arc<Waker>>,
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
        let waker = {
            let mut state = self.lock();
            state.pending_config = Some(config);
            state.waker.clone()
        };
        wake(waker);
    }

    /// Ask the driver to stop accepting, let connections finish up to its grace period, and
    /// return.
    pub fn shutdown(&self) {
        let waker = {
            let mut state = self.lock();
            state.shutdown = true;
            state.waker.clone()
        };
        self.inner.shutdown_signal.notify_all();
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
    pub(crate) fn attach_waker(&self, waker: Arc<Waker>) {
        self.lock().waker = Some(waker);
    }

    /// Take pending requests (the shutdown flag stays set).
    pub(crate) fn take(&self) -> Requests {
        let mut state = self.lock();
        Requests {
            config: state.pending_config.take(),
            shutdown: state.shutdown,
        }
    }
}

impl Default for ControlHandle {
    fn default() -> Self {
        ControlHandle::new()
    }
}

fn wake(waker: Option<Arc<Waker>>) {
    if let Some(w) = waker {
        if let Err(e) = w.wake() {
            tracing::warn!(error = %e, "cannot wake the driver");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll, Token};

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
