//! RFC 9110/9112 character classes and line scanning shared by every parser in the codec.
//!
//! Everything here works on raw bytes with lookup tables: no allocation, no regexes, no
//! UTF-8 decoding. The head scanner ([`find_head_end`]) is what enforces the CRLF rule and the
//! size limits *before* any field is interpreted, so a truncated or oversized head is rejected
//! on bytes already buffered.

use super::byte_search::Lfs;
use super::error::ParseError;
use super::limits::Limits;

pub(crate) const fn build_tchar() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        i += 1;
    }
    t
}

static TCHAR: [bool; 256] = build_tchar();

/// `tchar` of RFC 9110 §5.6.2 (the characters of a token such as a method or field name).
#[inline]
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

/// A non-empty sequence of `tchar`.
#[inline]
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Visible ASCII (`VCHAR`, 0x21..=0x7E).
#[inline]
pub(crate) fn is_vchar(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
}

/// Optional whitespace (`OWS` = SP / HTAB).
#[inline]
pub(crate) fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Strips leading and trailing OWS.
pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if is_ows(*first) {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if is_ows(*last) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// Elements of a comma-separated list field value (`#element`), OWS-trimmed. Empty elements
/// are yielded too; RFC 9110 §5.6.1 says recipients ignore them, callers decide.
pub(crate) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows)
}

/// Given the LF at `lf` ending a line that starts at `line_start`, returns the end of the line
/// content (the index of its CR), or an error when the LF is not preceded by CR.
#[inline]
pub(crate) fn line_end(buf: &[u8], line_start: usize, lf: usize) -> Result<usize, ParseError> {
    if lf > line_start && buf.get(lf - 1) == Some(&b'\r') {
        Ok(lf - 1)
    } else {
        Err(ParseError::BareLineEnding)
    }
}

/// Where a field section ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scan {
    /// More bytes are needed.
    Incomplete,
    /// The empty line ends at `end` (exclusive); `fields` field lines precede it.
    Complete { end: usize, fields: usize },
}

/// Walks CRLF-terminated field lines starting at `from` until the empty line, enforcing CRLF
/// and the limits: the section (counted from `head_start`) may not exceed `max_header_bytes`
/// and may not hold more than `max_headers` lines. Limits are checked against what is
/// buffered, so an oversized section fails before it is complete.
pub(crate) fn find_head_end(
    buf: &[u8],
    from: usize,
    head_start: usize,
    limits: &Limits,
) -> Result<Scan, ParseError> {
    find_head_end_with(from, Lfs::new(buf, from), head_start, limits, |_| {})
}

/// [`find_head_end`], calling `on_line(lf)` with the position of each field line's LF in
/// the buffer, so that the passes after the scan can walk the lines without searching for each
/// LF again. `lfs` yields the LFs of the buffer at or after `from` (a head parser has already taken
/// its first line's from it, and the block it was found in serves the field lines). A scan
/// that ends incomplete or in error may have reported some lines: the caller forgets them.
pub(crate) fn find_head_end_with(
    from: usize,
    mut lfs: Lfs<'_>,
    head_start: usize,
    limits: &Limits,
    on_line: impl FnMut(usize),
) -> Result<Scan, ParseError> {
    let buf = lfs.buf();
    scan_lines(buf, from, || lfs.next_lf(), head_start, limits, on_line)
}

/// The walk of [`find_head_end_with`], the LFs coming from `next_lf`: each call must give the
/// first LF at or after the start of the next line (the byte after the LF before), which is
/// what a search from there gives (the tests' reference) and what [`Lfs`] gives.
#[inline]
fn scan_lines(
    buf: &[u8],
    from: usize,
    mut next_lf: impl FnMut() -> Option<usize>,
    head_start: usize,
    limits: &Limits,
    mut on_line: impl FnMut(usize),
) -> Result<Scan, ParseError> {
    let mut pos = from;
    let mut fields = 0usize;
    loop {
        match next_lf() {
            None => {
                if buf.len().saturating_sub(head_start) > limits.max_header_bytes {
                    return Err(ParseError::HeadTooLarge);
                }
                return Ok(Scan::Incomplete);
            }
            Some(lf) => {
                let end = line_end(buf, pos, lf)?;
                if lf + 1 - head_start > limits.max_header_bytes {
                    return Err(ParseError::HeadTooLarge);
                }
                if end == pos {
                    return Ok(Scan::Complete {
                        end: lf + 1,
                        fields,
                    });
                }
                fields += 1;
                #[cfg(feature = "mutants")]
                if crate::mutants::route().header_count_inclusive && fields >= limits.max_headers {
                    return Err(ParseError::TooManyHeaders);
                }
                if fields > limits.max_headers {
                    return Err(ParseError::TooManyHeaders);
                }
                on_line(lf);
                pos = lf + 1;
            }
        }
    }
}

/// Iterates the lines (without CRLF) of a field section already validated by
/// [`find_head_end`]: `block` holds complete CRLF-terminated lines, the empty line excluded.
pub(crate) fn field_lines(block: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = block;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let lf = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        let line = rest.get(..lf).unwrap_or(rest);
        rest = rest.get(lf + 1..).unwrap_or(&[]);
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_request_line_bytes: 100,
            max_header_bytes: 64,
            max_headers: 3,
        }
    }

    #[test]
    fn tchar_table() {
        assert!(is_tchar(b'a') && is_tchar(b'Z') && is_tchar(b'9') && is_tchar(b'~'));
        for b in [
            b' ', b':', b'(', b'"', b'\t', b'\r', b'\n', 0x7f, 0x80, b'@', b',', b';',
        ] {
            assert!(!is_tchar(b), "{b:#x}");
        }
        assert!(is_token(b"GET") && !is_token(b"") && !is_token(b"G T"));
    }

    #[test]
    fn trims_ows_only() {
        assert_eq!(trim_ows(b" \t a b\t "), b"a b");
        assert_eq!(trim_ows(b"\x0ba"), b"\x0ba");
        assert_eq!(trim_ows(b"   "), b"");
    }

    #[test]
    fn list_split() {
        let v: Vec<&[u8]> = list_elements(b"a, b ,,c").collect();
        assert_eq!(v, vec![&b"a"[..], b"b", b"", b"c"]);
    }

    #[test]
    fn scan_complete_and_incomplete() {
        let l = limits();
        assert_eq!(
            find_head_end(b"a: b\r\n\r\n", 0, 0, &l),
            Ok(Scan::Complete { end: 8, fields: 1 })
        );
        assert_eq!(find_head_end(b"a: b\r\n\r", 0, 0, &l), Ok(Scan::Incomplete));
        assert_eq!(
            find_head_end(b"\r\n", 0, 0, &l),
            Ok(Scan::Complete { end: 2, fields: 0 })
        );
    }

    #[test]
    fn scan_rejects_bare_lf() {
        let l = limits();
        assert_eq!(
            find_head_end(b"a: b\n\r\n", 0, 0, &l),
            Err(ParseError::BareLineEnding)
        );
        assert_eq!(
            find_head_end(b"a: b\r\n\n", 0, 0, &l),
            Err(ParseError::BareLineEnding)
        );
    }

    #[test]
    fn scan_limits_apply_before_completion() {
        let l = limits();
        let long = vec![b'x'; 65];
        assert_eq!(
            find_head_end(&long, 0, 0, &l),
            Err(ParseError::HeadTooLarge)
        );
        assert_eq!(
            find_head_end(b"a: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\n", 0, 0, &l),
            Err(ParseError::TooManyHeaders)
        );
    }

    #[test]
    fn recorded_lines_are_the_lines_of_the_block() {
        let buf = b"GET / HTTP/1.1\r\na: 1\r\nb:\r\ncc: 3\r\n\r\nbody";
        let mut lfs = Vec::new();
        let scan = find_head_end_with(16, Lfs::new(buf, 16), 0, &limits(), |lf| lfs.push(lf));
        let Ok(Scan::Complete { end, fields }) = scan else {
            panic!("{scan:?}")
        };
        assert_eq!((fields, lfs.len()), (3, 3));
        let mut start = 16;
        let recorded: Vec<&[u8]> = lfs
            .iter()
            .map(|&lf| {
                let line = &buf[start..lf - 1];
                start = lf + 1;
                line
            })
            .collect();
        let split: Vec<&[u8]> = field_lines(&buf[16..end - 2]).collect();
        assert_eq!(recorded, split);
        assert_eq!(recorded, [&b"a: 1"[..], b"b:", b"cc: 3"]);
    }

    /// The scan as it was before [`Lfs`]: a search for the LF from the start of each line.
    fn find_head_end_by_search(
        buf: &[u8],
        from: usize,
        head_start: usize,
        limits: &Limits,
        on_line: &mut Vec<usize>,
    ) -> Result<Scan, ParseError> {
        let mut pos = from;
        let next_lf = || {
            let lf = memchr::memchr(b'\n', buf.get(pos..)?)? + pos;
            pos = lf + 1;
            Some(lf)
        };
        scan_lines(buf, from, next_lf, head_start, limits, |lf| {
            on_line.push(lf)
        })
    }

    /// The scan over [`Lfs`] ends where, and as, the scan searching from each line's start
    /// did (the same end, field count, error and recorded LFs), on heads drawn from the bytes
    /// that matter, of any length, with any start and limits.
    #[quickcheck_macros::quickcheck]
    fn scan_agrees_with_the_search(raw: Vec<u8>, from: u8, max_bytes: u8, max_headers: u8) -> bool {
        const ALPHABET: &[u8] = b"\r\n\r\na:\r\n b";
        let buf: Vec<u8> = raw
            .iter()
            .map(|&b| ALPHABET[usize::from(b) % ALPHABET.len()])
            .collect();
        let from = usize::from(from) % (buf.len() + 2);
        let limits = Limits {
            max_request_line_bytes: 100,
            max_header_bytes: usize::from(max_bytes) * 2,
            max_headers: usize::from(max_headers % 40),
        };
        let head_start = from / 2;
        let (mut seen, mut expected) = (Vec::new(), Vec::new());
        let scan = find_head_end_with(from, Lfs::new(&buf, from), head_start, &limits, |lf| {
            seen.push(lf)
        });
        let reference = find_head_end_by_search(&buf, from, head_start, &limits, &mut expected);
        scan == reference && seen == expected
    }

    #[test]
    fn lines_of_block() {
        let v: Vec<&[u8]> = field_lines(b"a: 1\r\nb: 2\r\n").collect();
        assert_eq!(v, vec![&b"a: 1"[..], b"b: 2"]);
    }
}
