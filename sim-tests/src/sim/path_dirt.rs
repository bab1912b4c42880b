//! Request paths as hostile or careless clients write them, and the path the mesh must see:
//! Istio's `meshConfig.pathNormalization` in the swarm.
//!
//! Some seeds with the routing vocabulary send a share of their paths *dirty*: a `.` or
//! `seg/..` segment, the dots written `%2e`/`%2E`, a doubled `/`, an unreserved letter
//! percent-encoded in either hex case, a `/` written `%2F`/`%2f`, a trailing `/.` or `/..`.
//! Every check of the routing mesh (which rule matched, the path the upstream got after
//! rewrites, redirect `Location`s) then holds the engine to the *normalized* path, as Envoy
//! routes, rewrites and forwards what `ConnectionManagerUtility::maybeNormalizePath`
//! (source/common/http/conn_manager_utility.cc) left.
//!
//! **Reference semantics** ([`normalize`]), from RFC 3986 and the documented meaning of each
//! mode pilot sets (`listener_builder.go`, the switch on `MeshConfig_ProxyPathNormalization`),
//! written without the engine's code, for the characters generated here:
//! - `NONE`: the path is routed and forwarded as sent;
//! - `BASE` (Istio's default, Envoy's `normalize_path`): percent-escapes of unreserved
//!   characters (RFC 3986 §2.3: letters, digits, `-._~`) decoded, other escapes kept as
//!   written (so `%2F` and `%2f` stay), then `remove_dot_segments` (§5.2.4), which never
//!   climbs above the root;
//! - `MERGE_SLASHES`: `BASE`, then runs of `/` collapsed to one (Envoy's `mergeSlashes`,
//!   which keeps a leading and a trailing `/`: a path of slashes only stays `//`);
//! - `DECODE_AND_MERGE_SLASHES`: `%2F`/`%2f` decoded to `/` first
//!   (`path_with_escaped_slashes_action: UNESCAPE_AND_FORWARD`), then `MERGE_SLASHES`.
//!
//! The query is never touched; no generated path holds a NUL, `\` or a stray `%` (the
//! engine's own tests cover those against Envoy's table).

use serde::{Deserialize, Serialize};
use trellis_engine::path::PathNormalization;

use super::scenario::{RequestVocab, Scenario};

/// `meshConfig.pathNormalization.normalization`, as the scenario sets it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathMode {
    None,
    #[default]
    Base,
    MergeSlashes,
    DecodeAndMergeSlashes,
}

impl PathMode {
    /// The engine's setting.
    pub fn engine(self) -> PathNormalization {
        match self {
            PathMode::None => PathNormalization::None,
            PathMode::Base => PathNormalization::Base,
            PathMode::MergeSlashes => PathNormalization::MergeSlashes,
            PathMode::DecodeAndMergeSlashes => PathNormalization::DecodeAndMergeSlashes,
        }
    }

    pub fn is_base(&self) -> bool {
        *self == PathMode::Base
    }
}

/// Turns dirty paths on in some seeds with the routing vocabulary, with the mode, from a
/// stream of its own.
pub(super) fn generate(seed: u64, scn: &mut Scenario) {
    let mut r = fastrand::Rng::with_seed(seed ^ 0x9a7d_d127_0000_0018);
    let Some(vocab) = scn.requests.as_mut() else {
        return;
    };
    if r.u8(0..100) >= 40 {
        return;
    }
    vocab.path_dirt_percent = [10, 30, 60][r.usize(0..3)];
    vocab.normalization = match r.u8(0..10) {
        0..=3 => PathMode::Base,
        4 | 5 => PathMode::None,
        6 | 7 => PathMode::MergeSlashes,
        _ => PathMode::DecodeAndMergeSlashes,
    };
}

/// A request's path as the mesh must see it and, when the client spells it dirty, as sent:
/// the dirt is drawn only in seeds that send it, so the others keep their draws.
pub(super) fn draw(
    r: &mut fastrand::Rng,
    vocab: &RequestVocab,
    path: String,
) -> (String, Option<String>) {
    let path = if path.is_empty() { "/".into() } else { path };
    if vocab.path_dirt_percent == 0 || r.u8(0..100) >= vocab.path_dirt_percent {
        return (path, None);
    }
    let sent = dirty(r, &path);
    (normalize(&sent, vocab.normalization), Some(sent))
}

/// The coverage table's row for `vocab`'s dirty paths, if it sends any.
pub(super) fn coverage_row(vocab: &RequestVocab) -> Option<&'static str> {
    (vocab.path_dirt_percent > 0).then_some(match vocab.normalization {
        PathMode::Base => "paths sent dirty, pathNormalization BASE",
        PathMode::None => "paths sent dirty, pathNormalization NONE",
        PathMode::MergeSlashes => "paths sent dirty, pathNormalization MERGE_SLASHES",
        PathMode::DecodeAndMergeSlashes => {
            "paths sent dirty, pathNormalization DECODE_AND_MERGE_SLASHES"
        }
    })
}

/// A dirty spelling of `path` (which starts with `/`): one or two of the edits of the module
/// docs, at random places.
pub fn dirty(r: &mut fastrand::Rng, path: &str) -> String {
    let mut out = path.to_string();
    for _ in 0..r.usize(1..=2) {
        // Boundaries: the byte index of every `/`.
        let slashes: Vec<usize> = out.match_indices('/').map(|(i, _)| i).collect();
        let at = slashes[r.usize(0..slashes.len())];
        let hex = |r: &mut fastrand::Rng, lower: &str, upper: &str| {
            if r.bool() { lower } else { upper }.to_string()
        };
        match r.u8(0..8) {
            0 => out.insert_str(at, "/."),
            1 => out.insert_str(at, "/zz/.."),
            2 => {
                let dot = hex(r, "%2e", "%2E");
                out.insert_str(at, &format!("/{dot}"));
            }
            3 => {
                let dots = [".%2E", "%2e%2e", "%2E."][r.usize(0..3)];
                out.insert_str(at, &format!("/q/{dots}"));
            }
            4 => out.insert(at, '/'),
            5 => {
                // Percent-encode one letter or digit that is not part of an escape already
                // (a nested escape is Chromium's `CheckForNestedEscapes` corner, left to the
                // engine's own tests).
                let bytes = out.as_bytes();
                let in_escape = |i: usize| bytes[i.saturating_sub(2)..i].contains(&b'%');
                let plain: Vec<usize> = (0..bytes.len())
                    .filter(|&i| bytes[i].is_ascii_alphanumeric() && !in_escape(i))
                    .collect();
                if let Some(&i) = plain.get(r.usize(0..plain.len().max(1))) {
                    let b = out.as_bytes()[i];
                    let code = if r.bool() {
                        format!("%{b:02x}")
                    } else {
                        format!("%{b:02X}")
                    };
                    out.replace_range(i..=i, &code);
                }
            }
            6 => {
                if at > 0 {
                    out.replace_range(at..=at, &hex(r, "%2f", "%2F"));
                } else {
                    out.push_str(if r.bool() { "/." } else { "/.." });
                }
            }
            _ => out.push_str(if r.bool() { "/." } else { "/.." }),
        }
    }
    out
}

/// The path the mesh must see for `sent` under `mode` (the module docs' reference).
pub fn normalize(sent: &str, mode: PathMode) -> String {
    if mode == PathMode::None {
        return sent.to_string();
    }
    let mut path = sent.to_string();
    if mode == PathMode::DecodeAndMergeSlashes {
        path = path.replace("%2F", "/").replace("%2f", "/");
    }
    let path = remove_dot_segments(&decode_unreserved(&path));
    if mode == PathMode::Base {
        return path;
    }
    merge_slashes(&path)
}

/// Envoy's `PathUtil::mergeSlashes` (source/common/http/path_utility.cc): a path without `//`
/// is left alone; otherwise a leading `/`, the non-empty segments joined by `/`, and a
/// trailing `/` if the path had one (so a path of slashes only is `//`).
fn merge_slashes(path: &str) -> String {
    if !path.contains("//") {
        return path.to_string();
    }
    let prefix = if path.starts_with('/') { "/" } else { "" };
    let suffix = if path.ends_with('/') { "/" } else { "" };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    format!("{prefix}{}{suffix}", segments.join("/"))
}

/// Percent-escapes of RFC 3986 unreserved characters decoded; every other escape kept.
fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let decoded = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(b) = decoded.filter(|b| b.is_ascii_alphanumeric() || b"-._~".contains(b)) {
                out.push(char::from(b));
                i += 3;
                continue;
            }
        }
        out.push(char::from(bytes[i]));
        i += 1;
    }
    out
}

/// RFC 3986 §5.2.4 for an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path;
    let mut out: Vec<&str> = Vec::new();
    // Segments after the leading `/`; a trailing `.` or `..` leaves a trailing `/`.
    input = input.strip_prefix('/').unwrap_or(input);
    let segments: Vec<&str> = input.split('/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3986 §5.4's dot-segment examples (paths only) and the modes' documented steps.
    #[test]
    fn normalize_follows_the_rfc_and_the_modes() {
        let base = |p| normalize(p, PathMode::Base);
        assert_eq!(base("/a/b/c/./../../g"), "/a/g");
        assert_eq!(base("/mid/content=5/../6"), "/mid/6");
        assert_eq!(base("/../a"), "/a");
        assert_eq!(base("/a/.."), "/");
        assert_eq!(base("/a/."), "/a/");
        assert_eq!(base("/a/%2e%2E/b"), "/b");
        assert_eq!(base("/%61pi/x"), "/api/x");
        assert_eq!(base("/a%2Fb//c"), "/a%2Fb//c");
        assert_eq!(base("/a//../b"), "/a/b");
        assert_eq!(normalize("/a//b/./c", PathMode::MergeSlashes), "/a/b/c");
        assert_eq!(
            normalize("/a%2fb%2F/c", PathMode::DecodeAndMergeSlashes),
            "/a/b/c"
        );
        assert_eq!(normalize("/a/../b", PathMode::None), "/a/../b");
        // mergeSlashes keeps a leading and a trailing slash: slashes only stay `//`.
        assert_eq!(normalize("//.", PathMode::MergeSlashes), "//");
        assert_eq!(normalize("/a//", PathMode::MergeSlashes), "/a/");
    }

    /// Every dirty spelling starts with `/` and normalizes under `BASE` to what the engine
    /// makes of it: checked here against the engine only as a sanity test of the generator
    /// (the simulator's checks never call the engine's normalizer).
    #[test]
    fn dirty_paths_agree_with_the_engine_on_samples() {
        let mut r = fastrand::Rng::with_seed(7);
        for mode in [
            PathMode::Base,
            PathMode::MergeSlashes,
            PathMode::DecodeAndMergeSlashes,
        ] {
            for path in ["/", "/api", "/api/v1/items", "/a.b/c-d"] {
                for _ in 0..200 {
                    let sent = dirty(&mut r, path);
                    assert!(sent.starts_with('/'), "{sent}");
                    let engine = trellis_engine::path::normalize(&sent, mode.engine())
                        .map(|p| p.into_owned());
                    assert_eq!(
                        engine.as_deref(),
                        Ok(normalize(&sent, mode).as_str()),
                        "{sent} under {mode:?}"
                    );
                }
            }
        }
    }
}
