//! Draining listeners ([`crate::Input::DrainListeners`]): Envoy's admin
//! `drain_listeners?graceful[&inboundonly]`, which pilot-agent calls from a native sidecar's
//! preStop hook (`/drain` → `DrainListeners(inboundonly, skip_exit)`, pkg/envoy/admin.go),
//! with the `immediate` drain strategy pilot-agent starts Envoy with: from the drain on, the
//! HTTP connection manager of a drained listener closes each connection after its next
//! response, saying so (`connection: close`), and an idle one at once, while new
//! connections are still accepted until the drain period ends (the driver's part). Only the
//! connection manager drains gracefully; L4 sessions and tunnels run to their end.

use crate::config::Direction;
use crate::time::Instant;

use super::conn::DownState;
use super::ids::DownstreamId;
use super::Engine;

/// Which listeners drain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DrainScope {
    /// Only the inbound ones (Envoy's `inboundonly`, what a sidecar's preStop drain asks).
    pub inbound_only: bool,
}

impl Engine {
    /// Start draining: see the module docs. Asking again widens the scope (inbound only,
    /// then all) but never narrows it.
    pub(crate) fn drain_listeners(&mut self, _now: Instant, inbound_only: bool) {
        let inbound_only = inbound_only && self.draining.is_none_or(|d| d.inbound_only);
        self.draining = Some(DrainScope { inbound_only });
        // In index order: deterministic.
        let downstreams: Vec<(DownstreamId, std::sync::Arc<str>)> = (self.conns.iter())
            .filter_map(|(conn, c)| match &c.side {
                super::conn::Side::Down(d) => Some((DownstreamId::new(conn), d.listener.clone())),
                super::conn::Side::Up(_) => None,
            })
            .collect();
        for (id, listener) in downstreams {
            if !self.drains(&listener) {
                continue;
            }
            let Some(down) = self.conns.open_down_mut(id) else {
                continue;
            };
            down.draining = true;
            let idle = down.state == DownState::Idle && down.recv.is_empty();
            if idle {
                self.mark_closing(id, true);
            }
        }
    }

    /// Whether connections of listener `listener` drain.
    pub(super) fn drains(&self, listener: &str) -> bool {
        let Some(scope) = self.draining else {
            return false;
        };
        if !scope.inbound_only {
            return true;
        }
        (self.snapshot.listener_named(listener))
            .is_some_and(|(l, _)| l.direction == Direction::Inbound)
    }
}
