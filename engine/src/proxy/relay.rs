//! Bytes between the two sides of a request: backpressure (read from a side only while its
//! peer drains) and upgraded connections relayed raw as a tunnel.

use bytes::Bytes;

use crate::time::Instant;

use super::conn::{Conn, DownState, Side, UpState};
use super::ids::{DownstreamId, UpstreamId};
use super::Engine;

impl Engine {
    /// Switch a downstream connection and its upstream to a raw byte relay (after 101).
    pub(super) fn start_tunnel(
        &mut self,
        down_id: DownstreamId,
        up_id: UpstreamId,
        leftover_up: Bytes,
    ) {
        if let Some(down) = self.conns.open_down_mut(down_id) {
            debug_assert_eq!(
                down.state,
                DownState::Idle,
                "a tunnel starts between requests"
            );
            down.state = DownState::Tunnel(up_id);
            down.idle_deadline = None;
            down.head_deadline = None;
        }
        if let Some(up) = self.conns.up_mut(up_id) {
            up.state = UpState::Tunnel(down_id);
            up.idle_deadline = None;
        }
        if !leftover_up.is_empty() {
            self.write(down_id, &leftover_up);
        }
        let pending = self
            .conns
            .open_down_mut(down_id)
            .map(|d| d.recv.split().freeze())
            .unwrap_or_default();
        if !pending.is_empty() {
            self.write(up_id, &pending);
        }
    }

    /// Recompute read interest after the downstream side drained or buffered more.
    pub(super) fn refresh_backpressure_from_down(&mut self, now: Instant, down_id: DownstreamId) {
        let limit = self.snapshot.config.http.connection_buffer_bytes;
        let Some(conn) = self.conns.get(down_id.conn()) else {
            return;
        };
        let Conn {
            side: Side::Down(down),
            ..
        } = conn
        else {
            return;
        };
        // Counted as everywhere else: buffered here, held in the transport (TLS records not yet
        // collected, plaintext sealed before the handshake) and in the driver.
        let down_backlog = conn.backlog();
        let (partner, unsent) = match down.state {
            DownState::Active(req) => {
                let r = self.requests.get(req);
                let up = r.and_then(|r| r.phase.upstream());
                (up, r.map(|r| r.body.unsent_bytes).unwrap_or(0))
            }
            DownState::Tunnel(up) => (Some(up), 0),
            DownState::Tcp => match down.tcp.as_deref().map(|t| &t.phase) {
                Some(super::tcp_session::TcpPhase::Relaying(up)) => (Some(*up), 0),
                _ => (None, 0),
            },
            _ => (None, 0),
        };
        let recv_len = down.recv.len();
        let partner_backlog = partner
            .and_then(|p| self.conns.get(p.conn()))
            .map(|c| c.backlog())
            .unwrap_or(0);
        // Read from the client only while what it sent can go somewhere.
        let read_down = recv_len < limit && unsent < limit && partner_backlog < limit;
        self.set_reading(down_id, read_down);
        // Read from the upstream only while the client keeps up.
        if let Some(up) = partner {
            self.set_reading(up, down_backlog < limit);
        }
        let _ = now;
    }

    /// Recompute read interest after the upstream side drained or buffered more.
    pub(super) fn refresh_backpressure_from_up(&mut self, now: Instant, up_id: UpstreamId) {
        let down = match self.conns.up(up_id) {
            Some(up) => match up.state {
                UpState::Busy(req) => self.requests.get(req).map(|r| r.down),
                UpState::Tunnel(down) | UpState::Tcp(down) => Some(down),
                _ => None,
            },
            _ => None,
        };
        if let Some(down) = down {
            self.refresh_backpressure_from_down(now, down);
        }
    }
}
