//! A client's connections to its sidecar (RFC 9112 §9): which one a request goes on (a fresh
//! one, an idle one kept alive, or behind requests still waiting: pipelining), request bytes
//! held while the engine does not read, responses read in the order of the requests, and what
//! the sidecar owes when a connection ends.
//!
//! Without [`super::scenario::ConnectionSpec`] every request has a connection of its own,
//! closed by the client once it has read the response, exactly as before connections were
//! drawn. With it, the client keeps a connection after a response that did not end it, and
//! checks:
//! - the sidecar closes a connection that a request or response ended (`connection: close`,
//!   HTTP/1.0 without `keep-alive`) once the client has read that response (`Framing`);
//! - no request written after that point is forwarded, answered or logged (§9.6: the server
//!   "MUST NOT process any further requests received on that connection"; `Framing`);
//! - an idle connection is closed once the listener's `idle_timeout` has passed (`Framing`);
//! - every response comes in request order: each client request checks its own body pattern
//!   and route, so an answer to the wrong request fails `Bytes` or `Routing`.
//!
//! A request the engine has in hand (its bytes delivered, everything before it on its
//! connection answered) is held to the rules the sidecar runs at that moment
//! ([`Mesh::engine_takes`]), which is when the engine parses a pipelined head. So that this
//! moment is exact, clients pipeline only when they read at once (a slow client's unread
//! bytes hold the engine's next parse back until they drain) and reuse a connection only once
//! they have read everything on it.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use trellis_engine::proxy::Accepted;
use trellis_engine::{ConnId, Input};

use super::check::Invariant;
use super::client::DEFAULT_STREAM_IDLE;
use super::mesh::{Ev, Mesh};
use super::model;
use super::reference;
use super::report::Outcome;
use super::response_read::{BodyIn, Reading};
use super::scenario::{RequestShape, MAX_PIPELINE};
use super::state::DownConn;

/// How one request uses its connection (all `false`/`None`: a fresh HTTP/1.1 connection).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct ConnUse {
    /// An open connection to write it on.
    pub on: Option<ConnId>,
    pub http10: bool,
    /// With `http10`: it says `connection: keep-alive`.
    pub keep_alive: bool,
    /// It says `connection: close`.
    pub close: bool,
    /// The client writes one more request right behind it.
    pub follow_after_close: bool,
}

impl ConnUse {
    /// The request ends its connection by itself.
    pub fn ends(&self) -> bool {
        self.close || (self.http10 && !self.keep_alive)
    }
}

impl Mesh<'_> {
    /// Draw how a client workload's next request uses its connections (a call from a
    /// workload serving a request always opens its own).
    pub(super) fn draw_conn_use(&mut self, sidecar: usize, open_loop: bool) -> ConnUse {
        let Some(spec) = self.scn.connections.clone() else {
            return ConnUse::default();
        };
        let mut usage = ConnUse::default();
        let reads_at_once = self.scn.net.client_read_bpms == 0;
        if open_loop && reads_at_once && self.rng.u8(0..100) < spec.pipeline_percent {
            let busy: Vec<ConnId> = (self.sidecars[sidecar].down.iter())
                .filter(|(_, d)| d.reusable && !d.ending)
                .filter(|(_, d)| (1..MAX_PIPELINE).contains(&d.waiting.len()))
                .map(|(&c, _)| c)
                .collect();
            if !busy.is_empty() {
                usage.on = Some(busy[self.rng.usize(0..busy.len())]);
            }
        }
        if usage.on.is_none() {
            let idle: Vec<ConnId> = (self.sidecars[sidecar].down.iter())
                .filter(|(_, d)| d.reusable && !d.ending && d.waiting.is_empty() && d.unread == 0)
                .map(|(&c, _)| c)
                .collect();
            if !idle.is_empty() {
                let pick = idle[self.rng.usize(0..idle.len())];
                if self.rng.u8(0..100) < spec.reuse_percent {
                    usage.on = Some(pick);
                } else if self.rng.u8(0..100) < spec.drop_idle_percent {
                    self.client_closes(sidecar, pick, Outcome::Cancelled);
                }
            }
        }
        usage.http10 = self.rng.u8(0..100) < spec.http10_percent;
        usage.keep_alive = usage.http10 && self.rng.u8(0..100) < spec.http10_keep_alive_percent;
        usage.close = self.rng.u8(0..100) < spec.close_percent;
        usage.follow_after_close = usage.ends() && self.rng.u8(0..100) < spec.after_close_percent;
        usage
    }

    /// Open a connection from `sidecar`'s client for request `id` (its number picks the
    /// client's port).
    pub(super) fn open_conn(&mut self, sidecar: usize, id: usize, reusable: bool) -> ConnId {
        let peer = SocketAddr::from(([127, 0, 0, 1], 10_000 + (id % 50_000) as u16));
        let local: SocketAddr = model::LISTENER.parse().unwrap_or(peer);
        let mut accepted = Accepted::new(peer, local);
        accepted.source_labels = self.label_maps[sidecar].clone();
        accepted.original_dst = self.scn.passthrough.then_some(model::ORIGINAL_DST);
        let conn = self.sidecars[sidecar].engine.accept(self.now, accepted);
        self.sidecars[sidecar]
            .down
            .insert(conn, DownConn::new(reusable));
        conn
    }

    /// Write request `id`'s bytes on `conn` (`first`: nothing waits before it there), or hold
    /// them while the engine does not read it.
    pub(super) fn client_write(
        &mut self,
        sc: usize,
        conn: ConnId,
        id: usize,
        first: bool,
        data: Bytes,
    ) {
        let Some(d) = self.sidecars[sc].down.get_mut(&conn) else {
            return;
        };
        if !d.reading {
            d.held.push_back((id, data));
            return;
        }
        self.requests[id].delivered = true;
        if first && !self.requests[id].unserved {
            self.engine_takes(id);
        }
        self.engine_input(sc, Input::Received { conn, data });
    }

    /// The engine reads `conn` again: hand it the held requests, as long as it keeps reading.
    pub(crate) fn deliver_down(&mut self, sc: usize, conn: ConnId) {
        loop {
            let Some(d) = self.sidecars[sc].down.get_mut(&conn) else {
                return;
            };
            if !d.reading {
                return;
            }
            let Some((id, data)) = d.held.pop_front() else {
                return;
            };
            let first = d.waiting.front() == Some(&id);
            self.requests[id].delivered = true;
            if first && !self.requests[id].unserved {
                self.engine_takes(id);
            }
            self.engine_input(sc, Input::Received { conn, data });
        }
    }

    /// The engine has request `id` (its bytes delivered, every request before it on its
    /// connection answered): the reference model's answer for it follows the rules the
    /// sidecar runs now, and its deadline and patience count from now.
    pub(super) fn engine_takes(&mut self, id: usize) {
        let r = &self.requests[id];
        let sidecar = r.sidecar;
        let generation = self.sidecars[sidecar].generations[r.service];
        let empty = RequestShape::default();
        let original_dst = self.scn.passthrough.then_some(model::ORIGINAL_DST);
        let seen = reference::SeenRequest {
            shape: r.shape.as_deref().unwrap_or(&empty),
            user: r.user.as_deref(),
            labels: &self.labels[sidecar],
            port: original_dst.map_or(reference::LISTENER_PORT, |a| a.port()),
        };
        let matched = (r.routable && r.reject.is_none())
            .then(|| model::reference_rule(self.scn, r.service, generation, &seen))
            .flatten();
        let (rule, block) = (matched.map(|m| m.0), matched.and_then(|m| m.1));
        let bound = rule
            .and_then(|rl| model::rule_at(self.scn, r.service, generation, rl))
            .and_then(model::time_bound);
        let patience = match bound {
            Some(b) => b + Duration::from_secs(1),
            None => r.patience,
        };
        let stream_idle = (self.sidecars[sidecar].stream_idle).unwrap_or(DEFAULT_STREAM_IDLE);
        let r = &mut self.requests[id];
        (r.generation, r.rule, r.block, r.bound) = (generation, rule, block, bound);
        r.stream_idle = stream_idle;
        r.start = self.now;
        self.queue.push(self.now + patience, Ev::GiveUp { req: id });
    }

    /// Whether `req` is the first request waiting on its connection.
    pub(super) fn is_front(&self, req: usize) -> bool {
        let r = &self.requests[req];
        (self.sidecars[r.sidecar].down.get(&r.conn))
            .is_some_and(|d| d.waiting.front() == Some(&req))
    }

    /// Bytes the sidecar wrote on `conn`: the waiting requests read them in order.
    pub(crate) fn client_conn_receive(&mut self, sc: usize, conn: ConnId, data: &[u8]) {
        let mut data = data;
        loop {
            let Some(d) = self.sidecars[sc].down.get(&conn) else {
                return;
            };
            let Some(&req) = d.waiting.front() else {
                if !data.is_empty() {
                    let msg = match d.ended_by {
                        Some((by, why)) => format!(
                            "sidecar {sc} wrote {} bytes on {conn} after the response to request {by}, which ended the connection ({why})",
                            data.len()
                        ),
                        None => format!(
                            "sidecar {sc} wrote {} bytes on {conn} with no request waiting for a response",
                            data.len()
                        ),
                    };
                    self.violation(Invariant::EndsOnce, msg);
                }
                return;
            };
            if self.requests[req].unserved {
                let msg = format!(
                    "sidecar {sc} answered request {req}, written on {conn} after the connection was ended (RFC 9112 §9.6)"
                );
                self.violation(Invariant::Framing, msg);
                return;
            }
            let Some((used, ends)) = self.client_receive(req, data) else {
                return;
            };
            self.response_whole(sc, conn, req, ends);
            data = &data[used..];
            if data.is_empty() {
                return;
            }
        }
    }

    /// The client has read request `req`'s whole response on `conn` (`ends`: it ended the
    /// connection): keep the connection, or give it up.
    fn response_whole(&mut self, sc: usize, conn: ConnId, req: usize, ends: bool) {
        let keep = self.scn.connections.is_some();
        let Some(d) = self.sidecars[sc].down.get_mut(&conn) else {
            return;
        };
        debug_assert_eq!(
            d.waiting.front(),
            Some(&req),
            "responses come in request order"
        );
        d.waiting.pop_front();
        if !keep || !d.reusable {
            // One request per connection: the client is done with it.
            debug_assert!(d.waiting.is_empty());
            if self.sidecars[sc].down.remove(&conn).is_some() {
                self.sidecars[sc]
                    .engine
                    .handle(self.now, Input::Closed { conn });
            }
            return;
        }
        let http10 = self.requests[req].http10;
        let ended = match (self.requests[req].ends_conn, ends) {
            (true, _) if http10 => Some("an HTTP/1.0 request without keep-alive"),
            (true, _) => Some("a request with connection: close"),
            (false, true) if http10 => Some("an HTTP/1.0 response without keep-alive"),
            (false, true) => Some("a response with connection: close"),
            (false, false) => None,
        };
        if let Some(why) = ended {
            d.ending = true;
            d.ended_by = Some((req, why));
            let behind: Vec<usize> = d.waiting.iter().copied().collect();
            for f in behind {
                self.requests[f].unserved = true;
            }
            // Once the client has read the response, the sidecar's close must have come.
            let at = self.requests[req].read_until.max(self.now);
            self.queue.push(at, Ev::CloseCheck { sc, conn });
            return;
        }
        match d.waiting.front() {
            Some(&next) => {
                if self.requests[next].delivered {
                    self.engine_takes(next);
                }
            }
            None => {
                d.idle_since = Some(self.now);
                let idle = match &self.scn.http {
                    Some(h) => Duration::from_millis(h.idle_timeout_ms),
                    None => trellis_engine::config::HttpSettings::default().idle_timeout,
                };
                let read = self.requests[req].read_until.max(self.now);
                let at = (self.now + idle).max(read) + Duration::from_millis(1);
                let since = self.now;
                self.queue.push(at, Ev::IdleCheck { sc, conn, since });
            }
        }
    }

    /// The client has read the response that ended `conn`: the sidecar must have closed it.
    pub(crate) fn close_check(&mut self, sc: usize, conn: ConnId) {
        let Some(d) = self.sidecars[sc].down.get(&conn) else {
            return;
        };
        let (by, why) = d.ended_by.unwrap_or((usize::MAX, "?"));
        let msg = format!(
            "sidecar {sc} kept {conn} open after the response to request {by}, which ended it ({why}; RFC 9112 §9.6)"
        );
        self.violation(Invariant::Framing, msg);
        self.client_closes(sc, conn, Outcome::Cancelled);
    }

    /// `conn` has been idle since `since` for longer than the listener's idle timeout: the
    /// sidecar must have closed it.
    pub(crate) fn idle_check(&mut self, sc: usize, conn: ConnId, since: trellis_engine::Instant) {
        let Some(d) = self.sidecars[sc].down.get(&conn) else {
            return;
        };
        if d.idle_since != Some(since) {
            return;
        }
        let msg = format!(
            "sidecar {sc} kept {conn} open, idle since {since}, past its listener's idle timeout ({:?})",
            self.scn.http.as_ref().map(|h| h.idle_timeout_ms)
        );
        self.violation(Invariant::Framing, msg);
        self.client_closes(sc, conn, Outcome::Cancelled);
    }

    /// The sidecar closed `conn` (`graceful`: with a FIN after everything it wrote): a
    /// response delimited by the close ends there; every other waiting request is cut.
    pub(crate) fn client_conn_closed(&mut self, sc: usize, conn: ConnId, graceful: bool) {
        let Some(d) = self.sidecars[sc].down.get_mut(&conn) else {
            return;
        };
        if let Some(&front) = d.waiting.front() {
            if self.config_call {
                self.config_disturbed(sc, front, "closed its client connection");
            }
            let r = &mut self.requests[front];
            let ends_here = graceful
                && matches!(&r.reading, Reading::Body(b)
                    if matches!(&b.body, BodyIn::Decoder(dec, rest) if rest.is_empty() && dec.finish_on_eof()));
            if r.end.is_none() {
                match std::mem::take(&mut r.reading) {
                    Reading::Body(b) if ends_here => {
                        self.finish_response(front, *b);
                    }
                    _ => self.end_request(front, Outcome::Truncated),
                }
            }
        }
        let Some(d) = self.sidecars[sc].down.remove(&conn) else {
            return;
        };
        for &req in d.waiting.iter().skip(1) {
            if self.requests[req].end.is_none() {
                self.end_request(req, Outcome::Truncated);
            }
        }
    }

    /// The client closes `conn`; requests still waiting on it end with `outcome`.
    pub(super) fn client_closes(&mut self, sc: usize, conn: ConnId, outcome: Outcome) {
        let Some(d) = self.sidecars[sc].down.remove(&conn) else {
            return;
        };
        for &req in &d.waiting {
            if self.requests[req].end.is_none() {
                self.end_request(req, outcome.clone());
            }
        }
        self.scan_all = true;
        self.engine_input(sc, Input::Closed { conn });
    }

    /// The client of `req` stops waiting for it and closes its connection.
    fn abandon(&mut self, req: usize, outcome: Outcome) {
        if self.requests[req].end.is_some() {
            return;
        }
        self.end_request(req, outcome);
        let (sc, conn) = (self.requests[req].sidecar, self.requests[req].conn);
        if let Some(d) = self.sidecars[sc].down.remove(&conn) {
            // Requests behind it on the connection go with it.
            for &other in &d.waiting {
                if self.requests[other].end.is_none() {
                    self.end_request(other, Outcome::Cancelled);
                }
            }
            // Abandoning the request may end an attempt (and feed outlier detection) in any
            // cluster.
            self.scan_all = true;
            self.engine_input(sc, Input::Closed { conn });
        }
    }

    /// The client's patience ran out.
    pub(crate) fn give_up(&mut self, req: usize) {
        self.abandon(req, Outcome::ClientTimeout);
    }

    /// A call whose caller crashed.
    pub(crate) fn cancel_call(&mut self, req: usize) {
        self.abandon(req, Outcome::Cancelled);
    }
}
