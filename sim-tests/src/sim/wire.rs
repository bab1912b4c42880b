//! The network side of the driver: upstream connects and sends crossing the modelled network,
//! server replies coming back, and scheduled faults (crashes, hangs, slow servers) applied to
//! server workloads. Partitions live in the network's plan ([`super::net`]).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use trellis_engine::{ConnId, Instant};

use super::check::Invariant;
use super::events::AfterReply;
use super::mesh::{Ev, Mesh, ServerSide, UpConn};
use super::model::endpoint_addr;
use super::net::{Dir, Fate};
use super::scenario::FaultKind;

/// The `x-sim-id` of a request head at the start of `data` (bodies are lowercase letters, so
/// they never start like a request line).
fn request_id(data: &[u8]) -> Option<usize> {
    if !(data.starts_with(b"GET ") || data.starts_with(b"POST ")) {
        return None;
    }
    const NAME: &[u8] = b"x-sim-id: ";
    let at = data.windows(NAME.len()).position(|w| w == NAME)? + NAME.len();
    let digits = data[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&data[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

impl Mesh<'_> {
    pub(crate) fn on_connect(&mut self, sc: usize, conn: ConnId, addr: SocketAddr) {
        self.trace.u64(conn.0);
        self.trace.bytes(addr.to_string().as_bytes());
        let Some(&ep) = self.ep_by_addr.get(&addr) else {
            // Only passthrough connects anywhere but an endpoint, and only to the original
            // destination.
            if !(self.scn.passthrough && addr == super::model::ORIGINAL_DST) {
                let msg = format!("sidecar {sc} connected to {addr}, which is no endpoint and no original destination");
                self.violation(Invariant::Routing, msg);
            }
            self.sidecars[sc].refused.insert(conn);
            self.queue.push(
                self.now,
                Ev::ConnectDone {
                    sc,
                    conn,
                    ok: false,
                },
            );
            return;
        };
        let cluster = self.endpoints[ep].cluster;
        let service = self.endpoints[ep].service;
        self.attempt_connect(sc, conn, Some(ep));
        self.sidecars[sc].open[cluster] += 1;
        self.touched_pools.push(cluster);
        self.dispatches.push((cluster, ep));
        let epoch = self.endpoints[ep].epoch;
        self.sidecars[sc].up.insert(
            conn,
            UpConn {
                ep,
                cluster,
                busy: true,
                idle_since: None,
                server: ServerSide {
                    recv: BytesMut::new(),
                    current: None,
                    alive: true,
                    epoch,
                    said_close: false,
                    early_hints: false,
                },
                reading: true,
                held: Default::default(),
                held_eof: false,
            },
        );
        self.note_connecting(sc, conn, cluster, ep);
        let listening = self.endpoints[ep].up;
        match self
            .net
            .connect(&mut self.rng, self.now, sc, service, listening)
        {
            Fate::Arrives(t) => {
                self.attempt_connect_fate(sc, service, Some(t));
                self.queue.push(t, Ev::ConnectDone { sc, conn, ok: true })
            }
            Fate::Reset(t) => self.queue.push(
                t,
                Ev::ConnectDone {
                    sc,
                    conn,
                    ok: false,
                },
            ),
            Fate::Lost => {}
        }
    }

    /// `http2MaxRequests`: requests in flight to the cluster. A request whose head is on the
    /// wire and whose response has not come back whole is in flight in the engine too (which
    /// also counts ones still connecting or pending), so the driver's count is a lower bound of
    /// the engine's. (Counting every connection the driver calls busy once flagged seeds 3161,
    /// 3348 and 4882 on a clean engine: a connection opened for a request that then took
    /// another, freed one, is busy from its connect without any request on it.)
    fn check_max_requests(&mut self, sc: usize, cluster: usize) {
        let Some(max) = self.cluster_info[cluster].max_requests else {
            return;
        };
        let in_flight = (self.sidecars[sc].up.iter())
            .filter(|(conn, u)| {
                u.cluster == cluster && u.busy && self.request_outstanding(sc, **conn)
            })
            .count();
        if in_flight as u64 > u64::from(max) {
            let msg = format!(
                "sidecar {sc} has {in_flight} requests in flight to {} (maxRequests {max})",
                self.cluster_names[cluster]
            );
            self.violation(Invariant::PoolLimit, msg);
        }
    }

    /// Pool idle timeout (`connectionPool.http.idleTimeout`): a request goes out on `conn`,
    /// idle in the pool since `since`; it must not have been idle longer than the timeout
    /// (by then the engine closes it).
    fn check_idle_reuse(&mut self, sc: usize, conn: ConnId, cluster: usize, since: Instant) {
        let info = &self.cluster_info[cluster];
        let ver = &self.scn.services[info.service].versions[info.version];
        let Some(ms) = ver.upstream_idle_ms else {
            return;
        };
        let idle = self.now.saturating_since(since);
        if idle > Duration::from_millis(ms) {
            let msg = format!(
                "sidecar {sc} sent a request on {conn} to {}, idle in its pool for {idle:?} since {since}, past idleTimeout {ms} ms",
                self.cluster_names[cluster]
            );
            self.violation(Invariant::PoolLimit, msg);
        }
    }

    pub(crate) fn upstream_send(&mut self, sc: usize, conn: ConnId, data: Bytes) {
        let Some(u) = self.sidecars[sc].up.get(&conn) else {
            return;
        };
        if u.server.said_close {
            let msg = format!(
                "sidecar {sc} wrote {} bytes on {conn} to {} after the server's response ended the connection (connection: close, or a body delimited by the close)",
                data.len(),
                self.cluster_names[u.cluster]
            );
            self.violation(Invariant::Framing, msg);
        }
        self.attempt_send(sc, conn, &data);
        let Some(u) = self.sidecars[sc].up.get_mut(&conn) else {
            return;
        };
        let newly_busy = !u.busy;
        u.busy = true;
        let idle_since = u.idle_since.take();
        let (cluster, ep) = (u.cluster, u.ep);
        if let (true, Some(since)) = (newly_busy, idle_since) {
            self.check_idle_reuse(sc, conn, cluster, since);
        }
        if newly_busy {
            self.dispatches.push((cluster, ep));
            self.check_max_requests(sc, cluster);
        }
        let Some(u) = self.sidecars[sc].up.get(&conn) else {
            return;
        };
        if self.cluster_info[u.cluster].max_connections.is_some() {
            if let Some(req) = request_id(&data) {
                self.picks.push((u.cluster, u.ep, req));
            }
        }
        let service = self.endpoints[u.ep].service;
        let len = data.len();
        match self
            .net
            .send(&mut self.rng, self.now, sc, service, conn, Dir::Out, len)
        {
            Fate::Arrives(t) => self.queue.push(t, Ev::ToServer { sc, conn, data }),
            Fate::Reset(t) => {
                if let Some(u) = self.sidecars[sc].up.get_mut(&conn) {
                    u.server.alive = false;
                }
                self.queue.push(t, Ev::EngineReset { sc, conn });
            }
            Fate::Lost => {}
        }
    }

    /// Bytes a server writes back on `conn` (after its service time).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn server_reply(
        &mut self,
        sc: usize,
        conn: ConnId,
        epoch: u32,
        data: Bytes,
        after: AfterReply,
        status: u16,
        more: bool,
    ) {
        let Some(u) = self.sidecars[sc].up.get(&conn) else {
            return;
        };
        let ep = u.ep;
        if !u.server.alive || u.server.epoch != epoch || self.endpoints[ep].epoch != epoch {
            return;
        }
        let service = self.endpoints[ep].service;
        match self.net.send(
            &mut self.rng,
            self.now,
            sc,
            service,
            conn,
            Dir::In,
            data.len(),
        ) {
            Fate::Arrives(t) => {
                self.queue.push(
                    t,
                    Ev::ToEngine {
                        sc,
                        conn,
                        data,
                        completes: !more
                            && matches!(after, AfterReply::KeepOpen | AfterReply::Close),
                        status,
                    },
                );
                if after.closes() && !more {
                    if let Some(u) = self.sidecars[sc].up.get_mut(&conn) {
                        u.server.alive = false;
                        u.server.said_close = after.announced();
                    }
                    let end = match after {
                        AfterReply::Reset => Ev::EngineReset { sc, conn },
                        _ => Ev::EngineEof { sc, conn },
                    };
                    self.queue.push(t, end);
                }
            }
            Fate::Reset(t) => {
                if let Some(u) = self.sidecars[sc].up.get_mut(&conn) {
                    u.server.alive = false;
                }
                self.queue.push(t, Ev::EngineReset { sc, conn });
            }
            Fate::Lost => {}
        }
    }

    pub(crate) fn fault(&mut self, i: usize, start: bool) {
        let Some(f) = self.scn.faults.get(i) else {
            return;
        };
        let ep_index = |m: &Self, e| m.ep_by_addr.get(&endpoint_addr(e)).copied();
        match f.kind {
            FaultKind::Crash(e) => {
                let Some(ep) = ep_index(self, e) else { return };
                if start {
                    self.crash(ep);
                } else {
                    self.endpoints[ep].up = true;
                }
            }
            FaultKind::Hang(e) => {
                let Some(ep) = ep_index(self, e) else { return };
                let h = &mut self.endpoints[ep].hung;
                *h = if start { *h + 1 } else { h.saturating_sub(1) };
            }
            FaultKind::Slow(e, ms) => {
                let Some(ep) = ep_index(self, e) else { return };
                self.endpoints[ep].slow = if start {
                    Duration::from_millis(ms)
                } else {
                    Duration::ZERO
                };
            }
            // Partitions are in the network's plan already.
            FaultKind::Partition { .. } | FaultKind::CallerPartition { .. } => {}
        }
    }

    /// The server process dies: its connections are reset (the RST crosses the network, or
    /// is lost in a blackhole), replies in preparation are dropped, new connects refused.
    pub(crate) fn crash(&mut self, ep: usize) {
        if !self.endpoints[ep].up {
            return;
        }
        self.endpoints[ep].up = false;
        self.endpoints[ep].epoch += 1;
        self.cancel_serves(ep);
        let service = self.endpoints[ep].service;
        for sc in 0..self.sidecars.len() {
            let conns: Vec<ConnId> = self.sidecars[sc]
                .up
                .iter()
                .filter(|(_, u)| u.ep == ep && u.server.alive)
                .map(|(c, _)| *c)
                .collect();
            for conn in conns {
                if let Some(u) = self.sidecars[sc].up.get_mut(&conn) {
                    u.server.alive = false;
                }
                match self
                    .net
                    .send(&mut self.rng, self.now, sc, service, conn, Dir::In, 0)
                {
                    Fate::Arrives(t) | Fate::Reset(t) => {
                        self.queue.push(t, Ev::EngineReset { sc, conn })
                    }
                    Fate::Lost => {}
                }
            }
        }
    }
}
