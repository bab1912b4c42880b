//! Authorization stays allocation-free on the request path: evaluating a chain of RBAC
//! filters of the kinds pilot generates (principals, namespaces as regexes, paths, methods,
//! hosts, headers, ports, IP blocks, negations) over a request allocates nothing once warm
//! (the regex engine's per-thread cache is filled by the warm-up). Its own test binary, so its
//! counting allocator sees nothing else.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use trellis_engine::authz::{
    Action, Authorization, AuthzRequest, Cidr, FullRegex, HeaderMatcher, PathTemplate, Permission,
    Policy, Principal, Rbac, RbacFilter, StringMatcher,
};

struct CountAllocs;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ON: AtomicBool = AtomicBool::new(false);

unsafe impl GlobalAlloc for CountAllocs {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ON.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static A: CountAllocs = CountAllocs;

fn chain() -> Authorization {
    let principal =
        |v: &str| Principal::Authenticated(StringMatcher::istio_with_prefix(v, "spiffe://"));
    let namespace = Principal::Authenticated(StringMatcher::Regex(
        FullRegex::new(".*/ns/shop/.*").unwrap(),
    ));
    let filter = |action, policies| RbacFilter {
        rules: Some(Rbac { action, policies }),
        shadow: None,
    };
    let policy = |name: &str, permissions, principals| Policy {
        name: Arc::from(name),
        permissions,
        principals,
    };
    Authorization {
        filters: vec![
            filter(
                Action::Log,
                vec![policy(
                    "audit",
                    vec![Permission::Header(HeaderMatcher::istio(
                        ":method", "DELETE",
                    ))],
                    vec![Principal::Any],
                )],
            ),
            filter(
                Action::Deny,
                vec![policy(
                    "deny",
                    vec![Permission::And(vec![
                        Permission::Or(vec![Permission::Path(StringMatcher::istio("/admin*"))]),
                        Permission::Not(Box::new(Permission::DestinationPort(15021))),
                    ])],
                    vec![Principal::Or(vec![
                        Principal::Header(HeaderMatcher::istio("x-user", "mallory")),
                        Principal::RemoteIp(Cidr::parse("192.168.0.0/16").unwrap()),
                    ])],
                )],
            ),
            filter(
                Action::Allow,
                vec![
                    policy(
                        "viewer",
                        vec![Permission::And(vec![
                            Permission::Header(HeaderMatcher::istio_host(":authority", "web*")),
                            Permission::Header(HeaderMatcher::istio(":method", "GET")),
                            Permission::PathTemplate(
                                PathTemplate::parse("/api/{*}/items").unwrap(),
                            ),
                        ])],
                        vec![Principal::And(vec![
                            principal("cluster.local/ns/front/*"),
                            Principal::Not(Box::new(principal("*/sa/blocked"))),
                        ])],
                    ),
                    policy(
                        "same-namespace",
                        vec![Permission::Any],
                        vec![Principal::And(vec![
                            namespace,
                            Principal::DirectRemoteIp(Cidr::parse("10.0.0.0/8").unwrap()),
                        ])],
                    ),
                ],
            ),
        ],
    }
}

#[test]
fn evaluating_a_chain_allocates_nothing() {
    let authz = chain();
    let headers: trellis_engine::http1::Fields = [
        ("x-user", "alice"),
        ("x-forwarded-for", "1.2.3.4, 10.1.1.1"),
    ]
    .into_iter()
    .collect();
    let peer: SocketAddr = "10.1.2.3:40000".parse().unwrap();
    let requests = [
        (
            "GET",
            "/api/v1/items?x=1",
            Some("spiffe://cluster.local/ns/front/sa/web"),
        ),
        (
            "GET",
            "/admin/x",
            Some("spiffe://cluster.local/ns/front/sa/web"),
        ),
        (
            "POST",
            "/orders",
            Some("spiffe://cluster.local/ns/shop/sa/orders"),
        ),
        ("DELETE", "/api/v1/items", None),
    ];
    // A mesh peer's certificate names, built before counting: the SPIFFE id, an empty subject.
    let names: Vec<Vec<String>> = (requests.iter())
        .map(|(_, _, id)| {
            id.iter()
                .flat_map(|id| [id.to_string(), String::new()])
                .collect()
        })
        .collect();
    let run = |count: &mut [u32; 2]| {
        for ((method, path, _), names) in requests.iter().zip(&names) {
            let req = AuthzRequest {
                method,
                authority: "web.shop:8080",
                path,
                headers: &headers,
                peer,
                destination: "10.0.0.9:8080".parse().unwrap(),
                peer_names: names,
                sni: None,
                jwt: None,
                client: None,
            };
            let verdict = authz.evaluate(&req, &mut |_| {});
            count[usize::from(verdict.is_allowed())] += 1;
        }
    };
    let mut warm = [0; 2];
    run(&mut warm);
    assert_eq!(
        warm,
        [2, 2],
        "two denied (admin, no principal), two allowed"
    );
    ON.store(true, Ordering::Relaxed);
    let mut count = [0; 2];
    for _ in 0..1000 {
        run(&mut count);
    }
    ON.store(false, Ordering::Relaxed);
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    println!("allocations for 4000 authorization decisions: {allocations}");
    assert_eq!(allocations, 0);
}
