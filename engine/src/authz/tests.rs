//! Evaluator tests: the chain's order (Istio's "CUSTOM, DENY, ALLOW"; no ALLOW policy allows
//! everything; an ALLOW policy without rules denies everything), Envoy's matcher semantics on
//! real request views, and quickcheck properties against a reference written from Istio's
//! documentation (`security/v1beta1/authorization_policy.proto`, "Authorization Policy
//! precedence") rather than from the chain walk.

use std::net::SocketAddr;
use std::sync::Arc;

use quickcheck::{Arbitrary, Gen};
use quickcheck_macros::quickcheck;

use super::*;

fn headers(pairs: &[(&str, &str)]) -> crate::http1::Fields {
    let mut h = crate::http1::Fields::new();
    for (k, v) in pairs {
        assert!(h.append_text(k, v), "{k}: {v}");
    }
    h
}

struct Req {
    method: &'static str,
    authority: &'static str,
    path: &'static str,
    headers: crate::http1::Fields,
    peer: SocketAddr,
    destination: SocketAddr,
    /// The peer certificate's names ([`mesh_names`]); empty: plaintext.
    names: Vec<String>,
    jwt: Option<crate::authn::JwtPayload>,
}

/// The names of a mesh peer's certificate, as the TLS transform lists them: its SPIFFE id
/// (the URI SAN), then its empty subject; none on plaintext.
fn mesh_names(identity: Option<&str>) -> Vec<String> {
    (identity.iter())
        .flat_map(|id| [id.to_string(), String::new()])
        .collect()
}

impl Req {
    fn get(path: &'static str) -> Req {
        Req {
            method: "GET",
            authority: "reviews:9080",
            path,
            headers: crate::http1::Fields::new(),
            peer: "10.0.0.7:40000".parse().unwrap(),
            destination: "10.0.0.9:9080".parse().unwrap(),
            names: Vec::new(),
            jwt: None,
        }
    }

    fn view(&self) -> AuthzRequest<'_> {
        AuthzRequest {
            method: self.method,
            authority: self.authority,
            path: self.path,
            headers: &self.headers,
            peer: self.peer,
            destination: self.destination,
            peer_names: &self.names,
            sni: None,
            jwt: self.jwt.as_ref(),
            client: None,
        }
    }
}

fn policy(name: &str, permissions: Vec<Permission>, principals: Vec<Principal>) -> Policy {
    Policy {
        name: Arc::from(name),
        permissions,
        principals,
    }
}

fn filter(action: Action, policies: Vec<Policy>) -> RbacFilter {
    RbacFilter {
        rules: Some(Rbac { action, policies }),
        shadow: None,
    }
}

fn eval(authz: &Authorization, req: &Req) -> (Verdict, Vec<Note>) {
    let mut notes = Vec::new();
    let v = authz.evaluate(&req.view(), &mut |n| notes.push(n));
    (v, notes)
}

fn path_is(p: &str) -> Permission {
    Permission::Path(StringMatcher::istio(p))
}

#[test]
fn no_filters_allow_everything() {
    assert_eq!(
        eval(&Authorization::default(), &Req::get("/")).0,
        Verdict::Allowed
    );
}

#[test]
fn allow_policy_without_rules_denies_everything() {
    // builder.go: `len(policy.Spec.Rules) == 0` → rbacPolicyMatchNever in an ALLOW filter.
    let authz = Authorization {
        filters: vec![filter(
            Action::Allow,
            vec![Policy::match_never("ns[a]-policy[x]-rule[0]".into())],
        )],
    };
    let (v, _) = eval(&authz, &Req::get("/"));
    assert_eq!(v, Verdict::Denied(None));
    assert_eq!(
        v.details().unwrap(),
        "rbac_access_denied_matched_policy[none]"
    );
}

#[test]
fn deny_then_allow_and_audit_marks() {
    let authz = Authorization {
        filters: vec![
            filter(
                Action::Log,
                vec![policy("audit", vec![path_is("/a*")], vec![Principal::Any])],
            ),
            filter(
                Action::Deny,
                vec![policy(
                    "deny",
                    vec![path_is("/admin")],
                    vec![Principal::Any],
                )],
            ),
            filter(
                Action::Allow,
                vec![policy("allow", vec![path_is("/a*")], vec![Principal::Any])],
            ),
        ],
    };
    let (v, notes) = eval(&authz, &Req::get("/admin?x=1"));
    assert_eq!(v, Verdict::Denied(Some("deny".into())));
    assert_eq!(notes, vec![Note::Audited("audit".into())]);
    assert_eq!(
        v.details().unwrap(),
        "rbac_access_denied_matched_policy[deny]"
    );
    assert_eq!(eval(&authz, &Req::get("/api")).0, Verdict::Allowed);
    assert_eq!(eval(&authz, &Req::get("/other")).0, Verdict::Denied(None));
}

#[test]
fn shadow_rules_are_counted_not_enforced() {
    let authz = Authorization {
        filters: vec![RbacFilter {
            rules: None,
            shadow: Some(Rbac {
                action: Action::Deny,
                policies: vec![policy("dry", vec![Permission::Any], vec![Principal::Any])],
            }),
        }],
    };
    let (v, notes) = eval(&authz, &Req::get("/"));
    assert_eq!(v, Verdict::Allowed);
    assert_eq!(notes, vec![Note::Shadow { allowed: false }]);
}

#[test]
fn authenticated_needs_a_verified_peer() {
    let p = Principal::Authenticated(StringMatcher::istio_with_prefix(
        "cluster.local/ns/shop/sa/web",
        "spiffe://",
    ));
    let mut req = Req::get("/");
    assert!(!p.matches(&req.view()), "plaintext has no principal");
    assert!(
        Principal::Not(Box::new(p.clone())).matches(&req.view()),
        "notPrincipals: plaintext is not that principal"
    );
    req.names = mesh_names(Some("spiffe://cluster.local/ns/shop/sa/web"));
    assert!(p.matches(&req.view()));
}

/// Envoy's `AuthenticatedMatcher::matches` (source/extensions/filters/common/rbac/
/// matchers.cc) tries every URI SAN, then every DNS SAN, then the subject. A gateway's client
/// certificate from a CA outside the mesh may name only a DNS name: pilot's `principals: ["*"]`
/// (`StringMatcherWithPrefix`: the regex `.+`) holds for it, `notPrincipals: ["*"]` does not,
/// and every other form carries `spiffe://` and fails.
#[test]
fn authenticated_tries_dns_names_and_the_subject_too() {
    let star = Principal::Authenticated(StringMatcher::istio_with_prefix("*", "spiffe://"));
    let suffix =
        Principal::Authenticated(StringMatcher::istio_with_prefix("*.gw.test", "spiffe://"));
    let mut req = Req::get("/");
    req.names = vec!["client.gw.test".into(), "CN=client.gw.test".into()];
    assert!(star.matches(&req.view()));
    assert!(!Principal::Not(Box::new(star)).matches(&req.view()));
    assert!(!suffix.matches(&req.view()));
    let subject = Principal::Authenticated(StringMatcher::Exact("CN=client.gw.test".into()));
    assert!(subject.matches(&req.view()));
}

#[test]
fn remote_ip_is_the_last_forwarded_for_entry() {
    let block = Principal::RemoteIp(Cidr::parse("192.168.0.0/16").unwrap());
    let direct = Principal::DirectRemoteIp(Cidr::parse("10.0.0.7").unwrap());
    let mut req = Req::get("/");
    assert!(!block.matches(&req.view()) && direct.matches(&req.view()));
    req.headers = headers(&[("x-forwarded-for", "1.1.1.1, 192.168.3.4")]);
    assert!(block.matches(&req.view()) && direct.matches(&req.view()));
    req.headers = headers(&[("x-forwarded-for", "192.168.3.4, garbage")]);
    assert!(
        !block.matches(&req.view()),
        "unparsable: the peer's address"
    );
}

#[test]
fn headers_methods_hosts_ports() {
    let mut req = Req::get("/x");
    req.headers = headers(&[("x-user", "jason"), ("x-multi", "a"), ("x-multi", "b")]);
    let h = |name, v| Principal::Header(HeaderMatcher::istio(name, v));
    assert!(h("x-user", "jason").matches(&req.view()));
    assert!(
        h("X-User", "j*").matches(&req.view()),
        "names are lower-cased"
    );
    assert!(h("x-multi", "a,b").matches(&req.view()), "values joined");
    assert!(!h("x-none", "*").matches(&req.view()));
    let m = Permission::Header(HeaderMatcher::istio(":method", "GET"));
    assert!(m.matches(&req.view()));
    let host = Permission::Header(HeaderMatcher::istio_host(":authority", "REVIEWS:*"));
    assert!(host.matches(&req.view()));
    let any_host = Permission::Header(HeaderMatcher::istio_host(":authority", "*"));
    assert!(any_host.matches(&req.view()));
    req.authority = "";
    assert!(
        !any_host.matches(&req.view()),
        "no Host: no :authority to be present"
    );
    req.authority = "reviews:9080";
    assert!(Permission::DestinationPort(9080).matches(&req.view()));
    assert!(!Permission::DestinationPort(80).matches(&req.view()));
    assert!(Permission::DestinationIp(Cidr::parse("10.0.0.0/24").unwrap()).matches(&req.view()));
}

#[test]
fn metadata_matchers_read_the_verified_jwt_payload_as_envoy_rbac() {
    use crate::authz::{MetadataMatcher, ValueMatcher};
    let mut req = Req::get("/");
    let iss = Principal::Metadata(MetadataMatcher::jwt_claim(
        &["iss"],
        ValueMatcher::String(StringMatcher::istio("https://issuer.example")),
    ));
    let group = ValueMatcher::String(StringMatcher::istio("admins"));
    let groups = Principal::Metadata(MetadataMatcher::jwt_claim(
        &["groups"],
        ValueMatcher::Or(vec![
            ValueMatcher::ListOneOf(Box::new(group.clone())),
            group,
        ]),
    ));
    let nested = Principal::Metadata(MetadataMatcher::jwt_claim(
        &["org", "team"],
        ValueMatcher::String(StringMatcher::istio("a*")),
    ));
    let other_filter = Permission::Metadata(MetadataMatcher {
        filter: "envoy.filters.x".into(),
        path: vec!["y".into()],
        value: ValueMatcher::String(StringMatcher::istio("*")),
    });
    assert!(
        !iss.matches(&req.view()),
        "no verified token: nothing matches"
    );
    let payload = serde_json::json!({"iss": "https://issuer.example", "groups": ["dev", "admins"],
        "org": {"team": "alpha"}, "n": 5});
    req.jwt = Some(crate::authn::JwtPayload::normalized(
        payload.as_object().unwrap().clone(),
        &[],
    ));
    assert!(iss.matches(&req.view()));
    assert!(groups.matches(&req.view()), "one element of a list claim");
    assert!(nested.matches(&req.view()));
    assert!(
        !other_filter.matches(&req.view()),
        "no other filter's metadata"
    );
    let number = Principal::Metadata(MetadataMatcher::jwt_claim(
        &["n"],
        ValueMatcher::String(StringMatcher::istio("5")),
    ));
    assert!(
        !number.matches(&req.view()),
        "a string matcher never matches a number"
    );
}

// ---- properties ----------------------------------------------------------------------

/// A small vocabulary of conditions, so that random policies and requests meet often.
#[derive(Clone, Debug)]
struct Case {
    filters: Vec<(Action, Vec<Policy>)>,
    path: &'static str,
    method: &'static str,
    identity: Option<&'static str>,
}

const PATHS: [&str; 4] = ["/", "/admin", "/api/v1", "/public"];
const METHODS: [&str; 3] = ["GET", "POST", "DELETE"];
const IDS: [Option<&str>; 3] = [
    None,
    Some("spiffe://cluster.local/ns/a/sa/web"),
    Some("spiffe://cluster.local/ns/b/sa/job"),
];

fn arb_permission(g: &mut Gen, depth: u8) -> Permission {
    let pick = u8::arbitrary(g) % if depth == 0 { 3 } else { 6 };
    match pick {
        0 => Permission::Any,
        1 => path_is(
            g.choose(&["/admin", "/api*", "*c", "*", "/"])
                .copied()
                .unwrap_or("/"),
        ),
        2 => Permission::Header(HeaderMatcher::istio(
            ":method",
            g.choose(&METHODS).copied().unwrap_or("GET"),
        )),
        3 => Permission::Not(Box::new(arb_permission(g, depth - 1))),
        4 => Permission::And(vec![
            arb_permission(g, depth - 1),
            arb_permission(g, depth - 1),
        ]),
        _ => Permission::Or(vec![
            arb_permission(g, depth - 1),
            arb_permission(g, depth - 1),
        ]),
    }
}

fn arb_principal(g: &mut Gen, depth: u8) -> Principal {
    let pick = u8::arbitrary(g) % if depth == 0 { 2 } else { 3 };
    match pick {
        0 => Principal::Any,
        1 => Principal::Authenticated(StringMatcher::istio_with_prefix(
            g.choose(&["*", "cluster.local/ns/a/sa/web", "*/sa/job"])
                .copied()
                .unwrap_or("*"),
            "spiffe://",
        )),
        _ => Principal::Not(Box::new(arb_principal(g, depth - 1))),
    }
}

impl Arbitrary for Case {
    fn arbitrary(g: &mut Gen) -> Case {
        let mut filters = Vec::new();
        for action in [Action::Log, Action::Deny, Action::Allow] {
            if bool::arbitrary(g) {
                continue;
            }
            let n = usize::arbitrary(g) % 3;
            let policies = (0..n)
                .map(|i| Policy {
                    name: Arc::from(format!("{action:?}-{i}")),
                    permissions: (0..1 + usize::arbitrary(g) % 2)
                        .map(|_| arb_permission(g, 2))
                        .collect(),
                    principals: (0..1 + usize::arbitrary(g) % 2)
                        .map(|_| arb_principal(g, 1))
                        .collect(),
                })
                .collect();
            filters.push((action, policies));
        }
        Case {
            filters,
            path: g.choose(&PATHS).copied().unwrap_or("/"),
            method: g.choose(&METHODS).copied().unwrap_or("GET"),
            identity: g.choose(&IDS).copied().unwrap_or(None),
        }
    }
}

impl Case {
    fn authz(&self) -> Authorization {
        Authorization {
            filters: self
                .filters
                .iter()
                .map(|(a, ps)| filter(*a, ps.clone()))
                .collect(),
        }
    }

    fn req(&self) -> Req {
        let mut r = Req::get(self.path);
        r.method = self.method;
        r.names = mesh_names(self.identity);
        r
    }

    fn policies(&self, action: Action) -> impl Iterator<Item = &Policy> {
        self.filters
            .iter()
            .filter(move |(a, _)| *a == action)
            .flat_map(|(_, ps)| ps)
    }
}

/// Istio's documented precedence, stated directly: a matching DENY policy denies; else, when
/// any ALLOW policy applies, a matching one is needed; else allow.
fn reference(case: &Case) -> bool {
    let req = case.req();
    let view = req.view();
    if case.policies(Action::Deny).any(|p| p.matches(&view)) {
        return false;
    }
    let allow_filter = case.filters.iter().any(|(a, _)| *a == Action::Allow);
    !allow_filter || case.policies(Action::Allow).any(|p| p.matches(&view))
}

#[quickcheck]
fn verdict_equals_istio_precedence(case: Case) -> bool {
    eval(&case.authz(), &case.req()).0.is_allowed() == reference(&case)
}

#[quickcheck]
fn a_matching_deny_always_wins(mut case: Case) -> bool {
    // Add a DENY policy that matches everything: whatever else is there, the request is denied.
    case.filters.push((
        Action::Deny,
        vec![policy(
            "deny-all",
            vec![Permission::Any],
            vec![Principal::Any],
        )],
    ));
    case.filters.sort_by_key(|(a, _)| match a {
        Action::Log => 0,
        Action::Deny => 1,
        Action::Allow => 2,
    });
    matches!(eval(&case.authz(), &case.req()).0, Verdict::Denied(Some(_)))
}

#[quickcheck]
fn audit_never_changes_the_verdict(case: Case) -> bool {
    let without: Vec<_> = case
        .filters
        .iter()
        .filter(|(a, _)| *a != Action::Log)
        .cloned()
        .collect();
    let stripped = Case {
        filters: without,
        ..case.clone()
    };
    eval(&case.authz(), &case.req()).0 == eval(&stripped.authz(), &case.req()).0
}

#[quickcheck]
fn not_is_the_complement(case: Case) -> bool {
    let req = case.req();
    let view = req.view();
    case.filters.iter().flat_map(|(_, ps)| ps).all(|p| {
        p.permissions
            .iter()
            .all(|x| Permission::Not(Box::new(x.clone())).matches(&view) != x.matches(&view))
            && p.principals
                .iter()
                .all(|x| Principal::Not(Box::new(x.clone())).matches(&view) != x.matches(&view))
    })
}
