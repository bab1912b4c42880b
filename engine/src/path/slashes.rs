//! The two slash transforms Istio's stronger path normalizations add to Envoy's
//! connection manager: `merge_slashes` (`MERGE_SLASHES`) and
//! `path_with_escaped_slashes_action: UNESCAPE_AND_FORWARD` (`DECODE_AND_MERGE_SLASHES`).
//!
//! Both follow `source/common/http/path_utility.cc`: `PathUtil::mergeSlashes` (collapse runs
//! of `/`, keeping a leading and a trailing one) and `PathUtil::unescapeSlashes` (`%2F`/`%2f`
//! become `/`, `%5C`/`%5c` become `\`, which canonicalization then reads as `/`). They see the
//! path only (the caller splits the query off) and borrow it when there is nothing to do.

use std::borrow::Cow;

/// `path` with every run of `/` made one (`PathUtil::mergeSlashes`). Envoy keeps one leading
/// and one trailing `/` and joins the non-empty segments between, so a path of slashes only
/// (`//`, `///`) becomes `//`, as in Envoy.
pub(super) fn merge_slashes(path: &str) -> Cow<'_, str> {
    if memchr::memmem::find(path.as_bytes(), b"//").is_none() {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    if path.starts_with('/') {
        out.push('/');
    }
    for (n, segment) in path.split('/').filter(|s| !s.is_empty()).enumerate() {
        if n > 0 {
            out.push('/');
        }
        out.push_str(segment);
    }
    if path.ends_with('/') {
        out.push('/');
    }
    Cow::Owned(out)
}

/// `path` with escaped slashes and backslashes decoded (`PathUtil::unescapeSlashes`). Other
/// escapes are left for canonicalization.
pub(super) fn unescape_slashes(path: &str) -> Cow<'_, str> {
    let bytes = path.as_bytes();
    let escaped_slash = |at: usize| match bytes.get(at..at + 3) {
        Some([b'%', b'2', b'f' | b'F']) => Some('/'),
        Some([b'%', b'5', b'c' | b'C']) => Some('\\'),
        _ => None,
    };
    let Some(first) = memchr::memchr_iter(b'%', bytes).find(|&i| escaped_slash(i).is_some()) else {
        return Cow::Borrowed(path);
    };
    let mut out = String::with_capacity(path.len());
    out.push_str(&path[..first]);
    let mut i = first;
    while i < bytes.len() {
        if let Some(c) = escaped_slash(i) {
            out.push(c);
            i += 3;
        } else {
            let next = memchr::memchr(b'%', &bytes[i + 1..]).map_or(bytes.len(), |n| i + 1 + n);
            out.push_str(&path[i..next]);
            i = next;
        }
    }
    Cow::Owned(out)
}
