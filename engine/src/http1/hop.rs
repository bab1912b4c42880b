//! Hop-by-hop field removal (RFC 9110 §7.6.1).
//!
//! A proxy must not forward fields that describe only the connection they arrived on. The
//! framing fields (Content-Length, Transfer-Encoding) are removed too: the encoder re-derives
//! them from the decided framing, so what goes out never depends on how the peer spelled them.

use super::field_list::Fields;
use super::syntax::list_elements;

/// Whether `name` (lower-case) always describes only one connection (or its framing). Sorted
/// by length first, so most names are turned away without a comparison.
fn is_hop_by_hop(name: &[u8]) -> bool {
    match name.len() {
        2 => name == b"te",
        7 => name == b"trailer" || name == b"upgrade",
        10 => name == b"connection" || name == b"keep-alive",
        14 => name == b"content-length",
        16 => name == b"proxy-connection",
        17 => name == b"transfer-encoding",
        _ => false,
    }
}

/// Removes connection, keep-alive, proxy-connection, te, trailer, transfer-encoding, upgrade,
/// content-length and every field named in Connection, keeping the others in order.
pub fn strip_hop_by_hop(headers: &mut Fields) {
    strip_hop_by_hop_and(headers, |_| false);
}

/// [`strip_hop_by_hop`], also removing the fields for which `also(name)` holds (names are
/// lower-case), in the same pass.
///
/// One pass over the list when there is no Connection field (the common case: one scan where
/// a lookup for Connection and then a removal pass were two); the names Connection lists are
/// collected in that pass, and a second pass removes them.
///
/// Always inlined: its two callers are one pass each, and out of line (which the inliner
/// chose once the request's caller grew) the field closure's calls cost more than the pass.
#[inline(always)]
pub fn strip_hop_by_hop_and(headers: &mut Fields, also: impl Fn(&[u8]) -> bool) {
    let mut named: Vec<Vec<u8>> = Vec::new();
    headers.retain(|name, value| {
        if is_hop_by_hop(name) {
            if name == b"connection" {
                named.extend(
                    list_elements(value)
                        .filter(|t| !t.is_empty())
                        .map(<[u8]>::to_ascii_lowercase),
                );
            }
            return false;
        }
        !also(name)
    });
    if !named.is_empty() {
        headers.retain(|name, _| !named.iter().any(|t| t == name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(h: &Fields) -> Vec<String> {
        h.iter()
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
            .collect()
    }

    #[test]
    fn strips_fixed_and_named_fields() {
        let mut h: Fields = [
            ("connection", "keep-alive, X-Secret , close"),
            ("x-keep", "1"),
            ("connection", "x-other"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-t"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("content-length", "5"),
            ("x-secret", "1"),
            ("x-other", "1"),
            ("accept", "*/*"),
        ]
        .into_iter()
        .collect();
        strip_hop_by_hop(&mut h);
        assert_eq!(names(&h), ["x-keep", "accept"]);
    }

    #[test]
    fn order_is_kept_without_connection() {
        let mut h: Fields = [
            ("content-length", "1"),
            ("x-a", "1"),
            ("te", "trailers"),
            ("x-b", "1"),
            ("x-a", "2"),
        ]
        .into_iter()
        .collect();
        strip_hop_by_hop(&mut h);
        assert_eq!(names(&h), ["x-a", "x-b", "x-a"]);
    }

    /// Against a plain filter of the input: exactly the fixed names and those Connection lists
    /// go, and what remains keeps its order and duplicates.
    #[test]
    fn removes_exactly_the_hop_by_hop_fields_in_order() {
        let pool = [
            "content-length",
            "x-a",
            "connection",
            "host-ish",
            "te",
            "x-b",
            "keep-alive",
            "accept",
            "upgrade",
            "x-c",
            "transfer-encoding",
            "proxy-connection",
            "trailer",
            "x-d",
        ];
        for seed in 0u64..2000 {
            let mut rng = crate::rng::EngineRng::with_seed(seed);
            let mut pairs = Vec::new();
            for i in 0..(rng.next_u64() % 12) {
                let n = pool[(rng.next_u64() % pool.len() as u64) as usize];
                let v = if n == "connection" && rng.next_u64().is_multiple_of(2) {
                    "X-B, close".to_owned()
                } else {
                    i.to_string()
                };
                pairs.push((n, v));
            }
            let mut ours: Fields = pairs.iter().map(|(n, v)| (*n, v.as_str())).collect();
            strip_hop_by_hop(&mut ours);
            let kept: Vec<(String, String)> = pairs
                .iter()
                .filter(|(n, _)| {
                    !is_hop_by_hop(n.as_bytes())
                        && !pairs.iter().any(|(c, v)| {
                            *c == "connection" && v.to_ascii_lowercase().contains(&**n)
                        })
                })
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect();
            let got: Vec<(String, String)> = ours
                .iter()
                .map(|(n, v)| {
                    (
                        String::from_utf8_lossy(n).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    )
                })
                .collect();
            assert_eq!(got, kept, "seed {seed}");
        }
    }

    #[test]
    fn also_removes_what_the_caller_names_in_the_same_pass() {
        let mut h: Fields = [
            ("expect", "100-continue"),
            ("x-a", "1"),
            ("connection", "x-b"),
            ("x-b", "2"),
            ("x-c", "3"),
        ]
        .into_iter()
        .collect();
        strip_hop_by_hop_and(&mut h, |n| n == b"expect");
        assert_eq!(names(&h), ["x-a", "x-c"]);
    }

    #[test]
    fn ignores_invalid_connection_tokens() {
        let mut h: Fields = [("connection", "a b, ,"), ("x", "1")].into_iter().collect();
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
    }
}
