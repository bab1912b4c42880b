//! A route's CORS policy on the request path, in Envoy's place for it: pilot's HTTP filters
//! run fault, then CORS, then the router (`filters = append(filters, xdsfilters.Fault,
//! xdsfilters.Cors)` in pilot/pkg/networking/core/listener_builder.go). So the policy judges the
//! head as the client sent it (before the router's header edits), a preflight it answers is
//! still delayed or aborted by the route's fault first, and an aborted request gets no CORS
//! headers (the CORS filter never saw it). The decisions are [`crate::route::cors`]'s; this file
//! applies them to a request and its response.

use crate::http1::value_str;
use crate::route::cors::{CompiledCors, CorsVerdict};
use crate::time::Instant;

use super::ids::RequestId;
use super::Engine;

impl Engine {
    /// Runs `cors` (the matched route's policy) on request `id`'s head as it arrived: latches
    /// an allowed origin for the response, or a preflight answer for
    /// [`Self::answer_cors_preflight`]. True for a preflight the proxy will answer.
    pub(super) fn latch_cors(&mut self, id: RequestId, cors: &CompiledCors) -> bool {
        let Some(req) = self.requests.get_mut(id) else {
            return false;
        };
        let verdict = cors.on_request(req.head.method.as_str(), &req.head.headers);
        let preflight = matches!(verdict, CorsVerdict::Preflight(_));
        req.cors = match verdict {
            CorsVerdict::Forward(None) => None,
            v => Some(v),
        };
        preflight
    }

    /// After the fault filter, before the router: answers a latched preflight with 200 and
    /// its headers. False when the request has none.
    pub(super) fn answer_cors_preflight(&mut self, now: Instant, id: RequestId) -> bool {
        let Some(req) = self.requests.get_mut(id) else {
            return false;
        };
        if !matches!(req.cors, Some(CorsVerdict::Preflight(_))) {
            return false;
        }
        let Some(CorsVerdict::Preflight(headers)) = req.cors.take() else {
            return false;
        };
        // Values come from the policy or echo the request's own fields: sent when visible ASCII.
        let text: Vec<(&str, &str)> = headers
            .iter()
            .filter_map(|(n, v)| Some((n.as_str(), value_str(v)?)))
            .collect();
        // The filter encodes its answer itself: no response flag, no route edits.
        self.filter_reply(now, id, 200, &text);
        true
    }
}
