//! The path authorization sees: the request path with dot segments resolved, as Envoy sees it
//! after Istio's default path normalization (`meshConfig.pathNormalization: BASE`, which sets
//! the connection manager's `normalize_path`; `pilot/pkg/networking/core/listener_builder.go`).
//!
//! Without it, `DENY paths: ["/admin*"]` would not see `/public/../admin` or `/./admin`, which the
//! application resolves to `/admin`. Only RFC 3986 §5.2.4 `remove_dot_segments` is done, with
//! `%2e`/`%2E` read as `.` in a segment (Chromium's URL canonicalizer, which Envoy's
//! `PathUtil::canonicalPath` uses, does the same); the rest of Envoy's canonicalization
//! (percent-encoding case, backslashes) is not. The query is left as it is. The engine still
//! forwards the path it received: only the authorization decision uses this one.

use std::borrow::Cow;

/// Whether a segment is `.` or `..` (possibly percent-encoded): `Some(true)` for `..`.
fn dot_segment(segment: &str) -> Option<bool> {
    let mut dots = 0;
    let mut rest = segment;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
        } else if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case("%2e") {
            rest = &rest[3..];
        } else {
            return None;
        }
        dots += 1;
    }
    match dots {
        1 => Some(false),
        2 => Some(true),
        _ => None,
    }
}

/// `target` (path and query) with the dot segments of its path removed. Borrows when there
/// are none (the common case).
pub fn normalized(target: &str) -> Cow<'_, str> {
    let (path, query) = match target.find('?') {
        Some(i) => target.split_at(i),
        None => (target, ""),
    };
    if !path.starts_with('/') || !path.split('/').any(|s| dot_segment(s).is_some()) {
        return Cow::Borrowed(target);
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate() {
        match dot_segment(segment) {
            Some(parent) => {
                if parent {
                    out.pop();
                }
                // A trailing `.` or `..` leaves the path ending in `/`.
                if i == last {
                    out.push("");
                }
            }
            None => out.push(segment),
        }
    }
    Cow::Owned(format!("/{}{query}", out.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck_macros::quickcheck;

    #[test]
    fn dot_segments_resolve_as_rfc_3986() {
        // RFC 3986 §5.2.4's examples, and the percent-encoded dots.
        for (input, want) in [
            ("/a/b/c/./../../g", "/a/g"),
            ("/./admin", "/admin"),
            ("/public/../admin?x=/../y", "/admin?x=/../y"),
            ("/%2e%2E/admin", "/admin"),
            ("/a/.%2e/admin", "/admin"),
            ("/../../x", "/x"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/a/...", "/a/..."),
            ("/a/.b/..c", "/a/.b/..c"),
            ("/plain/path?q=1", "/plain/path?q=1"),
            ("*", "*"),
        ] {
            assert_eq!(normalized(input), want, "{input}");
        }
        assert!(matches!(normalized("/x/y"), Cow::Borrowed(_)));
    }

    #[quickcheck]
    fn normalized_paths_have_no_dot_segments_and_are_fixed_points(segs: Vec<u8>) -> bool {
        let words = ["a", ".", "..", "%2e", "b", ""];
        let path: String = segs
            .iter()
            .map(|s| format!("/{}", words[usize::from(*s) % words.len()]))
            .collect();
        let path = if path.is_empty() {
            "/".to_string()
        } else {
            path
        };
        let once = normalized(&path).into_owned();
        once.split('/').all(|s| dot_segment(s).is_none()) && normalized(&once) == once
    }
}
