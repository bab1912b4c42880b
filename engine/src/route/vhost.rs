//! Virtual host selection: which `VirtualHost` of a route table serves a request's authority.
//!
//! Envoy's precedence, with its data structure: the authority is lower-cased; an exact domain
//! wins (the full authority first, then the authority with its `:port` stripped, so `reviews`
//! serves `reviews:9080`); then suffix wildcards (`*.foo.com`), longest first; then prefix
//! wildcards (`foo.*`), longest first; then `*`. Wildcards never match the empty string
//! (`*.foo.com` does not serve `.foo.com`). Wildcard stages also try the full authority before
//! the stripped one.
//!
//! Exact domains sit in one hash map (O(1) for the common case). Wildcards are grouped by
//! length, longest first, one hash map per length, so a lookup costs one probe per distinct
//! wildcard length rather than a scan over every wildcard domain. Maps are only probed, never
//! iterated, so their order cannot leak into decisions (and they can use the engine's fast
//! unkeyed hasher, see `crate::hash`). Ties (the same pattern twice) are
//! rejected at build time instead of being resolved silently.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use crate::hash::FastMap;

use crate::config::VirtualHost;

use super::error::{Location, RouteError};

/// How a virtual host was selected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainMatchKind {
    /// An exact domain equal to the authority (port included).
    Exact,
    /// An exact domain equal to the authority with its `:port` removed.
    ExactPortStripped,
    /// A `*.suffix` pattern.
    SuffixWildcard,
    /// A `prefix.*` pattern.
    PrefixWildcard,
    /// The catch-all `*`.
    Any,
}

/// A selected virtual host: its index in the table and the domain (index into
/// `VirtualHost::domains`) that selected it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DomainHit {
    pub(crate) vhost: usize,
    pub(crate) domain: usize,
    pub(crate) kind: DomainMatchKind,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    vhost: usize,
    domain: usize,
}

/// Compiled domain lookup for one route table.
#[derive(Clone, Debug, Default)]
pub(crate) struct DomainIndex {
    exact: FastMap<Box<str>, Slot>,
    /// `(length of the part after '*', patterns of that length)`, longest first.
    suffix: Vec<(usize, FastMap<Box<str>, Slot>)>,
    /// `(length of the part before '*', patterns of that length)`, longest first.
    prefix: Vec<(usize, FastMap<Box<str>, Slot>)>,
    any: Option<Slot>,
}

impl DomainIndex {
    /// Indexes every domain of `vhosts`; a domain (case-insensitively) served twice is an error.
    pub(crate) fn build(vhosts: &[VirtualHost], at: &Location) -> Result<DomainIndex, RouteError> {
        let mut exact = FastMap::default();
        let mut suffix: BTreeMap<usize, FastMap<Box<str>, Slot>> = BTreeMap::new();
        let mut prefix: BTreeMap<usize, FastMap<Box<str>, Slot>> = BTreeMap::new();
        let mut any = None;
        // Every pattern seen, for duplicate detection with a useful message.
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (vi, vh) in vhosts.iter().enumerate() {
            let vat = at.vhost(vi, &vh.name);
            for (di, domain) in vh.domains.iter().enumerate() {
                let d = domain.to_ascii_lowercase();
                if d.is_empty() {
                    return Err(RouteError::EmptyDomain { at: Box::new(vat) });
                }
                if let Some(&other) = seen.get(&d) {
                    let other = vhosts
                        .get(other)
                        .map(|v| v.name.clone())
                        .unwrap_or_default();
                    return Err(RouteError::DuplicateDomain {
                        at: Box::new(vat),
                        domain: domain.clone(),
                        other,
                    });
                }
                seen.insert(d.clone(), vi);
                let slot = Slot {
                    vhost: vi,
                    domain: di,
                };
                if d == "*" {
                    any = Some(slot);
                } else if let Some(rest) = d.strip_prefix('*') {
                    suffix
                        .entry(rest.len())
                        .or_default()
                        .insert(rest.into(), slot);
                } else if let Some(rest) = d.strip_suffix('*') {
                    prefix
                        .entry(rest.len())
                        .or_default()
                        .insert(rest.into(), slot);
                } else {
                    exact.insert(d.into_boxed_str(), slot);
                }
            }
        }
        Ok(DomainIndex {
            exact,
            suffix: suffix.into_iter().rev().collect(),
            prefix: prefix.into_iter().rev().collect(),
            any,
        })
    }

    /// The virtual host serving `authority`, if any.
    pub(crate) fn lookup(&self, authority: &str) -> Option<DomainHit> {
        let host: Cow<'_, str> = if has_ascii_uppercase(authority.as_bytes()) {
            Cow::Owned(authority.to_ascii_lowercase())
        } else {
            Cow::Borrowed(authority)
        };
        let full: &str = &host;
        let hit = |slot: &Slot, kind| DomainHit {
            vhost: slot.vhost,
            domain: slot.domain,
            kind,
        };
        if let Some(s) = self.exact.get(full) {
            return Some(hit(s, DomainMatchKind::Exact));
        }
        // Only now: the full authority usually matches (Istio lists `host` and `host:port`),
        // and finding the port costs more than the probe.
        let stripped = strip_port(full);
        if let Some(s) = stripped.and_then(|h| self.exact.get(h)) {
            return Some(hit(s, DomainMatchKind::ExactPortStripped));
        }
        let candidates = [Some(full), stripped];
        #[cfg(feature = "mutants")]
        if crate::mutants::route().wildcard_shortest_first {
            for cand in candidates.iter().flatten() {
                for (len, map) in self.suffix.iter().rev() {
                    if cand.len() > *len {
                        let tail = cand.get(cand.len() - len..);
                        if let Some(s) = tail.and_then(|t| map.get(t)) {
                            return Some(hit(s, DomainMatchKind::SuffixWildcard));
                        }
                    }
                }
            }
        }
        for cand in candidates.iter().flatten() {
            for (len, map) in &self.suffix {
                if cand.len() > *len {
                    let tail = cand.get(cand.len() - len..);
                    if let Some(s) = tail.and_then(|t| map.get(t)) {
                        return Some(hit(s, DomainMatchKind::SuffixWildcard));
                    }
                }
            }
        }
        for cand in candidates.iter().flatten() {
            for (len, map) in &self.prefix {
                if cand.len() > *len {
                    if let Some(s) = cand.get(..*len).and_then(|h| map.get(h)) {
                        return Some(hit(s, DomainMatchKind::PrefixWildcard));
                    }
                }
            }
        }
        self.any.as_ref().map(|s| hit(s, DomainMatchKind::Any))
    }
}

/// Whether `bytes` holds an ASCII upper-case letter, eight bytes a step: the authority of every
/// request is checked before its lookup (and is nearly always lower-case already), and a
/// byte at a time that cost ~5 instructions a byte (~190 for a 38-byte `host:port`).
fn has_ascii_uppercase(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    let mut found = 0;
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        found |= uppercase_bytes(u64::from_le_bytes(w));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        // Zeros after the last bytes: a zero byte is no letter.
        let mut w = [0u8; 8];
        if let Some(head) = w.get_mut(..rest.len()) {
            head.copy_from_slice(rest);
        }
        found |= uppercase_bytes(u64::from_le_bytes(w));
    }
    found != 0
}

/// The high bit of each byte of `x` that is in `b'A'..=b'Z'`, every other bit clear. Each byte
/// is computed on its own (no carry or borrow crosses a byte): with `low` = the byte's seven
/// low bits, `0x7f + 0x5b - low` (at least `0x5b`, at most `0xda`) has its high bit set when
/// `low < 0x5b`, and `low + 0x7f - 0x40` (at most `0xbe`) when `low > 0x40`; `!x` keeps the
/// bytes whose own high bit is clear (so 0xc1..=0xda, which share the low bits, are not letters).
fn uppercase_bytes(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let low = x & (ONES * 0x7f);
    ((ONES * (0x7f + 0x5b)) - low) & !x & (low + ONES * (0x7f - 0x40)) & (ONES * 0x80)
}

/// `host` without a trailing `:port` (digits only), or `None` if it has none. Handles
/// bracketed IPv6 literals (`[::1]:80`); a bare IPv6 address (several colons, no brackets) has
/// no port to strip.
pub(crate) fn strip_port(host: &str) -> Option<&str> {
    let colon = host.rfind(':')?;
    let (name, port) = (host.get(..colon)?, host.get(colon + 1..)?);
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if name.starts_with('[') {
        return name.ends_with(']').then_some(name);
    }
    (!name.contains(':')).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vh(name: &str, domains: &[&str]) -> VirtualHost {
        VirtualHost {
            name: name.into(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            routes: vec![],
        }
    }

    fn index(vhosts: &[VirtualHost]) -> DomainIndex {
        DomainIndex::build(vhosts, &Location::table("t")).unwrap()
    }

    fn pick(idx: &DomainIndex, host: &str) -> Option<(usize, DomainMatchKind)> {
        idx.lookup(host).map(|h| (h.vhost, h.kind))
    }

    #[test]
    fn precedence_exact_suffix_prefix_any() {
        let idx = index(&[
            vh("any", &["*"]),
            vh("prefix", &["foo.*"]),
            vh("suffix", &["*.foo.com"]),
            vh("longer-suffix", &["*.bar.foo.com"]),
            vh("exact", &["a.foo.com", "reviews:9080"]),
        ]);
        use DomainMatchKind::*;
        assert_eq!(pick(&idx, "a.foo.com"), Some((4, Exact)));
        assert_eq!(pick(&idx, "A.Foo.COM"), Some((4, Exact)));
        assert_eq!(pick(&idx, "b.foo.com"), Some((2, SuffixWildcard)));
        assert_eq!(pick(&idx, "x.bar.foo.com"), Some((3, SuffixWildcard)));
        assert_eq!(pick(&idx, "foo.example"), Some((1, PrefixWildcard)));
        // Suffix beats prefix even though both match.
        assert_eq!(pick(&idx, "foo.foo.com"), Some((2, SuffixWildcard)));
        assert_eq!(pick(&idx, "other"), Some((0, Any)));
        assert_eq!(pick(&idx, "reviews:9080"), Some((4, Exact)));
        assert_eq!(pick(&idx, "reviews:9081"), Some((0, Any)));
        // Wildcards do not match the empty string.
        assert_eq!(pick(&idx, ".foo.com"), Some((0, Any)));
        assert_eq!(pick(&idx, "foo."), Some((0, Any)));
    }

    #[test]
    fn port_is_stripped_for_domains_without_port() {
        let idx = index(&[vh("r", &["reviews"]), vh("w", &["*.example.com"])]);
        use DomainMatchKind::*;
        assert_eq!(pick(&idx, "reviews"), Some((0, Exact)));
        assert_eq!(pick(&idx, "Reviews:9080"), Some((0, ExactPortStripped)));
        assert_eq!(pick(&idx, "a.example.com:443"), Some((1, SuffixWildcard)));
        assert_eq!(pick(&idx, "details"), None);
    }

    /// The word test agrees with a byte at a time on any bytes, and on every byte value at
    /// every place of a word and of a short tail.
    #[quickcheck_macros::quickcheck]
    fn uppercase_by_words_agrees_with_bytes(bytes: Vec<u8>) -> bool {
        has_ascii_uppercase(&bytes) == bytes.iter().any(u8::is_ascii_uppercase)
    }

    #[test]
    fn uppercase_by_words_on_every_byte_and_place() {
        for len in 1..=17 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    assert_eq!(
                        has_ascii_uppercase(&bytes),
                        b.is_ascii_uppercase(),
                        "{b:#x} at {at} of {len}"
                    );
                }
            }
        }
        assert!(!has_ascii_uppercase(b""));
    }

    #[test]
    fn strip_port_cases() {
        assert_eq!(strip_port("a:80"), Some("a"));
        assert_eq!(strip_port("a"), None);
        assert_eq!(strip_port("a:"), None);
        assert_eq!(strip_port("a:x"), None);
        assert_eq!(strip_port("[::1]:8080"), Some("[::1]"));
        assert_eq!(strip_port("[::1]"), None);
        assert_eq!(strip_port("::1"), None);
    }

    #[test]
    fn duplicate_domains_rejected() {
        let err = DomainIndex::build(
            &[vh("a", &["x.com"]), vh("b", &["X.com"])],
            &Location::table("t"),
        )
        .unwrap_err();
        assert!(
            matches!(&err, RouteError::DuplicateDomain { other, .. } if other == "a"),
            "{err}"
        );
        assert!(err.to_string().contains("virtual host #1 \"b\""), "{err}");
        assert!(DomainIndex::build(&[vh("a", &["*", "*"])], &Location::table("t")).is_err());
        assert!(matches!(
            DomainIndex::build(&[vh("a", &[""])], &Location::table("t")),
            Err(RouteError::EmptyDomain { .. })
        ));
    }

    /// Linear reference of the precedence rules: best pattern by (stage, candidate, length).
    fn reference(domains: &[String], authority: &str) -> Option<usize> {
        let host = authority.to_ascii_lowercase();
        let stripped = strip_port(&host).map(str::to_owned);
        let cands: Vec<&str> = std::iter::once(host.as_str())
            .chain(stripped.as_deref())
            .collect();
        let lower: Vec<String> = domains.iter().map(|d| d.to_ascii_lowercase()).collect();
        let find = |f: &dyn Fn(&str, &str) -> Option<usize>| {
            cands.iter().find_map(|c| {
                lower
                    .iter()
                    .enumerate()
                    .filter_map(|(i, d)| f(d, c).map(|len| (len, i)))
                    // Longest pattern; duplicates cannot exist, so ties cannot either.
                    .max_by_key(|(len, _)| *len)
                    .map(|(_, i)| i)
            })
        };
        let exact = |d: &str, c: &str| {
            (d != "*" && !d.starts_with('*') && !d.ends_with('*') && d == c).then_some(0)
        };
        let suffix = |d: &str, c: &str| {
            let s = d.strip_prefix('*').filter(|_| d != "*")?;
            (c.len() > s.len() && c.ends_with(s)).then_some(s.len())
        };
        let prefix = |d: &str, c: &str| {
            let p = d
                .strip_suffix('*')
                .filter(|_| d != "*" && !d.starts_with('*'))?;
            (c.len() > p.len() && c.starts_with(p)).then_some(p.len())
        };
        let exact_hit = lower
            .iter()
            .position(|d| exact(d, &host).is_some())
            .or_else(|| {
                stripped
                    .as_deref()
                    .and_then(|s| lower.iter().position(|d| exact(d, s).is_some()))
            });
        exact_hit
            .or_else(|| find(&suffix))
            .or_else(|| find(&prefix))
            .or_else(|| lower.iter().position(|d| d == "*"))
    }

    /// The indexed lookup agrees with the linear reference on arbitrary small domain sets and
    /// authorities (each domain in its own virtual host, duplicates dropped).
    #[quickcheck_macros::quickcheck]
    fn lookup_agrees_with_reference(raw: Vec<(u8, u8, u8)>, authority: (u8, u8, bool)) -> bool {
        const PARTS: &[&str] = &["a", "b.a", ".a", "A", "a:80", "", "x.b.a", ":8"];
        let part = |n: u8| PARTS[usize::from(n) % PARTS.len()];
        let mut domains: Vec<String> = Vec::new();
        for (shape, x, y) in raw {
            let d = match shape % 4 {
                0 => format!("{}{}", part(x), part(y)),
                1 => format!("*{}{}", part(x), part(y)),
                2 => format!("{}{}*", part(x), part(y)),
                _ => "*".to_owned(),
            };
            let lower = d.to_ascii_lowercase();
            if !d.is_empty() && !domains.iter().any(|e| e.to_ascii_lowercase() == lower) {
                domains.push(d);
            }
        }
        let auth = format!(
            "{}{}{}",
            part(authority.0),
            part(authority.1),
            if authority.2 { ":80" } else { "" }
        );
        let vhosts: Vec<_> = domains.iter().map(|d| vh(d, &[d])).collect();
        index(&vhosts).lookup(&auth).map(|h| h.vhost) == reference(&domains, &auth)
    }

    #[test]
    fn many_exact_hosts() {
        let vhosts: Vec<_> = (0..1000)
            .map(|i| vh(&format!("v{i}"), &[&format!("svc{i}.ns.svc.cluster.local")]))
            .collect();
        let idx = index(&vhosts);
        assert_eq!(
            pick(&idx, "svc737.ns.svc.cluster.local:80"),
            Some((737, DomainMatchKind::ExactPortStripped))
        );
    }
}
