//! The fault filter and a route's own answers: a route's delay is drawn and waited out,
//! then its abort is drawn (an HTTP status, or a gRPC status for a gRPC request); a request
//! that survives either starts its first attempt or, on a route that redirects or answers
//! directly, is answered here with the route's response header edits.

use crate::config::RouteAction;
use crate::route;
use crate::time::Instant;

use super::ids::RequestId;
use super::log::ResponseFlag;
use super::request::Phase;
use super::Engine;

impl Engine {
    /// The answer of a route that redirects or answers itself, once its faults are past.
    pub(super) fn answer_locally(&mut self, now: Instant, id: RequestId) {
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
        // Envoy's CORS filter encodes the router's own answers too: `local_reply` adds them.
        let refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        self.local_reply(now, id, status, None, &body, &refs);
    }

    /// The fault filter's delay (drawn with its percentage), then [`Self::after_delay`].
    pub(super) fn inject_delay(
        &mut self,
        now: Instant,
        id: RequestId,
        route: &crate::config::Route,
    ) {
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

    /// After any fault delay: maybe abort, else answer a CORS preflight, else start the first
    /// attempt (or, for a route that redirects or answers itself, answer).
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
                // The fault filter answers before the CORS filter ever sees the request
                // (pilot: fault, then cors), so the abort carries no CORS headers.
                if let Some(req) = self.requests.get_mut(id) {
                    req.cors = None;
                }
                let grpc = abort.grpc_status.filter(|_| {
                    self.requests
                        .get(id)
                        .is_some_and(|r| is_grpc_request(&r.head.headers))
                });
                #[cfg(feature = "mutants")]
                if crate::mutants::route().fault_abort_always_503 {
                    let flag = Some(ResponseFlag::FaultInjected);
                    return self.local_reply(now, id, 503, flag, "fault filter abort", &[]);
                }
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
        if self.answer_cors_preflight(now, id) {
            return;
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
fn is_grpc_request(headers: &crate::http1::Fields) -> bool {
    headers
        .get(&crate::http1::names::CONTENT_TYPE)
        .and_then(crate::http1::value_str)
        .and_then(|ct| ct.strip_prefix("application/grpc"))
        .is_some_and(|tail| tail.is_empty() || tail.starts_with('+') || tail.starts_with(';'))
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
    super::reply::with_header_edits(base, &[&route.response_headers])
}
