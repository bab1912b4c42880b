//! L4 proxying (Envoy's `tcp_proxy`, as Istio configures it for TCP services and VirtualService
//! `tcp`/`tls` rules): a connection a [`crate::config::TcpRoute`] takes is never parsed. Its
//! life:
//!
//! 1. accepted: the chains of its listener are narrowed by destination port and address
//!    (`tcp_match`); none left means HTTP as before. When the choice depends on the server
//!    name, the first bytes are held until the ClientHello is read (`sni`), never terminated.
//! 2. a chain is chosen, then one of its destinations by weight (the engine's seeded RNG, as
//!    HTTP weighted routes), then a host by the cluster's balancer; `maxConnections` full is
//!    UO, no host UH, a connect failure or timeout UF (one attempt: pilot leaves
//!    `max_connect_attempts` at Envoy's default of 1). Outlier detection hears connect
//!    failures and successes (Envoy's LocalOriginConnectFailed / LocalOriginConnectSuccessFinal,
//!    counted as 503 and 200 when local and external errors are not split).
//! 3. bytes are relayed both ways with the same backpressure as tunnels (`relay`); a side's
//!    EOF is passed on as a half-close (`Output::Shutdown`) and the session ends when both
//!    sides finished, when either resets, or after `idle_timeout` without a byte either way.
//! 4. one access-log record per connection: bytes each way, duration, upstream host, flags.

use crate::cluster::Outcome;
use crate::config::{PortProtocol, BLACK_HOLE_CLUSTER, PASSTHROUGH_CLUSTER};
use crate::http1::HeadStr;
use crate::time::Instant;
use crate::transport::ChainKind;

use super::conn::{DownState, UpState};
use super::http_sniff::{sniff, Sniff};
use super::ids::{DownstreamId, UpstreamId};
use super::log::{RequestLog, ResponseFlag};
use super::sni::{peek, Peek};
use super::tcp_match;
use super::tcp_session::{Detect, TcpPhase, TcpSession, INSPECT_TIMEOUT};
use super::Engine;

impl Engine {
    /// A connection was just accepted: take it at L4 if one of its listener's chains applies.
    /// On a capture listener the port's protocol decides first: HTTP stays HTTP, TCP takes
    /// the chain, and an unknown one waits for the first bytes (`http_sniff`). Inbound, the
    /// workload's ports ([`crate::config::InboundProtocols`]); outbound, for a connection
    /// iptables redirected, the services' ports ([`crate::config::OutboundCapture`]), where a
    /// connection no chain takes falls to Istio's passthrough or black-hole catch-all.
    pub(crate) fn tcp_accept(&mut self, now: Instant, id: DownstreamId) {
        let snapshot = self.snapshot.clone();
        let routes = &snapshot.config.tcp_routes;
        let Some(down) = self.conns.open_down_mut(id) else {
            return;
        };
        let redirected = down.original_dst.is_some();
        let dst = down.original_dst.unwrap_or(down.local);
        let config = snapshot.listener_named(&down.listener).map(|(l, _)| l);
        let outbound = config.is_some_and(|l| l.direction == crate::config::Direction::Outbound);
        let capture =
            (config.and_then(|l| l.outbound_capture.as_deref())).filter(|_| outbound && redirected);
        if routes.is_empty() && capture.is_none() {
            return;
        }
        let protocols = config.and_then(|l| l.inbound_protocols.as_deref());
        let (protocol, detection_timeout) = match capture {
            Some(c) => (Some(c.protocol_for(dst.port())), c.detection_timeout),
            None => (
                protocols.map(|p| p.protocol_for(dst.port())),
                protocols.and_then(|p| p.detection_timeout),
            ),
        };
        if protocol == Some(PortProtocol::Http) {
            return;
        }
        let listener = (&*down.listener, outbound);
        let found = tcp_match::candidates(routes, listener, dst, &down.source_labels);
        if found.is_empty() && capture.is_none() {
            return;
        }
        let inspect = tcp_match::needs_client_hello(routes, &found);
        let mut session = TcpSession::new(snapshot.clone(), now, found, inspect);
        session.catch_all = capture.is_some();
        let detect = protocol == Some(PortProtocol::Detect);
        // A terminating gateway port whose chains differ by SNI, or that also serves HTTP or
        // passes TLS through: which chain a connection is (and so whether it is L4 at all)
        // is the ClientHello's to say (`tcp_awaits_chain`).
        let terminating = config.and_then(|l| l.tls.as_deref());
        let awaiting_chain = terminating.is_some_and(|t| inspect || t.serves_more_than_tcp());
        session.awaiting_chain = awaiting_chain;
        if awaiting_chain && session.deadline.is_none() {
            session.deadline = Some(now + INSPECT_TIMEOUT);
        }
        if detect {
            let idle = snapshot.config.http.idle_timeout;
            session.detecting = Some(if detection_timeout.is_some() {
                Detect::ThenTcp
            } else {
                Detect::ThenClose
            });
            session.deadline = Some(now + detection_timeout.unwrap_or(idle));
        } else if !awaiting_chain {
            self.stats.downstream_cx_tcp += 1;
        }
        let deadline = session.deadline;
        down.state = DownState::Tcp;
        down.idle_deadline = None;
        down.head_deadline = None;
        down.tcp = Some(Box::new(session));
        if inspect || detect || awaiting_chain {
            if let Some(at) = deadline {
                self.arm_conn_timer(id, at);
            }
        } else {
            self.tcp_choose(now, id, None, &[]);
        }
    }

    /// Protocol detection decided (or gave up): `http` hands the connection back to the HTTP
    /// connection manager with every byte it sent; otherwise the L4 chain is chosen, after
    /// the ClientHello when a chain needs its server name.
    fn tcp_detected(&mut self, now: Instant, id: DownstreamId, http: bool) {
        let Some(down) = self.conns.open_down_mut(id) else {
            return;
        };
        let Some(session) = down.tcp.as_deref_mut() else {
            return;
        };
        session.detecting = None;
        if http {
            return self.tcp_to_http(now, id);
        }
        self.stats.downstream_cx_tcp += 1;
        let TcpPhase::Inspecting { candidates } = &session.phase else {
            return;
        };
        let inspect =
            tcp_match::needs_client_hello(&session.snapshot.config.tcp_routes, candidates);
        if !inspect {
            session.deadline = None;
            return self.tcp_choose(now, id, None, &[]);
        }
        let at = now + INSPECT_TIMEOUT;
        session.deadline = Some(at);
        self.arm_conn_timer(id, at);
        self.on_tcp_down_data(now, id);
    }

    /// The connection is HTTP after all: back to the HTTP connection manager with every byte
    /// it sent.
    fn tcp_to_http(&mut self, now: Instant, id: DownstreamId) {
        let Some(down) = self.conns.open_down_mut(id) else {
            return;
        };
        down.tcp = None;
        down.state = DownState::Idle;
        #[cfg(feature = "mutants")]
        if crate::mutants::route().sniff_handoff_drops_bytes {
            down.recv.clear();
        }
        // A client that already finished sending gets its answer, then the close.
        down.close_after_response = down.read_closed;
        let at = now + self.snapshot.config.http.idle_timeout;
        down.idle_deadline = Some(at);
        self.arm_conn_timer(id, at);
        // The bytes wait in the receive buffer; the HTTP codec reads them once this call
        // unwinds (`Work::Resume`).
        self.queue_resume(id);
    }

    /// On a terminating gateway port whose servers differ (Envoy matches one listener's
    /// filter chains, terminating or not, by the SNI): `true` while the connection is not
    /// (yet) an L4 one. A connection terminated for an HTTP server is the HTTP connection
    /// manager's (its server's `https` routes); one terminated for a TCP server takes that
    /// server's chain, by the SNI the handshake saw; a passed-through one goes on to the
    /// ClientHello peek, whose bytes the transform handed on untouched. Each kind is only
    /// ever taken by chains of its own kind ([`crate::config::TcpRoute::terminated`]).
    fn tcp_awaits_chain(&mut self, now: Instant, id: DownstreamId) -> bool {
        let conn = self.conns.get(id.conn());
        let chain = conn.and_then(|c| c.transport.chain());
        let sni = conn.and_then(|c| c.transport.server_name().map(str::to_string));
        let Some(session) = self.session(id) else {
            return false;
        };
        if !session.awaiting_chain {
            return false;
        }
        let terminated = match chain {
            None => return true,
            Some(ChainKind::Terminated) => {
                self.tcp_to_http(now, id);
                return true;
            }
            Some(ChainKind::PassedThrough) => false,
            Some(ChainKind::TerminatedTcp) => true,
        };
        session.awaiting_chain = false;
        let routes = &session.snapshot.config.tcp_routes;
        if let TcpPhase::Inspecting { candidates } = &mut session.phase {
            candidates.retain(|&i| routes.get(i).is_some_and(|r| r.terminated == terminated));
        }
        self.stats.downstream_cx_tcp += 1;
        if terminated {
            // The ClientHello was read by the TLS layer, not left for `peek`: its SNI picks
            // the chain now, and the decrypted bytes follow once the upstream is connected.
            if let Some(session) = self.session(id) {
                session.deadline = None;
            }
            #[cfg(feature = "mutants")]
            let sni = sni.filter(|_| !crate::mutants::route().gateway_tcp_chain_without_sni);
            self.tcp_choose(now, id, sni, &[]);
        }
        false
    }

    fn session(&mut self, id: DownstreamId) -> Option<&mut TcpSession> {
        self.conns.down_mut(id)?.tcp.as_deref_mut()
    }

    /// The chain for the server name and ALPN protocols read (or none), then a destination
    /// and a host.
    fn tcp_choose(&mut self, now: Instant, id: DownstreamId, sni: Option<String>, alpn: &[String]) {
        let Some(session) = self.session(id) else {
            return;
        };
        let TcpPhase::Inspecting { candidates } = &session.phase else {
            return;
        };
        let snapshot = session.snapshot.clone();
        let routes = &snapshot.config.tcp_routes;
        let chosen = tcp_match::select(routes, candidates, sni.as_deref(), alpn);
        session.sni = sni;
        let Some(route) = chosen.and_then(|i| routes.get(i)) else {
            if session.catch_all {
                return self.tcp_catch_all(now, id);
            }
            // Envoy: no filter chain matched; the connection is closed.
            return self.tcp_end(now, id, Some(ResponseFlag::NoRouteFound));
        };
        session.route = Some(route.name.as_str().into());
        session.idle_timeout = route.idle_timeout;
        session.rbac = route.authorization.clone();
        if route.passthrough {
            return self.tcp_passthrough(now, id);
        }
        let Some(dest) = tcp_match::pick(&route.destinations, &mut self.rng) else {
            return self.tcp_end(now, id, Some(ResponseFlag::NoHealthyUpstream));
        };
        let cluster = dest.cluster.clone();
        self.tcp_connect(now, id, &cluster);
    }

    /// A redirected outbound connection no chain takes: pilot's `PassthroughFilterChain`, a
    /// `tcp_proxy` to `PassthroughCluster` (the original destination) when the listener
    /// passes unknown destinations through (ALLOW_ANY), else to `BlackHoleCluster`, whose
    /// lack of hosts closes the connection (UH) before a byte is relayed (REGISTRY_ONLY).
    fn tcp_catch_all(&mut self, now: Instant, id: DownstreamId) {
        let Some(down) = self.conns.down(id) else {
            return;
        };
        let snapshot = self.snapshot.clone();
        let allow_any =
            (snapshot.listener_named(&down.listener)).is_some_and(|(l, _)| l.passthrough);
        let Some(session) = self.session(id) else {
            return;
        };
        debug_assert!(
            session.catch_all,
            "only a redirected outbound connection falls through"
        );
        session.idle_timeout = Some(crate::config::DEFAULT_TCP_IDLE_TIMEOUT);
        session.rbac = None;
        if allow_any {
            session.route = Some(PASSTHROUGH_CLUSTER.into());
            return self.tcp_passthrough(now, id);
        }
        session.route = Some(BLACK_HOLE_CLUSTER.into());
        session.cluster = Some(BLACK_HOLE_CLUSTER.into());
        self.tcp_end(now, id, Some(ResponseFlag::NoHealthyUpstream));
    }

    /// A passthrough chain: to the connection's original destination, or on an inbound
    /// capture listener the workload at that port, through a cluster made for that address
    /// (Envoy's ORIGINAL_DST `InboundPassthroughCluster`).
    fn tcp_passthrough(&mut self, now: Instant, id: DownstreamId) {
        let Some(down) = self.conns.down(id) else {
            return;
        };
        let (original, local) = (down.original_dst, down.local);
        let snapshot = self.snapshot.clone();
        let Some(target) = Self::passthrough_target(&snapshot, &down.listener, original, local)
        else {
            return self.tcp_end(now, id, Some(ResponseFlag::NoRouteFound));
        };
        let slot = self.passthrough_slot(now, target);
        let name = self.clusters.slot_mut(slot).map(|s| s.log_name().into());
        if let Some(session) = self.session(id) {
            session.cluster = name;
        }
        self.tcp_connect_slot(now, id, slot);
    }

    /// Open the upstream connection for `id` to a host of `cluster`.
    fn tcp_connect(&mut self, now: Instant, id: DownstreamId, cluster: &str) {
        if let Some(session) = self.session(id) {
            session.cluster = Some(cluster.into());
        }
        let Some(slot) = self.clusters.lookup(cluster) else {
            return self.tcp_end(now, id, Some(ResponseFlag::NoHealthyUpstream));
        };
        self.tcp_connect_slot(now, id, slot);
    }

    /// Open the upstream connection for `id` to a host of the cluster in `slot`.
    fn tcp_connect_slot(&mut self, now: Instant, id: DownstreamId, slot: usize) {
        let Some(s) = self.clusters.slot_mut(slot) else {
            return self.tcp_end(now, id, Some(ResponseFlag::NoHealthyUpstream));
        };
        let Ok(pick) = s.state.pick_hashed(&mut self.rng, &[], None) else {
            return self.tcp_end(now, id, Some(ResponseFlag::NoHealthyUpstream));
        };
        if !s.state.breaker_mut().try_open_connection() {
            self.stats.upstream_cx_overflow += 1;
            return self.tcp_end(now, id, Some(ResponseFlag::UpstreamOverflow));
        }
        let Some(up) = self.open_connection(now, slot, pick.host, None) else {
            return self.tcp_end(now, id, Some(ResponseFlag::NoHealthyUpstream));
        };
        let addr = self.conns.up(up).map(|u| u.addr);
        if let Some(u) = self.conns.up_mut(up) {
            u.state = UpState::Tcp(id);
        }
        if let Some(session) = self.session(id) {
            session.phase = TcpPhase::Connecting(up);
            session.upstream_host = addr;
        }
    }

    /// Bytes (or the end of them) from the client.
    pub(crate) fn on_tcp_down_data(&mut self, now: Instant, id: DownstreamId) {
        if self.tcp_awaits_chain(now, id) {
            return;
        }
        if !self.tcp_authorized(id) {
            return self.tcp_end(now, id, None);
        }
        let Some(down) = self.conns.open_down_mut(id) else {
            return;
        };
        let read_closed = down.read_closed;
        let Some(session) = down.tcp.as_deref_mut() else {
            return;
        };
        match session.phase {
            TcpPhase::Inspecting { .. } if session.detecting.is_some() => {
                match sniff(&down.recv) {
                    Sniff::NeedMore if !read_closed => {}
                    Sniff::Http => self.tcp_detected(now, id, true),
                    // Envoy's inspector: an EOF before a decision is not HTTP.
                    Sniff::NeedMore | Sniff::NotHttp => self.tcp_detected(now, id, false),
                }
            }
            TcpPhase::Inspecting { .. } => match peek(&down.recv) {
                Peek::NeedMore if !read_closed => {}
                Peek::ClientHello { sni, alpn } => self.tcp_choose(now, id, sni, &alpn),
                Peek::NeedMore | Peek::NotTls => self.tcp_choose(now, id, None, &[]),
            },
            TcpPhase::Connecting(_) => {}
            TcpPhase::Relaying(up) => {
                let data = down.recv.split().freeze();
                let mut deadline = None;
                if !data.is_empty() {
                    session.received += data.len() as u64;
                    session.touch(now);
                    deadline = session.deadline;
                    self.write(up, &data);
                }
                if let Some(at) = deadline {
                    self.arm_conn_timer(id, at);
                }
                if read_closed {
                    // Everything the client sent is on its way: pass its FIN on.
                    self.half_close(up);
                }
            }
            TcpPhase::Done => down.recv.clear(),
        }
    }

    /// Bytes from the upstream.
    pub(crate) fn on_tcp_up_data(&mut self, now: Instant, up: UpstreamId, id: DownstreamId) {
        let Some(u) = self.conns.open_up_mut(up) else {
            return;
        };
        let data = u.recv.split().freeze();
        let Some(session) = self.session(id) else {
            return self.close_upstream(now, up, false);
        };
        if data.is_empty() {
            return;
        }
        session.sent += data.len() as u64;
        session.touch(now);
        let deadline = session.deadline;
        self.write(id, &data);
        if let Some(at) = deadline {
            self.arm_conn_timer(id, at);
        }
        self.refresh_backpressure_from_up(now, up);
    }

    /// The client finished sending.
    pub(crate) fn on_tcp_down_eof(&mut self, now: Instant, id: DownstreamId) {
        let Some(session) = self.session(id) else {
            return;
        };
        session.down_eof = true;
        let up_eof = session.up_eof;
        let relaying = matches!(session.phase, TcpPhase::Relaying(_));
        let inspecting = matches!(session.phase, TcpPhase::Inspecting { .. });
        if inspecting || relaying {
            self.on_tcp_down_data(now, id);
        }
        if relaying && up_eof {
            self.tcp_end(now, id, None);
        }
    }

    /// The upstream finished sending: pass its FIN on to the client.
    pub(crate) fn on_tcp_up_eof(&mut self, now: Instant, up: UpstreamId, id: DownstreamId) {
        // Whatever arrived with the EOF goes first.
        self.on_tcp_up_data(now, up, id);
        let Some(session) = self.session(id) else {
            return;
        };
        session.up_eof = true;
        if session.down_eof {
            return self.tcp_end(now, id, None);
        }
        #[cfg(feature = "mutants")]
        if crate::mutants::route().tcp_upstream_eof_held {
            return;
        }
        self.half_close(id);
    }

    /// The client reset (or its transport failed): the upstream goes too.
    pub(crate) fn on_tcp_down_gone(&mut self, now: Instant, id: DownstreamId) {
        self.tcp_end(now, id, None);
    }

    /// The upstream reset: while connecting, a connect failure; afterwards the client is
    /// closed once what was relayed is written.
    pub(crate) fn on_tcp_up_gone(&mut self, now: Instant, up: UpstreamId, id: DownstreamId) {
        let connecting = self
            .session(id)
            .is_some_and(|s| s.phase == TcpPhase::Connecting(up));
        if connecting {
            return self.on_tcp_connect_failed(now, up, id);
        }
        self.on_tcp_up_data(now, up, id);
        self.tcp_end(now, id, None);
    }

    pub(crate) fn on_tcp_connected(&mut self, now: Instant, up: UpstreamId, id: DownstreamId) {
        let Some(session) = self.session(id) else {
            return self.close_upstream(now, up, false);
        };
        if session.phase != TcpPhase::Connecting(up) {
            return self.close_upstream(now, up, false);
        }
        session.phase = TcpPhase::Relaying(up);
        session.touch(now);
        let (deadline, down_eof) = (session.deadline, session.down_eof);
        self.report_host(now, up, Outcome::Response(200));
        if let Some(u) = self.conns.open_up_mut(up) {
            u.connect_deadline = None;
        }
        if let Some(at) = deadline {
            self.arm_conn_timer(id, at);
        }
        // What the client sent while we connected (the ClientHello, say) goes first.
        self.on_tcp_down_data(now, id);
        if down_eof {
            self.half_close(up);
        }
        self.set_reading(up, true);
        self.refresh_backpressure_from_down(now, id);
    }

    pub(crate) fn on_tcp_connect_failed(&mut self, now: Instant, up: UpstreamId, id: DownstreamId) {
        self.stats.upstream_cx_connect_fail += 1;
        self.report_host(now, up, Outcome::ConnectFailed);
        self.close_upstream(now, up, false);
        self.tcp_end(now, id, Some(ResponseFlag::UpstreamConnectionFailure));
    }

    /// The downstream connection's timer: the ClientHello wait or the idle timeout.
    pub(crate) fn on_tcp_timer(&mut self, now: Instant, id: DownstreamId) {
        let Some(session) = self.session(id) else {
            return;
        };
        match session.deadline {
            Some(at) if at <= now => {
                if let Some(detect) = session.detecting {
                    match detect {
                        Detect::ThenTcp => self.tcp_detected(now, id, false),
                        Detect::ThenClose => self.tcp_end(now, id, None),
                    }
                } else if session.awaiting_chain {
                    // No whole ClientHello in time on a terminating port: no chain to choose,
                    // and the TLS layer still waits for one.
                    self.tcp_end(now, id, None);
                } else if matches!(session.phase, TcpPhase::Inspecting { .. }) {
                    // continue_on_listener_filters_timeout: as if no SNI came.
                    self.tcp_choose(now, id, None, &[]);
                } else {
                    self.stats.tcp_idle_timeouts += 1;
                    self.tcp_end(now, id, None);
                }
            }
            Some(at) => self.arm_conn_timer(id, at),
            None => {}
        }
    }

    /// An upstream connection's timer: its connect timeout.
    pub(crate) fn on_tcp_up_timer(&mut self, now: Instant, up: UpstreamId, id: DownstreamId) {
        let Some(u) = self.conns.open_up_mut(up) else {
            return;
        };
        match u.connect_deadline {
            Some(at) if at <= now => self.on_tcp_connect_failed(now, up, id),
            Some(at) => self.arm_conn_timer(up, at),
            None => {}
        }
    }

    /// Outlier detection hears about the host `up` was opened to.
    fn report_host(&mut self, now: Instant, up: UpstreamId, outcome: Outcome) {
        let Some(u) = self.conns.up(up) else {
            return;
        };
        let (slot, host, host_gen, addr) = (u.slot, u.host, u.host_gen, u.addr);
        if let Some(s) = self.clusters.slot_mut(slot) {
            if let Some(h) = s.resolve_host(host_gen, host, addr) {
                s.state.report(now, h, outcome);
            }
        }
        self.arm_sweep(slot);
    }

    /// End the session once: close both sides (after what was relayed is written) and write
    /// its access-log record.
    pub(super) fn tcp_end(&mut self, now: Instant, id: DownstreamId, flag: Option<ResponseFlag>) {
        let Some(down) = self.conns.down_mut(id) else {
            return;
        };
        let peer = down.peer;
        let Some(session) = down.tcp.as_deref_mut() else {
            return;
        };
        if session.phase == TcpPhase::Done {
            return;
        }
        let up = session.upstream();
        session.phase = TcpPhase::Done;
        session.deadline = None;
        if let Some(flag) = flag {
            session.flags.push(flag);
            *self.stats.flags.entry(flag).or_default() += 1;
        }
        let log = RequestLog {
            downstream: id.conn(),
            peer: Some(peer),
            start: session.start,
            duration: now.saturating_since(session.start),
            method: std::borrow::Cow::Borrowed(""),
            authority: session.sni.clone().map(HeadStr::from).unwrap_or_default(),
            path: HeadStr::default(),
            status: 0,
            flags: std::mem::take(&mut session.flags),
            route: session.route.clone(),
            cluster: session.cluster.clone(),
            upstream_host: session.upstream_host,
            attempts: u32::from(session.upstream_host.is_some()),
            request_body_bytes: session.received,
            response_body_bytes: session.sent,
        };
        self.logs.push(log);
        if let Some(up) = up {
            self.close_upstream(now, up, true);
        }
        self.mark_closing(id, true);
    }
}
