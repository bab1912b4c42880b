//! Hop-by-hop field removal (RFC 9110 §7.6.1).
//!
//! A proxy must not forward fields that describe only the connection they arrived on. The
//! framing fields (Content-Length, Transfer-Encoding) are removed too: the encoder re-derives
//! them from the decided framing, so what goes out never depends on how the peer spelled them.

use http::header::{self, HeaderMap, HeaderName};

use super::syntax::list_elements;

/// The fields that always describe only one connection (or its framing); Connection first.
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::CONTENT_LENGTH,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// Removes connection, keep-alive, proxy-connection, te, trailer, transfer-encoding, upgrade,
/// content-length and every field named in Connection.
///
/// One pass over the names decides what to remove, so the common message with none of these
/// fields costs no hash lookups. Removal order matters (a `HeaderMap` removal moves its last
/// field into the hole), so it stays: the fixed fields in the order the map holds them, then
/// the names Connection lists.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Indices into HOP_BY_HOP, not cloned names: this runs for every head, both ways.
    let mut fixed = [0u8; 8];
    let mut found = 0;
    for name in headers.keys() {
        let Some(index) = HOP_BY_HOP.iter().position(|hop| hop == name) else {
            continue;
        };
        if let Some(slot) = fixed.get_mut(found) {
            *slot = index as u8;
            found += 1;
        }
    }
    let fixed = fixed.get(..found).unwrap_or_default();
    // Names listed in Connection are read before Connection itself goes.
    let mut named: Vec<HeaderName> = Vec::new();
    if fixed.contains(&0) {
        named.extend(
            headers
                .get_all(header::CONNECTION)
                .iter()
                .flat_map(|v| list_elements(v.as_bytes()))
                .filter(|t| !t.is_empty())
                .filter_map(|t| HeaderName::from_bytes(t).ok()),
        );
    }
    for &index in fixed {
        if let Some(name) = HOP_BY_HOP.get(usize::from(index)) {
            headers.remove(name);
        }
    }
    for name in named {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_fixed_and_named_fields() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("connection", "keep-alive, X-Secret , close"),
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
            ("x-keep", "1"),
            ("accept", "*/*"),
        ] {
            h.append(HeaderName::from_static(n), v.parse().unwrap());
        }
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left.len(), 2);
        assert!(left.contains(&"x-keep") && left.contains(&"accept"));
    }

    /// The previous implementation (cloned names), kept to show the removal order is the same.
    fn reference(headers: &mut HeaderMap) {
        let hop = |n: &HeaderName| HOP_BY_HOP.iter().any(|h| h == n);
        let fixed: Vec<HeaderName> = headers.keys().filter(|n| hop(n)).cloned().collect();
        let mut named: Vec<HeaderName> = Vec::new();
        if headers.contains_key(header::CONNECTION) {
            named.extend(
                headers
                    .get_all(header::CONNECTION)
                    .iter()
                    .flat_map(|v| list_elements(v.as_bytes()))
                    .filter(|t| !t.is_empty())
                    .filter_map(|t| HeaderName::from_bytes(t).ok()),
            );
        }
        for name in fixed.into_iter().chain(named) {
            headers.remove(name);
        }
    }

    #[test]
    fn removal_order_matches_the_reference() {
        let names = [
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
        // Many subsets and orders of the names above, Connection naming x-b in some.
        for seed in 0u64..2000 {
            let mut rng = crate::rng::EngineRng::with_seed(seed);
            let mut h = HeaderMap::new();
            for _ in 0..(rng.next_u64() % 12) {
                let n = names[(rng.next_u64() % names.len() as u64) as usize];
                let v = if n == "connection" && rng.next_u64().is_multiple_of(2) {
                    "x-b, close"
                } else {
                    "1"
                };
                h.append(HeaderName::from_static(n), v.parse().unwrap());
            }
            let mut expected = h.clone();
            reference(&mut expected);
            strip_hop_by_hop(&mut h);
            let got: Vec<_> = h.iter().collect();
            let want: Vec<_> = expected.iter().collect();
            assert_eq!(got, want, "seed {seed}");
        }
    }

    #[test]
    fn ignores_invalid_connection_tokens() {
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, "a b, ,".parse().unwrap());
        h.append("x", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
    }
}
