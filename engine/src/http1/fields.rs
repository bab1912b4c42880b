//! Field lines: `name: value` splitting, validation and name lower-casing (RFC 9112 §5,
//! RFC 9110 §5.5).
//!
//! Field names must be tokens immediately followed by the colon: whitespace before the colon
//! (`Transfer-Encoding : chunked`) is a classic smuggling vector and is rejected, as is a line
//! starting with whitespace (obsolete line folding). Values are OWS-trimmed and may contain
//! only HTAB, SP, VCHAR and obs-text; any other control character (NUL, CR, vertical tab...)
//! rejects the message.

use http::header::{HeaderName, HeaderValue};

use super::error::ParseError;
use super::field_list::{valid_value, MAX_NAME_LEN};
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

/// Checks what `split_field` left to check of a head's field: a value holds no CTL but HTAB
/// and no DEL, and a name is not absurdly long (what `HeaderValue` and `HeaderName` checked).
pub(crate) fn check_field(name: &[u8], value: &[u8]) -> Result<(), ParseError> {
    if name.len() > MAX_NAME_LEN {
        return Err(ParseError::InvalidHeaderName);
    }
    if !valid_value(value) {
        return Err(ParseError::InvalidHeaderValue);
    }
    Ok(())
}

/// Lower-cases the field names of a head in place (each field line up to its colon), so the
/// field list can point at them and compare them byte for byte. Run before validation: it
/// only changes ASCII capitals, which are tokens in either case. The lines are the ones the
/// head scan reported (`lfs`, the first starting at `from`; see `syntax::recorded_lines`), so
/// no LF is searched for again, and each name is lower-cased as a slice (which vectorises)
/// rather than tested a byte at a time.
pub(crate) fn lower_field_names(head: &mut [u8], from: usize, lfs: &[usize]) {
    let mut start = from;
    for &lf in lfs {
        if let Some(line) = head.get_mut(start..lf) {
            let name_len = memchr::memchr(b':', line).unwrap_or(line.len());
            if let Some(name) = line.get_mut(..name_len) {
                name.make_ascii_lowercase();
            }
        }
        start = lf + 1;
    }
}

/// Where `part` (a sub-slice of `buf`) lies in `buf`, as (start, length).
pub(crate) fn span(buf: &[u8], part: &[u8]) -> (usize, usize) {
    let start = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    debug_assert!(start + part.len() <= buf.len(), "not a part of the buffer");
    (start, part.len())
}

/// Converts a validated name and a raw value into `http` types (name lower-cased), for
/// trailers. The value check rejects every CTL except HTAB, and DEL.
pub(crate) fn to_header(
    name: &[u8],
    value: &[u8],
) -> Result<(HeaderName, HeaderValue), ParseError> {
    let name = HeaderName::from_bytes(name).map_err(|_| ParseError::InvalidHeaderName)?;
    let value = HeaderValue::from_bytes(value).map_err(|_| ParseError::InvalidHeaderValue)?;
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
    fn lower_cases_names_only() {
        let mut block = b"X-A: B\r\nHost: Ex.COM\r\nno-colon-Here\r\nz:Q\r\n".to_vec();
        let lfs: Vec<usize> = (0..block.len()).filter(|&i| block[i] == b'\n').collect();
        lower_field_names(&mut block, 0, &lfs);
        assert_eq!(
            &block[..],
            b"x-a: B\r\nhost: Ex.COM\r\nno-colon-here\r\nz:Q\r\n"
        );
    }

    #[test]
    fn checks_values_and_name_length() {
        assert_eq!(
            check_field(b"x", b"a\rb"),
            Err(ParseError::InvalidHeaderValue)
        );
        assert_eq!(check_field(b"x", b"a\tb \xff"), Ok(()));
        let long = vec![b'a'; MAX_NAME_LEN + 1];
        assert_eq!(check_field(&long, b""), Err(ParseError::InvalidHeaderName));
    }

    #[test]
    fn names_lower_cased() {
        let (n, _) = to_header(b"X-Custom-Thing", b"1").unwrap();
        assert_eq!(n.as_str(), "x-custom-thing");
    }
}
