//! Text of a request head kept where it arrived: the request target and the authority.
//!
//! A parsed request head used to copy its target and authority into two `String`s: two of the
//! three heap allocations of a proxied request, two UTF-8 checks, and a `split_once('?')`
//! each time routing, authorization or the access log asked for the path. [`HeadStr`] is
//! instead a span of the received head's own `Bytes` (or, after a rewrite, of an owned
//! buffer, or a static), read as `&str` without another check; [`Target`] adds where the
//! path ends, found once at parse time.
//!
//! Both deref to `str`, compare with `str`/`String`, and print (`Display` and `Debug`)
//! exactly as the `String` they replace, so logs and the simulator's traces are unchanged.
//!
//! This file holds the engine's only `unsafe` block: [`HeadStr::as_str`] reads the bytes as
//! UTF-8 without checking them again. Every constructor checks (a `Bytes` is accepted only
//! after a UTF-8 check; `String` and `&'static str` already are UTF-8) and the bytes are
//! immutable afterwards, which is the same argument `http`'s internal `ByteStr` rests on.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use bytes::Bytes;

use super::byte_search::find_byte;

/// An immutable UTF-8 string held in a shared [`Bytes`]: cloning it, or taking it from the
/// received head, copies no text.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct HeadStr(Bytes);

impl HeadStr {
    /// Wraps `bytes` if they are UTF-8 (the parser's targets and authorities are ASCII, which
    /// is checked first, a word at a time).
    pub fn from_utf8(bytes: Bytes) -> Result<Self, std::str::Utf8Error> {
        if !bytes.is_ascii() {
            std::str::from_utf8(&bytes)?;
        }
        Ok(HeadStr(bytes))
    }

    /// A string that lives for the whole program, without copying it.
    pub const fn from_static(s: &'static str) -> Self {
        HeadStr(Bytes::from_static(s.as_bytes()))
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor of `HeadStr` establishes that `self.0` is UTF-8
        // (`from_utf8` checks it, `String` and `&str` are UTF-8 by type), and `Bytes` is
        // immutable, so the bytes are still UTF-8 here.
        #[allow(unsafe_code)]
        unsafe {
            std::str::from_utf8_unchecked(&self.0)
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// `Deref<Target = str>`, `AsRef<str>`, `Display` and `Debug` as the `str` (so as the `String`
/// each type replaces: `Debug` is `"…"` with escapes), and equality with `str`, `&str` and
/// `String`, for a type with an `as_str()`.
macro_rules! str_like {
    ($($t:ty),*) => {$(
        impl Deref for $t {
            type Target = str;
            fn deref(&self) -> &str {
                self.as_str()
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self.as_str(), f)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.as_str(), f)
            }
        }
        str_like!(@eq $t: str, &str, String);
    )*};
    (@eq $t:ty: $($other:ty),*) => {$(
        impl PartialEq<$other> for $t {
            fn eq(&self, other: &$other) -> bool {
                self.as_str() == &other[..]
            }
        }
        impl PartialEq<$t> for $other {
            fn eq(&self, other: &$t) -> bool {
                &self[..] == other.as_str()
            }
        }
    )*};
}
str_like!(HeadStr, Target);

impl Borrow<str> for HeadStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

/// Hashes as the `str` it holds (so `Borrow<str>` lookups agree).
impl Hash for HeadStr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl From<String> for HeadStr {
    fn from(s: String) -> Self {
        HeadStr(Bytes::from(s.into_bytes()))
    }
}

impl From<&'static str> for HeadStr {
    fn from(s: &'static str) -> Self {
        HeadStr::from_static(s)
    }
}

impl From<HeadStr> for String {
    fn from(s: HeadStr) -> Self {
        s.as_str().to_owned()
    }
}

/// A request target (`/path?query`, `*`, or CONNECT's `host:port`) with the end of its path
/// recorded, so [`Target::path`] and [`Target::query`] don't search for the `?` again.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    text: HeadStr,
    /// Bytes before the first `?` (all of them when there is none).
    path_len: usize,
}

impl Target {
    pub fn as_str(&self) -> &str {
        self.text.as_str()
    }

    /// The length of [`Target::path`]: where the first '?' is (the length when none).
    pub fn path_len(&self) -> usize {
        self.path_len
    }

    /// The target up to (not including) the first '?'.
    pub fn path(&self) -> &str {
        self.as_str().get(..self.path_len).unwrap_or_default()
    }

    /// The query after the first '?', if there is one.
    pub fn query(&self) -> Option<&str> {
        self.as_str().get(self.path_len..)?.strip_prefix('?')
    }

    /// The target as a plain [`HeadStr`] (for the access log).
    pub fn into_str(self) -> HeadStr {
        self.text
    }
}

impl From<HeadStr> for Target {
    /// Inline: once a request, and whether it was inlined across codegen units moved with
    /// unrelated changes (~48 instructions).
    #[inline]
    fn from(text: HeadStr) -> Self {
        let path_len = find_byte(b'?', text.as_bytes()).unwrap_or(text.len());
        Target { text, path_len }
    }
}

impl From<String> for Target {
    fn from(s: String) -> Self {
        Target::from(HeadStr::from(s))
    }
}

impl From<&'static str> for Target {
    fn from(s: &'static str) -> Self {
        Target::from(HeadStr::from_static(s))
    }
}

impl From<Target> for HeadStr {
    fn from(t: Target) -> Self {
        t.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_query() {
        let t = |s: &'static str| Target::from(s);
        assert_eq!(t("/a/b?x=1?y").path(), "/a/b");
        assert_eq!(t("/a/b?x=1?y").query(), Some("x=1?y"));
        assert_eq!(t("/a").query(), None);
        assert_eq!(t("/a").path(), "/a");
        assert_eq!(t("/a?").query(), Some(""));
        assert_eq!(t("*").path(), "*");
        assert_eq!(t("").path(), "");
    }

    #[test]
    fn span_of_shared_bytes_is_not_a_copy() {
        let head = Bytes::from_static(b"GET /x HTTP/1.1\r\n");
        let s = HeadStr::from_utf8(head.slice(4..6)).unwrap();
        assert_eq!(s, "/x");
        assert_eq!(s.as_bytes().as_ptr(), head[4..].as_ptr());
    }

    #[test]
    fn only_utf8_is_accepted() {
        assert!(HeadStr::from_utf8(Bytes::from_static(b"\xff")).is_err());
        assert!(HeadStr::from_utf8(Bytes::from_static(b"\xe2\x82")).is_err());
        let euro = HeadStr::from_utf8(Bytes::from_static("€".as_bytes())).unwrap();
        assert_eq!(euro, "€");
    }

    /// Logs and traces print these as they printed the `String`s they replace.
    #[test]
    fn formats_as_the_string_it_replaces() {
        for s in ["/a?b=\"c\"", "h\r\nx", ""] {
            let owned = s.to_string();
            let head = HeadStr::from(owned.clone());
            assert_eq!(format!("{head:?}"), format!("{owned:?}"));
            assert_eq!(format!("{head}"), owned);
            let target = Target::from(owned.clone());
            assert_eq!(format!("{target:?}"), format!("{owned:?}"));
            assert_eq!(format!("{target}"), owned);
        }
    }

    #[test]
    fn hashes_as_str() {
        use std::collections::hash_map::DefaultHasher;
        let h = |x: &dyn Fn(&mut DefaultHasher)| {
            let mut s = DefaultHasher::new();
            x(&mut s);
            s.finish()
        };
        let a = HeadStr::from_static("reviews:9080");
        assert_eq!(h(&|s| a.hash(s)), h(&|s| "reviews:9080".hash(s)));
    }
}
