//! The gateway's edge in the gateway world: what a client writes about itself
//! (`x-forwarded-for` lines, an `x-forwarded-proto` that lies, a token in a header or the
//! query), the gateway's `numTrustedProxies`, and what the reference owes them, written from
//! Envoy's `ConnectionManagerUtility::mutateRequestHeaders` with `use_remote_address: true`
//! (which pilot sets on every gateway listener, `xff_num_trusted_hops` from
//! `gatewayTopology.numTrustedProxies`), not from Trellis's code:
//!
//! - the client's address (RBAC's `remote_ip`, `remoteIpBlocks`) is the connection's peer with
//!   no trusted hops; with N, `getLastAddressFromXFF(headers, N - 1)` of the
//!   `x-forwarded-for` the client sent (its lines' values joined with `,`, the empty ones
//!   adding nothing: Envoy's inline-header coalescing): skip N − 1 entries from the right, take the text after the last comma left,
//!   trim whitespace, parse it as an IP address; any failure (too few entries, `unknown`, an
//!   empty entry) falls back to the peer. `ipBlocks` always see the peer;
//! - the backend gets `x-forwarded-for` with the peer appended, `x-envoy-external-address`
//!   with the client's address (no address is internal: pilot configures no internal
//!   networks), and `x-forwarded-proto` from the connection unless a trusted hop (N > 0) sent
//!   one;
//! - a token removed from the query leaves the rest as Envoy's `JwtParamLocation::removeJwt`
//!   writes it ([`without_param`]).

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::jwt::{
    output_headers, Authn, GwToken, TokenAt, ASSERTION_HEADER, FORGED, PAYLOAD_HEADER, SUB_HEADER,
};
use super::spec::GatewaySpec;
use super::spec::{GwRequest, HTTPS_PORT, PATHS};
use crate::sim::mtls::jwt::JwtKeys;

/// `x-forwarded-for` entries clients write, the well-formed and the not.
const ENTRIES: [&str; 8] = [
    "203.0.113.7",
    "10.1.2.3",
    " 198.51.100.2",
    "2001:db8::5",
    "unknown",
    "192.168.7.9 ",
    "10.0.0.1",
    "",
];

/// The gateway's `numTrustedProxies`: 0 in half of the worlds, else 1 or 2.
pub fn draw_trusted_proxies(r: &mut fastrand::Rng) -> u32 {
    [0, 0, 1, 2][r.usize(0..4)]
}

/// A client's `x-forwarded-for` lines: none in half of the requests, else one or two lines of
/// one or two entries.
pub fn draw_forwarded_for(r: &mut fastrand::Rng) -> Vec<String> {
    if r.bool() {
        return Vec::new();
    }
    (0..r.usize(1..=2))
        .map(|_| {
            let entries: Vec<&str> = (0..r.usize(1..=2))
                .map(|_| ENTRIES[r.usize(0..ENTRIES.len())])
                .collect();
            entries.join(if r.bool() { "," } else { ", " })
        })
        .collect()
}

/// `getLastAddressFromXFF(xff, skip)` as Envoy writes it (source/common/http/utility.cc).
fn last_address_from_xff(xff: Option<&str>, skip: u32) -> Option<IpAddr> {
    let mut rest = xff?;
    for _ in 0..skip {
        rest = &rest[..rest.rfind(',')?];
    }
    if let Some(comma) = rest.rfind(',') {
        // Text after the last comma, unless nothing follows it.
        if comma + 1 < rest.len() {
            rest = &rest[comma + 1..];
        }
    }
    rest.trim_matches([' ', '\t']).parse().ok()
}

/// The `x-forwarded-for` the gateway received: each line's value without the whitespace
/// around it (RFC 9112 §5: not part of the value), the non-empty ones joined with `,` (Envoy's
/// `HeaderMapImpl::appendToHeader`, which adds nothing for an empty value).
fn received_xff(req: &GwRequest) -> Option<String> {
    let values: Vec<&str> = (req.forwarded_for.iter())
        .map(|l| l.trim_matches([' ', '\t']))
        .filter(|v| !v.is_empty())
        .collect();
    (!req.forwarded_for.is_empty()).then(|| values.join(","))
}

/// The address the gateway takes as the client's on an HTTP chain.
pub fn client_address(trusted: u32, req: &GwRequest, peer: IpAddr) -> IpAddr {
    if trusted == 0 {
        return peer;
    }
    last_address_from_xff(received_xff(req).as_deref(), trusted - 1).unwrap_or(peer)
}

/// The edge fields a backend must see of a forwarded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeFields {
    pub forwarded_for: Option<String>,
    pub external_address: Option<String>,
    pub forwarded_proto: Option<String>,
    pub authorization: Option<String>,
    pub assertion: Option<String>,
    pub payload: Option<String>,
    pub sub: Option<String>,
}

/// What a backend reads of them.
pub fn seen_fields(fields: &BTreeMap<String, String>) -> EdgeFields {
    let get = |n: &str| fields.get(n).cloned();
    EdgeFields {
        forwarded_for: get("x-forwarded-for"),
        external_address: get("x-envoy-external-address"),
        forwarded_proto: get("x-forwarded-proto"),
        authorization: get("authorization"),
        assertion: get(ASSERTION_HEADER),
        payload: get(PAYLOAD_HEADER),
        sub: get(SUB_HEADER),
    }
}

/// The value of the `x-forwarded-proto` a client sends: the opposite of its connection's.
fn claimed_proto(req: &GwRequest) -> &'static str {
    if req.port == HTTPS_PORT {
        "http"
    } else {
        "https"
    }
}

/// The client's token as it writes it, and where.
fn token_field(req: &GwRequest, keys: &JwtKeys) -> Option<(TokenAt, String)> {
    req.token.as_ref().map(|t| (t.at, t.mint(keys)))
}

/// The request target as the client writes it: the path, and the token's parameter (between
/// two others when `more_params`).
pub fn target_sent(req: &GwRequest, keys: &JwtKeys) -> String {
    let path = PATHS[req.path];
    let in_query = req.token.as_ref().and_then(|t| Some((t, t.at.param()?)));
    match in_query {
        Some((t, name)) if t.more_params => {
            format!("{path}?z=9&{name}={}&a=%7E1", t.mint(keys))
        }
        Some((t, name)) => format!("{path}?{name}={}", t.mint(keys)),
        None => path.to_string(),
    }
}

/// The head a client writes (`x-sim-req` names the request for the backends).
pub fn request_head(r: usize, req: &GwRequest, keys: &JwtKeys) -> Vec<u8> {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: {}\r\nx-sim-req: {r}\r\n",
        req.method(),
        target_sent(req, keys),
        req.host_field()
    );
    if req.preflight {
        head += "origin: https://app.example.org\r\naccess-control-request-method: POST\r\n";
    }
    for line in &req.forwarded_for {
        head += &format!("x-forwarded-for: {line}\r\n");
    }
    if req.claims_proto {
        head += &format!("x-forwarded-proto: {}\r\n", claimed_proto(req));
    }
    match token_field(req, keys) {
        Some((TokenAt::Bearer, jwt)) => head += &format!("authorization: Bearer {jwt}\r\n"),
        Some((TokenAt::AssertionHeader, jwt)) => head += &format!("{ASSERTION_HEADER}: {jwt}\r\n"),
        _ => {}
    }
    if req.forges {
        head += &format!("{PAYLOAD_HEADER}: {FORGED}\r\n{SUB_HEADER}: {FORGED}\r\n");
    }
    head += "\r\n";
    head.into_bytes()
}

/// Envoy's `JwtParamLocation::removeJwt`: the query parsed into a map sorted by name, names
/// and values percent-decoded (`PercentEncoding::decode`), `param` erased, the rest written
/// back as `?name=value&…` (`QueryParamsMulti::replaceQueryString`). The world's queries
/// have no empty segments and decode to text a request line can carry.
pub fn without_param(target: &str, param: &str) -> String {
    let Some((path, query)) = target.split_once('?') else {
        return target.to_string();
    };
    let decode = |s: &str| {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let hex = |c: u8| char::from(c).to_digit(16);
            if b[i] == b'%' && i + 2 < b.len() {
                if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
            }
            out.push(b[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let mut params: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for segment in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = segment.split_once('=').unwrap_or((segment, ""));
        params.entry(decode(k)).or_default().push(decode(v));
    }
    params.remove(param);
    let pairs: Vec<String> = (params.iter())
        .flat_map(|(k, vs)| vs.iter().map(move |v| format!("{k}={v}")))
        .collect();
    if pairs.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", pairs.join("&"))
    }
}

/// The target after the jwt_authn filter: what the router redirects and forwards.
pub fn target_after(req: &GwRequest, keys: &JwtKeys, authn: &Authn) -> String {
    let sent = target_sent(req, keys);
    match authn {
        Authn::Verified {
            removed: Some(at), ..
        } => match at.param() {
            Some(name) => without_param(&sent, name),
            None => sent,
        },
        _ => sent,
    }
}

/// The edge fields a backend must see of `req`, forwarded over a connection from `peer` (TLS
/// when it came to port 443) after `authn`.
pub fn expected_fields(
    spec: &GatewaySpec,
    req: &GwRequest,
    peer: IpAddr,
    keys: &JwtKeys,
    authn: &Authn,
) -> EdgeFields {
    let trusted = spec.trusted_proxies;
    let (payload, sub) = output_headers(
        super::jwt::applied(spec, req),
        req.token.as_ref(),
        req.forges,
        authn,
        keys,
    );
    let mut xff = received_xff(req).unwrap_or_default();
    if !xff.is_empty() {
        xff.push(',');
    }
    xff += &peer.to_string();
    let tls = req.port == HTTPS_PORT;
    let proto = if trusted > 0 && req.claims_proto {
        claimed_proto(req)
    } else if tls {
        "https"
    } else {
        "http"
    };
    let removed = match authn {
        Authn::Verified { removed, .. } => *removed,
        _ => None,
    };
    let kept = |at: TokenAt, form: fn(String) -> String| {
        let t: &GwToken = req.token.as_ref().filter(|t| t.at == at)?;
        (removed != Some(at)).then(|| form(t.mint(keys)))
    };
    EdgeFields {
        forwarded_for: Some(xff),
        external_address: Some(client_address(trusted, req, peer).to_string()),
        forwarded_proto: Some(proto.to_string()),
        authorization: kept(TokenAt::Bearer, |jwt| format!("Bearer {jwt}")),
        assertion: kept(TokenAt::AssertionHeader, |jwt| jwt),
        payload,
        sub,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Envoy's utility_test `GetLastAddressFromXff` cases, in kind.
    #[test]
    fn the_last_address_as_envoy_finds_it() {
        let v4 = |s: &str| Some(s.parse::<IpAddr>().expect("address"));
        let xff = Some("192.0.2.10, 192.0.2.1, 10.0.0.1");
        assert_eq!(last_address_from_xff(xff, 0), v4("10.0.0.1"));
        assert_eq!(last_address_from_xff(xff, 1), v4("192.0.2.1"));
        assert_eq!(last_address_from_xff(xff, 2), v4("192.0.2.10"));
        assert_eq!(last_address_from_xff(xff, 3), None, "too few entries");
        assert_eq!(last_address_from_xff(Some("10.0.0.1,"), 0), None);
        assert_eq!(last_address_from_xff(Some("unknown"), 0), None);
        assert_eq!(
            last_address_from_xff(Some(" 2001:db8::5 "), 0),
            v4("2001:db8::5")
        );
        assert_eq!(last_address_from_xff(None, 0), None);
    }

    #[test]
    fn envoy_writes_back_the_query_sorted_and_decoded() {
        assert_eq!(
            without_param("/p?z=9&token=t&a=%7E1", "token"),
            "/p?a=~1&z=9"
        );
        assert_eq!(without_param("/p?token=t", "token"), "/p");
        assert_eq!(without_param("/p?token=t", "access_token"), "/p?token=t");
    }
}
