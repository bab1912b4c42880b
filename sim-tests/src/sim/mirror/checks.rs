//! What the mirroring world is held to, all under [`Invariant::Mirroring`], from what the
//! clients and upstreams saw (never from the engine's own counters):
//!
//! - **The client sees only the primary.** A response that names an upstream (`x-sim-ep`)
//!   names a primary endpoint and carries, status and body, an answer that endpoint gave this
//!   request; one the sidecar made itself (503, 504) carries nothing of a mirror's.
//! - **A mirror never slows the primary.** A request answered by its primary ends in the very
//!   instant that answer reached the sidecar, however slow, hung or failing its mirrors are.
//! - **A copy is the primary's first attempt** (Envoy's router starts its shadows with the
//!   first upstream request: `Filter::decodeHeaders` in source/common/router/router.cc): same
//!   method, path, body and `x-request-id`, and the same authority, with no `-shadow` suffix
//!   (pilot disables it since Istio 1.28). At most one copy per request and mirror: never
//!   retried, whatever the primary's retries or the copy's own failure; and never to the
//!   primary cluster (no more attempts there than the retries allow).
//! - **The fraction.** `mirrorPercentage` 0 mirrors nothing and 100 (or none) every request
//!   whose first attempt started; a fraction stays within six standard deviations of its
//!   binomial expectation. Every mirror of a route is decided on one draw (Envoy evaluates
//!   each policy's `runtime_fraction` on the stream's random value), so with equal
//!   denominators the requests a smaller fraction mirrors are mirrored by the larger too.

use super::world::{World, HOST};
use crate::sim::check::Invariant;

impl World<'_> {
    pub(crate) fn check(&mut self) {
        for req in 0..self.reqs.len() {
            self.check_response(req);
            self.check_copies(req);
        }
        self.check_fractions();
    }

    fn check_response(&mut self, req: usize) {
        let (label, problem) = self.response_verdict(req);
        self.count(&label);
        if let Some(msg) = problem {
            self.violation(Invariant::Mirroring, format!("request {req}: {msg}"));
        }
    }

    /// How request `req` ended (an outcome label) and what is wrong with its response.
    fn response_verdict(&self, req: usize) -> (String, Option<String>) {
        let r = &self.reqs[req];
        let Some(done_at) = r.done_at else {
            return ("unfinished".into(), None);
        };
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(len)) = resp.parse(&r.response) else {
            return ("no-response".into(), None);
        };
        let status = resp.code.unwrap_or(0);
        let ep = (resp.headers.iter())
            .find(|h| h.name.eq_ignore_ascii_case("x-sim-ep"))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .and_then(|v| v.parse::<usize>().ok());
        let body = String::from_utf8_lossy(&r.response[len..]).to_string();
        let label = format!("client-{status}");
        let Some(ep) = ep else {
            let leaked = status == 203 || body.contains("mirror");
            return (
                label,
                leaked.then(|| {
                    format!("the sidecar's own {status} carries a mirror's answer: {body:?}")
                }),
            );
        };
        if self.eps.get(ep).is_none_or(|e| e.cluster != 0) {
            let msg = format!(
                "the client got the answer of endpoint {ep}, not a primary one ({status} {body:?})"
            );
            return (label, Some(msg));
        }
        let answered =
            (r.answers.iter()).find(|a| a.ep == ep && a.status == status && a.body == body);
        let problem = match answered {
            None => Some(format!(
                "the client got {status} {body:?}, which primary endpoint {ep} never answered it"
            )),
            Some(a) if a.at != done_at => Some(format!(
                "its primary answered at {} but the client's response ended at {done_at}",
                a.at
            )),
            Some(_) => None,
        };
        (label, problem)
    }

    fn check_copies(&mut self, req: usize) {
        let r = &self.reqs[req];
        let q = &self.spec.requests[req];
        let authority = self.spec.authority_rewrite.as_deref().unwrap_or(HOST);
        let method = if q.body_len > 0 { "POST" } else { "GET" };
        let path = format!("/m/{req}");
        let first_id = r.primary.first().and_then(|p| p.request_id.clone());
        let mut problems = Vec::new();
        for (m, seen) in &r.copies {
            if r.copies.iter().filter(|(o, _)| o == m).count() > 1 {
                problems.push(format!(
                    "mirror {m} got {} copies",
                    r.copies.iter().filter(|(o, _)| o == m).count()
                ));
            }
            if seen.authority != authority {
                problems.push(format!(
                    "mirror {m}'s copy has authority {:?}, the primary's is {authority:?}",
                    seen.authority
                ));
            }
            if seen.method != method || seen.path != path || !seen.body_ok {
                problems.push(format!(
                    "mirror {m}'s copy is {} {} (body intact: {}), the request {method} {path}",
                    seen.method, seen.path, seen.body_ok
                ));
            }
            if first_id.is_some() && seen.request_id != first_id {
                problems.push(format!(
                    "mirror {m}'s copy has x-request-id {:?}, the first attempt {first_id:?}",
                    seen.request_id
                ));
            }
            if r.primary.is_empty() {
                problems.push(format!(
                    "mirror {m} got a copy of a request no attempt of which reached the primary"
                ));
            }
        }
        // A copy sent to the primary cluster would show as an attempt beyond the retries.
        let attempts = self.spec.retries as usize + 1;
        if r.primary.len() > attempts {
            problems.push(format!(
                "the primary got {} attempts, the route allows {attempts}",
                r.primary.len()
            ));
        }
        if let Some(p) = problems.first() {
            let msg = format!("request {req}: {p}");
            self.violation(Invariant::Mirroring, msg);
        }
    }

    /// Which requests each mirror copied, among those whose first attempt started.
    fn mirrored(&self, m: usize) -> Vec<bool> {
        (self.reqs.iter())
            .filter(|r| !r.primary.is_empty())
            .map(|r| r.copies.iter().any(|(o, _)| *o == m))
            .collect()
    }

    fn check_fractions(&mut self) {
        let spec = self.spec;
        for (m, d) in spec.mirrors.iter().enumerate() {
            let hits = self.mirrored(m);
            let n = hits.len() as f64;
            let k = hits.iter().filter(|h| **h).count() as f64;
            if d.down {
                continue;
            }
            *self.outcomes.entry("mirror:copies".into()).or_default() += k as u64;
            *self
                .outcomes
                .entry("mirror:first-attempts".into())
                .or_default() += n as u64;
            let p = d.share();
            let bad = if p == 0.0 || p == 1.0 {
                k != n * p
            } else {
                (k - n * p).abs() > 6.0 * (n * p * (1.0 - p)).sqrt() + 1.0
            };
            if bad {
                let msg = format!("mirror {m} at {:?} % copied {k} of {n} requests", d.percent);
                self.violation(Invariant::Mirroring, msg);
            }
            for (o, other) in spec.mirrors.iter().enumerate() {
                let nested = o != m
                    && !other.down
                    && other.fraction().1 == d.fraction().1
                    && other.fraction().0 >= d.fraction().0;
                if !nested {
                    continue;
                }
                let larger = self.mirrored(o);
                if let Some(i) = (0..hits.len()).find(|&i| hits[i] && !larger[i]) {
                    let msg = format!("mirror {m} ({:?} %) copied the {i}th request, mirror {o} ({:?} %) did not: one draw decides both", d.percent, other.percent);
                    self.violation(Invariant::Mirroring, msg);
                }
            }
        }
    }
}
