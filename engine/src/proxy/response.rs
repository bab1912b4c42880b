//! Upstream responses: validating the head (interim 1xx, 101 upgrades, retriable statuses),
//! re-framing it for the client, relaying the body, and deciding whether the connection goes
//! back to the pool.

use bytes::Bytes;

use crate::cluster::Outcome;
use crate::http1::{self, names, BodyDecoder, BodyEvent, BodyFraming, ResponseHead, Version};
use crate::route;
use crate::time::Instant;

use super::conn::{DownState, Upstream};
use super::ids::{RequestId, UpstreamId};
use super::log::ResponseFlag;
use super::outbox::down_writer;
use super::request::{status_retriable, Failure, Inbound, Outbound, Phase};
use super::timers::TimerOwner;
use super::Engine;

impl Engine {
    /// Parse and forward as much of the response as has arrived.
    pub(crate) fn relay_response(&mut self, now: Instant, up_id: UpstreamId, req_id: RequestId) {
        loop {
            let Some(req) = self.requests.get(req_id) else {
                return;
            };
            if !req.response_started() {
                if !self.relay_response_head(now, up_id, req_id) {
                    return;
                }
                continue;
            }
            // Body.
            let Some(up) = self.conns.up_mut(up_id) else {
                return;
            };
            let Some(req) = self.requests.get_mut(req_id) else {
                return;
            };
            let Outbound::Relaying { decoder, .. } = &mut req.response.outbound else {
                return;
            };
            // A body the upstream stopped short of is a terminated connection (UC); one it
            // framed wrongly is a protocol error (UPE).
            let (event, truncated) = match decoder.decode(&mut up.recv) {
                Ok(BodyEvent::NeedMore) if up.read_closed => (decoder.finish_on_eof(), true),
                other => (other, false),
            };
            let (down, stream) = (req.down, req.stream);
            match event {
                Ok(BodyEvent::Data(data)) => {
                    req.response.body_out += data.len() as u64;
                    #[allow(unused_mut)]
                    let mut idle = req.snapshot.config.http.stream_idle_timeout;
                    #[cfg(feature = "mutants")]
                    if self.mutations.idle_timeout_from_running_config {
                        // Planted bug: the running config's timeout, not the snapshot's.
                        idle = self.snapshot.config.http.stream_idle_timeout;
                    }
                    req.timers.idle_deadline = Some(now + idle);
                    (self.timers).arm(
                        &mut req.timers.wake,
                        now + idle,
                        TimerOwner::Request(req_id),
                    );
                    if let Some((codec, out)) = down_writer(&mut self.conns, &mut self.dirty, down)
                    {
                        codec.encode_data(stream, &data, out);
                    }
                }
                Ok(BodyEvent::Done { trailers }) => {
                    if let Some((codec, out)) = down_writer(&mut self.conns, &mut self.dirty, down)
                    {
                        codec.encode_end(stream, &trailers, out);
                    }
                    self.response_complete(now, up_id, req_id);
                    return;
                }
                Ok(BodyEvent::NeedMore) => break,
                Err(_) => {
                    let flag = if truncated {
                        ResponseFlag::UpstreamConnectionTermination
                    } else {
                        ResponseFlag::UpstreamProtocolError
                    };
                    self.abort_downstream(now, req_id, flag);
                    return;
                }
            }
        }
        #[cfg(feature = "mutants")]
        if self.mutations.idle_timeout_from_running_config {
            // The planted bug's deadline can be earlier than the armed wake-up.
            self.arm_request_timer(req_id);
        }
        self.refresh_backpressure_from_up(now, up_id);
    }

    /// Try to parse a response head. Returns true if the caller should keep going.
    fn relay_response_head(&mut self, now: Instant, up_id: UpstreamId, req_id: RequestId) -> bool {
        let Some(up) = self.conns.up_mut(up_id) else {
            return false;
        };
        let Some(req) = self.requests.get(req_id) else {
            return false;
        };
        // The request's snapshot sets the limits its response is read under.
        let limits = http1::Limits::from(&req.snapshot.config.http);
        let pool = &mut self.header_pool;
        let parsed =
            http1::take_response_head_pooled(&mut up.recv, &limits, &req.head.method, pool);
        let mut head = match parsed {
            Ok(Some(head)) => head,
            Ok(None) => {
                if up.read_closed {
                    let failure = reset_kind(up);
                    self.attempt_failed(now, req_id, failure);
                }
                return false;
            }
            Err(_) => {
                self.attempt_failed(now, req_id, Failure::ProtocolError);
                return false;
            }
        };
        let (down, stream) = (req.down, req.stream);
        let down_version = req.down_version;
        let wants_upgrade = req.head.upgrade.is_some();
        if (100..200).contains(&head.status) {
            if head.status == 101 {
                if !wants_upgrade {
                    self.attempt_failed(now, req_id, Failure::ProtocolError);
                    return false;
                }
                return self.upgrade_accepted(now, up_id, req_id, head);
            }
            // Envoy's codec passes on only 100, 102 and 103 (`HeaderUtility::isSpecial1xx`) and
            // drops any other 1xx; for those it passes on, the router gives up retrying
            // (`Filter::onUpstream1xxHeaders` resets its retry state: what follows the interim
            // answer is the response).
            let special = matches!(head.status, 100 | 102 | 103);
            #[cfg(feature = "mutants")]
            let ends_retrying = special && !self.mutations.interim_keeps_retrying;
            #[cfg(not(feature = "mutants"))]
            let ends_retrying = special;
            if ends_retrying {
                if let Some(req) = self.requests.get_mut(req_id) {
                    req.tries.interim_seen = true;
                }
            }
            // We answered 100-continue ourselves; 102 and 103 go on to 1.1 clients (RFC 9110
            // §15.2: never to an HTTP/1.0 one).
            if special && head.status != 100 && down_version == Version::Http11 {
                http1::strip_hop_by_hop(&mut head.headers);
                head.framing = BodyFraming::None;
                head.keep_alive = true;
                if let Some((codec, out)) = down_writer(&mut self.conns, &mut self.dirty, down) {
                    codec.encode_interim(stream, &head, out);
                }
            }
            return true;
        }
        // A final response: report it, and retry it if the policy says so.
        self.touch(now, req_id);
        let status = head.status;
        if let Some((slot, host)) = self.attempt_host(req_id) {
            if let Some(s) = self.clusters.slot_mut(slot) {
                s.state.report(now, host, Outcome::Response(status));
            }
            self.arm_sweep(slot);
        }
        #[allow(unused_mut)]
        let mut retriable = self.requests.get(req_id).is_some_and(|r| {
            r.route_config()
                .is_some_and(|route| status_retriable(&route.retries.retry_on, status))
        });
        #[cfg(feature = "mutants")]
        if self.mutations.gateway_error_retries_500 {
            // Planted bug: gateway-error read as 500..=504.
            retriable |= (500..=504).contains(&status)
                && self.requests.get(req_id).is_some_and(|r| {
                    r.route_config()
                        .is_some_and(|route| route.retries.retry_on.gateway_error)
                });
        }
        if retriable && self.try_retry_after_response(now, req_id, status) {
            return false;
        }
        self.start_response(now, up_id, req_id, head);
        true
    }

    /// Planted bug `retry_one_attempt_too_many`: one more retry allowed.
    #[allow(unused_variables)]
    fn mutation_one_attempt_too_many(&self, used: u32, attempts: u32) -> bool {
        #[cfg(feature = "mutants")]
        if self.mutations.retry_one_attempt_too_many {
            return used <= attempts;
        }
        false
    }

    /// The current attempt's (slot, host index).
    fn attempt_host(&self, req_id: RequestId) -> Option<(usize, usize)> {
        let req = self.requests.get(req_id)?;
        let slot = req.slot?;
        let (generation, host, addr) = req.tries.host?;
        let s = self.clusters.slot(slot)?;
        let host = s.resolve_host(generation, host, addr)?;
        Some((slot, host))
    }

    fn try_retry_after_response(&mut self, now: Instant, req_id: RequestId, status: u16) -> bool {
        let allowed = {
            let Some(req) = self.requests.get(req_id) else {
                return false;
            };
            // Only an attempt that is on a connection has a response to retry.
            if !matches!(req.phase, Phase::Upstream { .. }) {
                return false;
            }
            let policy = req.retry_policy();
            !req.response_started()
                && !req.tries.interim_seen
                && req.body.replay.is_some()
                && (req.tries.count.saturating_sub(1) < policy.attempts
                    || self.mutation_one_attempt_too_many(
                        req.tries.count.saturating_sub(1),
                        policy.attempts,
                    ))
                && req.timers.deadline.is_none_or(|d| d > now)
        };
        if !allowed {
            return false;
        }
        // The response's body will not be read, so the connection can't be reused: detach
        // (closing the connection) without a second outlier report, then schedule.
        self.detach_attempt(now, req_id, None);
        if self.try_retry(now, req_id, Failure::Status(status)) {
            return true;
        }
        // Retry refused by the breaker: answer what we know.
        self.local_reply(
            now,
            req_id,
            status,
            Some(ResponseFlag::UpstreamRetryLimitExceeded),
            "upstream retry limit exceeded",
            &[],
        );
        true
    }

    /// Send the response head downstream and set up body relaying.
    fn start_response(
        &mut self,
        now: Instant,
        up_id: UpstreamId,
        req_id: RequestId,
        mut head: ResponseHead,
    ) {
        // Body bytes that came with the head go out right behind it: room for them (and a
        // chunk header) in the same buffer.
        let body_ready = match self.conns.up(up_id) {
            Some(up) if !up.recv.is_empty() => up.recv.len() + 32,
            _ => 0,
        };
        let Some(req) = self.requests.get_mut(req_id) else {
            return;
        };
        #[cfg(feature = "mutants")]
        if self.mutations.route_timeout_stops_at_head {
            // Planted bug: the route deadline no longer covers the body.
            req.timers.deadline = None;
        }
        let is_head = req.head.method == http::Method::HEAD;
        // Content-Length of a HEAD or 304 answer describes the body it would have had: keep it.
        let keep_length = (is_head || head.status == 304)
            .then(|| head.headers.get_shared(&names::CONTENT_LENGTH))
            .flatten();
        // Content codings applied as transfer codings (`gzip, chunked`) describe the bytes we
        // relay as they are: they must reach the client, while our own chunking is re-derived.
        let codings = transfer_codings_besides_chunked(&head.headers);
        http1::strip_hop_by_hop(&mut head.headers);
        if let Some(length) = keep_length {
            head.headers.insert(names::CONTENT_LENGTH, length);
        }
        // The destination's edits, then the route's: Envoy's WeightedClusterEntry evaluates
        // its own parser before the route's (`finalizeResponseHeaders`), so a route's `set`
        // or `remove` wins over its destination's.
        let ops = [
            req.destination().map(|d| &d.response_headers),
            req.route_config().map(|r| &r.response_headers),
        ];
        #[cfg(feature = "mutants")]
        let ops = if crate::mutants::route().destination_edits_after_route {
            [ops[1], ops[0]]
        } else {
            ops
        };
        for ops in ops.into_iter().flatten() {
            route::apply_header_ops(ops, &mut head.headers);
        }
        super::cors_encode::decorate_response(req, &mut head.headers);
        // After the route's edits, as Envoy's router adds `downstream_set_cookies_`.
        if let Some(cookie) = req
            .set_cookie
            .as_deref()
            .filter(|c| http1::valid_value(c.as_bytes()))
        {
            head.headers
                .append(names::SET_COOKIE, Bytes::copy_from_slice(cookie.as_bytes()));
        }
        head.headers
            .append(names::VIA, Bytes::from_static(b"1.1 trellis"));
        let upstream_framing = head.framing;
        let upstream_keep_alive = head.keep_alive;
        #[allow(unused_mut)]
        let mut framing_version = req.down_version;
        #[cfg(feature = "mutants")]
        if self.mutations.http10_sent_chunked {
            framing_version = Version::Http11;
        }
        let down_framing = match (upstream_framing, framing_version) {
            (BodyFraming::CloseDelimited, Version::Http11) => BodyFraming::Chunked,
            (BodyFraming::Chunked, Version::Http10) => BodyFraming::CloseDelimited,
            (f, _) => f,
        };
        if let Some(codings) = codings {
            if req.down_version == Version::Http11 {
                head.headers.insert(names::TRANSFER_ENCODING, codings);
            }
        }
        let down = req.down;
        let draining = self.conns.down(down).is_some_and(|d| d.draining);
        let close_down = !req.down_keep_alive
            || !req.body_done()
            || down_framing == BodyFraming::CloseDelimited
            || draining;
        #[allow(unused_mut)]
        let mut announce = req.down_version == Version::Http10 && !close_down;
        #[cfg(feature = "mutants")]
        if self.mutations.http10_keep_alive_unannounced {
            announce = false;
        }
        if announce {
            // An HTTP/1.0 client only keeps the connection when told so.
            head.headers
                .insert(names::CONNECTION, Bytes::from_static(b"keep-alive"));
        }
        head.version = Version::Http11;
        head.framing = down_framing;
        head.keep_alive = !close_down;
        req.response.status = head.status;
        let limits = http1::Limits::from(&req.snapshot.config.http);
        req.response.outbound = Outbound::Relaying {
            decoder: BodyDecoder::new(upstream_framing, &limits),
            upstream_keep_alive,
        };
        if close_down {
            if let Some(d) = self.conns.down_mut(down) {
                d.close_after_response = true;
            }
        }
        let stream = req.stream;
        if let Some((codec, out)) = down_writer(&mut self.conns, &mut self.dirty, down) {
            codec.encode_head(stream, &head, body_ready, out);
        }
        self.header_pool.give(head.headers);
        let _ = now;
    }

    /// 101 Switching Protocols: both sides become a raw relay.
    fn upgrade_accepted(
        &mut self,
        now: Instant,
        up_id: UpstreamId,
        req_id: RequestId,
        mut head: ResponseHead,
    ) -> bool {
        let Some(req) = self.requests.get_mut(req_id) else {
            return false;
        };
        let (down, stream) = (req.down, req.stream);
        let protocol = req.head.upgrade.clone().unwrap_or_default();
        http1::strip_hop_by_hop(&mut head.headers);
        if http1::valid_value(protocol.as_bytes()) {
            head.headers.insert(names::UPGRADE, protocol.into());
        }
        head.headers
            .insert(names::CONNECTION, Bytes::from_static(b"upgrade"));
        head.framing = BodyFraming::None;
        head.keep_alive = true;
        req.response.status = 101;
        req.response.outbound = Outbound::Written;
        if let Some((codec, out)) = down_writer(&mut self.conns, &mut self.dirty, down) {
            codec.encode_head(stream, &head, 0, out);
        }
        // The request is over as an HTTP exchange; the connections live on as a tunnel.
        if let Some(r) = self.requests.get_mut(req_id) {
            r.set_phase(Phase::Done);
            if let Inbound::Reading = r.body.inbound {
                r.body.inbound = Inbound::Done {
                    trailers: http1::Trailers::none(),
                };
            }
        }
        let leftover = self
            .up_mut(up_id)
            .map(|u| u.recv.split().freeze())
            .unwrap_or_default();
        if let Some((slot, host)) = self.attempt_host(req_id) {
            if let Some(s) = self.clusters.slot_mut(slot) {
                s.state.request_finished(host);
            }
        }
        if let Some(d) = self.conns.down_mut(down) {
            d.state = DownState::Idle; // finish_request must not close it
        }
        self.finish_request(now, req_id);
        self.start_tunnel(down, up_id, leftover);
        false
    }

    /// The response was relayed whole.
    fn response_complete(&mut self, now: Instant, up_id: UpstreamId, req_id: RequestId) {
        let reusable = {
            let Some(up) = self.conns.up(up_id) else {
                return;
            };
            let req = self.requests.get(req_id);
            let resp_keep_alive = req.is_some_and(|r| match &r.response.outbound {
                Outbound::Relaying {
                    decoder,
                    upstream_keep_alive,
                    ..
                } => decoder.is_done() && *upstream_keep_alive,
                _ => false,
            });
            resp_keep_alive
                && !up.read_closed
                && up.recv.is_empty()
                && req.is_some_and(|r| r.body_done() && r.body.unsent.is_empty())
        };
        if let Some((slot, host)) = self.attempt_host(req_id) {
            if let Some(s) = self.clusters.slot_mut(slot) {
                s.state.request_finished(host);
            }
        }
        if let Some(req) = self.requests.get_mut(req_id) {
            // The connection outlives the request: detach without closing it.
            req.set_phase(Phase::Done);
            if std::mem::take(&mut req.tries.holds_request) {
                if let Some(s) = req.slot.and_then(|s| self.clusters.slot_mut(s)) {
                    s.state.breaker_mut().request_done();
                }
            }
        }
        if reusable {
            self.release_upstream(now, up_id);
        } else {
            self.close_upstream(now, up_id, true);
        }
        self.finish_request(now, req_id);
    }
}

/// The transfer codings of a response other than `chunked` (e.g. `gzip`), joined, if any.
fn transfer_codings_besides_chunked(headers: &http1::Fields) -> Option<Bytes> {
    let mut codings: Vec<&str> = Vec::new();
    for value in headers.get_all(&names::TRANSFER_ENCODING) {
        let Some(text) = http1::value_str(value) else {
            continue;
        };
        codings.extend(
            text.split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("chunked")),
        );
    }
    if codings.is_empty() {
        return None;
    }
    let joined = codings.join(", ");
    http1::valid_value(joined.as_bytes()).then(|| joined.into())
}

/// How a connection that closed before a response head failed: a reused connection that sent
/// nothing back is stale (retriable under `refused-stream`), anything else a reset.
pub(crate) fn reset_kind(up: &Upstream) -> Failure {
    if up.requests > 1 && up.recv.is_empty() {
        Failure::StaleConnection
    } else {
        Failure::Reset
    }
}
