//! RFC 3986 path canonicalization as Envoy's `normalize_path` does it.
//!
//! Envoy's `PathUtil::canonicalPath` (`source/common/http/path_utility.cc`) hands the path
//! (the `:path` before its first `?`) to Chromium's URL path canonicalizer
//! (`url::CanonicalizePath`, vendored first as `source/common/chromium_url/url_canon_path.cc`,
//! `DoPartialPath`). Its behaviour, byte by byte:
//!
//! - `.` and `..` segments are removed (RFC 3986 §5.2.4), `%2e`/`%2E` counting as a dot; `..`
//!   never climbs above the root (`/a/../../c` is `/c`, not an error); a trailing `.`/`..`
//!   leaves the path ending in `/`. A dot that does not make a whole segment (`/a.b`, `/.x`) is
//!   kept, a `%2e` one decoded to `.`.
//! - `\` is read as `/` (the output has `/`).
//! - A percent escape of an unreserved character (`A-Z a-z 0-9 - _ ~`) is decoded; any other
//!   valid escape is kept exactly as written (hex case included, so `%2F` and `%2f` stay);
//!   a `%` not followed by two hex digits is kept as it is, unless what follows would make it
//!   a valid escape once decoded (`%%30%30`), when it becomes `%25` (`CheckForNestedEscapes`).
//! - Characters that may not appear in a path (controls, space, `"` `#` `<` `>` `?` `^` `` ` ``
//!   `{` `|` `}`, DEL and every non-ASCII byte) are percent-encoded, upper-case hex.
//! - A NUL, raw or as `%00`, fails the whole canonicalization: Envoy answers 400.
//! - A path not starting with `/` gets one; an empty path is `/`.
//!
//! The output is written through [`Out`], which only copies when the output stops being a
//! prefix of the input: an unchanged path (the common case) costs no allocation.

use std::borrow::Cow;

/// What the canonicalizer does with a byte met unescaped in the input.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Copied as is; also kept escaped when met escaped.
    Pass,
    /// Copied as is; decoded when met escaped (RFC 3986 unreserved characters).
    Unescape,
    /// Percent-encoded in the output.
    Escape,
    /// NUL: percent-encoded, and the path is refused.
    Invalid,
    /// `.`, `%` and `\`, handled by the loop itself.
    Special,
}

const fn class(b: u8) -> Class {
    match b {
        0 => Class::Invalid,
        b'.' | b'%' | b'\\' => Class::Special,
        b'-' | b'_' | b'~' | b'0'..=b'9' | b'A'..=b'Z' | b'a'..=b'z' => Class::Unescape,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'/' | b':' | b';'
        | b'=' | b'@' | b'[' | b']' => Class::Pass,
        _ => Class::Escape,
    }
}

/// Bytes that pass through unchanged wherever they are (neither special nor escaped).
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = matches!(class(b as u8), Class::Pass | Class::Unescape);
        b += 1;
    }
    t
};

/// Whether canonicalization leaves `path` as it is without looking further: it starts with
/// `/` and has no dot, `%`, `\` or byte to escape. The cheap test of the common case.
pub(super) fn is_plain(path: &[u8]) -> bool {
    path.first() == Some(&b'/') && path.iter().all(|&b| PLAIN[usize::from(b)])
}

/// The canonicalizer found a NUL (raw or `%00`): Envoy refuses the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Refused;

/// The canonical form of `path` (no query), borrowed from it when it is unchanged or a
/// prefix of it.
pub(super) fn canonical(path: &str) -> Result<Cow<'_, str>, Refused> {
    let spec = path.as_bytes();
    let mut out = Out::new(spec);
    if spec.first().is_none_or(|&b| !is_slash(b)) {
        out.push(b'/');
    }
    let mut ok = true;
    // Where in the output a `%` that did not start a valid escape was written.
    let mut bad_percent: Option<usize> = None;
    let end = spec.len();
    let mut i = 0;
    while i < end {
        let b = spec[i];
        let kind = class(b);
        if matches!(kind, Class::Pass | Class::Unescape) {
            out.push(b);
        } else if let Some(dot) = dot_len(spec, i) {
            if out.last() == Some(b'/') {
                match after_dot(spec, i + dot) {
                    AfterDot::NotDirectory => {
                        out.push(b'.');
                        i += dot - 1;
                    }
                    AfterDot::Current(consumed) => i += dot + consumed - 1,
                    AfterDot::Up(consumed) => {
                        #[cfg(feature = "mutants")]
                        let up = !crate::mutants::route().path_dot_dot_keeps_parent;
                        #[cfg(not(feature = "mutants"))]
                        let up = true;
                        if up {
                            out.back_up_to_previous_slash();
                        }
                        i += dot + consumed - 1;
                    }
                }
            } else {
                out.push(b'.');
                i += dot - 1;
            }
        } else if b == b'\\' {
            out.push(b'/');
        } else if b == b'%' {
            match decode_escape(spec, i) {
                Some(value) if class(value) == Class::Unescape => {
                    i += 2;
                    out.push(value);
                    if bad_percent.is_some_and(|p| p + 3 >= out.len()) {
                        if let Some(p) = bad_percent {
                            out.fix_nested_escape(spec, i + 1, p);
                        }
                    }
                }
                Some(value) => {
                    out.push(b'%');
                    out.push(spec[i + 1]);
                    out.push(spec[i + 2]);
                    i += 2;
                    if value == 0 {
                        ok = false;
                    }
                }
                None => {
                    bad_percent = Some(out.len());
                    out.push(b'%');
                }
            }
        } else {
            // Escape or Invalid.
            out.push_escaped(b);
            if kind == Class::Invalid {
                ok = false;
            }
        }
        i += 1;
    }
    if !ok {
        return Err(Refused);
    }
    Ok(out.finish())
}

fn is_slash(b: u8) -> bool {
    b == b'/' || b == b'\\'
}

/// `.` is 1 byte, `%2e`/`%2E` 3; `None` if `spec[i..]` does not start with a dot.
fn dot_len(spec: &[u8], i: usize) -> Option<usize> {
    match spec.get(i..)? {
        [b'.', ..] => Some(1),
        [b'%', b'2', b'e' | b'E', ..] => Some(3),
        _ => None,
    }
}

/// What a dot that follows a `/` turns out to be (Chromium's `ClassifyAfterDot`), with the
/// input bytes after it that belong to it (the second dot, the slash that ends the segment).
enum AfterDot {
    NotDirectory,
    Current(usize),
    Up(usize),
}

fn after_dot(spec: &[u8], after: usize) -> AfterDot {
    let Some(&next) = spec.get(after) else {
        return AfterDot::Current(0);
    };
    if is_slash(next) {
        return AfterDot::Current(1);
    }
    if let Some(second) = dot_len(spec, after) {
        match spec.get(after + second) {
            None => return AfterDot::Up(second),
            Some(&b) if is_slash(b) => return AfterDot::Up(second + 1),
            Some(_) => {}
        }
    }
    AfterDot::NotDirectory
}

/// The byte `%XY` at `spec[i..]` stands for, if `X` and `Y` are hex digits.
fn decode_escape(spec: &[u8], i: usize) -> Option<u8> {
    match spec.get(i..i + 3)? {
        [b'%', hi, lo] => Some((hex(*hi)? << 4) | hex(*lo)?),
        _ => None,
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// The output, kept as a length into the input for as long as it is a prefix of it.
struct Out<'a> {
    input: &'a [u8],
    len: usize,
    owned: Option<Vec<u8>>,
}

impl<'a> Out<'a> {
    fn new(input: &'a [u8]) -> Self {
        Out {
            input,
            len: 0,
            owned: None,
        }
    }

    fn len(&self) -> usize {
        self.owned.as_ref().map_or(self.len, Vec::len)
    }

    fn at(&self, i: usize) -> u8 {
        match &self.owned {
            Some(v) => v[i],
            None => self.input[i],
        }
    }

    fn last(&self) -> Option<u8> {
        self.len().checked_sub(1).map(|i| self.at(i))
    }

    fn owned(&mut self) -> &mut Vec<u8> {
        let (input, len) = (self.input, self.len);
        self.owned.get_or_insert_with(|| {
            let mut v = Vec::with_capacity(input.len() + 8);
            v.extend_from_slice(&input[..len]);
            v
        })
    }

    fn push(&mut self, b: u8) {
        match &mut self.owned {
            Some(v) => v.push(b),
            None if self.input.get(self.len) == Some(&b) => self.len += 1,
            None => self.owned().push(b),
        }
    }

    fn push_escaped(&mut self, b: u8) {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        self.push(b'%');
        self.push(HEX[usize::from(b >> 4)]);
        self.push(HEX[usize::from(b & 0xf)]);
    }

    fn set(&mut self, i: usize, b: u8) {
        if self.at(i) != b {
            self.owned()[i] = b;
        }
    }

    fn truncate(&mut self, n: usize) {
        match &mut self.owned {
            Some(v) => v.truncate(n),
            None => self.len = self.len.min(n),
        }
    }

    /// Drops the last segment: the output ends in `/`; cut back to the `/` before it, never
    /// past the first (Chromium's `BackUpToPreviousSlash`).
    fn back_up_to_previous_slash(&mut self) {
        let Some(mut i) = self.len().checked_sub(1) else {
            return;
        };
        debug_assert_eq!(self.at(i), b'/');
        if i == 0 {
            return;
        }
        i -= 1;
        while i > 0 && self.at(i) != b'/' {
            i -= 1;
        }
        self.truncate(i + 1);
    }

    /// A byte was just decoded within two bytes after a `%` (at `percent`) that began no
    /// valid escape. If that `%` now begins one (`%%30%30` would read `%00`), it becomes
    /// `%25` so the output cannot be decoded into something else (`CheckForNestedEscapes`).
    fn fix_nested_escape(&mut self, spec: &[u8], next: usize, percent: usize) {
        let length = self.len();
        let last = self.at(length - 1);
        let append_next = percent + 2 == length;
        if append_next {
            match spec.get(next) {
                Some(&b) if b < 0x80 => self.push(b),
                _ => return,
            }
        }
        let decodes = self.len() == percent + 3
            && hex(self.at(percent + 1)).is_some()
            && hex(self.at(percent + 2)).is_some();
        if decodes {
            if !append_next {
                let c = self.at(percent + 1);
                self.push(c);
            }
            self.set(percent + 1, b'2');
            self.set(percent + 2, b'5');
            self.push(last);
        } else if append_next {
            self.truncate(length);
        }
    }

    fn finish(self) -> Cow<'a, str> {
        let bytes = match self.owned {
            Some(v) => Cow::Owned(v),
            None => Cow::Borrowed(&self.input[..self.len]),
        };
        // Every byte written is ASCII: non-ASCII input is percent-encoded, and a borrowed
        // prefix only holds bytes that matched such output.
        debug_assert!(bytes.is_ascii());
        match bytes {
            Cow::Borrowed(b) => match std::str::from_utf8(b) {
                Ok(s) => Cow::Borrowed(s),
                Err(_) => Cow::Owned(String::from_utf8_lossy(b).into_owned()),
            },
            Cow::Owned(v) => Cow::Owned(
                String::from_utf8(v)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            ),
        }
    }
}
