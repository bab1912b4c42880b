//! What a sidecar's translation decides from the client it serves: its own workload.
//!
//! istiod generates a sidecar's routes for that sidecar alone, so everything that depends on
//! who the client is gets decided at config generation and never reaches Envoy:
//! - which VirtualServices the sidecar sees, and in what order (`exportTo`): its namespace's
//!   private ones, then those exported to its namespace, then the public ones
//!   (initVirtualServices and VirtualServicesForGateway in pilot/pkg/model/push_context.go);
//! - which `match` entries apply: `sourceLabels` must be among the workload's labels and
//!   `sourceNamespace` must be its namespace, unless the entry names `gateways`, in which case
//!   only `mesh` among them counts (sourceMatchHTTP and TranslateRoute in
//!   pilot/pkg/networking/core/route/route.go).
//!
//! The engine can still match `source_labels` at run time (the simulator hands it the calling
//! workload's labels); a sidecar translated here simply never carries any.

use std::collections::BTreeMap;

use super::workload::Workload;
use crate::istio::virtual_service::{HttpMatchRequest, HttpRoute};
use crate::istio::{Resource, VirtualServiceSpec};

/// Istio's name for the sidecars as a gateway (`gateways: [mesh]`).
pub const MESH_GATEWAY: &str = "mesh";

/// Whether one `match` entry applies to a sidecar of `workload` (sourceMatchHTTP in
/// pilot/pkg/networking/core/route/route.go, with `gatewayNames = {mesh}`). Note pilot's shape:
/// an entry that names gateways is decided by them alone, its `sourceLabels` and
/// `sourceNamespace` are not looked at.
pub fn source_matches(m: &HttpMatchRequest, workload: &Workload) -> bool {
    if !m.gateways.is_empty() {
        return m.gateways.iter().any(|g| g == MESH_GATEWAY);
    }
    workload.matches_labels(&m.source_labels)
        && m.source_namespace
            .as_deref()
            .is_none_or(|ns| ns.is_empty() || ns == workload.namespace)
}

/// `rule` as it applies to a sidecar of `workload`: the `match` entries whose source conditions
/// hold, with those conditions removed (decided once, here), or `None` when the rule had
/// entries and none holds (TranslateRoute returns no route for them). A rule without `match`
/// applies to every client.
pub fn rule_for_client(rule: &HttpRoute, workload: &Workload) -> Option<HttpRoute> {
    keep_matches(rule, |m| source_matches(m, workload), false)
}

/// `rule` with only the `match` entries `applies` keeps, each stripped of the conditions that
/// were decided by keeping it (`gateways`, `sourceLabels`, `sourceNamespace`, and `port` when
/// `port_decided`); `None` when the rule had entries and none is kept. A rule without `match`
/// is kept whole. Shared by the sidecar's and the gateway's translation.
pub fn keep_matches(
    rule: &HttpRoute,
    applies: impl Fn(&HttpMatchRequest) -> bool,
    port_decided: bool,
) -> Option<HttpRoute> {
    if rule.matches.is_empty() {
        return Some(rule.clone());
    }
    let kept: Vec<HttpMatchRequest> = rule
        .matches
        .iter()
        .filter(|m| applies(m))
        .map(|m| HttpMatchRequest {
            port: if port_decided { None } else { m.port },
            gateways: Vec::new(),
            source_labels: BTreeMap::new(),
            source_namespace: None,
            ..m.clone()
        })
        .collect();
    if kept.is_empty() {
        return None;
    }
    Some(HttpRoute {
        matches: kept,
        ..rule.clone()
    })
}

/// How far a VirtualService reaches, as initVirtualServices files it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Reach {
    /// Exported to its own namespace (`.` or its name), the client's.
    Private,
    /// Exported by name to the client's namespace from another one.
    Exported,
    /// Unset `exportTo` (Istio's default is `*`) or one naming `*`.
    Public,
}

/// How `vs` reaches a client in `namespace`, or `None` when it is not visible there. `*` wins
/// over everything else, and `~` hides the VirtualService unless `*` is also listed
/// (initVirtualServices in pilot/pkg/model/push_context.go; the controller turns `.` into the
/// VirtualService's namespace).
pub(crate) fn reach(vs: &Resource<VirtualServiceSpec>, namespace: &str) -> Option<Reach> {
    let export = &vs.spec.export_to;
    if export.is_empty() || export.iter().any(|e| e == "*") {
        return Some(Reach::Public);
    }
    if export.iter().any(|e| e == "~") {
        return None;
    }
    let own = vs.namespace();
    let names_client = |e: &String| {
        if e == "." {
            own == namespace
        } else {
            e == namespace
        }
    };
    if !export.iter().any(names_client) {
        return None;
    }
    Some(if namespace == own {
        Reach::Private
    } else {
        Reach::Exported
    })
}

/// The VirtualServices a sidecar in `namespace` sees, in istiod's order: private, then
/// exported to it, then public, each group in `ordered`'s order (creation time; see
/// `precedence_order`). The first to claim a domain keeps it, so a namespace's own
/// VirtualService overrides a public one for its clients ("consumer override").
pub fn visible_in<'a>(
    ordered: &[&'a Resource<VirtualServiceSpec>],
    namespace: &str,
) -> Vec<&'a Resource<VirtualServiceSpec>> {
    let mut out: Vec<(Reach, usize, &'a Resource<VirtualServiceSpec>)> = ordered
        .iter()
        .enumerate()
        .filter_map(|(i, vs)| reach(vs, namespace).map(|r| (r, i, *vs)))
        .collect();
    out.sort_by_key(|(r, i, _)| (*r, *i));
    out.into_iter().map(|(_, _, vs)| vs).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::istio::parse_str;

    fn rule(yaml: &str) -> HttpRoute {
        serde_yaml::from_str(yaml).expect("rule")
    }

    fn workload(ns: &str, labels: &[(&str, &str)]) -> Workload {
        Workload::new(ns, labels)
    }

    /// sourceMatchHTTP (pilot/pkg/networking/core/route/route.go): labels are a subset of the
    /// proxy's, the namespace is the proxy's; an entry with `gateways` is decided by them only.
    #[test]
    fn source_conditions_are_decided_for_the_workload() {
        let r = rule(
            r#"
match:
- {uri: {prefix: /a}, sourceLabels: {app: web}}
- {uri: {prefix: /b}, sourceNamespace: shop}
- {uri: {prefix: /c}, sourceLabels: {app: web}, sourceNamespace: shop}
- {uri: {prefix: /d}, gateways: [mesh], sourceLabels: {app: nobody}}
- {uri: {prefix: /e}, gateways: [edge]}
route: [{destination: {host: reviews}}]
"#,
        );
        let prefixes = |w: &Workload| -> Vec<String> {
            rule_for_client(&r, w)
                .map(|r| {
                    r.matches
                        .iter()
                        .map(|m| {
                            assert!(m.source_labels.is_empty() && m.source_namespace.is_none());
                            assert!(m.gateways.is_empty());
                            m.uri.as_ref().and_then(|u| u.prefix.clone()).unwrap()
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(
            prefixes(&workload("shop", &[("app", "web"), ("v", "1")])),
            ["/a", "/b", "/c", "/d"]
        );
        assert_eq!(
            prefixes(&workload("default", &[("app", "web")])),
            ["/a", "/d"]
        );
        assert_eq!(prefixes(&workload("shop", &[])), ["/b", "/d"]);
        let none = rule("match: [{sourceNamespace: shop}]\nroute: [{destination: {host: r}}]");
        assert!(rule_for_client(&none, &workload("default", &[])).is_none());
        let all = rule("route: [{destination: {host: r}}]");
        assert!(rule_for_client(&all, &workload("default", &[])).is_some());
    }

    /// VirtualServicesForGateway (pilot/pkg/model/push_context.go): private, exported, public.
    #[test]
    fn export_to_orders_private_before_public() {
        let doc = |name: &str, ns: &str, export: &str| {
            format!(
                "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  hosts: [r]\n  exportTo: {export}\n"
            )
        };
        let yaml = [
            doc("public", "shop", "[]"),
            doc("star", "other", "['*', '~']"),
            doc("exported", "other", "[shop]"),
            doc("private", "shop", "['.']"),
            doc("hidden", "shop", "['~']"),
            doc("elsewhere", "other", "['.']"),
        ]
        .join("---\n");
        let set = parse_str(&yaml, "t.yaml").expect("parses");
        let ordered: Vec<_> = set.virtual_services.iter().collect();
        let names = |ns: &str| -> Vec<String> {
            visible_in(&ordered, ns)
                .iter()
                .map(|v| v.source.name.clone())
                .collect()
        };
        assert_eq!(names("shop"), ["private", "exported", "public", "star"]);
        assert_eq!(names("other"), ["elsewhere", "public", "star"]);
    }
}
