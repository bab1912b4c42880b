//! Tables from Envoy's `test/common/http/path_utility_test.cc` (`PathUtilityTest` and
//! `PathTransformationTest`) and `test/common/http/conn_manager_utility_test.cc`
//! (`MergeSlashes*`, `*EscapedSlashes*`), then properties of the composition.

use std::borrow::Cow;

use quickcheck_macros::quickcheck;

use super::canonical::canonical;
use super::slashes::{merge_slashes, unescape_slashes};
use super::{normalize, normalize_target, PathError, PathNormalization as Mode};
use crate::http1::Target;

fn base(path: &str) -> Result<String, PathError> {
    normalize(path, Mode::Base).map(Cow::into_owned)
}

/// Each input normalizes under `BASE` to the output beside it.
fn assert_base(table: &[(&str, &str)]) {
    for (input, want) in table {
        assert_eq!(base(input).as_deref(), Ok(*want), "{input:?}");
    }
}

/// `AlreadyNormalPaths`: unchanged, and borrowed.
#[test]
fn already_normal_paths_are_borrowed() {
    for path in [
        "/xyz",
        "/x/y/z",
        "/index.html",
        "/.well-known/x",
        "/a.b/c..d",
        "/a?b=/../c",
    ] {
        let out = normalize(path, Mode::Base).unwrap();
        assert_eq!(out, path);
        assert!(matches!(out, Cow::Borrowed(_)), "{path} was copied");
    }
}

/// `InvalidPaths`: a NUL, escaped or nested in escapes, fails the whole path.
#[test]
fn paths_with_a_nul_are_refused() {
    for path in [
        "/xyz/.%00../abc",
        "/xyz/%00.%00./abc",
        "/xyz/AAAAA%%0000/abc",
        "/a\0b",
    ] {
        assert_eq!(base(path), Err(PathError), "{path}");
    }
}

/// `NormalizeValidPaths` and `NormalizeCasePath`.
#[test]
fn valid_paths_normalize_as_envoy() {
    assert_base(&[
        ("/a/b/../c", "/a/c"),
        ("/a/b/./c", "/a/b/c"),
        ("a/b/../c", "/a/c"),
        ("/a/b/../../../../c", "/c"),
        ("/a/..\\c", "/c"),
        ("/%c0%af", "/%c0%af"),
        ("/%5c%25", "/%5c%25"),
        ("/a/b/%2E%2E/c", "/a/c"),
        ("/a/b/%2E./c", "/a/c"),
        ("/a/b/%2E/c", "/a/b/c"),
        ("..", "/"),
        ("/../a/b", "/a/b"),
        ("/./a/b", "/a/b"),
        ("/A/B/C", "/A/B/C"),
        ("/a/b/%2e%2e/c", "/a/c"),
        ("/a/%2F%2f/c", "/a/%2F%2f/c"),
    ]);
}

/// Chromium's byte rules (`url_canon_path.cc`, `kPathCharLookup`): unreserved escapes are
/// decoded, others kept as written, characters a path may not hold are escaped, `\` is `/`.
#[test]
fn escapes_and_reserved_characters() {
    assert_base(&[
        ("/%41%7e%2D%5f%30", "/A~-_0"),
        ("/%2f%3F%23%25", "/%2f%3F%23%25"),
        ("/a\"b<c>{d}|^`", "/a%22b%3Cc%3E%7Bd%7D%7C%5E%60"),
        ("/caf\u{e9}", "/caf%C3%A9"),
        ("/a\\b\\..\\c", "/a/c"),
        ("/a/.%2e", "/"),
        ("/a/%2e.b", "/a/..b"),
        ("/a/b/.", "/a/b/"),
        ("/a/b/..", "/a/"),
        ("/a/...", "/a/..."),
        ("/100%", "/100%"),
        ("/%zz%4", "/%zz%4"),
        // A `%` that began no escape would begin one once `%30` is decoded: it becomes `%25`
        // (`CheckForNestedEscapes`).
        ("/%%30%30", "/%2500"),
        ("/%%32F", "/%252F"),
        ("", "/"),
    ]);
}

/// `PathUtil::canonicalPath` keeps the query as it was (`?` and all after it).
#[test]
fn the_query_is_kept_as_received() {
    assert_base(&[
        ("/a/../b?x=/../y&z=%41", "/b?x=/../y&z=%41"),
        ("/a/./b?", "/a/b?"),
        ("/%41?%41", "/A?%41"),
        ("/a//b?c//d", "/a//b?c//d"),
    ]);
}

/// `MergeSlashes` (`PathUtilityTest` and `PathTransformationTest`).
#[test]
fn merge_slashes_as_envoy() {
    for (input, want) in [
        ("", ""),
        ("a//b/c", "a/b/c"),
        ("/a//b/c/", "/a/b/c/"),
        ("a//b/c/", "a/b/c/"),
        ("/a", "/a"),
        ("//a/b/c", "/a/b/c"),
        ("/a//b/c", "/a/b/c"),
        ("/a/b/c//", "/a/b/c/"),
        ("/a///b/c", "/a/b/c"),
        ("/a////b/c", "/a/b/c"),
        ("//", "//"),
    ] {
        assert_eq!(merge_slashes(input), want, "{input}");
    }
    for (input, want) in [
        ("/a//b?a=///c", "/a/b?a=///c"),
        ("/a//b?", "/a/b?"),
        ("//a/?b", "/a/?b"),
    ] {
        assert_eq!(
            normalize(input, Mode::MergeSlashes).as_deref(),
            Ok(want),
            "{input}"
        );
    }
}

/// `UnescapeSlashes` (`PathUtilityTest`).
#[test]
fn unescape_slashes_as_envoy() {
    for (input, want) in [
        ("", ""),
        ("%2f%2F", "//"),
        ("/a%2Fb%2fc/", "/a/b/c/"),
        ("%2b", "%2b"),
        ("/a/b/c", "/a/b/c"),
        ("%5c%5C", "\\\\"),
        ("/a%2F%", "/a/%"),
        ("%%2F", "%/"),
    ] {
        assert_eq!(unescape_slashes(input), want, "{input}");
    }
}

/// The modes compose as `ConnectionManagerUtility::maybeNormalizePath`: unescape slashes,
/// canonicalize, merge slashes (`conn_manager_utility_test.cc`: `MergeSlashesWithoutNormalization`
/// is not reachable from Istio, whose merge modes always normalize).
#[test]
fn modes_compose_as_the_connection_manager() {
    let cases = [
        ("/a/../b//c", ["/a/../b//c", "/b//c", "/b/c", "/b/c"]),
        (
            "/a%2F..%2Fb",
            ["/a%2F..%2Fb", "/a%2F..%2Fb", "/a%2F..%2Fb", "/b"],
        ),
        (
            "/a%5c..%5Cb?q=%2F",
            [
                "/a%5c..%5Cb?q=%2F",
                "/a%5c..%5Cb?q=%2F",
                "/a%5c..%5Cb?q=%2F",
                "/b?q=%2F",
            ],
        ),
        ("/a%2F%2Fb", ["/a%2F%2Fb", "/a%2F%2Fb", "/a%2F%2Fb", "/a/b"]),
        ("//x/./y", ["//x/./y", "//x/y", "/x/y", "/x/y"]),
    ];
    let modes = [
        Mode::None,
        Mode::Base,
        Mode::MergeSlashes,
        Mode::DecodeAndMergeSlashes,
    ];
    for (input, wants) in cases {
        for (mode, want) in modes.iter().zip(wants) {
            assert_eq!(
                normalize(input, *mode).as_deref(),
                Ok(want),
                "{input} {mode:?}"
            );
        }
    }
    // NONE passes even what BASE refuses.
    assert_eq!(normalize("/%00", Mode::None).as_deref(), Ok("/%00"));
}

/// A canonical path that is a prefix of the received one is borrowed too.
#[test]
fn a_shortened_path_without_query_is_borrowed() {
    let out = canonical("/a/b/..").unwrap();
    assert_eq!(out, "/a/");
    assert!(matches!(out, Cow::Borrowed(_)));
    assert!(matches!(
        normalize("/a/b/..", Mode::Base),
        Ok(Cow::Borrowed("/a/"))
    ));
    assert!(matches!(normalize("/a/./b", Mode::Base), Ok(Cow::Owned(_))));
}

const WORDS: [&str; 22] = [
    "a", ".", "..", "%2e", "%2E.", "b", "", "%2F", "%5c", "\\", "%41", "%", "%%30", "%3", "~",
    "\u{e9}", "x.y", ".a", "//", "%25", "\"", "%2f..",
];

fn path_of(segs: &[u8]) -> String {
    let mut path: String = segs
        .iter()
        .map(|s| format!("/{}", WORDS[usize::from(*s) % WORDS.len()]))
        .collect();
    if path.is_empty() {
        path.push('/');
    }
    path
}

fn is_dot_segment(s: &str) -> bool {
    matches!(s, "." | "..")
}

const MODES: [Mode; 3] = [Mode::Base, Mode::MergeSlashes, Mode::DecodeAndMergeSlashes];

/// Normalizing twice is normalizing once, and no `.`/`..` segment is left.
#[quickcheck]
fn normalized_paths_are_fixed_points_without_dot_segments(segs: Vec<u8>, mode: u8) -> bool {
    let mode = MODES[usize::from(mode) % MODES.len()];
    let path = path_of(&segs);
    let Ok(once) = normalize(&path, mode) else {
        return true;
    };
    let twice = normalize(&once, mode).map(Cow::into_owned);
    twice.as_deref() == Ok(&*once) && !once.split('/').any(is_dot_segment)
}

/// Arbitrary text (not only the words above) normalizes to a fixed point too.
#[quickcheck]
fn any_text_normalizes_to_a_fixed_point(text: String, mode: u8) -> bool {
    let mode = MODES[usize::from(mode) % MODES.len()];
    let path = format!("/{}", text.replace('?', "/"));
    let Ok(once) = normalize(&path, mode) else {
        return true;
    };
    normalize(&once, mode).map(Cow::into_owned).as_deref() == Ok(&*once)
}

/// Whatever the path, the query comes back byte for byte.
#[quickcheck]
fn the_query_is_untouched(segs: Vec<u8>, query: String, mode: u8) -> bool {
    let mode = MODES[usize::from(mode) % MODES.len()];
    let target = format!("{}?{query}", path_of(&segs));
    match normalize(&target, mode) {
        Ok(out) => {
            out.ends_with(&format!("?{query}")) && out.find('?') == out.rfind(&format!("?{query}"))
        }
        Err(PathError) => true,
    }
}

/// A parsed target normalized with the path end it recorded answers exactly as the text
/// searched again, in every mode (targets with and without a query, several '?').
#[quickcheck]
fn a_target_normalizes_as_its_text(segs: Vec<u8>, query: Option<String>, mode: u8) -> bool {
    let modes = [
        Mode::None,
        Mode::Base,
        Mode::MergeSlashes,
        Mode::DecodeAndMergeSlashes,
    ];
    let mode = modes[usize::from(mode) % modes.len()];
    let text = match query {
        Some(q) => format!("{}?{q}", path_of(&segs)),
        None => path_of(&segs),
    };
    let target = Target::from(text.clone());
    normalize_target(&target, mode) == normalize(&text, mode)
}
