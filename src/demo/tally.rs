//! What the traffic generator saw, counted: statuses, the whole paths, which reviews version
//! answered each kind of user, and the mTLS hops (caller's SPIFFE id → workload), printed as
//! the summary a newcomer reads. Ordered maps, so a summary reads the same way every time.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// Who asked: the VirtualService routes `end-user: jason` apart from everyone else.
pub const JASON: &str = "end-user jason";
pub const OTHERS: &str = "everyone else";
/// The user the seeded fault injection aborts ratings for.
pub const TESTER: &str = "end-user tester";

/// The caller recorded for a hop without a verified peer (plaintext, the mesh's edge).
pub const PLAINTEXT: &str = "(plaintext: outside the mesh)";

#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub requests: u64,
    /// `200`, `503`, `error: ...`.
    pub statuses: BTreeMap<String, u64>,
    /// `productpage-v1 ← reviews-v2 ← ratings-v1`, per user kind.
    pub paths: BTreeMap<(String, String), u64>,
    /// (user kind, reviews workload) → count.
    pub reviews: BTreeMap<(String, String), u64>,
    /// details workloads (or failures) seen.
    pub details: BTreeMap<String, u64>,
    /// (caller's SPIFFE id or [`PLAINTEXT`], workload) → count.
    pub hops: BTreeMap<(String, String), u64>,
}

impl Tally {
    /// Count one answer of productpage to a request from `user` (a kind: [`JASON`],
    /// [`TESTER`] or [`OTHERS`]).
    pub fn record(&mut self, user: &str, answer: Result<(u16, Vec<u8>), String>) {
        self.requests += 1;
        let (status, body) = match answer {
            Ok(a) => a,
            Err(e) => {
                *self.statuses.entry(format!("error: {e}")).or_default() += 1;
                return;
            }
        };
        *self.statuses.entry(status.to_string()).or_default() += 1;
        let Ok(json) = serde_json::from_slice::<Value>(&body) else {
            return;
        };
        let text = |key: &str| json.get(key).and_then(Value::as_str).map(str::to_string);
        if let Some(path) = text("path") {
            *self.paths.entry((user.to_string(), path)).or_default() += 1;
        }
        if let Some(reviews) = text("reviews") {
            *self.reviews.entry((user.to_string(), reviews)).or_default() += 1;
        }
        if let Some(details) = text("details") {
            *self.details.entry(details).or_default() += 1;
        }
        for hop in json
            .get("hops")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let to = hop.get("to").and_then(Value::as_str).unwrap_or("?");
            let from = hop.get("from").and_then(Value::as_str).unwrap_or(PLAINTEXT);
            *self
                .hops
                .entry((from.to_string(), to.to_string()))
                .or_default() += 1;
        }
    }

    /// Requests of `user` answered by each reviews workload.
    pub fn reviews_of(&self, user: &str) -> BTreeMap<&str, u64> {
        self.reviews
            .iter()
            .filter(|((u, _), _)| u == user)
            .map(|((_, r), n)| (r.as_str(), *n))
            .collect()
    }

    /// One line: `v1 12 (48%), v3 13 (52%)`.
    fn split_line(&self, user: &str) -> Option<String> {
        let of = self.reviews_of(user);
        let total: u64 = of.values().sum();
        (total > 0).then(|| {
            of.iter()
                .map(|(who, n)| format!("{who} {n} ({}%)", n * 100 / total))
                .collect::<Vec<_>>()
                .join(", ")
        })
    }
}

impl Tally {
    /// The summary of a few seconds: statuses and the reviews split.
    pub fn short(&self) -> String {
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s} ×{n}"))
            .collect();
        let mut out = format!("{} requests ({})", self.requests, statuses.join(", "));
        for user in [OTHERS, JASON, TESTER] {
            if let Some(line) = self.split_line(user) {
                out.push_str(&format!(" | {user}: {line}"));
            }
        }
        out
    }
}

/// The whole summary.
impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s} ×{n}"))
            .collect();
        writeln!(f, "  requests: {} ({})", self.requests, statuses.join(", "))?;
        for user in [OTHERS, JASON, TESTER] {
            if let Some(line) = self.split_line(user) {
                writeln!(f, "  reviews for {user}: {line}")?;
            }
        }
        writeln!(f, "  paths (productpage ← reviews ← ratings):")?;
        for ((user, path), n) in &self.paths {
            writeln!(f, "    {path}  ×{n}  [{user}]")?;
        }
        writeln!(
            f,
            "  hops, by the caller's SPIFFE id the callee's sidecar verified (mTLS):"
        )?;
        for ((from, to), n) in &self.hops {
            writeln!(f, "    {from} → {to}  ×{n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_counted_by_path_version_and_hop() {
        let mut t = Tally::default();
        let body = r#"{"path":"productpage-v1 ← reviews-v2 ← ratings-v1","reviews":"reviews-v2","details":"details-v1","hops":[{"to":"productpage-v1","from":null},{"to":"reviews-v2","from":"spiffe://cluster.local/ns/default/sa/bookinfo-productpage"}]}"#;
        t.record(JASON, Ok((200, body.as_bytes().to_vec())));
        t.record(OTHERS, Err("refused".into()));
        assert_eq!(t.requests, 2);
        assert_eq!(t.reviews_of(JASON).get("reviews-v2"), Some(&1));
        assert_eq!(t.statuses.get("error: refused"), Some(&1));
        assert_eq!(
            t.hops
                .get(&(PLAINTEXT.to_string(), "productpage-v1".to_string())),
            Some(&1)
        );
        let text = t.to_string();
        assert!(
            text.contains("reviews for end-user jason: reviews-v2 1 (100%)"),
            "{text}"
        );
        assert!(
            text.contains(
                "spiffe://cluster.local/ns/default/sa/bookinfo-productpage → reviews-v2  ×1"
            ),
            "{text}"
        );
    }
}
