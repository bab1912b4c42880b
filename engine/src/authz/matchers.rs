//! The value matchers an authorization rule is made of, as Envoy's RBAC filter evaluates them:
//! string matchers (`envoy.type.matcher.v3.StringMatcher`), header matchers
//! (`config.route.v3.HeaderMatcher`), CIDR ranges (`config.core.v3.CidrRange`) and URI
//! templates (`extensions.path.match.uri_template`).
//!
//! The constructors named `istio_*` turn one value of an AuthorizationPolicy field into the
//! matcher pilot generates for it, so the `*` rules live in one place:
//! - `StringMatcherWithPrefix` (`pilot/pkg/security/authz/matcher/string.go`): `*` is the regex
//!   `.+` (any non-empty value), `*x` a suffix, `x*` a prefix, anything else exact;
//! - `HeaderMatcher` / `HostMatcher` (`matcher/header.go`): the same, except that `*` is a
//!   presence match (an empty value matches too), and hosts ignore ASCII case;
//! - `PathTemplateMatcher` (`matcher/template.go`): `{*}` is one path segment, `{**}` any
//!   number of them (the last operator only).
//!
//! Matching never allocates, except a header sent several times, whose values Envoy joins with
//! `,` before matching (`HeaderUtility::getAllOfHeaderAsString`).

use std::net::IpAddr;

use regex::Regex;

/// A regular expression matched against the whole value, as Envoy's `safe_regex` (RE2, full
/// match). Compared by its source text.
#[derive(Clone, Debug)]
pub struct FullRegex(Regex);

impl FullRegex {
    /// Compile `pattern` anchored at both ends.
    pub fn new(pattern: &str) -> Result<FullRegex, regex::Error> {
        Regex::new(&format!("^(?:{pattern})$")).map(FullRegex)
    }

    pub fn is_match(&self, value: &str) -> bool {
        self.0.is_match(value)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl PartialEq for FullRegex {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

/// Envoy's `StringMatcher`.
#[derive(Clone, Debug, PartialEq)]
pub enum StringMatcher {
    Exact(Box<str>),
    Prefix(Box<str>),
    Suffix(Box<str>),
    /// `Exact`, `Prefix` and `Suffix` with `ignore_case: true` (ASCII only, as Envoy).
    ExactIgnoreCase(Box<str>),
    PrefixIgnoreCase(Box<str>),
    SuffixIgnoreCase(Box<str>),
    Regex(FullRegex),
}

impl StringMatcher {
    /// pilot's `StringMatcher(v)` (`StringMatcherWithPrefix(v, "")`).
    pub fn istio(value: &str) -> StringMatcher {
        StringMatcher::istio_with_prefix(value, "")
    }

    /// pilot's `StringMatcherWithPrefix(v, prefix)`: `prefix` is prepended to the value
    /// (`spiffe://` for principals).
    pub fn istio_with_prefix(value: &str, prefix: &str) -> StringMatcher {
        if value == "*" {
            return StringMatcher::Regex(any_non_empty());
        }
        if let Some(suffix) = value.strip_prefix('*') {
            if prefix.is_empty() {
                return StringMatcher::Suffix(suffix.into());
            }
            // pilot: `StringMatcherRegex(prefix + ".*" + regexp.QuoteMeta(suffix))`.
            let pattern = format!("{prefix}.*{}", quote_meta(suffix));
            return match FullRegex::new(&pattern) {
                Ok(re) => StringMatcher::Regex(re),
                // Both parts are escaped literals: the pattern always compiles.
                Err(_) => StringMatcher::Exact(format!("{prefix}{value}").into()),
            };
        }
        if let Some(start) = value.strip_suffix('*') {
            return StringMatcher::Prefix(format!("{prefix}{start}").into());
        }
        StringMatcher::Exact(format!("{prefix}{value}").into())
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            StringMatcher::Exact(s) => value == &**s,
            StringMatcher::Prefix(s) => value.starts_with(&**s),
            StringMatcher::Suffix(s) => value.ends_with(&**s),
            StringMatcher::ExactIgnoreCase(s) => value.eq_ignore_ascii_case(s),
            StringMatcher::PrefixIgnoreCase(s) => value
                .as_bytes()
                .get(..s.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(s.as_bytes())),
            StringMatcher::SuffixIgnoreCase(s) => value
                .len()
                .checked_sub(s.len())
                .and_then(|start| value.as_bytes().get(start..))
                .is_some_and(|tail| tail.eq_ignore_ascii_case(s.as_bytes())),
            StringMatcher::Regex(re) => re.is_match(value),
        }
    }
}

/// Go's `regexp.QuoteMeta`: a backslash before each of `\.+*?()|[]{}^$`, so the regexes pilot
/// writes come out the same text here (the `regex` crate reads every such escape).
pub fn quote_meta(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The regex `.+` pilot writes for `*` (`matcher.StringMatcherRegex(".+")`).
fn any_non_empty() -> FullRegex {
    match FullRegex::new(".+") {
        Ok(re) => re,
        Err(_) => unreachable!("`.+` is a valid regex"),
    }
}

/// Envoy's `HeaderMatcher` as pilot builds it: a presence match or a string match.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueMatch {
    /// `present_match: true`: the header is there, whatever its value (even empty).
    Present,
    String(StringMatcher),
}

/// A header matcher: a lower-case field name (or `:method` / `:authority`) and what its value
/// must be.
#[derive(Clone, Debug, PartialEq)]
pub struct HeaderMatcher {
    pub name: Box<str>,
    pub value: ValueMatch,
}

impl HeaderMatcher {
    /// pilot's `HeaderMatcher(k, v)` (`matcher/header.go`): case-sensitive values.
    pub fn istio(name: &str, value: &str) -> HeaderMatcher {
        HeaderMatcher::build(name, value, false)
    }

    /// pilot's `HostMatcher(k, v)`: the same with `ignore_case: true`.
    pub fn istio_host(name: &str, value: &str) -> HeaderMatcher {
        HeaderMatcher::build(name, value, true)
    }

    fn build(name: &str, value: &str, ignore_case: bool) -> HeaderMatcher {
        let string = if value == "*" {
            None
        } else if let Some(suffix) = value.strip_prefix('*') {
            Some(if ignore_case {
                StringMatcher::SuffixIgnoreCase(suffix.into())
            } else {
                StringMatcher::Suffix(suffix.into())
            })
        } else if let Some(prefix) = value.strip_suffix('*') {
            Some(if ignore_case {
                StringMatcher::PrefixIgnoreCase(prefix.into())
            } else {
                StringMatcher::Prefix(prefix.into())
            })
        } else if ignore_case {
            Some(StringMatcher::ExactIgnoreCase(value.into()))
        } else {
            Some(StringMatcher::Exact(value.into()))
        };
        HeaderMatcher {
            name: name.to_ascii_lowercase().into(),
            value: string.map_or(ValueMatch::Present, ValueMatch::String),
        }
    }

    /// Match against the value the request has for this name (`None`: absent). An absent
    /// header never matches (Envoy's `HeaderUtility::matchHeaders` without `invert_match`).
    pub fn matches(&self, value: Option<&str>) -> bool {
        match (&self.value, value) {
            (_, None) => false,
            (ValueMatch::Present, Some(_)) => true,
            (ValueMatch::String(m), Some(v)) => m.matches(v),
        }
    }
}

/// Envoy's `CidrRange`: an address and a prefix length. A bare IP is its own /32 or /128
/// (pilot's `AddrStrToPrefix`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix_len: u8,
}

/// A value that is not an IP address or CIDR range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid IP address or CIDR range {0:?}")]
pub struct CidrError(pub String);

impl Cidr {
    /// `10.1.2.3`, `10.1.0.0/16`, `2001:db8::/32` (pilot's `AddrStrToCidrRange`, which uses Go's
    /// `netip.ParsePrefix`: host bits may be set; they are ignored when matching).
    pub fn parse(text: &str) -> Result<Cidr, CidrError> {
        let err = || CidrError(text.to_string());
        let (addr, len) = match text.split_once('/') {
            Some((addr, len)) => {
                // Go's ParsePrefix takes decimal digits only (no sign, no leading zeros).
                if len.is_empty()
                    || !len.bytes().all(|b| b.is_ascii_digit())
                    || (len.len() > 1 && len.starts_with('0'))
                {
                    return Err(err());
                }
                (addr, Some(len.parse::<u8>().map_err(|_| err())?))
            }
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| err())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = len.unwrap_or(max);
        if prefix_len > max {
            return Err(err());
        }
        Ok(Cidr { addr, prefix_len })
    }

    /// Whether `ip` is inside the range (an address of the other family never is, as Envoy's
    /// `CidrRange::isInRange`).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u32::from(net).into(),
                u32::from(ip).into(),
                self.prefix_len,
                32,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), self.prefix_len, 128)
            }
            _ => false,
        }
    }
}

fn prefix_eq(net: u128, ip: u128, prefix_len: u8, bits: u32) -> bool {
    let shift = bits - u32::from(prefix_len);
    debug_assert!(u32::from(prefix_len) <= bits);
    if shift >= bits {
        return true;
    }
    (net >> shift) == (ip >> shift)
}

/// Envoy's URI template match (`uri_template.UriTemplateMatchConfig`) for a path with Istio's
/// `{*}` / `{**}` (`security.ContainsPathTemplate`): `{*}` is one non-empty segment of RFC 3986
/// pchars, `{**}` zero or more characters of pchars and `/`. Matched against the path without
/// its query, like every path matcher.
#[derive(Clone, Debug, PartialEq)]
pub struct PathTemplate(FullRegex);

/// Envoy's `uri_template` literal character class (pchar minus `%`-escapes kept whole).
const PCHAR: &str = r"a-zA-Z0-9\-._~%!$&'()+,;:@=";

/// A path template pilot's validation (`security.CheckValidPathTemplate`) would refuse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid or unsupported path template {0:?}")]
pub struct PathTemplateError(pub String);

impl PathTemplate {
    /// Whether `path` uses a template operator (`security.ContainsPathTemplate`).
    pub fn is_template(path: &str) -> bool {
        path.contains("{*}") || path.contains("{**}")
    }

    pub fn parse(template: &str) -> Result<PathTemplate, PathTemplateError> {
        let err = || PathTemplateError(template.to_string());
        let mut pattern = String::new();
        let mut seen_any = false;
        for (i, segment) in template.split('/').enumerate() {
            if i > 0 {
                pattern.push('/');
            }
            match segment {
                "{*}" if !seen_any => pattern.push_str(&format!("[{PCHAR}]+")),
                "{**}" if !seen_any => {
                    seen_any = true;
                    pattern.push_str(&format!("[{PCHAR}/]*"));
                }
                "{*}" | "{**}" => return Err(err()),
                literal if literal.contains(['{', '}']) => return Err(err()),
                literal => pattern.push_str(&quote_meta(literal)),
            }
        }
        FullRegex::new(&pattern)
            .map(PathTemplate)
            .map_err(|_| err())
    }

    pub fn matches(&self, path: &str) -> bool {
        self.0.is_match(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck_macros::quickcheck;

    #[test]
    fn istio_string_wildcards_follow_pilot() {
        // pilot/pkg/security/authz/matcher/string_test.go TestStringMatcherWithPrefix
        let m = StringMatcher::istio;
        assert!(m("*").matches("x"));
        assert!(!m("*").matches(""), "`*` is the regex .+: not empty");
        assert!(m("*.com").matches("a.com") && !m("*.com").matches("a.org"));
        assert!(m("/api*").matches("/api/v1") && !m("/api*").matches("/ap"));
        assert!(m("/x").matches("/x") && !m("/x").matches("/x/"));
        let p = |v| StringMatcher::istio_with_prefix(v, "spiffe://");
        assert!(p("cluster.local/ns/a/sa/b").matches("spiffe://cluster.local/ns/a/sa/b"));
        assert!(!p("cluster.local/ns/a/sa/b").matches("cluster.local/ns/a/sa/b"));
        assert!(p("*/sa/b").matches("spiffe://td/ns/a/sa/b"));
        assert!(!p("*/sa/b").matches("td/ns/a/sa/b"), "the prefix stays");
        assert!(p("cluster.local/*").matches("spiffe://cluster.local/ns/x/sa/y"));
    }

    #[test]
    fn header_star_is_presence_and_hosts_ignore_case() {
        let h = HeaderMatcher::istio("x-user", "*");
        assert!(h.matches(Some("")) && !h.matches(None));
        let h = HeaderMatcher::istio("x-user", "Ja*");
        assert!(h.matches(Some("Jason")) && !h.matches(Some("jason")));
        let host = HeaderMatcher::istio_host(":authority", "Example.COM");
        assert!(host.matches(Some("example.com")));
        assert!(
            !host.matches(Some("example.com:80")),
            "pilot adds no port variant"
        );
        let host = HeaderMatcher::istio_host(":authority", "*.Example.com");
        assert!(host.matches(Some("a.example.COM")));
        let host = HeaderMatcher::istio_host(":authority", "example.com:*");
        assert!(host.matches(Some("EXAMPLE.com:8080")));
    }

    #[test]
    fn cidr_parsing_and_containment() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        assert!(Cidr::parse("1.2.3.4")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
        assert!(!Cidr::parse("1.2.3.4")
            .unwrap()
            .contains("1.2.3.5".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("2001:db8::/32")
            .unwrap()
            .contains("2001:db8:1::9".parse().unwrap()));
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0/8",
            "x",
            "1.2.3.4/",
            "1.2.3.4/+8",
            "::/129",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn path_templates_as_envoy_uri_template() {
        let t = PathTemplate::parse("/foo/{*}/bar").unwrap();
        assert!(t.matches("/foo/x/bar"));
        assert!(!t.matches("/foo//bar") && !t.matches("/foo/x/y/bar"));
        let t = PathTemplate::parse("/foo/{**}").unwrap();
        assert!(t.matches("/foo/") && t.matches("/foo/a/b/c"));
        assert!(!t.matches("/foo"));
        let t = PathTemplate::parse("/{**}/x.txt").unwrap();
        assert!(t.matches("/a/b/x.txt"));
        assert!(
            PathTemplate::parse("/{**}/{*}").is_err(),
            "{{**}} must be last"
        );
        assert!(PathTemplate::parse("/a{*}").is_err());
    }

    #[quickcheck]
    fn exact_prefix_suffix_agree_with_std(value: String, pat: String) -> bool {
        StringMatcher::istio(&pat).matches(&value)
            == if pat == "*" {
                !value.is_empty()
            } else if let Some(s) = pat.strip_prefix('*') {
                value.ends_with(s)
            } else if let Some(p) = pat.strip_suffix('*') {
                value.starts_with(p)
            } else {
                value == pat
            }
    }

    #[quickcheck]
    fn ignore_case_matchers_equal_lowercased_matching(value: String, pat: String) -> bool {
        let lower = |s: &str| s.to_ascii_lowercase();
        let host = HeaderMatcher::istio_host("h", &pat);
        let plain = HeaderMatcher::istio("h", &lower(&pat));
        host.matches(Some(&value)) == plain.matches(Some(&lower(&value)))
    }

    #[quickcheck]
    fn cidr_of_an_address_contains_only_it(a: u32, b: u32, len: u8) -> bool {
        let len = len % 33;
        let net = Cidr::parse(&format!("{}/{len}", std::net::Ipv4Addr::from(a))).unwrap();
        let same_prefix = len == 0 || (a >> (32 - u32::from(len))) == (b >> (32 - u32::from(len)));
        net.contains(IpAddr::V4(a.into())) && net.contains(IpAddr::V4(b.into())) == same_prefix
    }
}
