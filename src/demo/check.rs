//! The self-check (`trellis demo --self-check`, what the tests run): the seeded routing and
//! policies, checked against what the traffic generator saw. Each failure is one line; none
//! means the mesh routed, chained and authenticated every request as the seed says:
//! - every request answered 200, with details-v1 on every page but a few: the failing details
//!   replica is ejected by outlier detection after its first 503;
//! - `end-user: jason` always reached reviews-v2, whose path goes on to ratings-v1;
//! - everyone else reached reviews-v1 or v3 only, each within four standard deviations of the
//!   VirtualService's 50/50 (a binomial's, so a right mesh fails about once in 15,000 runs);
//! - the fault injection holds: `end-user: tester` is routed as everyone else, and when it
//!   reaches reviews-v3 its call to ratings is aborted with 500 by reviews-v3's sidecar;
//! - every hop inside the mesh was mutual TLS: the callee's sidecar put the caller's SPIFFE id
//!   in `x-forwarded-client-cert` (productpage's for details and reviews, reviews' for
//!   ratings), and only productpage was called in plaintext (it is the edge);
//! - the AuthorizationPolicy holds: productpage's sidecar calling ratings gets 403.

use std::collections::BTreeSet;

use super::sidecar::TRUST_DOMAIN;
use super::tally::{Tally, JASON, OTHERS, PLAINTEXT, TESTER};

fn spiffe(sa: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/ns/default/sa/{sa}")
}

/// The failures, one line each (empty: all is as seeded).
pub fn check(t: &Tally, policy_probe: &Result<u16, String>) -> Vec<String> {
    let mut failures = Vec::new();
    if t.requests == 0 {
        failures.push("no request was sent".to_string());
    }
    for (status, n) in &t.statuses {
        if status != "200" {
            failures.push(format!("{n} request(s) answered {status}"));
        }
    }
    // The failing details replica: each 503 ejects it (30 s, then longer), so few pages lack
    // details; without outlier detection about half would.
    if t.details
        .keys()
        .any(|d| d != "details-v1" && d != "details ✗ 503")
    {
        failures.push(format!("details answered by {:?}", t.details));
    }
    let ejected_late = t.details.get("details ✗ 503").copied().unwrap_or(0);
    if ejected_late > (t.requests / 20).max(2) {
        failures.push(format!(
            "{ejected_late} of {} pages lacked details: the failing replica was not ejected",
            t.requests
        ));
    }

    let jason = t.reviews_of(JASON);
    if jason.is_empty() || jason.keys().any(|r| *r != "reviews-v2") {
        failures.push(format!(
            "end-user jason reached {jason:?}, not only reviews-v2"
        ));
    }
    let tester = t.reviews_of(TESTER);
    if tester
        .keys()
        .any(|r| !["reviews-v1", "reviews-v3"].contains(r))
    {
        failures.push(format!(
            "end-user tester reached {tester:?}, not only v1 and v3"
        ));
    }
    let others = t.reviews_of(OTHERS);
    let n: u64 = others.values().sum();
    if others
        .keys()
        .any(|r| !["reviews-v1", "reviews-v3"].contains(r))
    {
        failures.push(format!(
            "everyone else reached {others:?}, not only v1 and v3"
        ));
    }
    let v1 = others.get("reviews-v1").copied().unwrap_or(0) as f64;
    let bound = 2.0 * (n as f64).sqrt();
    if n < 20 {
        failures.push(format!(
            "only {n} requests of everyone else: too few to judge the split"
        ));
    } else if (v1 - n as f64 / 2.0).abs() > bound {
        failures.push(format!(
            "reviews-v1 took {v1} of {n} requests: outside 50% ± {bound:.0} (the seeded 50/50)"
        ));
    }

    let jason_path = "productpage-v1 ← reviews-v2 ← ratings-v1";
    let other_paths = [
        "productpage-v1 ← reviews-v1",
        "productpage-v1 ← reviews-v3 ← ratings-v1",
    ];
    let tester_paths = [
        "productpage-v1 ← reviews-v1",
        "productpage-v1 ← reviews-v3 ← ratings ✗ 500",
    ];
    for ((user, path), count) in &t.paths {
        let right = match user.as_str() {
            JASON => path == jason_path,
            TESTER => tester_paths.contains(&path.as_str()),
            _ => other_paths.contains(&path.as_str()),
        };
        if !right {
            failures.push(format!("{count} request(s) of {user} took the path {path}"));
        }
    }

    let productpage = spiffe("bookinfo-productpage");
    let reviews = spiffe("bookinfo-reviews");
    let expected: BTreeSet<(String, String)> = [
        (PLAINTEXT, "productpage-v1"),
        (&productpage, "details-v1"),
        (&productpage, "reviews-v1"),
        (&productpage, "reviews-v2"),
        (&productpage, "reviews-v3"),
        (&reviews, "ratings-v1"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let seen: BTreeSet<(String, String)> = t.hops.keys().cloned().collect();
    for (from, to) in seen.difference(&expected) {
        failures.push(format!("unexpected hop: {from} → {to}"));
    }
    for (from, to) in expected.difference(&seen) {
        failures.push(format!("no hop {from} → {to} was seen"));
    }

    match policy_probe {
        Ok(403) => {}
        Ok(status) => failures.push(format!(
            "productpage → ratings answered {status}: the AuthorizationPolicy should deny it (403)"
        )),
        Err(e) => failures.push(format!("productpage → ratings failed: {e}")),
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(reviews: &str, path: &str) -> Vec<u8> {
        let pp = spiffe("bookinfo-productpage");
        let mut hops = vec![
            serde_json::json!({"to": "productpage-v1", "from": null}),
            serde_json::json!({"to": "details-v1", "from": pp}),
            serde_json::json!({"to": reviews, "from": pp}),
        ];
        if path.ends_with("ratings-v1") {
            hops.push(serde_json::json!({"to": "ratings-v1", "from": spiffe("bookinfo-reviews")}));
        }
        serde_json::json!({"path": path, "reviews": reviews, "details": "details-v1", "hops": hops})
            .to_string()
            .into_bytes()
    }

    fn seeded(v1: usize, v3: usize) -> Tally {
        let mut t = Tally::default();
        for _ in 0..v1 {
            t.record(
                OTHERS,
                Ok((200, answer("reviews-v1", "productpage-v1 ← reviews-v1"))),
            );
        }
        for _ in 0..v3 {
            let path = "productpage-v1 ← reviews-v3 ← ratings-v1";
            t.record(OTHERS, Ok((200, answer("reviews-v3", path))));
        }
        let path = "productpage-v1 ← reviews-v2 ← ratings-v1";
        t.record(JASON, Ok((200, answer("reviews-v2", path))));
        let path = "productpage-v1 ← reviews-v3 ← ratings ✗ 500";
        t.record(TESTER, Ok((200, answer("reviews-v3", path))));
        t
    }

    #[test]
    fn the_seeded_routing_passes_and_a_lopsided_split_or_an_open_ratings_fails() {
        assert_eq!(check(&seeded(30, 30), &Ok(403)), Vec::<String>::new());
        let lopsided = check(&seeded(55, 5), &Ok(403));
        assert!(
            lopsided.iter().any(|f| f.contains("outside 50%")),
            "{lopsided:?}"
        );
        let open = check(&seeded(30, 30), &Ok(200));
        assert!(
            open.iter().any(|f| f.contains("AuthorizationPolicy")),
            "{open:?}"
        );
    }

    #[test]
    fn a_tester_reaching_ratings_means_the_fault_was_not_injected() {
        let mut t = seeded(30, 30);
        let path = "productpage-v1 ← reviews-v3 ← ratings-v1";
        t.record(TESTER, Ok((200, answer("reviews-v3", path))));
        let failures = check(&t, &Ok(403));
        assert!(
            failures.iter().any(|f| f.contains("end-user tester took")),
            "{failures:?}"
        );
    }

    #[test]
    fn details_failing_on_many_pages_means_no_ejection() {
        let mut t = seeded(30, 30);
        assert!(check(&t, &Ok(403)).is_empty());
        t.details.insert("details ✗ 503".to_string(), 20);
        let failures = check(&t, &Ok(403));
        assert!(
            failures.iter().any(|f| f.contains("not ejected")),
            "{failures:?}"
        );
    }

    #[test]
    fn a_plaintext_hop_inside_the_mesh_fails() {
        let mut t = seeded(30, 30);
        t.hops
            .insert((PLAINTEXT.to_string(), "ratings-v1".to_string()), 1);
        let failures = check(&t, &Ok(403));
        assert!(
            failures.iter().any(|f| f.contains("unexpected hop")),
            "{failures:?}"
        );
    }
}
