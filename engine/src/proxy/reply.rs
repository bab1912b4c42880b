//! Ending a request: mesh-generated answers (with Envoy's response flags and wording), cutting
//! a response that can't be completed, the access-log record, and what the client connection
//! does next (close, or wait for the next request: queued as deferred work when bytes wait).

use std::sync::Arc;

use crate::codec::LocalResponse;
use crate::http1::{self};
use crate::time::Instant;

use super::conn::DownState;
use super::ids::{DownstreamId, RequestId};
use super::log::{RequestLog, ResponseFlag};
use super::outbox::down_writer;
use super::request::Outbound;
use super::Engine;

/// A mesh-generated answer: status, response flag, body.
struct Reply<'a> {
    status: u16,
    flag: Option<ResponseFlag>,
    body: &'a str,
}

/// Whether an answer goes through Envoy's local-reply path, which finalizes the matched
/// route's response headers (`sendLocalReplyViaFilterChain`, source/common/http/filter_manager.cc),
/// or is encoded as the filter wrote it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Finalize {
    RouteEdits,
    AsIs,
}

impl Engine {
    /// 503 `UH`: no host of the cluster may take the request.
    pub(crate) fn no_healthy_upstream(&mut self, now: Instant, id: RequestId) {
        self.local_reply(
            now,
            id,
            503,
            Some(ResponseFlag::NoHealthyUpstream),
            "no healthy upstream",
            &[],
        );
    }

    /// The route's destination names a cluster the snapshot does not have: 503, empty body,
    /// flag NC, as Envoy's router answers (`Filter::decodeHeaders` in
    /// source/common/router/router.cc: `NoClusterFound`, `clusterNotFoundResponseCode()`, 503
    /// by default, body ""). Pilot routes to the cluster of a subset, port or host that does
    /// not exist and lets Envoy answer this (`GetDestinationCluster`).
    pub(crate) fn cluster_not_found(&mut self, now: Instant, id: RequestId) {
        self.local_reply(now, id, 503, Some(ResponseFlag::NoClusterFound), "", &[]);
    }

    /// The breaker refused: 503 with the overload marker, as Envoy's `x-envoy-overloaded`.
    pub(crate) fn overflow(&mut self, now: Instant, id: RequestId) {
        self.local_reply(
            now,
            id,
            503,
            Some(ResponseFlag::UpstreamOverflow),
            "upstream connect error or disconnect/reset before headers. reset reason: overflow",
            &[("x-envoy-overloaded", "true")],
        );
    }

    /// Answer the request from the mesh itself (routing result, fault, or mesh error).
    pub(crate) fn local_reply(
        &mut self,
        now: Instant,
        id: RequestId,
        status: u16,
        flag: Option<ResponseFlag>,
        body: &str,
        extra: &[(&str, &str)],
    ) {
        let reply = Reply { status, flag, body };
        self.reply(now, id, reply, extra, Finalize::RouteEdits);
    }

    /// A filter's own answer, encoded directly rather than through the local-reply path: the
    /// CORS filter's preflight response (`decoder_callbacks_->encodeHeaders` in
    /// source/extensions/filters/http/cors/cors_filter.cc), which the route's response edits
    /// never touch.
    pub(crate) fn filter_reply(
        &mut self,
        now: Instant,
        id: RequestId,
        status: u16,
        headers: &[(&str, &str)],
    ) {
        let reply = Reply {
            status,
            flag: None,
            body: "",
        };
        self.reply(now, id, reply, headers, Finalize::AsIs);
    }

    fn reply(
        &mut self,
        now: Instant,
        id: RequestId,
        reply: Reply<'_>,
        extra: &[(&str, &str)],
        finalize: Finalize,
    ) {
        let Reply { status, flag, body } = reply;
        self.detach_attempt(now, id, None);
        let Some(req) = self.requests.get_mut(id) else {
            return;
        };
        if req.response_started() {
            let flag = flag.unwrap_or(ResponseFlag::UpstreamConnectionTermination);
            self.abort_downstream(now, id, flag);
            return;
        }
        if let Some(flag) = flag {
            req.response.flags.push(flag);
            *self.stats.flags.entry(flag).or_default() += 1;
        }
        // Keep the connection only if the request was read whole; otherwise its unread body
        // would be taken for the next request.
        // HTTP/1.0 clients are not told about keep-alive by the local-reply encoder: close.
        let draining = self.conns.down(req.down).is_some_and(|d| d.draining);
        let close = !req.down_keep_alive
            || !req.body_done()
            || req.down_version == http1::Version::Http10
            || draining;
        // A route that forwards (Envoy: one with a route entry, whose cluster was drawn when it
        // matched) edits every local reply sent after it matched, a fault's abort or the
        // router's own 503/504 alike: the filter manager's local-reply path runs
        // `routeEntry()->finalizeResponseHeaders` (`sendLocalReplyViaFilterChain`,
        // source/common/http/filter_manager.cc), the destination's edits then the route's as
        // on a proxied answer. Direct responses and redirects carry theirs already
        // (`faults::answer_locally`); a request no route took has none.
        let edited = match finalize {
            Finalize::RouteEdits => route_edits_on_local_reply(req, extra),
            Finalize::AsIs => None,
        };
        #[cfg(feature = "mutants")]
        let edited = edited.filter(|_| !crate::mutants::route().local_replies_skip_route_edits);
        let mut headers: Vec<(&str, &str)> = match &edited {
            Some(fields) => fields
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect(),
            None => extra.to_vec(),
        };
        // CORS's encodeHeaders sets its fields over what the reply had.
        let cors = super::cors_encode::local_reply_fields(req);
        headers.retain(|(n, _)| !cors.iter().any(|(c, _)| c.eq_ignore_ascii_case(n)));
        headers.extend(cors.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let flags = req
            .response
            .flags
            .iter()
            .map(|f| f.code())
            .collect::<Vec<_>>()
            .join(",");
        if flag.is_some() {
            headers.push(("x-trellis-response-flags", &flags));
        }
        let body = if req.head.method == http::Method::HEAD {
            ""
        } else {
            body
        };
        let (down, stream) = (req.down, req.stream);
        if let Some((codec, out)) = down_writer(&mut self.conns, &mut self.dirty, down) {
            let local = LocalResponse {
                status,
                headers: &headers,
                body: body.as_bytes(),
                close,
            };
            codec.encode_local(stream, local, out);
        }
        req.response.status = status;
        req.response.outbound = Outbound::Written;
        req.response.body_out = body.len() as u64;
        if close {
            if let Some(d) = self.conns.down_mut(down) {
                d.close_after_response = true;
            }
        }
        self.finish_request(now, id);
    }

    /// The response cannot be completed: cut the downstream connection so the client sees a
    /// truncated message rather than a wrong one.
    pub(crate) fn abort_downstream(&mut self, now: Instant, id: RequestId, flag: ResponseFlag) {
        let Some(req) = self.requests.get_mut(id) else {
            return;
        };
        req.response.flags.push(flag);
        *self.stats.flags.entry(flag).or_default() += 1;
        let down = req.down;
        self.mark_closing(down, false);
        self.finish_request(now, id);
    }

    /// The request is over: release everything, log it, and let the connection go on.
    pub(crate) fn finish_request(&mut self, now: Instant, id: RequestId) {
        self.detach_attempt(now, id, None);
        self.release_mirrors(now, id);
        // The request is read and its log record taken in place, then dropped where it lies
        // (`Slab::discard`): moving the kilobyte-sized entry out of the slab cost two copies.
        let Some(req) = self.requests.get_mut(id) else {
            return;
        };
        // Detached above: nothing upstream refers to the request any more.
        debug_assert_eq!(
            req.phase,
            super::request::Phase::Done,
            "{id} finished attached"
        );
        debug_assert!(
            !req.tries.holds_request,
            "{id} finished holding a request token"
        );
        self.header_pool.give(std::mem::take(&mut req.head.headers));
        if req.tries.holds_retry {
            if let Some(s) = req.slot.and_then(|s| self.clusters.slot_mut(s)) {
                s.state.breaker_mut().retry_done();
            }
        }
        let class = (req.response.status / 100) as usize;
        if let Some(n) = self.stats.downstream_rq_by_class.get_mut(class) {
            *n += 1;
        }
        // Names come shared from the snapshot the request ran on: no copies per request.
        let names = req
            .route
            .and_then(|r| Some((req.snapshot.route_names(r.table, r.vhost, r.route)?, r.dest)));
        let cluster = names
            .and_then(|(n, dest)| n.clusters.get(dest).cloned())
            .or_else(|| {
                req.slot
                    .and_then(|s| self.clusters.slot(s))
                    .map(|s| Arc::from(s.log_name()))
            });
        let route = names.map(|(n, _)| n.route.clone());
        let (down, body_done) = (req.down, req.body_done());
        let peer = match self.conns.down_mut(down) {
            Some(d) => {
                // Its unread body, if any, goes with it; the codec may read the next head.
                d.codec.finish_stream(req.stream);
                Some(d.peer)
            }
            None => None,
        };
        self.logs.push(RequestLog {
            downstream: req.down.conn(),
            peer,
            start: req.start,
            duration: now - req.start,
            method: method_name(&req.head.method),
            authority: req
                .original_authority
                .take()
                .unwrap_or_else(|| std::mem::take(&mut req.head.authority)),
            path: req
                .original_target
                .take()
                .unwrap_or_else(|| std::mem::take(&mut req.head.target))
                .into_str(),
            status: req.response.status,
            flags: std::mem::take(&mut req.response.flags),
            route,
            cluster,
            upstream_host: req.tries.upstream_host,
            attempts: req.tries.count,
            request_body_bytes: req.body.body_in,
            response_body_bytes: req.response.body_out,
        });
        // Freed here, before anything else can free or take a slab index (as `remove` at the
        // top did): the next ids are the same.
        let discarded = self.requests.discard(id);
        debug_assert!(discarded, "{id} was live");
        self.downstream_request_done(now, down, body_done);
    }

    /// The request on `down` is finished: keep the connection for the next one, or close.
    pub(super) fn downstream_request_done(
        &mut self,
        now: Instant,
        down_id: DownstreamId,
        body_done: bool,
    ) {
        let idle_timeout = self.snapshot.config.http.idle_timeout;
        let Some(down) = self.conns.open_down_mut(down_id) else {
            return;
        };
        if matches!(down.state, DownState::Tunnel(_)) {
            return;
        }
        #[allow(unused_mut)]
        let mut close = down.close_after_response || !body_done || down.read_closed;
        #[cfg(feature = "mutants")]
        if self.mutations.pipelined_after_close_served && !down.recv.is_empty() {
            close = false;
        }
        if close {
            down.state = DownState::Idle;
            self.mark_closing(down_id, true);
            return;
        }
        down.state = DownState::Idle;
        #[cfg(feature = "mutants")]
        let idle_timeout = if self.mutations.idle_timer_not_rearmed {
            std::time::Duration::from_secs(1 << 30)
        } else {
            idle_timeout
        };
        down.idle_deadline = Some(now + idle_timeout);
        self.arm_conn_timer(down_id, now + idle_timeout);
        // A pipelined request may be waiting. It is read after the current call unwinds (or by
        // the `on_downstream_data` loop that is running now), never from here: no recursion.
        if !self
            .conns
            .open_down_mut(down_id)
            .is_some_and(|d| d.recv.is_empty())
        {
            self.queue_resume(down_id);
        }
    }
}

/// The method for the access log, without allocating for the standard ones.
fn method_name(method: &http::Method) -> std::borrow::Cow<'static, str> {
    use http::Method;
    let name = match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => return std::borrow::Cow::Owned(method.as_str().to_string()),
    };
    std::borrow::Cow::Borrowed(name)
}

/// The headers of a local reply to `req` with its forwarding route's response edits applied
/// to `extra` (the destination's, then the route's); `None` when no such edits apply.
fn route_edits_on_local_reply(
    req: &super::request::Request,
    extra: &[(&str, &str)],
) -> Option<Vec<(String, String)>> {
    let destination = req.destination()?;
    let route = req.route_config()?;
    if destination.response_headers.is_empty() && route.response_headers.is_empty() {
        return None;
    }
    Some(with_header_edits(
        extra,
        &[&destination.response_headers, &route.response_headers],
    ))
}

/// `base` with each of `ops` applied in turn, as a local reply's header list.
pub(super) fn with_header_edits(
    base: &[(&str, &str)],
    ops: &[&crate::config::HeaderOps],
) -> Vec<(String, String)> {
    let mut fields: http1::Fields = base.iter().copied().collect();
    for ops in ops {
        crate::route::apply_header_ops(ops, &mut fields);
    }
    fields
        .iter()
        .filter_map(|(n, v)| {
            let n = std::str::from_utf8(n).ok()?;
            Some((n.to_string(), http1::value_str(v)?.to_string()))
        })
        .collect()
}
