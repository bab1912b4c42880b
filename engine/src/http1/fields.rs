//! Field lines: `name: value` splitting and validation (RFC 9112 §5, RFC 9110 §5.5).
//!
//! Field names must be tokens immediately followed by the colon: whitespace before the colon
//! (`Transfer-Encoding : chunked`) is a classic smuggling vector and is rejected, as is a line
//! starting with whitespace (obsolete line folding). Values are OWS-trimmed and may contain
//! only HTAB, SP, VCHAR and obs-text; any other control character (NUL, CR, vertical tab...)
//! rejects the message.

use http::header::{HeaderName, HeaderValue};

use super::error::ParseError;
use super::syntax::{is_ows, is_tchar, trim_ows};

/// Splits a field line (without CRLF) into its name and OWS-trimmed value.
pub(crate) fn split_field(line: &[u8]) -> Result<(&[u8], &[u8]), ParseError> {
    match line.first() {
        Some(&b) if is_ows(b) => return Err(ParseError::ObsFold),
        None => return Err(ParseError::InvalidHeaderName),
        _ => {}
    }
    let name_len = line
        .iter()
        .position(|&b| !is_tchar(b))
        .unwrap_or(line.len());
    if name_len == 0 || line.get(name_len) != Some(&b':') {
        return Err(ParseError::InvalidHeaderName);
    }
    let name = line.get(..name_len).unwrap_or_default();
    let value = trim_ows(line.get(name_len + 1..).unwrap_or_default());
    Ok((name, value))
}

/// Converts a validated name and a raw value into `http` types (name lower-cased). The value
/// check rejects every CTL except HTAB, and DEL.
pub(crate) fn to_header(
    name: &[u8],
    value: &[u8],
) -> Result<(HeaderName, HeaderValue), ParseError> {
    to_header_in(name, value, None)
}

/// Like [`to_header`]; when `shared` is the buffer `value` points into, the value is a
/// reference-counted slice of it instead of a fresh allocation.
pub(crate) fn to_header_in(
    name: &[u8],
    value: &[u8],
    shared: Option<&bytes::Bytes>,
) -> Result<(HeaderName, HeaderValue), ParseError> {
    let name = match super::names::known(name) {
        Some(known) => known,
        None => HeaderName::from_bytes(name).map_err(|_| ParseError::InvalidHeaderName)?,
    };
    let value = match shared {
        Some(buf) if !value.is_empty() => HeaderValue::from_maybe_shared(buf.slice_ref(value)),
        _ => HeaderValue::from_bytes(value),
    }
    .map_err(|_| ParseError::InvalidHeaderValue)?;
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_trims() {
        assert_eq!(
            split_field(b"Host:  a.b \t"),
            Ok((&b"Host"[..], &b"a.b"[..]))
        );
        assert_eq!(split_field(b"x-empty:"), Ok((&b"x-empty"[..], &b""[..])));
        assert_eq!(split_field(b"a:b:c"), Ok((&b"a"[..], &b"b:c"[..])));
    }

    #[test]
    fn rejects_space_before_colon() {
        assert_eq!(
            split_field(b"Transfer-Encoding : chunked"),
            Err(ParseError::InvalidHeaderName)
        );
        assert_eq!(
            split_field(b"Transfer-Encoding\t: chunked"),
            Err(ParseError::InvalidHeaderName)
        );
    }

    #[test]
    fn rejects_obs_fold_and_bad_names() {
        assert_eq!(split_field(b" continued"), Err(ParseError::ObsFold));
        assert_eq!(split_field(b"\tchunked"), Err(ParseError::ObsFold));
        assert_eq!(split_field(b": v"), Err(ParseError::InvalidHeaderName));
        assert_eq!(split_field(b"no colon"), Err(ParseError::InvalidHeaderName));
        assert_eq!(split_field(b"a(b): v"), Err(ParseError::InvalidHeaderName));
        assert_eq!(
            split_field(b"a\x00b: v"),
            Err(ParseError::InvalidHeaderName)
        );
    }

    #[test]
    fn rejects_ctl_in_values() {
        for v in [
            &b"a\x00b"[..],
            b"\x0bchunked",
            b"a\rb",
            b"a\x7fb",
            b"a\x1bb",
        ] {
            assert_eq!(
                to_header(b"x", v).map(|_| ()),
                Err(ParseError::InvalidHeaderValue),
                "{v:?}"
            );
        }
        assert!(to_header(b"x", b"a\tb \xff").is_ok());
    }

    #[test]
    fn names_lower_cased() {
        let (n, _) = to_header(b"X-Custom-Thing", b"1").unwrap();
        assert_eq!(n.as_str(), "x-custom-thing");
    }
}
