//! Routing a request: a new request is authorized, CONNECT and Max-Forwards are answered, and
//! the route table decides forward, redirect or direct response; a forwarded request gets its
//! destination, path and authority rewrites and its upstream head ([`super::head_edits`]);
//! unknown hosts may pass through (Istio ALLOW_ANY). Faults come next ([`super::faults`]).

use std::borrow::Cow;

use crate::codec::StreamId;
use crate::config::{RouteAction, WeightedCluster};
use crate::http1::{self, BodyEncoder, BodyFraming, RequestHead, Version};
use crate::route::{self, RouteOutcome, RouteRequest};
use crate::time::Instant;

use super::conn::DownState;
use super::head_edits::prepare_upstream_head;
use super::ids::{DownstreamId, RequestId};
use super::log::ResponseFlag;
use super::outbox::down_writer;
use super::request::{
    Inbound, Phase, Request, RequestBody, RequestTimers, ResponseState, RouteRef, Tries,
};
use super::snapshot::Snapshot;
use super::Engine;

impl Engine {
    /// A complete request head arrived on `down`; create the request and route it.
    ///
    /// Kept out of line: inlined into `on_downstream_data` (its one caller), the head was
    /// copied once more on the way in (one more `memcpy` call per request, measured).
    #[inline(never)]
    pub(crate) fn start_request(
        &mut self,
        now: Instant,
        down: DownstreamId,
        stream: StreamId,
        // `mut` here rather than a `let mut` rebinding, which copied the ~200-byte head.
        mut head: RequestHead,
    ) {
        self.stats.downstream_rq_total += 1;
        let snapshot = self.snapshot.clone();
        let (listener, source_labels, port, passthrough) = match self.conns.down(down) {
            Some(d) => (
                d.listener.clone(),
                d.source_labels.clone(),
                d.original_dst.map(|a| a.port()).unwrap_or(d.local.port()),
                Self::passthrough_target(&snapshot, &d.listener, d.original_dst, d.local),
            ),
            _ => return,
        };
        // Envoy's :scheme: https when the client's connection is TLS (a gateway's HTTPS
        // server, or mesh mTLS), which VirtualService `scheme` matches see.
        let scheme = match self.conns.get(down.conn()) {
            Some(c) if !c.transport.is_plain() => "https",
            _ => "http",
        };
        // Envoy normalizes `:path` as the head is accepted, before routing and every filter
        // (`ConnectionManagerUtility::maybeNormalizePath`), so routes, authorization,
        // rewrites, the log and the upstream all see the normalized path. CONNECT's
        // `host:port` and `*` have no path to normalize.
        let mode = snapshot.config.http.path_normalization;
        let mut refused = None;
        if head.target.starts_with('/') {
            match crate::path::normalize_target(&head.target, mode) {
                Ok(Cow::Borrowed(p)) if p.len() == head.target.len() => {}
                Ok(p) => {
                    let p = p.into_owned();
                    head.target = p.into();
                }
                Err(error) => refused = Some(error),
            }
        }
        // The listener's configuration, looked up by name once for the whole request: the
        // header edits here, authentication and authorization, and the route table below (the
        // snapshot is this call's own).
        let listener_entry = snapshot.listener_named(&listener);
        let listener_config = listener_entry.map(|(l, _)| l);
        self.forward_client_cert(down, listener_config, &mut head.headers);
        self.edge_headers(down, listener_config, &mut head.headers);
        let down_keep_alive = head.keep_alive;
        #[cfg(feature = "mutants")]
        let down_keep_alive = down_keep_alive
            || (head.version == http1::Version::Http11 && self.mutations.client_close_ignored);
        let inbound = match head.framing {
            BodyFraming::None => Inbound::Done {
                trailers: http1::Trailers::none(),
            },
            _ => Inbound::Reading,
        };
        // Built inside the closure, which `insert_with` inlines: the compiler can then write
        // the (kilobyte-sized) request straight into its slot instead of building it on the
        // stack and copying it in.
        let id = self.requests.insert_with(|_| Request {
            down,
            stream,
            snapshot: snapshot.clone(),
            start: now,
            original_target: None,
            original_authority: None,
            redirect_location: None,
            set_cookie: None,
            cors: None,
            down_version: head.version,
            down_keep_alive,
            route: None,
            slot: None,
            phase: Phase::Done,
            body: RequestBody::new(inbound),
            tries: Tries::default(),
            encoder: BodyEncoder::new(head.framing),
            timers: RequestTimers {
                idle_deadline: Some(now + snapshot.config.http.stream_idle_timeout),
                ..Default::default()
            },
            response: ResponseState::default(),
            mirrors: Vec::new(),
            head,
        });
        self.arm_request_timer(id);
        if let Some(d) = self.conns.down_mut(down) {
            d.state = DownState::Active(id);
            d.head_deadline = None;
            d.idle_deadline = None;
        }
        if let Some(error) = refused {
            // Envoy: `sendLocalReply(Code::BadRequest, ..., PathNormalizationFailed)`.
            self.local_reply(now, id, 400, None, &error.to_string(), &[]);
            return;
        }
        if !self.authorize(now, id, down, listener_config) {
            return;
        }

        // The sidecar routes HTTP; it does not open tunnels for CONNECT. What follows a CONNECT
        // on the connection would be tunnel bytes, so the connection closes after the answer.
        if self
            .requests
            .get(id)
            .is_some_and(|r| r.head.method == http::Method::CONNECT)
        {
            if let Some(d) = self.conns.down_mut(down) {
                d.close_after_response = true;
            }
            self.local_reply(
                now,
                id,
                405,
                None,
                "CONNECT is not supported by this proxy",
                &[(
                    "allow",
                    "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE",
                )],
            );
            return;
        }

        // Max-Forwards (RFC 9110 §7.6.2) for TRACE and OPTIONS: answer here at zero.
        if let Some(answered) = self.max_forwards(now, id) {
            if answered {
                return;
            }
        } else {
            return;
        }

        let Some((listener_config, listener_table)) = listener_entry else {
            self.local_reply(now, id, 404, Some(ResponseFlag::NoRouteFound), "", &[]);
            return;
        };
        // A gateway's HTTPS server routes with its own table (its filter chain's RDS); only
        // a terminating listener has filter chains.
        let table = match listener_config.tls {
            Some(_) => (self.conns.get(down.conn()))
                .and_then(|c| c.transport.route_table())
                .and_then(|name| snapshot.router.table(name))
                .unwrap_or(listener_table),
            None => listener_table,
        };
        let outcome = {
            let Some(req) = self.requests.get(id) else {
                return;
            };
            let rr = RouteRequest {
                authority: &req.head.authority,
                path: &req.head.target,
                method: req.head.method.as_str(),
                scheme,
                headers: &req.head.headers,
                port,
                source_labels: &source_labels,
            };
            match snapshot.router.route(table, &rr) {
                RouteOutcome::Matched(m) => Some((m.vhost_index, m.route_index, m.match_index)),
                RouteOutcome::NoVirtualHost | RouteOutcome::NoRoute { .. } => None,
            }
        };
        let Some((vhost, route_index, match_index)) = outcome else {
            // Istio's ALLOW_ANY: traffic for hosts the mesh doesn't know goes where it was headed.
            match passthrough.filter(|_| self.listener_passthrough(&snapshot, &listener)) {
                Some(target) => self.forward_passthrough(now, id, target),
                None => self.local_reply(now, id, 404, Some(ResponseFlag::NoRouteFound), "", &[]),
            }
            return;
        };
        let table_index = table.index();
        let Some((vhost_config, route)) = snapshot
            .config
            .route_tables
            .get(table_index)
            .and_then(|t| t.virtual_hosts.get(vhost))
            .and_then(|v| Some((v, v.routes.get(route_index)?)))
        else {
            self.local_reply(now, id, 404, Some(ResponseFlag::NoRouteFound), "", &[]);
            return;
        };
        let matched = crate::route::Matched {
            vhost: vhost_config,
            vhost_index: vhost,
            route,
            route_index,
            match_index,
        };
        // A preflight the CORS policy answers is the route's own answer, after its fault. Envoy
        // draws a weighted destination when it resolves the route, before any filter, and the
        // access log names it (`setUpstreamClusterInfo` in ActiveStream::refreshCachedRoute),
        // so the preflight's record carries a destination drawn by weight, never the first.
        if let Some(cors) = snapshot.router.cors(table_index, vhost, route_index) {
            if self.latch_cors(id, cors) {
                let dest_index = match &route.action {
                    RouteAction::Forward(dests) => self.pick_destination(dests).unwrap_or(0),
                    _ => 0,
                };
                self.set_route(id, table_index, vhost, route_index, dest_index);
                self.inject_delay(now, id, route);
                return;
            }
        }

        if let RouteAction::Redirect(redirect) = &route.action {
            if let Some(req) = self.requests.get_mut(id) {
                req.redirect_location = Some(crate::route::Router::redirect_location(
                    &matched,
                    redirect,
                    &req.head.authority,
                    &req.head.target,
                    port,
                ));
            }
        }
        match &route.action {
            RouteAction::DirectResponse { .. } | RouteAction::Redirect(_) => {
                // Pilot puts a rule's fault on its Envoy route whatever the action, and Envoy's
                // fault filter runs before the router: a redirect or a direct response is
                // delayed and aborted like a forwarded request.
                self.set_route(id, table_index, vhost, route_index, 0);
                #[cfg(feature = "mutants")]
                if crate::mutants::route().faults_skip_local_answers {
                    self.answer_locally(now, id);
                    return;
                }
                self.inject_delay(now, id, route);
            }
            RouteAction::Forward(dests) => {
                self.forward(now, id, &snapshot, table_index, &matched, dests);
            }
        }
    }

    /// The index of a weighted draw among `dests` (Istio `route[].weight`); `None` when every
    /// weight is 0.
    fn pick_destination(&mut self, dests: &[WeightedCluster]) -> Option<usize> {
        #[cfg(feature = "mutants")]
        let inclusive = self.mutations.weighted_pick_inclusive;
        #[cfg(not(feature = "mutants"))]
        let inclusive = false;
        route::weighted::pick_weighted_with(dests, &mut self.rng, inclusive)
            .and_then(|d| dests.iter().position(|x| std::ptr::eq(x, d)))
    }

    /// A route matched that forwards: pick the destination, rewrite the head, inject faults,
    /// and start the first attempt.
    fn forward(
        &mut self,
        now: Instant,
        id: RequestId,
        snapshot: &Snapshot,
        table_index: usize,
        matched: &crate::route::Matched<'_>,
        dests: &[WeightedCluster],
    ) {
        let route = matched.route;
        let Some(dest_index) = self.pick_destination(dests) else {
            self.no_healthy_upstream(now, id);
            return;
        };
        self.set_route(
            id,
            table_index,
            matched.vhost_index,
            matched.route_index,
            dest_index,
        );
        let slot = self.clusters.lookup(&dests[dest_index].cluster);
        let Some(req) = self.requests.get_mut(id) else {
            return;
        };
        req.slot = slot;
        if let Some(path) = snapshot.router.rewrite_path(matched, &req.head.target) {
            req.original_target = Some(std::mem::replace(&mut req.head.target, path.into()));
        }
        // A destination's own Host rewrite wins over the route's (Envoy's per-cluster
        // `host_rewrite_literal`).
        let authority = dests[dest_index]
            .authority
            .clone()
            .or_else(|| route.rewrite.as_ref().and_then(|r| r.authority.clone()));
        if let Some(authority) = authority {
            req.original_authority =
                Some(std::mem::replace(&mut req.head.authority, authority.into()));
        }
        prepare_upstream_head(
            &mut req.head,
            Some(route),
            Some(&dests[dest_index]),
            &mut self.rng,
        );
        // A destination whose cluster does not exist is answered 503 NC by the router, so
        // after the fault filter (`begin_attempt`); only a request that will be forwarded is
        // told to send its body.
        if slot.is_some() {
            self.continue_expect(id);
        }
        self.inject_delay(now, id, route);
    }

    fn listener_passthrough(&self, snapshot: &Snapshot, listener: &str) -> bool {
        snapshot
            .listener_named(listener)
            .is_some_and(|(l, _)| l.passthrough)
    }

    /// Where a passthrough connection or request on `listener` goes: its original
    /// destination; on an inbound capture listener the workload
    /// ([`crate::config::Listener::local_forward`]) at that port, the port being the one the
    /// connection was accepted on when it was not redirected (a capture listener bound on the
    /// workload port itself, as pilot's bind-to-port inbound listeners). `None`: nowhere —
    /// no original destination, or a capture target that is this very listener (Istio's
    /// inbound blackhole chain, `buildInboundBlackhole`, which stops such a loop).
    pub(super) fn passthrough_target(
        snapshot: &Snapshot,
        listener: &str,
        original: Option<std::net::SocketAddr>,
        local: std::net::SocketAddr,
    ) -> Option<PassthroughTarget> {
        let capture = (snapshot.listener_named(listener)).and_then(|(l, _)| l.local_forward);
        let Some(ip) = capture else {
            return original.map(|addr| PassthroughTarget {
                addr,
                cluster: crate::config::PASSTHROUGH_CLUSTER,
            });
        };
        let target = std::net::SocketAddr::new(ip, original.unwrap_or(local).port());
        (target != local).then_some(PassthroughTarget {
            addr: target,
            cluster: INBOUND_PASSTHROUGH_CLUSTER,
        })
    }

    /// Forward to the connection's original destination through its passthrough cluster
    /// (no routing policy: no retries, no timeout, default pool limits), as Envoy's
    /// `PassthroughCluster` does.
    fn forward_passthrough(&mut self, now: Instant, id: RequestId, target: PassthroughTarget) {
        let slot = self.passthrough_slot(now, target);
        let Some(req) = self.requests.get_mut(id) else {
            return;
        };
        req.slot = Some(slot);
        prepare_upstream_head(&mut req.head, None, None, &mut self.rng);
        self.continue_expect(id);
        self.begin_attempt(now, id);
    }

    fn set_route(&mut self, id: RequestId, table: usize, vhost: usize, route: usize, dest: usize) {
        if let Some(req) = self.requests.get_mut(id) {
            req.route = Some(RouteRef {
                table,
                vhost,
                route,
                dest,
            });
        }
    }

    /// Envoy answers `Expect: 100-continue` itself once it decided to forward, and does not
    /// pass the expectation upstream. Inline, the check only: most requests expect nothing
    /// (out of line or not, the whole function moved with unrelated changes, ~24 a request).
    #[inline]
    fn continue_expect(&mut self, id: RequestId) {
        if self
            .requests
            .get(id)
            .is_some_and(|r| r.head.expect_continue)
        {
            self.send_continue(id);
        }
    }

    /// [`Engine::continue_expect`] for a request that expects 100-continue.
    #[inline(never)]
    fn send_continue(&mut self, id: RequestId) {
        let Some(req) = self.requests.get_mut(id) else {
            return;
        };
        if req.head.expect_continue {
            req.head.expect_continue = false;
            if req.down_version == Version::Http11 && !req.body_done() {
                if let Some((codec, out)) = down_writer(&mut self.conns, &mut self.dirty, req.down)
                {
                    codec.encode_continue(req.stream, out);
                }
            }
        }
    }

    /// Handles Max-Forwards on TRACE/OPTIONS. Returns Some(false) to go on routing, Some(true)
    /// when answered here, None when the request is gone.
    fn max_forwards(&mut self, now: Instant, id: RequestId) -> Option<bool> {
        let req = self.requests.get_mut(id)?;
        let method = req.head.method.clone();
        if method != http::Method::TRACE && method != http::Method::OPTIONS {
            return Some(false);
        }
        let Some(value) = req.head.headers.get(&http1::names::MAX_FORWARDS) else {
            return Some(false);
        };
        let parsed = http1::value_str(value)
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok());
        match parsed {
            None => {
                self.local_reply(
                    now,
                    id,
                    400,
                    Some(ResponseFlag::DownstreamProtocolError),
                    "invalid max-forwards",
                    &[],
                );
                Some(true)
            }
            Some(0) if method == http::Method::OPTIONS => {
                self.local_reply(
                    now,
                    id,
                    200,
                    None,
                    "",
                    &[(
                        "allow",
                        "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE",
                    )],
                );
                Some(true)
            }
            Some(0) => {
                let mut echo = bytes::BytesMut::new();
                http1::encode_request_head(&req.head, &mut echo);
                let echo = String::from_utf8_lossy(&echo).into_owned();
                self.local_reply(
                    now,
                    id,
                    200,
                    None,
                    &echo,
                    &[("content-type", "message/http")],
                );
                Some(true)
            }
            Some(n) => {
                let value = (n - 1).to_string();
                req.head
                    .headers
                    .insert(http1::names::MAX_FORWARDS, value.into());
                Some(false)
            }
        }
    }
}

/// Pilot's name for the inbound passthrough cluster (`util.InboundPassthroughCluster`,
/// pilot/pkg/networking/util/util.go).
pub(crate) const INBOUND_PASSTHROUGH_CLUSTER: &str = "InboundPassthroughCluster";

/// Where a passthrough goes, and the cluster Envoy would name for it in logs and stats: the
/// outbound `PassthroughCluster` or the inbound capture's `InboundPassthroughCluster` (one
/// ORIGINAL_DST cluster each in Envoy, whose hosts are made per address; here a pool per
/// address, logged under the cluster's name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PassthroughTarget {
    pub addr: std::net::SocketAddr,
    pub cluster: &'static str,
}
