//! Routing a request: the route table decides forward, redirect or direct response; faults
//! are injected (delay, then abort); the head is rewritten for the upstream (hop-by-hop fields
//! out, header edits and proxy fields in); unknown hosts may pass through (Istio ALLOW_ANY).

use crate::codec::StreamId;
use crate::config::{Route, RouteAction, WeightedCluster};
use crate::http1::{self, BodyEncoder, BodyFraming, RequestHead, Version};
use crate::route::{self, RouteOutcome, RouteRequest};
use crate::time::Instant;

use super::conn::DownState;
use super::ids::{DownstreamId, RequestId};
use super::log::ResponseFlag;
use super::request::{
    Inbound, Phase, Request, RequestBody, RequestTimers, ResponseState, RouteRef, Tries,
};
use super::snapshot::Snapshot;
use super::Engine;

impl Engine {
    /// A complete request head arrived on `down`; create the request and route it.
    pub(crate) fn start_request(
        &mut self,
        now: Instant,
        down: DownstreamId,
        stream: StreamId,
        head: RequestHead,
    ) {
        self.stats.downstream_rq_total += 1;
        let snapshot = self.snapshot.clone();
        let (listener, source_labels, port, passthrough) = match self.conns.down(down) {
            Some(d) => (
                d.listener.clone(),
                d.source_labels.clone(),
                d.original_dst.map(|a| a.port()).unwrap_or(d.local.port()),
                d.original_dst,
            ),
            _ => return,
        };
        // Envoy's :scheme: https when the client's connection is TLS (a gateway's HTTPS
        // server, or mesh mTLS), which VirtualService `scheme` matches see.
        let scheme = match self.conns.get(down.conn()) {
            Some(c) if !c.transport.is_plain() => "https",
            _ => "http",
        };
        let mut head = head;
        self.forward_client_cert(down, &listener, &mut head.headers);
        let down_keep_alive = head.keep_alive;
        let inbound = match head.framing {
            BodyFraming::None => Inbound::Done {
                trailers: http::HeaderMap::new(),
            },
            _ => Inbound::Reading,
        };
        let request = Request {
            down,
            stream,
            snapshot: snapshot.clone(),
            start: now,
            original_target: None,
            original_authority: None,
            redirect_location: None,
            set_cookie: None,
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
        };
        let id = self.requests.insert_with(|_| request);
        self.arm_request_timer(id);
        if let Some(d) = self.conns.down_mut(down) {
            d.state = DownState::Active(id);
            d.head_deadline = None;
            d.idle_deadline = None;
        }
        if !self.authorize(now, id, down, &listener) {
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

        let Some((_, table)) = snapshot.listener_named(&listener) else {
            self.local_reply(now, id, 404, Some(ResponseFlag::NoRouteFound), "", &[]);
            return;
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
                Some(addr) => {
                    let addr = Self::passthrough_target(&snapshot, &listener, addr);
                    self.forward_passthrough(now, id, addr)
                }
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

    /// The answer of a route that redirects or answers itself, once its faults are past.
    fn answer_locally(&mut self, now: Instant, id: RequestId) {
        let Some(req) = self.requests.get(id) else {
            return;
        };
        let Some(route) = req.route_config() else {
            return;
        };
        // Envoy sends a route's `response_headers_to_add` with its direct responses and
        // redirects.
        let (status, body, headers) = match &route.action {
            RouteAction::DirectResponse { status, body } => (
                *status,
                body.clone().unwrap_or_default(),
                local_answer_headers(route, &[]),
            ),
            RouteAction::Redirect(redirect) => {
                let location = req.redirect_location.clone().unwrap_or_else(|| {
                    route::redirect_location(
                        redirect,
                        "http",
                        &req.head.authority,
                        &req.head.target,
                    )
                });
                let headers = local_answer_headers(route, &[("location", &location)]);
                (route::redirect_status(redirect), String::new(), headers)
            }
            RouteAction::Forward(_) => {
                debug_assert!(false, "answer_locally on a forwarding route");
                return;
            }
        };
        let refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        self.local_reply(now, id, status, None, &body, &refs);
    }

    /// The fault filter's delay (drawn with its percentage), then [`Self::after_delay`].
    fn inject_delay(&mut self, now: Instant, id: RequestId, route: &crate::config::Route) {
        let delay = route.fault.as_ref().and_then(|f| f.delay.as_ref());
        if let Some(delay) = delay.filter(|d| self.rng.chance_percent(d.percent)) {
            let Some(req) = self.requests.get_mut(id) else {
                return;
            };
            req.response.flags.push(ResponseFlag::DelayInjected);
            req.set_phase(Phase::FaultDelay {
                resume_at: now + delay.fixed,
            });
            self.arm_request_timer(id);
            return;
        }
        self.after_delay(now, id);
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
        #[cfg(feature = "mutants")]
        let inclusive = self.mutations.weighted_pick_inclusive;
        #[cfg(not(feature = "mutants"))]
        let inclusive = false;
        let Some(dest_index) = route::weighted::pick_weighted_with(dests, &mut self.rng, inclusive)
            .and_then(|d| dests.iter().position(|x| std::ptr::eq(x, d)))
        else {
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
            req.original_target = Some(std::mem::replace(&mut req.head.target, path));
        }
        // A destination's own Host rewrite wins over the route's (Envoy's per-cluster
        // `host_rewrite_literal`).
        let authority = dests[dest_index]
            .authority
            .clone()
            .or_else(|| route.rewrite.as_ref().and_then(|r| r.authority.clone()));
        if let Some(authority) = authority {
            req.original_authority = Some(std::mem::replace(&mut req.head.authority, authority));
        }
        prepare_upstream_head(
            &mut req.head,
            Some(route),
            Some(&dests[dest_index]),
            &mut self.rng,
        );
        if slot.is_none() {
            self.no_healthy_upstream(now, id);
            return;
        }
        self.continue_expect(id);
        self.inject_delay(now, id, route);
    }

    /// `x-forwarded-client-cert` as Envoy's connection manager leaves it before routing
    /// (`ConnectionManagerUtility::mutateXfccRequestHeader`): on an inbound listener, an mTLS
    /// client's certificate is appended (Istio's APPEND_FORWARD); every other request loses
    /// the header, so no client can claim an identity it did not prove (SANITIZE, Envoy's
    /// default, which Istio keeps on outbound listeners).
    fn forward_client_cert(
        &self,
        down: DownstreamId,
        listener: &str,
        headers: &mut http::HeaderMap,
    ) {
        let inbound = self
            .snapshot
            .listener_named(listener)
            .is_some_and(|(l, _)| l.direction == crate::config::Direction::Inbound);
        let details = self
            .conns
            .get(down.conn())
            .and_then(|c| c.transport.client_cert_details());
        match details {
            Some(details) if inbound => {
                let mut value = String::new();
                for v in headers.get_all(&http1::X_FORWARDED_CLIENT_CERT) {
                    if let Ok(v) = v.to_str() {
                        value.push_str(v);
                        value.push(',');
                    }
                }
                value.push_str(details);
                match http::HeaderValue::from_str(&value) {
                    Ok(v) => {
                        headers.insert(http1::X_FORWARDED_CLIENT_CERT, v);
                    }
                    Err(_) => {
                        headers.remove(&http1::X_FORWARDED_CLIENT_CERT);
                    }
                }
            }
            _ => {
                headers.remove(&http1::X_FORWARDED_CLIENT_CERT);
            }
        }
    }

    fn listener_passthrough(&self, snapshot: &Snapshot, listener: &str) -> bool {
        snapshot
            .listener_named(listener)
            .is_some_and(|(l, _)| l.passthrough)
    }

    /// Where a passthrough request goes: the original destination, or for an inbound capture
    /// listener the local workload at the original destination's port
    /// ([`crate::config::Listener::local_forward`]).
    fn passthrough_target(
        snapshot: &Snapshot,
        listener: &str,
        original: std::net::SocketAddr,
    ) -> std::net::SocketAddr {
        match snapshot
            .listener_named(listener)
            .and_then(|(l, _)| l.local_forward)
        {
            Some(ip) => std::net::SocketAddr::new(ip, original.port()),
            None => original,
        }
    }

    /// Forward to the connection's original destination through its passthrough cluster
    /// (no routing policy: no retries, no timeout, default pool limits), as Envoy's
    /// `PassthroughCluster` does.
    fn forward_passthrough(&mut self, now: Instant, id: RequestId, addr: std::net::SocketAddr) {
        let slot = self.passthrough_slot(now, addr);
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
    /// pass the expectation upstream.
    fn continue_expect(&mut self, id: RequestId) {
        let Some(req) = self.requests.get_mut(id) else {
            return;
        };
        if req.head.expect_continue {
            req.head.expect_continue = false;
            let down = req.down;
            if req.down_version == Version::Http11 && !req.body_done() {
                self.write(down, b"HTTP/1.1 100 Continue\r\n\r\n");
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
        let Some(value) = req.head.headers.get("max-forwards") else {
            return Some(false);
        };
        let parsed = value
            .to_str()
            .ok()
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
                let value = http::HeaderValue::from(n - 1);
                req.head.headers.insert("max-forwards", value);
                Some(false)
            }
        }
    }

    /// After any fault delay: maybe abort, else start the first attempt (or, for a route that
    /// redirects or answers itself, answer).
    pub(crate) fn after_delay(&mut self, now: Instant, id: RequestId) {
        let abort = self.requests.get(id).and_then(|r| {
            r.route_config()
                .and_then(|r| r.fault.as_ref()?.abort.clone())
        });
        if let Some(abort) = abort {
            #[allow(unused_mut)]
            let mut percent = abort.percent;
            #[cfg(feature = "mutants")]
            if self.mutations.fault_abort_uses_delay_percent {
                if let Some(d) = self.requests.get(id).and_then(|r| {
                    r.route_config()
                        .and_then(|r| r.fault.as_ref()?.delay.as_ref().map(|d| d.percent))
                }) {
                    percent = d;
                }
            }
            if self.rng.chance_percent(percent) {
                let grpc = abort.grpc_status.filter(|_| {
                    self.requests
                        .get(id)
                        .is_some_and(|r| is_grpc_request(&r.head.headers))
                });
                match grpc {
                    // Envoy's sendLocalReply for a gRPC request: trailers-only, HTTP 200, the
                    // status and the body text as `grpc-status` and `grpc-message`.
                    Some(code) => self.local_reply(
                        now,
                        id,
                        200,
                        Some(ResponseFlag::FaultInjected),
                        "",
                        &[
                            ("content-type", "application/grpc"),
                            ("grpc-status", &code.to_string()),
                            ("grpc-message", "fault filter abort"),
                        ],
                    ),
                    None => self.local_reply(
                        now,
                        id,
                        abort.status,
                        Some(ResponseFlag::FaultInjected),
                        "fault filter abort",
                        &[],
                    ),
                }
                return;
            }
        }
        let forwards = self.requests.get(id).is_some_and(|r| {
            r.route_config()
                .is_none_or(|r| matches!(r.action, RouteAction::Forward(_)))
        });
        if forwards {
            self.begin_attempt(now, id);
        } else {
            self.answer_locally(now, id);
        }
    }
}

/// Whether a request is gRPC: its `content-type` is `application/grpc`, or that followed by
/// `+` or `;` (Envoy's Grpc::Common::hasGrpcContentType, which isGrpcRequestHeaders uses).
fn is_grpc_request(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.strip_prefix("application/grpc"))
        .is_some_and(|tail| tail.is_empty() || tail.starts_with('+') || tail.starts_with(';'))
}

/// Turns the client's head into the upstream head: hop-by-hop fields go, route and destination
/// header edits apply, the authority may be rewritten, and the proxy adds its own fields.
fn prepare_upstream_head(
    head: &mut RequestHead,
    route: Option<&Route>,
    dest: Option<&WeightedCluster>,
    rng: &mut crate::rng::EngineRng,
) {
    let upgrade = head.upgrade.clone();
    http1::strip_hop_by_hop(&mut head.headers);
    head.upgrade = upgrade;
    head.headers.remove(http::header::EXPECT);
    if let Some(route) = route {
        route::apply_header_ops(&route.request_headers, &mut head.headers);
    }
    if let Some(dest) = dest {
        route::apply_header_ops(&dest.request_headers, &mut head.headers);
    }
    // Static names: inserting a custom name given as &str would allocate it every request.
    use http1::{X_FORWARDED_PROTO, X_REQUEST_ID};
    if !head.headers.contains_key(&X_REQUEST_ID) {
        head.headers.insert(X_REQUEST_ID, request_id(rng));
    }
    if !head.headers.contains_key(&X_FORWARDED_PROTO) {
        head.headers
            .insert(X_FORWARDED_PROTO, http::HeaderValue::from_static("http"));
    }
    // RFC 9110 §7.6.3: a proxy MUST add itself to Via.
    head.headers.append(
        http::header::VIA,
        http::HeaderValue::from_static("1.1 trellis"),
    );
    head.keep_alive = true;
}

/// A UUIDv4-shaped request id from the engine RNG (deterministic under a seed).
fn request_id(rng: &mut crate::rng::EngineRng) -> http::HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bits = u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64());
    // Version 4, variant 10xx, as RFC 9562 lays them out.
    bits = (bits & !(0xf << 76)) | (0x4 << 76);
    bits = (bits & !(0x3 << 62)) | (0x2 << 62);
    // Two hex digits per byte, most significant first, with the dashes of the 8-4-4-4-12 form
    // after bytes 4, 6, 8 and 10 (a byte at a time: this runs for every request without one).
    let mut out = [0u8; 36];
    let mut at = 0;
    for (i, byte) in bits.to_be_bytes().into_iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            if let Some(dash) = out.get_mut(at) {
                *dash = b'-';
            }
            at += 1;
        }
        if let Some(pair) = out.get_mut(at..at + 2) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0xf)];
        }
        at += 2;
    }
    http::HeaderValue::from_bytes(&out).unwrap_or_else(|_| http::HeaderValue::from_static("0"))
}

/// The headers of a redirect or direct response: `base` with the route's response header edits
/// applied (Envoy applies `response_headers_to_add`/`_to_remove` to both).
fn local_answer_headers(
    route: &crate::config::Route,
    base: &[(&str, &str)],
) -> Vec<(String, String)> {
    if route.response_headers.is_empty() {
        return base
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
    }
    let mut map = http::HeaderMap::new();
    for (n, v) in base {
        if let (Ok(n), Ok(v)) = (
            http::header::HeaderName::from_bytes(n.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            map.append(n, v);
        }
    }
    route::apply_header_ops(&route.response_headers, &mut map);
    map.iter()
        .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_uuid_v4_shaped_and_seeded() {
        let mut a = crate::rng::EngineRng::with_seed(5);
        let mut b = crate::rng::EngineRng::with_seed(5);
        let id = request_id(&mut a);
        assert_eq!(id, request_id(&mut b));
        let s = id.to_str().unwrap();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4", "{s}");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"), "{s}");
        assert_eq!(s.matches('-').count(), 4);
        // The layout as the nibble-at-a-time version wrote it, for a known value.
        let mut c = crate::rng::EngineRng::with_seed(5);
        let bits = u128::from(c.next_u64()) << 64 | u128::from(c.next_u64());
        let bits = (bits & !(0xf << 76)) | (0x4 << 76);
        let bits = (bits & !(0x3 << 62)) | (0x2 << 62);
        let hex = format!("{bits:032x}");
        let expected = format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        );
        assert_eq!(s, expected);
    }
}
