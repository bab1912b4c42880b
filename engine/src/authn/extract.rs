//! Where a request's JWTs are found, and how they are taken out again: Envoy's JWT extractor
//! (`source/extensions/filters/http/jwt_authn/extractor.cc`).
//!
//! An [`Extractor`] is built from one provider (or all of them) and knows, per location, which
//! issuers named it:
//! - headers (`from_headers`: name and value prefix). A prefix is searched anywhere in the
//!   value; the token starts at the first base64url character or dot after it and runs to
//!   the end of the value. A value without the prefix holds no token. Each value of a header
//!   sent several times is a token of its own;
//! - query parameters (`from_params`): the first value of the parameter, percent-decoded;
//! - cookies (`from_cookies`): the first cookie of that name, quotes removed;
//! - a provider naming no location gets Envoy's defaults: `Authorization: Bearer <token>`
//!   and the `access_token` parameter.
//!
//! Locations are visited in Envoy's order (headers by name+prefix, then parameters, then
//! cookies, each sorted by name), which decides which token is checked first. A verified token
//! is removed from its header or parameter unless the provider forwards it (cookies stay, as in
//! Envoy). Before extracting, the headers a provider writes (`forward_payload_header`,
//! `claim_to_headers`) are removed from the request, so a client cannot forge them.

use std::collections::{BTreeMap, BTreeSet};

use http::header::{HeaderName, AUTHORIZATION, COOKIE};

use crate::http1::{value_str, Fields};

use super::model::JwtProvider;

/// Envoy's defaults for a provider that names no location.
pub const BEARER_PREFIX: &str = "Bearer ";
pub const ACCESS_TOKEN_PARAM: &str = "access_token";

/// The issuers that named a location (`JwtIssuerChecker`): an empty issuer allows all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IssuerChecker {
    allow_all: bool,
    issuers: BTreeSet<String>,
}

impl IssuerChecker {
    fn add(&mut self, issuer: &str) {
        if issuer.is_empty() {
            self.allow_all = true;
        } else {
            self.issuers.insert(issuer.to_string());
        }
    }

    pub fn allows(&self, issuer: &str) -> bool {
        self.allow_all || self.issuers.contains(issuer)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct HeaderSpec {
    name: HeaderName,
    prefix: String,
    issuers: IssuerChecker,
}

/// Where one token came from (what removing it means).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Header(HeaderName),
    Param(String),
    Cookie,
}

/// One token found in a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token<'e> {
    pub value: String,
    pub issuers: &'e IssuerChecker,
    pub origin: Origin,
}

/// The token locations of one provider, or of several.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extractor {
    /// Keyed by header name + prefix, as Envoy's map.
    headers: BTreeMap<String, HeaderSpec>,
    params: BTreeMap<String, IssuerChecker>,
    cookies: BTreeMap<String, IssuerChecker>,
    sanitize: Vec<HeaderName>,
}

impl Extractor {
    pub fn new<'p>(providers: impl IntoIterator<Item = &'p JwtProvider>) -> Extractor {
        let mut e = Extractor::default();
        for p in providers {
            e.add_provider(p);
        }
        e
    }

    fn add_provider(&mut self, p: &JwtProvider) {
        for h in &p.from_headers {
            self.add_header(&p.issuer, &h.name, &h.value_prefix);
        }
        for param in &p.from_params {
            self.params.entry(param.clone()).or_default().add(&p.issuer);
        }
        for cookie in &p.from_cookies {
            self.cookies
                .entry(cookie.clone())
                .or_default()
                .add(&p.issuer);
        }
        if p.from_headers.is_empty() && p.from_params.is_empty() && p.from_cookies.is_empty() {
            self.add_header(&p.issuer, &AUTHORIZATION, BEARER_PREFIX);
            self.params
                .entry(ACCESS_TOKEN_PARAM.to_string())
                .or_default()
                .add(&p.issuer);
        }
        self.sanitize
            .extend(p.forward_payload_header.iter().cloned());
        self.sanitize
            .extend(p.claim_to_headers.iter().map(|c| c.header.clone()));
    }

    fn add_header(&mut self, issuer: &str, name: &HeaderName, prefix: &str) {
        self.headers
            .entry(format!("{}{prefix}", name.as_str()))
            .or_insert_with(|| HeaderSpec {
                name: name.clone(),
                prefix: prefix.to_string(),
                issuers: IssuerChecker::default(),
            })
            .issuers
            .add(issuer);
    }

    /// Remove the headers the providers write (`sanitizeHeaders`).
    pub fn sanitize(&self, headers: &mut Fields) {
        #[cfg(feature = "mutants")]
        if crate::mutants::route().jwt_output_headers_unsanitized {
            return;
        }
        for name in &self.sanitize {
            headers.remove(name);
        }
    }

    /// Every token of the request, in Envoy's order.
    pub fn extract(&self, target: &str, headers: &Fields) -> Vec<Token<'_>> {
        let mut tokens = Vec::new();
        for spec in self.headers.values() {
            for value in headers.get_all(&spec.name) {
                let Some(value) = value_str(value) else {
                    continue;
                };
                if let Some(token) = token_in_header(value, &spec.prefix) {
                    tokens.push(Token {
                        value: token.to_string(),
                        issuers: &spec.issuers,
                        origin: Origin::Header(spec.name.clone()),
                    });
                }
            }
        }
        if !self.params.is_empty() {
            for (name, issuers) in &self.params {
                if let Some(value) = first_query_value(target, name) {
                    tokens.push(Token {
                        value,
                        issuers,
                        origin: Origin::Param(name.clone()),
                    });
                }
            }
        }
        if !self.cookies.is_empty() {
            for (name, issuers) in &self.cookies {
                if let Some(value) = first_cookie(headers, name) {
                    tokens.push(Token {
                        value,
                        issuers,
                        origin: Origin::Cookie,
                    });
                }
            }
        }
        tokens
    }
}

/// The base64url alphabet plus `.` (RFC 4648 §5), what a JWS compact serialization is made of.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// The token in one header value (Envoy's prefix search and `extractJWT`); `None` when the
/// prefix is not in the value.
pub fn token_in_header<'v>(value: &'v str, prefix: &str) -> Option<&'v str> {
    if prefix.is_empty() {
        return Some(value);
    }
    let after = value.find(prefix)? + prefix.len();
    let rest = &value[after..];
    Some(match rest.bytes().position(is_token_char) {
        Some(start) => &rest[start..],
        // Nothing token-like after the prefix: Envoy hands over the whole value.
        None => value,
    })
}

/// Percent-decode a query component as Envoy's `PercentEncoding::decode` does (what
/// `QueryParamsMulti::parseAndDecodeQueryString` applies to names and values,
/// source/common/http/utility.cc): `%` and two hex digits become that byte; anything else,
/// `+` included, stays as written.
pub fn decode_query_component(text: &str) -> String {
    String::from_utf8_lossy(&decode_bytes(text)).into_owned()
}

fn decode_bytes(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    out
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The query string of a request target (`None` without `?`).
fn query(target: &str) -> Option<&str> {
    let q = target.split_once('?')?.1;
    Some(q.split_once('#').map_or(q, |(q, _)| q))
}

/// The first value of query parameter `name` (decoded), if present.
pub fn first_query_value(target: &str, name: &str) -> Option<String> {
    query(target)?
        .split('&')
        .filter(|pair| !pair.is_empty())
        .find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_query_component(key) == name).then(|| decode_query_component(value))
        })
}

/// `target` without the parameter `name`, the rest of its query rewritten as Envoy's
/// `JwtParamLocation::removeJwt` does (jwt_authn/extractor.cc): the query is parsed into a
/// map sorted by name with names and values percent-decoded (`parseAndDecodeQueryString`;
/// an empty segment between two `&` is a parameter with an empty name), the parameter is
/// erased with all its values, and what is left is written back as `?name=value&...`
/// (`QueryParamsMulti::toString`): by name, each name's values in their order, not
/// re-encoded. One departure, so that the request line stays valid: a decoded byte that a
/// request target cannot carry (a space, a control, `#`, non-ASCII) is written
/// percent-encoded where Envoy would write it raw.
pub fn remove_query_param(target: &str, name: &str) -> String {
    let Some((path, query)) = target.split_once('?') else {
        return target.to_string();
    };
    #[cfg(feature = "mutants")]
    if crate::mutants::route().jwt_param_removal_keeps_query {
        let kept: Vec<&str> = (query.split('&'))
            .filter(|p| decode_query_component(p.split_once('=').map_or(p, |(k, _)| k)) != name)
            .collect();
        return match kept.is_empty() {
            true => path.to_string(),
            false => format!("{path}?{}", kept.join("&")),
        };
    }
    let mut params: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
    let mut start = 0;
    while start < query.len() {
        let end = query[start..].find('&').map_or(query.len(), |e| start + e);
        let param = &query[start..end];
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        params
            .entry(decode_bytes(key))
            .or_default()
            .push(decode_bytes(value));
        start = end + 1;
    }
    params.remove(name.as_bytes());
    let mut out = path.to_string();
    let mut delimiter = '?';
    for (key, values) in &params {
        for value in values {
            out.push(delimiter);
            push_query_bytes(&mut out, key);
            out.push('=');
            push_query_bytes(&mut out, value);
            delimiter = '&';
        }
    }
    out
}

/// Append decoded query bytes, percent-encoding those a request target cannot carry.
fn push_query_bytes(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'#' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// The first cookie named `name` over every `cookie` header (`Utility::parseCookies`): pairs
/// split on `;`, leading spaces trimmed, a quoted value unquoted.
pub fn first_cookie(headers: &Fields, name: &str) -> Option<String> {
    headers
        .get_all(&COOKIE)
        .filter_map(value_str)
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let pair = pair.trim_start();
            let (key, value) = pair.split_once('=')?;
            (key == name).then(|| {
                let unquoted = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                unquoted.to_string()
            })
        })
}
