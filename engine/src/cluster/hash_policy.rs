//! What a request hashes to under a cluster's consistent-hash key (DestinationRule
//! `consistentHash`: `httpHeaderName`, `httpCookie`, `useSourceIp`, `httpQueryParameterName`),
//! as Envoy's `HashPolicyImpl` computes it (source/common/http/hash_policy.cc) from the route
//! hash policy pilot writes (ConsistentHashToHashPolicy in
//! pilot/pkg/networking/core/route/route.go):
//! - a header: xxHash64 of its value; several values are sorted and chained through the seed
//!   (`HashUtil::xxHash64(span)`), so their order does not matter;
//! - a cookie: xxHash64 of its value (quotes stripped, `Utility::parseCookieValue`); when it is
//!   absent and the policy has a `ttl`, Envoy makes one up, sets it on the response
//!   (`Set-Cookie: name="value"; Max-Age=ttl; Path=path; HttpOnly`, `makeSetCookieValue`) and
//!   hashes it: the value is the hex xxHash64 of the client and local addresses
//!   (`Filter::addDownstreamSetCookie`, source/common/router/router.h), so one connection
//!   keeps one cookie;
//! - the source IP: xxHash64 of the client address without port;
//! - a query parameter: xxHash64 of its first value, as written.
//!
//! No key (header absent, cookie absent without ttl) means no hash: the balancer then draws a
//! random one, as Envoy's ring hash and Maglev do.

use std::net::SocketAddr;

use crate::config::HashKey;

use super::xxhash::xxh64;

/// What the request offers to hash.
pub struct HashInput<'a> {
    pub headers: &'a crate::http1::Fields,
    /// The request target (path and query).
    pub target: &'a str,
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

/// The hash, and a cookie to set on the response when the policy generated one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestHash {
    pub hash: Option<u64>,
    pub set_cookie: Option<String>,
}

/// The hash of a request under `key`.
pub fn request_hash(key: &HashKey, input: &HashInput<'_>) -> RequestHash {
    match key {
        HashKey::Header(name) => {
            let mut values: Vec<&[u8]> = input.headers.get_all(name.as_str()).collect();
            values.sort_unstable();
            let hash =
                (!values.is_empty()).then(|| values.iter().fold(0, |seed, v| xxh64(v, seed)));
            RequestHash {
                hash,
                set_cookie: None,
            }
        }
        HashKey::Cookie(cookie) => {
            if let Some(value) = cookie_value(input.headers, &cookie.name) {
                return RequestHash {
                    hash: Some(xxh64(value.as_bytes(), 0)),
                    set_cookie: None,
                };
            }
            let Some(ttl) = cookie.ttl else {
                return RequestHash::default();
            };
            let seed = format!("{}{}", input.peer, input.local);
            let value = format!("{:016x}", xxh64(seed.as_bytes(), 0));
            let mut set = format!("{}=\"{value}\"", cookie.name);
            if ttl.as_secs() != 0 {
                set.push_str(&format!("; Max-Age={}", ttl.as_secs()));
            }
            if let Some(path) = cookie.path.as_deref().filter(|p| !p.is_empty()) {
                set.push_str("; Path=");
                set.push_str(path);
            }
            for (name, value) in &cookie.attributes {
                set.push_str("; ");
                set.push_str(name);
                if !value.is_empty() {
                    set.push('=');
                    set.push_str(value);
                }
            }
            set.push_str("; HttpOnly");
            RequestHash {
                hash: Some(xxh64(value.as_bytes(), 0)),
                set_cookie: Some(set),
            }
        }
        HashKey::SourceIp => RequestHash {
            hash: Some(xxh64(input.peer.ip().to_string().as_bytes(), 0)),
            set_cookie: None,
        },
        HashKey::QueryParameter(name) => RequestHash {
            hash: query_value(input.target, name).map(|v| xxh64(v.as_bytes(), 0)),
            set_cookie: None,
        },
    }
}

/// The value of cookie `name` in the request's `cookie` headers, double quotes stripped
/// (Envoy's `Utility::parseCookieValue`: `;`-separated `key=value` pairs, leading spaces
/// skipped, the first match wins).
fn cookie_value<'h>(headers: &'h crate::http1::Fields, name: &str) -> Option<&'h str> {
    headers
        .get_all("cookie")
        .filter_map(crate::http1::value_str)
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim_start_matches(' ').split_once('=')?;
            (k == name).then(|| {
                v.strip_prefix('"')
                    .and_then(|s| s.strip_suffix('"'))
                    .unwrap_or(v)
            })
        })
}

/// The first value of query parameter `name` in `target`, as written (Envoy's
/// `QueryParamsMulti::parseQueryString` then `getFirstValue`).
fn query_value<'t>(target: &'t str, name: &str) -> Option<&'t str> {
    let (_, query) = target.split_once('?')?;
    let query = query.split('#').next().unwrap_or(query);
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HashCookie;
    use std::time::Duration;

    fn input<'a>(headers: &'a crate::http1::Fields, target: &'a str) -> HashInput<'a> {
        HashInput {
            headers,
            target,
            peer: "10.0.0.9:40000".parse().expect("addr"),
            local: "10.0.0.1:15001".parse().expect("addr"),
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> crate::http1::Fields {
        pairs.iter().copied().collect()
    }

    #[test]
    fn header_values_hash_in_any_order() {
        let key = HashKey::Header("x-user".into());
        let one = headers(&[("x-user", "a"), ("x-user", "b")]);
        let other = headers(&[("x-user", "b"), ("x-user", "a")]);
        let a = request_hash(&key, &input(&one, "/"));
        assert_eq!(a, request_hash(&key, &input(&other, "/")));
        assert_eq!(a.hash, Some(xxh64(b"b", xxh64(b"a", 0))));
        let single = headers(&[("x-user", "jason")]);
        assert_eq!(
            request_hash(&key, &input(&single, "/")).hash,
            Some(xxh64(b"jason", 0))
        );
        assert_eq!(request_hash(&key, &input(&headers(&[]), "/")).hash, None);
    }

    #[test]
    fn cookies_are_read_or_generated_with_a_ttl() {
        let mut cookie = HashCookie {
            name: "session".into(),
            path: Some("/app".into()),
            ttl: None,
            attributes: Vec::new(),
        };
        let sent = headers(&[("cookie", "a=1; session=\"xyz\"; b=2")]);
        let got = request_hash(&HashKey::Cookie(cookie.clone()), &input(&sent, "/"));
        assert_eq!(got.hash, Some(xxh64(b"xyz", 0)));
        assert_eq!(got.set_cookie, None);
        let none = headers(&[]);
        assert_eq!(
            request_hash(&HashKey::Cookie(cookie.clone()), &input(&none, "/")),
            RequestHash::default()
        );
        cookie.ttl = Some(Duration::from_secs(60));
        let made = request_hash(&HashKey::Cookie(cookie), &input(&none, "/"));
        let value = format!("{:016x}", xxh64(b"10.0.0.9:4000010.0.0.1:15001", 0));
        assert_eq!(made.hash, Some(xxh64(value.as_bytes(), 0)));
        assert_eq!(
            made.set_cookie,
            Some(format!(
                "session=\"{value}\"; Max-Age=60; Path=/app; HttpOnly"
            ))
        );
    }

    #[test]
    fn source_ip_and_query_parameter() {
        let h = headers(&[]);
        assert_eq!(
            request_hash(&HashKey::SourceIp, &input(&h, "/")).hash,
            Some(xxh64(b"10.0.0.9", 0))
        );
        let q = HashKey::QueryParameter("user".into());
        assert_eq!(
            request_hash(&q, &input(&h, "/p?x=1&user=ann&user=bob")).hash,
            Some(xxh64(b"ann", 0))
        );
        assert_eq!(request_hash(&q, &input(&h, "/p?x=1")).hash, None);
    }
}
