//! Fuzz the AuthorizationPolicy matcher: bytes become Istio-style patterns, RBAC policies and
//! a request; the engine's matchers and evaluator must never panic and must agree with small
//! reference models written from pilot's and Envoy's rules:
//! - `StringMatcher::istio` against `*`/prefix/suffix/exact on plain `str` operations;
//! - host matchers against the same on lower-cased text (case-insensitive);
//! - a CIDR contains its own address; a path template that parses matches without panicking;
//! - the chain's verdict equals Istio's precedence (a matching DENY denies; else an ALLOW
//!   filter needs a matching policy; else allow), and adding a match-all DENY always denies.
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use trellis_engine::authz::{
    Action, Authorization, AuthzRequest, Cidr, HeaderMatcher, PathTemplate, Permission, Policy,
    Principal, Rbac, RbacFilter, StringMatcher, Verdict,
};

/// Reads choices and short strings from the fuzzer's bytes (zeros once they run out).
struct Bytes<'a>(&'a [u8]);

const ALPHABET: &[u8] = b"*/{}.aA:-0123456789";

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn pick(&mut self, n: u8) -> u8 {
        self.byte() % n
    }

    /// A string of up to 7 characters from a small alphabet (so patterns and values meet).
    fn text(&mut self) -> String {
        let len = self.pick(8);
        (0..len)
            .map(|_| ALPHABET[usize::from(self.byte()) % ALPHABET.len()] as char)
            .collect()
    }

    fn permission(&mut self, depth: u8) -> Permission {
        match self.pick(if depth == 0 { 5 } else { 8 }) {
            0 => Permission::Any,
            1 => Permission::Path(StringMatcher::istio(&self.text())),
            2 => Permission::Header(HeaderMatcher::istio(":method", &self.text())),
            3 => Permission::Header(HeaderMatcher::istio_host(":authority", &self.text())),
            4 => Permission::DestinationPort(u16::from(self.byte())),
            5 => Permission::Not(Box::new(self.permission(depth - 1))),
            6 => Permission::And(vec![self.permission(depth - 1), self.permission(depth - 1)]),
            _ => Permission::Or(vec![self.permission(depth - 1), self.permission(depth - 1)]),
        }
    }

    fn principal(&mut self, depth: u8) -> Principal {
        match self.pick(if depth == 0 { 4 } else { 6 }) {
            0 => Principal::Any,
            1 => Principal::Authenticated(StringMatcher::istio_with_prefix(
                &self.text(),
                "spiffe://",
            )),
            2 => Principal::Header(HeaderMatcher::istio("x-user", &self.text())),
            3 => match Cidr::parse(&format!("10.0.0.{}/{}", self.byte(), self.pick(33))) {
                Ok(c) => Principal::DirectRemoteIp(c),
                Err(_) => Principal::Any,
            },
            4 => Principal::Not(Box::new(self.principal(depth - 1))),
            _ => Principal::And(vec![self.principal(depth - 1), self.principal(depth - 1)]),
        }
    }
}

fn reference_istio(pattern: &str, value: &str) -> bool {
    if pattern == "*" {
        !value.is_empty()
    } else if let Some(s) = pattern.strip_prefix('*') {
        value.ends_with(s)
    } else if let Some(p) = pattern.strip_suffix('*') {
        value.starts_with(p)
    } else {
        value == pattern
    }
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);

    // Matchers against their references.
    let (pattern, value) = (b.text(), b.text());
    assert_eq!(
        StringMatcher::istio(&pattern).matches(&value),
        reference_istio(&pattern, &value)
    );
    let host = HeaderMatcher::istio_host(":authority", &pattern);
    let lower = HeaderMatcher::istio(":authority", &pattern.to_ascii_lowercase());
    assert_eq!(
        host.matches(Some(&value)),
        lower.matches(Some(&value.to_ascii_lowercase()))
    );
    if let Ok(t) = PathTemplate::parse(&format!("/{pattern}")) {
        let _ = t.matches(&format!("/{value}"));
    }
    let cidr_text = format!("{}.{}.{}.{}/{}", b.byte(), b.byte(), b.byte(), b.byte(), b.pick(40));
    if let Ok(c) = Cidr::parse(&cidr_text) {
        let ip = cidr_text.split('/').next().unwrap_or("").parse().expect("parsed once");
        assert!(c.contains(ip), "{cidr_text}");
    }
    let _ = Cidr::parse(&b.text());

    // A chain of RBAC filters and one request.
    let mut filters = Vec::new();
    let mut policies_by_action: Vec<(Action, Vec<Policy>)> = Vec::new();
    for action in [Action::Log, Action::Deny, Action::Allow] {
        if b.pick(2) == 0 {
            continue;
        }
        let policies: Vec<Policy> = (0..b.pick(3))
            .map(|i| Policy {
                name: Arc::from(format!("{action:?}-{i}")),
                permissions: (0..1 + b.pick(2)).map(|_| b.permission(2)).collect(),
                principals: (0..1 + b.pick(2)).map(|_| b.principal(2)).collect(),
            })
            .collect();
        policies_by_action.push((action, policies.clone()));
        filters.push(RbacFilter {
            rules: Some(Rbac { action, policies }),
            shadow: None,
        });
    }
    let mut headers = trellis_engine::http1::Fields::new();
    headers.append_text("x-user", &b.text());
    let (method, authority, path) = (b.text(), b.text(), format!("/{}", b.text()));
    let identity = format!("spiffe://{}", b.text());
    let peer: SocketAddr = format!("10.0.0.{}:1000", b.byte()).parse().expect("address");
    let req = AuthzRequest {
        method: &method,
        authority: &authority,
        path: &path,
        headers: &headers,
        peer,
        destination: SocketAddr::from(([10, 0, 0, 1], u16::from(b.byte()))),
        peer_identity: (b.pick(2) == 1).then_some(identity.as_str()),
        sni: None,
        jwt: None,
    };
    let authz = Authorization { filters };
    let verdict = authz.evaluate(&req, &mut |_| {});
    let matching = |action: Action| {
        policies_by_action
            .iter()
            .filter(|(a, _)| *a == action)
            .flat_map(|(_, ps)| ps)
            .any(|p| p.matches(&req))
    };
    let has_allow = policies_by_action.iter().any(|(a, _)| *a == Action::Allow);
    let expected = !matching(Action::Deny) && (!has_allow || matching(Action::Allow));
    assert_eq!(verdict.is_allowed(), expected, "{authz:?}");

    // DENY wins: a match-all DENY before the ALLOW filter denies, whatever else is there.
    let mut with_deny = authz.clone();
    let at = with_deny
        .filters
        .iter()
        .position(|f| f.rules.as_ref().is_some_and(|r| r.action == Action::Allow))
        .unwrap_or(with_deny.filters.len());
    with_deny.filters.insert(
        at,
        RbacFilter {
            rules: Some(Rbac {
                action: Action::Deny,
                policies: vec![Policy {
                    name: Arc::from("deny-all"),
                    permissions: vec![Permission::Any],
                    principals: vec![Principal::Any],
                }],
            }),
            shadow: None,
        },
    );
    assert!(matches!(
        with_deny.evaluate(&req, &mut |_| {}),
        Verdict::Denied(Some(_))
    ));
});
