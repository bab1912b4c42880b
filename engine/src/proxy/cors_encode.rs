//! The CORS filter's `encodeHeaders` (Envoy's source/extensions/filters/http/cors/cors_filter.cc)
//! on what the proxy sends back: an upstream's response, and the proxy's own replies after
//! the CORS filter judged the request. Pure functions of the request and its route's policy,
//! used by `response` and `reply`; the request-side decisions are `cors`'s.

use crate::http1::{value_str, Fields};
use crate::route::cors::CorsVerdict;

use super::request::Request;

/// Envoy's CORS `encodeHeaders` on a response to `req`: the allowed origin it latched, with the
/// route's credentials and exposed headers. Nothing for a request without one.
pub(super) fn decorate_response(req: &Request, headers: &mut Fields) {
    let (Some(CorsVerdict::Forward(Some(origin))), Some(at)) = (&req.cors, req.route) else {
        return;
    };
    if let Some(cors) = req.snapshot.router.cors(at.table, at.vhost, at.route) {
        cors.decorate(origin, headers);
    }
}

/// The CORS fields of a reply the proxy makes itself to `req` after the CORS filter saw it
/// (a redirect or direct response, the router's 503 and 504, a timeout): Envoy sends local
/// replies through the encoder filters, whose CORS `encodeHeaders` decorates any response to
/// a request it judged (`is_cors_request_`). Empty when it did not judge this one (a fault
/// abort, an RBAC or JWT denial, no route: answered before it).
pub(super) fn local_reply_fields(req: &Request) -> Vec<(String, String)> {
    if req.cors.is_none() {
        return Vec::new();
    }
    let mut fields = Fields::new();
    decorate_response(req, &mut fields);
    fields
        .iter()
        .filter_map(|(name, value)| {
            Some((
                std::str::from_utf8(name).ok()?.to_owned(),
                value_str(value)?.to_owned(),
            ))
        })
        .collect()
}
