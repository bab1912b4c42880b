//! Field names the mesh itself puts on messages, as static `HeaderName`s.
//!
//! `HeaderName::from_bytes` allocates for every name outside the `http` crate's standard set.
//! The fields one Trellis proxy adds (or Istio's tracing propagates) arrive at the next proxy
//! on every hop, so the parser recognises them and hands out these static names instead: the
//! same name, equal and hashed the same, without an allocation and a free per field.

use http::HeaderName;

pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) const X_FORWARDED_CLIENT_CERT: HeaderName =
    HeaderName::from_static("x-forwarded-client-cert");

/// Names worth recognising, grouped by length for [`known`].
static KNOWN: [HeaderName; 11] = [
    HeaderName::from_static("tracestate"),
    HeaderName::from_static("traceparent"),
    HeaderName::from_static("x-b3-spanid"),
    X_REQUEST_ID,
    HeaderName::from_static("x-b3-traceid"),
    HeaderName::from_static("x-b3-sampled"),
    HeaderName::from_static("x-forwarded-for"),
    X_FORWARDED_PROTO,
    HeaderName::from_static("x-b3-parentspanid"),
    HeaderName::from_static("x-envoy-overloaded"),
    HeaderName::from_static("x-trellis-response-flags"),
];

/// The static name for `raw` (a validated token, any case) when it is one of [`KNOWN`]. It
/// runs for every field, so most names are turned away on their first byte or their length.
pub(crate) fn known(raw: &[u8]) -> Option<HeaderName> {
    if !matches!(raw.first(), Some(b'x' | b'X' | b't' | b'T')) {
        return None;
    }
    let candidates = match raw.len() {
        10 => KNOWN.get(0..1),
        11 => KNOWN.get(1..3),
        12 => KNOWN.get(3..6),
        15 => KNOWN.get(6..7),
        17 => KNOWN.get(7..9),
        18 => KNOWN.get(9..10),
        24 => KNOWN.get(10..11),
        _ => None,
    }?;
    candidates
        .iter()
        .find(|n| raw.eq_ignore_ascii_case(n.as_str().as_bytes()))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_equal_parsed_ones() {
        for name in &KNOWN {
            let upper = name.as_str().to_ascii_uppercase();
            let parsed = HeaderName::from_bytes(upper.as_bytes()).unwrap();
            assert_eq!(known(upper.as_bytes()).as_ref(), Some(&parsed));
            let mut map = http::HeaderMap::new();
            map.insert(parsed, http::HeaderValue::from_static("1"));
            assert!(map.contains_key(name), "{name}");
        }
        assert_eq!(known(b"x-request-i"), None);
        assert_eq!(known(b"x-request-idd"), None);
        assert_eq!(known(b"host"), None);
        assert_eq!(known(b"transfer-encoding"), None);
        for name in &KNOWN {
            assert_eq!(known(name.as_str().as_bytes()).as_ref(), Some(name));
        }
    }
}
