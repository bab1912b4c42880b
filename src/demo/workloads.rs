//! What each bookinfo workload answers, as a [`Handler`]: productpage calls details and reviews
//! (forwarding `end-user`), reviews v2 and v3 call ratings, v1 does not (as Istio's bookinfo:
//! v1 shows no stars). Every answer is JSON naming who served it (`<app>-<version>`), the
//! `path` of the reviews chain below it (`productpage-v1 ← reviews-v2 ← ratings-v1`), and the
//! `hops` seen on the way: for each workload, the caller's SPIFFE id that its sidecar put in
//! `x-forwarded-client-cert` after the mTLS handshake (`null` for a plaintext caller). A
//! [`failing`] replica answers 503 to everything, for outlier detection to eject.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use super::app::{Handler, Outbound, Request};

/// The handler of workload `app` at `version` (an app the demo does not know answers for
/// itself, without calls).
pub fn handler(app: &str, version: &str) -> Arc<Handler> {
    let me = format!("{app}-{version}");
    match app {
        "productpage" => Arc::new(move |req: &Request, out: &mut Outbound| {
            let user = req.header("end-user").map(str::to_string);
            let details = call(out, "details", "/details/0", user.as_deref());
            let reviews = call(out, "reviews", "/reviews/0", user.as_deref());
            let path = format!("{me} ← {}", path_of(&reviews, "reviews"));
            let mut hops = vec![hop(req, &me)];
            hops.extend(hops_of(&details));
            hops.extend(hops_of(&reviews));
            answer(json!({
                "service": me,
                "user": user,
                "path": path,
                "details": served_by(&details, "details"),
                "reviews": served_by(&reviews, "reviews"),
                "hops": hops,
            }))
        }),
        "reviews" if version != "v1" => Arc::new(move |req: &Request, out: &mut Outbound| {
            let user = req.header("end-user").map(str::to_string);
            let ratings = call(out, "ratings", "/ratings/0", user.as_deref());
            let mut hops = vec![hop(req, &me)];
            hops.extend(hops_of(&ratings));
            answer(json!({
                "service": me,
                "path": format!("{me} ← {}", path_of(&ratings, "ratings")),
                "stars": ratings.as_ref().ok().and_then(|r| r.get("stars").cloned()),
                "hops": hops,
            }))
        }),
        "ratings" => Arc::new(move |req: &Request, _: &mut Outbound| {
            answer(json!({ "service": me, "path": me, "stars": 5, "hops": [hop(req, &me)] }))
        }),
        _ => Arc::new(move |req: &Request, _: &mut Outbound| {
            answer(json!({ "service": me, "path": me, "hops": [hop(req, &me)] }))
        }),
    }
}

/// A replica that answers 503 to everything (counting them), for outlier detection to eject.
pub fn failing(app: &str, version: &str, answered: Arc<AtomicU64>) -> Arc<Handler> {
    let me = format!("{app}-{version}");
    Arc::new(move |req: &Request, _: &mut Outbound| {
        answered.fetch_add(1, Ordering::Relaxed);
        let body = json!({ "service": me, "failing": true, "hops": [hop(req, &me)] });
        (503, body.to_string())
    })
}

fn answer(body: Value) -> (u16, String) {
    (200, body.to_string())
}

/// A callee's JSON, or what went wrong (`"503"`, `"error"`).
type Called = Result<Value, String>;

fn call(out: &mut Outbound, service: &str, path: &str, user: Option<&str>) -> Called {
    let headers: Vec<(&str, &str)> = user.map(|u| ("end-user", u)).into_iter().collect();
    match out.get(&format!("{service}:9080"), path, &headers) {
        Ok((200, body)) => serde_json::from_slice(&body).map_err(|_| "not json".to_string()),
        Ok((status, _)) => Err(status.to_string()),
        Err(e) => Err(format!("error ({e})")),
    }
}

/// The callee's path, or `<service> ✗ <what went wrong>`.
fn path_of(called: &Called, service: &str) -> String {
    match called {
        Ok(v) => v
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or(service)
            .to_string(),
        Err(e) => format!("{service} ✗ {e}"),
    }
}

fn served_by(called: &Called, service: &str) -> String {
    match called {
        Ok(v) => v
            .get("service")
            .and_then(Value::as_str)
            .unwrap_or(service)
            .to_string(),
        Err(e) => format!("{service} ✗ {e}"),
    }
}

fn hops_of(called: &Called) -> Vec<Value> {
    called
        .as_ref()
        .ok()
        .and_then(|v| v.get("hops"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// This workload's hop: who called it, by the identity its sidecar verified.
fn hop(req: &Request, me: &str) -> Value {
    json!({ "to": me, "from": req.header("x-forwarded-client-cert").and_then(caller_of) })
}

/// The `URI` of the last XFCC element: the one this workload's own sidecar appended (Envoy's
/// APPEND_FORWARD keeps earlier elements ahead of it).
pub fn caller_of(xfcc: &str) -> Option<String> {
    let element = xfcc.rsplit(',').next()?;
    element.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("URI")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caller_is_the_uri_of_the_last_xfcc_element() {
        let xfcc = "By=spiffe://x/ns/a/sa/b;URI=spiffe://forged,By=spiffe://cluster.local/ns/default/sa/bookinfo-reviews;Hash=ab;Subject=\"\";URI=spiffe://cluster.local/ns/default/sa/bookinfo-productpage";
        assert_eq!(
            caller_of(xfcc).as_deref(),
            Some("spiffe://cluster.local/ns/default/sa/bookinfo-productpage")
        );
        assert_eq!(caller_of("By=a;Hash=b"), None);
    }
}
