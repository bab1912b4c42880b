//! The io_uring driver's listening sockets: the same reconciliation as the epoll driver's
//! (`crate::listeners`), with an accept operation kept in flight on each instead of a poller
//! registration.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Instant as StdInstant;

use trellis_engine::config::{Config, Direction};

use crate::error::IoError;
use crate::listeners::{bind_listener, BindOptions};

pub(super) struct UListener {
    pub name: String,
    pub configured: SocketAddr,
    pub bound: SocketAddr,
    pub direction: Direction,
    pub socket: Rc<OwnedFd>,
    /// The accept in flight.
    pub accept_op: Option<u64>,
    /// After an accept error (EMFILE ...), when to try again.
    pub retry_at: Option<StdInstant>,
}

/// Listener slots; the index is what accept operations name.
#[derive(Default)]
pub(super) struct UListeners {
    pub slots: Vec<Option<UListener>>,
}

impl UListeners {
    pub fn addrs(&self) -> Vec<(String, SocketAddr)> {
        self.slots
            .iter()
            .flatten()
            .map(|l| (l.name.clone(), l.bound))
            .collect()
    }

    /// Remove every listener; returns the accept operations to cancel.
    pub fn close_all(&mut self) -> Vec<u64> {
        let mut cancel = Vec::new();
        for slot in self.slots.iter_mut() {
            if let Some(l) = slot.take() {
                tracing::info!(listener = %l.name, addr = %l.bound, "listener closed");
                cancel.extend(l.accept_op);
            }
        }
        cancel
    }

    /// Match `config` (see `crate::listeners::Listeners::reconcile`); returns the rewritten
    /// config and the accept operations of removed listeners, to cancel. New listeners have
    /// no accept in flight yet: the driver arms them.
    pub fn reconcile(
        &mut self,
        config: &Config,
        opts: &BindOptions,
        strict: bool,
    ) -> Result<(Config, Vec<u64>), IoError> {
        let mut cancel = Vec::new();
        for slot in self.slots.iter_mut() {
            let keep = slot.as_ref().is_some_and(|s| {
                config
                    .listeners
                    .iter()
                    .any(|l| l.name == s.name && l.address == s.configured)
            });
            if !keep {
                if let Some(s) = slot.take() {
                    tracing::info!(listener = %s.name, addr = %s.bound, "listener removed");
                    cancel.extend(s.accept_op);
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
            match bind_listener(&listener.name, listener.address, opts) {
                Ok((socket, bound)) => {
                    tracing::info!(listener = %listener.name, addr = %bound, "listening");
                    let slot = UListener {
                        name: listener.name.clone(),
                        configured: listener.address,
                        bound,
                        direction: listener.direction,
                        socket: Rc::new(OwnedFd::from(socket)),
                        accept_op: None,
                        retry_at: None,
                    };
                    match self.slots.iter().position(Option::is_none) {
                        Some(i) => {
                            if let Some(s) = self.slots.get_mut(i) {
                                *s = Some(slot);
                            }
                        }
                        None => self.slots.push(Some(slot)),
                    }
                    listener.address = bound;
                }
                Err(source) => {
                    let e = IoError::Bind {
                        name: listener.name.clone(),
                        addr: listener.address,
                        source,
                    };
                    if strict {
                        return Err(e);
                    }
                    tracing::error!(error = %e, "listener not added");
                }
            }
        }
        Ok((rewritten, cancel))
    }
}
