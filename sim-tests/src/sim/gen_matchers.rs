//! Generating string conditions for the routing vocabulary: paths, `StringMatch`es of every
//! kind (exact, prefix, regex with and without anchors, empty) and header or query conditions
//! (including presence and Istio's `*`), each with the values probed around it (case flipped,
//! one character short or long, empty, absent). [`super::gen_routes`] builds rules from them.
//!
//! Every function draws from the caller's RNG in a fixed order: moving or changing a draw
//! changes the scenarios of existing seeds.

use super::scenario::*;
use super::vocab::NamedMatch;

/// A literal that may appear in paths, header and query values (no regex metacharacters).
const SEGMENTS: &[&str] = &["api", "v1", "Users", "static", "img", "r", "a-b", "x_y"];
pub(super) const WORDS: &[&str] = &["alpha", "Beta", "gamma", "abc", "a", "Zed", "v2"];

pub(super) fn flip_case(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_lowercase() {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

pub(super) fn pick<'a>(r: &mut fastrand::Rng, xs: &'a [&'a str]) -> &'a str {
    xs[r.usize(0..xs.len())]
}

/// A path like `/api/Users`, one to three segments.
pub(super) fn gen_path(r: &mut fastrand::Rng) -> String {
    let n = r.usize(1..=3);
    let mut p = String::new();
    for _ in 0..n {
        p.push('/');
        p.push_str(pick(r, SEGMENTS));
    }
    p
}

/// Values near `v` that a matcher must tell apart from it.
pub(super) fn near_values(r: &mut fastrand::Rng, v: &str) -> Vec<String> {
    let mut out = vec![v.to_string(), flip_case(v), format!("{v}x")];
    if let Some((i, _)) = v.char_indices().last() {
        out.push(v[..i].to_string());
    }
    if r.bool() {
        out.push(format!("z{v}"));
    }
    out
}

/// A regex and strings on both sides of it (the anchoring and case cases included).
pub(super) fn gen_regex(r: &mut fastrand::Rng, lit: &str) -> (String, Vec<String>) {
    match r.u8(0..6) {
        0 => (
            format!("{lit}[0-9]+"),
            vec![
                format!("{lit}7"),
                format!("{lit}42"),
                lit.to_string(),
                format!("{lit}7x"),
                format!("x{lit}7"),
                format!("{}7", flip_case(lit)),
            ],
        ),
        1 => (
            format!("^{lit}.*$"),
            vec![
                lit.to_string(),
                format!("{lit}/more"),
                format!("z{lit}"),
                flip_case(lit),
            ],
        ),
        2 => {
            let other = pick(r, WORDS);
            (
                format!("({lit}|{other})"),
                vec![
                    lit.to_string(),
                    other.to_string(),
                    format!("{lit}{other}"),
                    flip_case(other),
                ],
            )
        }
        3 => (
            format!(".*{lit}"),
            vec![
                format!("abc{lit}"),
                lit.to_string(),
                format!("{lit}z"),
                flip_case(lit),
            ],
        ),
        4 => (
            "[a-z]+".to_string(),
            vec!["abc".into(), "ABC".into(), "ab1".into(), lit.to_string()],
        ),
        _ => (
            format!("(?i){lit}"),
            vec![lit.to_string(), flip_case(lit), format!("{lit}s")],
        ),
    }
}

/// A `StringMatch` on some value space plus the probes around it. `lit` is a literal typical
/// of that space.
pub(super) fn gen_str_match(
    r: &mut fastrand::Rng,
    lit: &str,
    allow_empty: bool,
) -> (StrMatch, Vec<String>) {
    match r.u8(0..10) {
        0..=3 => {
            let v = if allow_empty && r.u8(0..10) == 0 {
                String::new()
            } else {
                lit.to_string()
            };
            let probes = near_values(r, &v);
            (StrMatch::Exact(v), probes)
        }
        4..=6 => {
            let cut = if allow_empty && r.u8(0..8) == 0 {
                0
            } else {
                r.usize(1..=lit.len().max(1)).min(lit.len())
            };
            let p = lit[..cut].to_string();
            let mut probes = near_values(r, &p);
            probes.push(lit.to_string());
            probes.push(format!("{p}tail"));
            (StrMatch::Prefix(p), probes)
        }
        _ => {
            let (re, probes) = gen_regex(r, lit);
            (StrMatch::Regex(re), probes)
        }
    }
}

/// Conditions on a header or query parameter: a `StringMatch`, the presence match `{}`, or
/// Istio's special regex `*` (also presence).
pub(super) fn gen_named(
    r: &mut fastrand::Rng,
    name: &str,
    probes: &mut Vec<Option<String>>,
) -> NamedMatch {
    match r.u8(0..10) {
        0 => (name.to_string(), None),
        1 => (name.to_string(), Some(StrMatch::Regex("*".into()))),
        _ => {
            let lit = pick(r, WORDS);
            let (m, ps) = gen_str_match(r, lit, true);
            probes.extend(ps.into_iter().map(Some));
            (name.to_string(), Some(m))
        }
    }
}
