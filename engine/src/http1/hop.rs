//! Hop-by-hop field removal (RFC 9110 §7.6.1).
//!
//! A proxy must not forward fields that describe only the connection they arrived on. The
//! framing fields (Content-Length, Transfer-Encoding) are removed too: the encoder re-derives
//! them from the decided framing, so what goes out never depends on how the peer spelled them.

use http::header::{self, HeaderMap, HeaderName};

use super::syntax::list_elements;

/// Removes connection, keep-alive, proxy-connection, te, trailer, transfer-encoding, upgrade,
/// content-length and every field named in Connection.
///
/// One pass over the names decides what to remove, so the common message with none of these
/// fields costs no hash lookups.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // The fixed fields are known names (cloning them is free); only names listed in Connection
    // need a list, and only when there is a Connection field.
    let mut fixed: [Option<HeaderName>; 8] = Default::default();
    let mut found = 0;
    let mut has_connection = false;
    for name in headers.keys() {
        let hop = name == header::CONNECTION || is_hop_by_hop(name);
        has_connection |= name == header::CONNECTION;
        if hop {
            if let Some(slot) = fixed.get_mut(found) {
                *slot = Some(name.clone());
                found += 1;
            }
        }
    }
    // Names listed in Connection are read before Connection itself goes.
    let mut named: Vec<HeaderName> = Vec::new();
    if has_connection {
        named.extend(
            headers
                .get_all(header::CONNECTION)
                .iter()
                .flat_map(|v| list_elements(v.as_bytes()))
                .filter(|t| !t.is_empty())
                .filter_map(|t| HeaderName::from_bytes(t).ok()),
        );
    }
    for name in fixed.into_iter().flatten().chain(named) {
        headers.remove(name);
    }
}

/// The fields that always describe only one connection (or its framing).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == header::CONTENT_LENGTH
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
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

    #[test]
    fn ignores_invalid_connection_tokens() {
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, "a b, ,".parse().unwrap());
        h.append("x", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
    }
}
