//! Field lines: `name: value` splitting, validation and name lower-casing (RFC 9112 §5,
//! RFC 9110 §5.5).
//!
//! Field names must be tokens immediately followed by the colon: whitespace before the colon
//! (`Transfer-Encoding : chunked`) is a classic smuggling vector and is rejected, as is a line
//! starting with whitespace (obsolete line folding). Values are OWS-trimmed and may contain
//! only HTAB, SP, VCHAR and obs-text; any other control character (NUL, CR, vertical tab...)
//! rejects the message.

use std::ops::Range;

use http::header::{HeaderName, HeaderValue};

use super::byte_search::{lower_plain_name, value_ok};
use super::error::ParseError;
use super::field_list::{valid_value, MAX_NAME_LEN};
use super::syntax::{build_tchar, is_ows, is_tchar, trim_ows};

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

/// A table for [`take_field_line`]: a name byte's lower-case form, or 0 if it is not a
/// `tchar` (0 is not one either), so one lookup both checks and lower-cases.
const fn build_lower_tchar() -> [u8; 256] {
    let tchar = build_tchar();
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        if tchar[i] {
            t[i] = b.to_ascii_lowercase();
        }
        i += 1;
    }
    t
}

static LOWER_TCHAR: [u8; 256] = build_lower_tchar();

/// A field line of a received head (without CRLF), in one pass over its name: the name is
/// checked to be a token directly followed by the colon and lower-cased in place as it is
/// read, then the value is OWS-trimmed and checked. The same rules, and the same errors in
/// the same order, as [`split_field`] followed by the value and name-length checks; the head
/// parsers used to walk each line three times (colon search and lower-casing, token scan,
/// value check). Returns the name's length and the value's range in `line`.
pub(crate) fn take_field_line(line: &mut [u8]) -> Result<(usize, Range<usize>), ParseError> {
    match line.first() {
        Some(&b) if is_ows(b) => return Err(ParseError::ObsFold),
        None => return Err(ParseError::InvalidHeaderName),
        _ => {}
    }
    let mut name_len = 0;
    for b in line.iter_mut() {
        let lower = LOWER_TCHAR[usize::from(*b)];
        if lower == 0 {
            break;
        }
        *b = lower;
        name_len += 1;
    }
    if name_len == 0 || line.get(name_len) != Some(&b':') {
        return Err(ParseError::InvalidHeaderName);
    }
    if name_len > MAX_NAME_LEN {
        return Err(ParseError::InvalidHeaderName);
    }
    Ok((name_len, field_value(line, 0..line.len(), name_len)?))
}

/// The OWS-trimmed value of the field line at `at` in `head` whose name (`name_len` bytes)
/// and colon have been read, as its range in the line, once checked: sixteen bytes at a
/// compare where `head` has them ([`value_ok`]), else by [`valid_value`].
#[inline]
fn field_value(head: &[u8], at: Range<usize>, name_len: usize) -> Result<Range<usize>, ParseError> {
    let line = head.get(at.clone()).unwrap_or_default();
    let mut start = name_len + 1;
    let mut end = line.len();
    while start < end && line.get(start).is_some_and(|&b| is_ows(b)) {
        start += 1;
    }
    while end > start && line.get(end - 1).is_some_and(|&b| is_ows(b)) {
        end -= 1;
    }
    let valid = value_ok(head, at.start + start, at.start + end)
        .unwrap_or_else(|| valid_value(line.get(start..end).unwrap_or_default()));
    if !valid {
        return Err(ParseError::InvalidHeaderValue);
    }
    Ok(start..end)
}

/// A received field line, taken by [`take_field_lines`]: where its name (lower-cased) and
/// value lie in the head as (start, length), and the head to read them from.
///
/// The name and value are read on demand ([`FieldAt::name_is`], [`FieldAt::value`]): the
/// head parsers look most fields' bytes up never (their name's length already rules out every
/// name they interpret), and building both slices for every line, with their bounds checks,
/// was ~30 instructions a line.
pub(crate) struct FieldAt<'a> {
    head: &'a [u8],
    pub(crate) name_at: (usize, usize),
    pub(crate) value_at: (usize, usize),
}

impl<'a> FieldAt<'a> {
    /// The name (lower-cased).
    #[inline]
    pub(crate) fn name(&self) -> &'a [u8] {
        let (at, len) = self.name_at;
        self.head.get(at..at + len).unwrap_or_default()
    }

    /// Whether the name is `lower` (a lower-case name): the length first, from the span.
    #[inline]
    pub(crate) fn name_is(&self, lower: &[u8]) -> bool {
        self.name_at.1 == lower.len() && self.name() == lower
    }

    /// The value (OWS-trimmed).
    #[inline]
    pub(crate) fn value(&self) -> &'a [u8] {
        let (at, len) = self.value_at;
        self.head.get(at..at + len).unwrap_or_default()
    }
}

/// Takes each field line of `head` with [`take_field_line`] and hands it to `on_field`, in
/// order; the first error stops the walk. The lines are the ones the head scan recorded
/// (`lfs`, each line's LF, checked to follow a CR; the first line starts at `from`), so no LF
/// is searched for again. Inlined into each head parser (one caller each), so the closure
/// and the walk are one loop.
#[inline]
pub(crate) fn take_field_lines(
    head: &mut [u8],
    from: usize,
    lfs: &[usize],
    mut on_field: impl FnMut(FieldAt<'_>) -> Result<(), ParseError>,
) -> Result<(), ParseError> {
    let mut start = from;
    for &lf in lfs {
        debug_assert!(
            lf > start && head.get(lf - 1) == Some(&b'\r'),
            "CRLF at {lf}"
        );
        // Most names are a few letters, digits and '-' before the colon: one 16-byte block
        // reads those (lower-casing them as the walk would), the walk reads the rest.
        let (name_len, value) = match lower_plain_name(head, start, lf - 1 - start) {
            Some(name_len) => (name_len, field_value(head, start..lf - 1, name_len)?),
            None => take_field_line(head.get_mut(start..lf - 1).unwrap_or_default())?,
        };
        let value_at = (start + value.start, value.len());
        on_field(FieldAt {
            head,
            name_at: (start, name_len),
            value_at,
        })?;
        start = lf + 1;
    }
    Ok(())
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

    /// What the head parsers did before [`take_field_line`]: split, then check the name's
    /// length and the value, the name lower-cased.
    fn reference(line: &[u8]) -> Result<(Vec<u8>, Vec<u8>), ParseError> {
        let (name, value) = split_field(line)?;
        if name.len() > MAX_NAME_LEN {
            return Err(ParseError::InvalidHeaderName);
        }
        if !valid_value(value) {
            return Err(ParseError::InvalidHeaderValue);
        }
        Ok((name.to_ascii_lowercase(), value.to_vec()))
    }

    fn one_pass(line: &[u8]) -> Result<(Vec<u8>, Vec<u8>), ParseError> {
        let mut line = line.to_vec();
        let (name_len, value) = take_field_line(&mut line)?;
        Ok((line[..name_len].to_vec(), line[value].to_vec()))
    }

    #[test]
    fn one_pass_lower_cases_and_validates() {
        let mut line = b"Content-LENGTH: \t 42 \t".to_vec();
        let (name_len, value) = take_field_line(&mut line).unwrap();
        assert_eq!(&line[..name_len], b"content-length");
        assert_eq!(&line[value], b"42");
        assert_eq!(
            &line[name_len..],
            b": \t 42 \t",
            "only the name is rewritten"
        );
        for (bad, err) in [
            (&b" x: 1"[..], ParseError::ObsFold),
            (b"\tx: 1", ParseError::ObsFold),
            (b"", ParseError::InvalidHeaderName),
            (b": v", ParseError::InvalidHeaderName),
            (
                b"Transfer-Encoding : chunked",
                ParseError::InvalidHeaderName,
            ),
            (
                b"Transfer-Encoding\t: chunked",
                ParseError::InvalidHeaderName,
            ),
            (b"a\x00b: v", ParseError::InvalidHeaderName),
            (b"no colon", ParseError::InvalidHeaderName),
            (b"x: a\rb", ParseError::InvalidHeaderValue),
            (b"x: a\x7fb", ParseError::InvalidHeaderValue),
            (b"x: \x0bchunked", ParseError::InvalidHeaderValue),
        ] {
            assert_eq!(
                one_pass(bad),
                Err(err),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [vec![b'A'; MAX_NAME_LEN + 1], b": v".to_vec()].concat();
        assert_eq!(one_pass(&long), Err(ParseError::InvalidHeaderName));
        let longest = [vec![b'A'; MAX_NAME_LEN], b": v".to_vec()].concat();
        assert_eq!(one_pass(&longest), reference(&longest));
        assert_eq!(
            one_pass(b"x: a\tb \xff"),
            Ok((b"x".to_vec(), b"a\tb \xff".to_vec()))
        );
    }

    /// The one pass accepts, rejects (with the same error) and splits exactly as the three
    /// passes it replaced, on arbitrary lines drawn mostly from the bytes that matter.
    #[quickcheck_macros::quickcheck]
    fn one_pass_agrees_with_split_and_check(raw: Vec<u8>) -> bool {
        const ALPHABET: &[u8] = b"aZ-:: \t\r\x00\x7f\xff,(\"9";
        let line: Vec<u8> = raw
            .iter()
            .map(|&b| {
                if b < 128 {
                    ALPHABET[usize::from(b) % ALPHABET.len()]
                } else {
                    b
                }
            })
            .collect();
        one_pass(&line) == reference(&line)
    }

    /// A head's field lines taken by [`take_field_lines`] (whose plain names are read a
    /// block at a time) against [`take_field_line`] on each line alone: the same names,
    /// values, places and rewritten head, or the same first error. Lines are drawn mostly
    /// from the bytes that matter and around the block's sixteen bytes long.
    #[quickcheck_macros::quickcheck]
    fn block_names_agree_with_the_walk(raw: Vec<Vec<u8>>, tail: u8) -> bool {
        const ALPHABET: &[u8] = b"aZ-:: \t9_.Qz\x00\x7f\xff,(\r";
        let mut head = Vec::new();
        let mut lfs = Vec::new();
        for line in raw.iter().take(6) {
            head.extend(
                line.iter()
                    .take(40)
                    .map(|&b| ALPHABET[usize::from(b) % ALPHABET.len()]),
            );
            head.extend_from_slice(b"\r\n");
            lfs.push(head.len() - 1);
        }
        head.extend(std::iter::repeat_n(b'A', usize::from(tail % 20)));
        let mut walked = head.clone();
        let mut expected = Vec::new();
        let mut start = 0;
        let mut expected_err = None;
        for &lf in &lfs {
            match take_field_line(&mut walked[start..lf - 1]) {
                Ok((name_len, value)) => {
                    expected.push(((start, name_len), (start + value.start, value.len())))
                }
                Err(e) => {
                    expected_err = Some(e);
                    break;
                }
            }
            start = lf + 1;
        }
        let mut taken = Vec::new();
        let result = take_field_lines(&mut head, 0, &lfs, |field| {
            assert_eq!(field.name(), &walked[field.name_at.0..][..field.name_at.1]);
            assert_eq!(
                field.value(),
                &walked[field.value_at.0..][..field.value_at.1]
            );
            assert!(field.name_is(field.name()));
            assert!(!field.name_is(&[field.name(), b"x"].concat()));
            taken.push((field.name_at, field.value_at));
            Ok(())
        });
        match expected_err {
            Some(e) => result == Err(e) && taken == expected,
            None => result.is_ok() && taken == expected && head == walked,
        }
    }

    /// Every pair of bytes after a first name byte, before the colon: the block read of a
    /// plain name and the walk agree on all 256 values of each (signed compares included).
    #[test]
    fn block_names_agree_on_every_byte_pair() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let mut head = vec![b'X', a, b, b':', b' ', b'v', b'\r', b'\n'];
                head.extend_from_slice(b"................");
                let lfs = [7usize];
                let mut walked = head.clone();
                let expected = take_field_line(&mut walked[..6]);
                let mut got = None;
                let r = take_field_lines(&mut head, 0, &lfs, |f| {
                    got = Some((f.name_at, f.value_at));
                    Ok(())
                });
                match expected {
                    Ok((n, v)) => {
                        assert!(r.is_ok(), "{a} {b}");
                        assert_eq!(got, Some(((0, n), (v.start, v.len()))), "{a} {b}");
                        assert_eq!(head, walked, "{a} {b}");
                    }
                    Err(e) => assert_eq!(r, Err(e), "{a} {b}"),
                }
            }
        }
    }

    #[test]
    fn names_lower_cased() {
        let (n, _) = to_header(b"X-Custom-Thing", b"1").unwrap();
        assert_eq!(n.as_str(), "x-custom-thing");
    }
}
