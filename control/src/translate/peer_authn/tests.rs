//! PeerAuthentication composition, case by case against pilot's `ComposePeerAuthentication`
//! (pilot/pkg/security/authn/policy_applier.go) and its tests.

use super::*;
use crate::istio::parse_str;

fn pa(namespace: &str, name: &str, extra: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: {namespace}{created}}}\nspec:\n{extra}\n---\n",
        created = "",
    )
}

fn set(docs: &[String]) -> ResourceSet {
    let set = parse_str(&docs.concat(), "test.yaml").expect("valid YAML");
    assert!(
        set.diagnostics
            .iter()
            .all(|d| d.severity < crate::diag::Severity::Warning),
        "{:?}",
        set.diagnostics
    );
    set
}

fn reviews() -> Workload {
    Workload {
        namespace: "bookinfo".into(),
        service_account: "reviews".into(),
        labels: [("app".to_string(), "reviews".to_string())].into(),
        locality: None,
    }
}

fn mode(docs: &[String]) -> MergedPeerAuthentication {
    compose(&set(docs), &reviews())
}

#[test]
fn no_policy_is_permissive() {
    assert_eq!(mode(&[]).mode, InboundMode::Permissive);
}

#[test]
fn mesh_then_namespace_then_workload_each_replace_unless_unset() {
    let mesh = pa("istio-system", "default", "  mtls: {mode: STRICT}");
    assert_eq!(mode(std::slice::from_ref(&mesh)).mode, InboundMode::Strict);
    let ns_unset = pa("bookinfo", "default", "  mtls: {}");
    assert_eq!(mode(&[mesh.clone(), ns_unset]).mode, InboundMode::Strict);
    let ns_disable = pa("bookinfo", "default", "  mtls: {mode: DISABLE}");
    assert_eq!(
        mode(&[mesh.clone(), ns_disable.clone()]).mode,
        InboundMode::Disable
    );
    let wl = pa(
        "bookinfo",
        "reviews",
        "  selector: {matchLabels: {app: reviews}}\n  mtls: {mode: PERMISSIVE}",
    );
    assert_eq!(mode(&[mesh, ns_disable, wl]).mode, InboundMode::Permissive);
}

#[test]
fn policies_of_other_namespaces_and_other_workloads_do_not_apply() {
    let other_ns = pa("default", "default", "  mtls: {mode: STRICT}");
    let other_app = pa(
        "bookinfo",
        "ratings",
        "  selector: {matchLabels: {app: ratings}}\n  mtls: {mode: STRICT}",
    );
    // A selector in the root namespace is not a mesh policy and not a workload one.
    let root_selector = pa(
        "istio-system",
        "sel",
        "  selector: {matchLabels: {app: reviews}}\n  mtls: {mode: STRICT}",
    );
    assert_eq!(
        mode(&[other_ns, other_app, root_selector]).mode,
        InboundMode::Permissive
    );
}

#[test]
fn the_oldest_policy_of_a_scope_wins() {
    let newer = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a, namespace: bookinfo, creationTimestamp: \"2024-05-02T00:00:00Z\"}\nspec: {mtls: {mode: STRICT}}\n---\n".to_string();
    let older = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: b, namespace: bookinfo, creationTimestamp: \"2024-05-01T00:00:00Z\"}\nspec: {mtls: {mode: DISABLE}}\n---\n".to_string();
    assert_eq!(mode(&[newer, older]).mode, InboundMode::Disable);
}

#[test]
fn port_level_modes_come_from_the_workload_policy_only() {
    let ns = pa(
        "bookinfo",
        "default",
        "  mtls: {mode: STRICT}\n  portLevelMtls: {8080: {mode: DISABLE}}",
    );
    assert!(mode(std::slice::from_ref(&ns)).per_port.is_empty());
    let wl = pa(
        "bookinfo",
        "reviews",
        "  selector: {matchLabels: {app: reviews}}\n  portLevelMtls:\n    8080: {mode: DISABLE}\n    9090: {}",
    );
    let merged = mode(&[ns, wl]);
    assert_eq!(merged.mode, InboundMode::Strict);
    // UNSET on a port inherits the workload's composed mode.
    assert_eq!(
        merged.per_port,
        [(8080, InboundMode::Disable), (9090, InboundMode::Strict)].into()
    );
}

#[test]
fn service_mode_ignores_workload_policies() {
    let mesh = pa("istio-system", "default", "  mtls: {mode: STRICT}");
    let wl = pa(
        "bookinfo",
        "reviews",
        "  selector: {matchLabels: {app: reviews}}\n  mtls: {mode: DISABLE}",
    );
    let resources = set(&[mesh, wl]);
    assert_eq!(service_mode(&resources, "bookinfo"), InboundMode::Strict);
    assert_eq!(
        service_mode(&ResourceSet::default(), "x"),
        InboundMode::Permissive
    );
}

#[test]
fn a_listener_for_one_app_port_takes_that_ports_mode() {
    let wl = pa(
        "bookinfo",
        "reviews",
        "  selector: {matchLabels: {app: reviews}}\n  mtls: {mode: STRICT}\n  portLevelMtls: {9080: {mode: PERMISSIVE}}",
    );
    let resources = set(&[wl]);
    let mut diags = Vec::new();
    let at = |port| inbound_mtls(&resources, &reviews(), true, Some(port), &mut Vec::new());
    assert_eq!(at(9080), InboundMtls::uniform(InboundMode::Permissive));
    assert_eq!(at(9081), InboundMtls::uniform(InboundMode::Strict));
    let any = inbound_mtls(&resources, &reviews(), true, None, &mut diags);
    assert_eq!(any.mode, InboundMode::Strict);
    assert_eq!(any.mode_for(9080), InboundMode::Permissive);
    assert!(diags.is_empty());
}

#[test]
fn without_an_identity_ports_are_plaintext_and_strict_is_an_error() {
    let mut diags = Vec::new();
    let none = inbound_mtls(&ResourceSet::default(), &reviews(), false, None, &mut diags);
    assert_eq!(none, InboundMtls::uniform(InboundMode::Disable));
    assert!(diags.is_empty());
    let strict = set(&[pa("bookinfo", "default", "  mtls: {mode: STRICT}")]);
    let m = inbound_mtls(&strict, &reviews(), false, None, &mut diags);
    assert_eq!(m.mode, InboundMode::Strict, "fails closed");
    assert_eq!(diags.len(), 1);
    assert!(diags[0].message.contains("no identity"), "{:?}", diags[0]);
}
