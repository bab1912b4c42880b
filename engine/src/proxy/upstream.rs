//! Upstream connection events: connected, connect failed or timed out, response bytes,
//! EOF, gone, idle timeout. Each is turned into the pool's, the attempt's or the response's
//! next step; the pool itself lives in `pool`.

use crate::cluster::Outcome;
use crate::time::Instant;
use crate::transport::Transport;

use super::conn::UpState;
use super::ids::UpstreamId;
use super::log::ResponseFlag;
use super::request::{Failure, Phase};
use super::Engine;

impl Engine {
    pub(crate) fn on_connected(&mut self, now: Instant, id: UpstreamId) {
        match self.conns.get(id.conn()).map(|c| &c.transport) {
            // Its transport could not be set up (the event was raised when it was opened).
            Some(Transport::Failed { .. }) => return self.on_connect_failed(now, id),
            // The transform speaks first (a TLS ClientHello).
            Some(t) if t.wants_write() => self.mark_dirty(id.conn()),
            _ => {}
        }
        let Some(up) = self.up_mut(id) else {
            return;
        };
        up.connect_deadline = None;
        if up.state == UpState::Shadow {
            return self.mirror_connected(now, id);
        }
        if let UpState::Tcp(down) = up.state {
            return self.on_tcp_connected(now, id, down);
        }
        let UpState::Connecting(req) = up.state else {
            return;
        };
        match req.filter(|r| self.requests.contains(*r)) {
            Some(req) => self.attach(now, req, id),
            None => self.release_upstream(now, id),
        }
    }

    pub(crate) fn on_connect_failed(&mut self, now: Instant, id: UpstreamId) {
        let Some(up) = self.up_mut(id) else {
            return;
        };
        if up.state == UpState::Shadow {
            self.stats.upstream_cx_connect_fail += 1;
            return self.end_mirror(now, id, super::mirror::MirrorOutcome::ConnectFailed);
        }
        if let UpState::Tcp(down) = up.state {
            return self.on_tcp_connect_failed(now, id, down);
        }
        let UpState::Connecting(req) = up.state else {
            return;
        };
        let (slot, host, host_gen, addr) = (up.slot, up.host, up.host_gen, up.addr);
        self.close_upstream(now, id, false);
        match req.filter(|r| self.requests.contains(*r)) {
            Some(req) => {
                if let Some(r) = self.requests.get_mut(req) {
                    r.set_phase(Phase::Done); // the connection is already gone
                    r.set_host(host_gen, host, addr);
                }
                self.attempt_failed(now, req, Failure::ConnectFailed);
            }
            None => {
                // Nobody waited for it, but the host still failed to accept a connection.
                if let Some(s) = self.clusters.slot_mut(slot) {
                    let host = s.resolve_host(host_gen, host, addr);
                    if let Some(h) = host {
                        s.state.report(now, h, Outcome::ConnectFailed);
                    }
                }
                self.arm_sweep(slot);
            }
        }
    }

    pub(crate) fn on_upstream_timer(&mut self, now: Instant, id: UpstreamId) {
        let Some(up) = self.up_mut(id) else {
            return;
        };
        match up.state {
            UpState::Connecting(_) if up.connect_deadline.is_some_and(|d| d <= now) => {
                self.on_connect_failed(now, id);
            }
            UpState::Idle if up.idle_deadline.is_some_and(|d| d <= now) => {
                self.close_upstream(now, id, true);
            }
            UpState::Shadow => self.on_mirror_timer(now, id),
            UpState::Tcp(down) => self.on_tcp_up_timer(now, id, down),
            _ => {
                let next = match up.state {
                    UpState::Connecting(_) => up.connect_deadline,
                    UpState::Idle => up.idle_deadline,
                    _ => None,
                };
                if let Some(at) = next {
                    self.arm_conn_timer(id, at);
                }
            }
        }
    }

    pub(crate) fn on_upstream_data(&mut self, now: Instant, id: UpstreamId) {
        let Some(up) = self.up_mut(id) else {
            return;
        };
        match up.state {
            UpState::Busy(req) => self.relay_response(now, id, req),
            UpState::Tunnel(down) => {
                let data = up.recv.split().freeze();
                self.write(down, &data);
                self.refresh_backpressure_from_up(now, id);
            }
            UpState::Idle => {
                // Bytes nobody asked for: the connection's framing is lost; drop it.
                self.close_upstream(now, id, false);
            }
            UpState::Shadow => self.on_mirror_data(now, id),
            UpState::Tcp(down) => self.on_tcp_up_data(now, id, down),
            UpState::Connecting(_) => {}
        }
    }

    pub(crate) fn on_upstream_eof(&mut self, now: Instant, id: UpstreamId) {
        let Some(up) = self.up_mut(id) else {
            return;
        };
        match up.state {
            UpState::Busy(req) => self.relay_response(now, id, req),
            UpState::Tunnel(down) => {
                self.mark_closing(down, true);
                self.close_upstream(now, id, true);
            }
            UpState::Idle => self.close_upstream(now, id, true),
            UpState::Shadow => self.on_mirror_data(now, id),
            UpState::Tcp(down) => self.on_tcp_up_eof(now, id, down),
            UpState::Connecting(_) => self.on_connect_failed(now, id),
        }
        // A response that needed more bytes than EOF allows was cut short.
        if let Some(up) = self.up_mut(id) {
            if let UpState::Busy(req) = up.state {
                let started = self.requests.get(req).is_some_and(|r| r.response_started());
                if started {
                    self.abort_downstream(now, req, ResponseFlag::UpstreamConnectionTermination);
                }
            }
        }
    }

    pub(crate) fn on_upstream_gone(&mut self, now: Instant, id: UpstreamId) {
        let Some(up) = self.up_mut(id) else {
            return;
        };
        let reset = super::response::reset_kind(up);
        let state = up.state;
        let relaying = matches!(state, UpState::Busy(req)
            if self.requests.get(req).is_some_and(|r| r.response_started()));
        // A response being relayed gets what arrived before the connection went, but the
        // connection's end does not end its body: gone is a reset or an error, not the
        // server's FIN (`ReadClosed`), so a body only the close could delimit was cut, not
        // finished (RFC 9112 §8: an incomplete message is recorded as such).
        let ends_body = !relaying;
        #[cfg(feature = "mutants")]
        let ends_body = ends_body || crate::mutants::route().reset_ends_close_delimited_body;
        if ends_body {
            if let Some(up) = self.up_mut(id) {
                up.read_closed = true;
            }
        }
        match state {
            UpState::Busy(req) => {
                if relaying {
                    self.relay_response(now, id, req);
                    if let Some(up) = self.up_mut(id) {
                        up.read_closed = true;
                    }
                    if self.requests.contains(req) {
                        self.abort_downstream(
                            now,
                            req,
                            ResponseFlag::UpstreamConnectionTermination,
                        );
                    }
                } else {
                    self.attempt_failed(now, req, reset);
                }
            }
            UpState::Tunnel(down) => self.mark_closing(down, true),
            UpState::Connecting(_) => self.on_connect_failed(now, id),
            UpState::Shadow => self.on_mirror_data(now, id),
            UpState::Tcp(down) => self.on_tcp_up_gone(now, id, down),
            UpState::Idle => {}
        }
        // The driver already closed it; release its breaker budget (the caller drops it
        // without a Close output).
        if self.up_mut(id).is_some() {
            self.close_upstream(now, id, false);
        }
    }
}
