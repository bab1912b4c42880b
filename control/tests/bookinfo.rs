//! Istio's own bookinfo networking samples, translated and routed by the engine's Router: each
//! file's routing decisions, as the Istio docs describe them, must come out of our model.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use trellis_control::diag::{Severity, IST0101};
use trellis_control::istio::destination_rule::TlsMode;
use trellis_control::istio::{load_file, ResourceSet};
use trellis_control::translate::{
    translate, Registry, Service, ServiceEndpoint, Translation, OUTBOUND_ROUTE_TABLE,
};
use trellis_engine::config::{LbPolicy, Route, RouteAction};
use trellis_engine::rng::EngineRng;
use trellis_engine::route::{pick_weighted, RouteOutcome, RouteRequest, Router};

fn samples_dir() -> PathBuf {
    let dir = trellis_control::shared_dir().join("istio/samples/bookinfo/networking");
    assert!(
        dir.is_dir(),
        "bookinfo samples not found at {} (shared/ must sit beside the repository, or set TRELLIS_SHARED_DIR)",
        dir.display()
    );
    dir
}

fn load(names: &[&str]) -> ResourceSet {
    let mut set = ResourceSet::default();
    for name in names {
        let path = samples_dir().join(name);
        set.extend(load_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    }
    set
}

/// productpage v1, details v1/v2, reviews v1/v2/v3, ratings v1/v2/v2-mysql/v2-mysql-vm.
fn registry() -> Registry {
    let mut n = 0u8;
    let mut svc = |name: &str, versions: &[&str]| {
        let mut s = Service::kubernetes(name, "default", &[9080]);
        for v in versions {
            n += 1;
            s = s.with_endpoint(ServiceEndpoint::new(
                IpAddr::V4(Ipv4Addr::new(10, 1, 0, n)),
                &[("app", name), ("version", v)],
            ));
        }
        s
    };
    Registry {
        services: vec![
            svc("productpage", &["v1"]),
            svc("details", &["v1", "v2"]),
            svc("reviews", &["v1", "v2", "v3"]),
            svc("ratings", &["v1", "v2", "v2-mysql", "v2-mysql-vm"]),
        ],
        ..Default::default()
    }
}

struct Mesh {
    t: Translation,
    router: Router,
}

fn mesh(files: &[&str]) -> Mesh {
    let t = translate(&load(files), &registry());
    let router = Router::new(Arc::new(t.config.clone())).expect("router compiles the translation");
    Mesh { t, router }
}

impl Mesh {
    fn route(&self, authority: &str, headers: &[(&str, &str)]) -> &Route {
        self.route_port(authority, 9080, headers)
    }

    fn route_port(&self, authority: &str, port: u16, headers: &[(&str, &str)]) -> &Route {
        let mut map = trellis_engine::http1::Fields::new();
        for (k, v) in headers {
            assert!(map.append_text(k, v));
        }
        let labels = BTreeMap::new();
        let req = RouteRequest {
            authority,
            path: "/",
            method: "GET",
            scheme: "http",
            headers: &map,
            port,
            source_labels: &labels,
        };
        let table = self.router.table(OUTBOUND_ROUTE_TABLE).unwrap();
        match self.router.route(table, &req) {
            RouteOutcome::Matched(m) => m.route,
            other => panic!("{authority}: no route: {other:?}"),
        }
    }

    fn errors(&self) -> Vec<String> {
        self.t
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.to_string())
            .collect()
    }
}

fn clusters(route: &Route) -> Vec<(String, u32)> {
    match &route.action {
        RouteAction::Forward(w) => w.iter().map(|w| (w.cluster.clone(), w.weight)).collect(),
        other => panic!("not forwarded: {other:?}"),
    }
}

fn c(service: &str, subset: &str) -> String {
    format!("outbound|9080|{subset}|{service}.default.svc.cluster.local")
}

const JASON: &[(&str, &str)] = &[("end-user", "jason")];

#[test]
fn every_sample_with_routing_resources_is_covered() {
    let covered = [
        "bookinfo-gateway.yaml",
        "certmanager-gateway.yaml",
        "destination-rule-all-mtls.yaml",
        "destination-rule-all.yaml",
        "destination-rule-reviews.yaml",
        "egress-rule-google-apis.yaml",
        "fault-injection-details-v1.yaml",
        "virtual-service-all-v1.yaml",
        "virtual-service-ratings-db.yaml",
        "virtual-service-ratings-mysql-vm.yaml",
        "virtual-service-ratings-mysql.yaml",
        "virtual-service-ratings-test-delay.yaml",
        "virtual-service-reviews-50-v3.yaml",
        "virtual-service-reviews-80-20.yaml",
        "virtual-service-reviews-test-v2.yaml",
        "virtual-service-reviews-v2-v3.yaml",
        "virtual-service-reviews-v3.yaml",
    ];
    for entry in std::fs::read_dir(samples_dir()).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        if text.contains("kind: VirtualService") || text.contains("kind: DestinationRule") {
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            assert!(covered.contains(&name.as_str()), "{name} has no test here");
            let set = load(&[&name]);
            assert!(!set.is_empty(), "{name}");
            // The samples are clean: nothing unknown in them.
            assert!(
                set.diagnostics.iter().all(|d| d.severity == Severity::Info),
                "{name}: {:#?}",
                set.diagnostics
            );
        }
    }
}

#[test]
fn destination_rule_all_defines_subset_clusters() {
    let m = mesh(&["destination-rule-all.yaml"]);
    assert!(m.errors().is_empty(), "{:#?}", m.errors());
    for (svc, subsets) in [
        ("productpage", &["v1"][..]),
        ("reviews", &["v1", "v2", "v3"]),
        ("ratings", &["v1", "v2", "v2-mysql", "v2-mysql-vm"]),
        ("details", &["v1", "v2"]),
    ] {
        let all = m.t.config.cluster(&c(svc, "")).unwrap();
        assert_eq!(all.endpoints.len(), subsets.len());
        for s in subsets {
            let cl =
                m.t.config
                    .cluster(&c(svc, s))
                    .unwrap_or_else(|| panic!("{svc} {s}"));
            assert_eq!(cl.endpoints.len(), 1, "{svc} {s}");
            assert_eq!(cl.endpoints[0].labels["version"], *s);
            assert_eq!(cl.lb, LbPolicy::Default);
            assert_eq!(m.t.clusters[&c(svc, s)].tls_mode, None);
        }
        // No VirtualService: the default route goes to the whole service.
        assert_eq!(clusters(m.route(svc, &[])), vec![(c(svc, ""), 100)]);
    }
}

#[test]
fn destination_rule_all_mtls_sets_istio_mutual() {
    let m = mesh(&["destination-rule-all-mtls.yaml"]);
    for name in [
        c("reviews", "v2"),
        c("ratings", "v2-mysql"),
        c("details", ""),
    ] {
        assert_eq!(
            m.t.clusters[&name].tls_mode,
            Some(TlsMode::ISTIO_MUTUAL),
            "{name}"
        );
    }
}

#[test]
fn destination_rule_reviews_is_random() {
    let m = mesh(&["destination-rule-reviews.yaml"]);
    for s in ["", "v1", "v2", "v3"] {
        assert_eq!(
            m.t.config.cluster(&c("reviews", s)).unwrap().lb,
            LbPolicy::Random
        );
    }
    assert_eq!(
        m.t.config.cluster(&c("ratings", "")).unwrap().lb,
        LbPolicy::Default
    );
}

#[test]
fn all_v1_sends_everything_to_v1() {
    let m = mesh(&["destination-rule-all.yaml", "virtual-service-all-v1.yaml"]);
    assert!(m.errors().is_empty(), "{:#?}", m.errors());
    for svc in ["productpage", "reviews", "ratings", "details"] {
        for authority in [
            svc.to_string(),
            format!("{svc}:9080"),
            format!("{svc}.default.svc.cluster.local:9080"),
        ] {
            assert_eq!(
                clusters(m.route(&authority, JASON)),
                vec![(c(svc, "v1"), 100)]
            );
        }
    }
}

#[test]
fn all_v1_without_destination_rules_reports_ist0101() {
    let m = mesh(&["virtual-service-all-v1.yaml"]);
    let ist: Vec<_> =
        m.t.diagnostics
            .iter()
            .filter(|d| d.code.as_deref() == Some(IST0101))
            .collect();
    assert_eq!(ist.len(), 4, "{ist:#?}");
    assert!(ist.iter().all(|d| d
        .file
        .as_deref()
        .unwrap()
        .ends_with("virtual-service-all-v1.yaml")));
}

#[test]
fn reviews_test_v2_sends_jason_to_v2() {
    let m = mesh(&[
        "destination-rule-all.yaml",
        "virtual-service-reviews-test-v2.yaml",
    ]);
    assert_eq!(
        clusters(m.route("reviews:9080", JASON)),
        vec![(c("reviews", "v2"), 100)]
    );
    assert_eq!(
        clusters(m.route("reviews:9080", &[])),
        vec![(c("reviews", "v1"), 100)]
    );
    assert_eq!(
        clusters(m.route("reviews", &[("end-user", "bob")])),
        vec![(c("reviews", "v1"), 100)]
    );
}

fn share_of(route: &Route, cluster: &str) -> f64 {
    let RouteAction::Forward(dests) = &route.action else {
        panic!("not forwarded")
    };
    let mut rng = EngineRng::with_seed(7);
    let n = 20_000;
    let hits = (0..n)
        .filter(|_| pick_weighted(dests, &mut rng).map(|w| w.cluster.as_str()) == Some(cluster))
        .count();
    hits as f64 / f64::from(n)
}

#[test]
fn reviews_80_20_splits_by_weight() {
    let m = mesh(&[
        "destination-rule-all.yaml",
        "virtual-service-reviews-80-20.yaml",
    ]);
    let r = m.route("reviews", &[]);
    assert_eq!(
        clusters(r),
        vec![(c("reviews", "v1"), 80), (c("reviews", "v2"), 20)]
    );
    let v1 = share_of(r, &c("reviews", "v1"));
    assert!((v1 - 0.8).abs() < 0.02, "v1 share {v1}");
}

#[test]
fn reviews_50_50_variants_and_v3() {
    let m = mesh(&[
        "destination-rule-all.yaml",
        "virtual-service-reviews-50-v3.yaml",
    ]);
    assert_eq!(
        clusters(m.route("reviews", &[])),
        vec![(c("reviews", "v1"), 50), (c("reviews", "v3"), 50)]
    );
    let m = mesh(&[
        "destination-rule-all.yaml",
        "virtual-service-reviews-v2-v3.yaml",
    ]);
    let r = m.route("reviews", &[]);
    assert_eq!(
        clusters(r),
        vec![(c("reviews", "v2"), 50), (c("reviews", "v3"), 50)]
    );
    let v3 = share_of(r, &c("reviews", "v3"));
    assert!((v3 - 0.5).abs() < 0.02, "v3 share {v3}");
    let m = mesh(&[
        "destination-rule-all.yaml",
        "virtual-service-reviews-v3.yaml",
    ]);
    assert_eq!(
        clusters(m.route("reviews", JASON)),
        vec![(c("reviews", "v3"), 100)]
    );
}

#[test]
fn ratings_test_delay_delays_jason_by_7s() {
    let m = mesh(&[
        "destination-rule-all.yaml",
        "virtual-service-ratings-test-delay.yaml",
    ]);
    let r = m.route("ratings:9080", JASON);
    assert_eq!(clusters(r), vec![(c("ratings", "v1"), 100)]);
    let delay = r
        .fault
        .as_ref()
        .and_then(|f| f.delay.clone())
        .expect("delay for jason");
    assert_eq!(delay.fixed, Duration::from_secs(7));
    assert_eq!(delay.percent, 100.0);
    assert!(r.fault.as_ref().unwrap().abort.is_none());
    let other = m.route("ratings:9080", &[]);
    assert_eq!(clusters(other), vec![(c("ratings", "v1"), 100)]);
    assert!(other.fault.is_none());
}

#[test]
fn fault_injection_details_aborts_everyone_with_555() {
    let m = mesh(&["fault-injection-details-v1.yaml"]);
    assert!(m.errors().is_empty(), "{:#?}", m.errors());
    for headers in [JASON, &[]] {
        let r = m.route("details", headers);
        let abort = r
            .fault
            .as_ref()
            .and_then(|f| f.abort.clone())
            .expect("abort");
        assert_eq!((abort.status, abort.percent), (555, 100.0));
        assert_eq!(clusters(r), vec![(c("details", "v1"), 100)]);
    }
}

#[test]
fn ratings_db_variants_pick_their_subsets() {
    for (file, subset) in [
        ("virtual-service-ratings-db.yaml", "v2"),
        ("virtual-service-ratings-mysql.yaml", "v2-mysql"),
        ("virtual-service-ratings-mysql-vm.yaml", "v2-mysql-vm"),
    ] {
        let m = mesh(&["destination-rule-all.yaml", file]);
        assert!(m.errors().is_empty(), "{file}: {:#?}", m.errors());
        assert_eq!(
            clusters(m.route("reviews", &[])),
            vec![(c("reviews", "v3"), 100)],
            "{file}"
        );
        assert_eq!(
            clusters(m.route("ratings", &[])),
            vec![(c("ratings", subset), 100)],
            "{file}"
        );
        let ep = &m.t.config.cluster(&c("ratings", subset)).unwrap().endpoints;
        assert_eq!(ep[0].labels["version"], subset);
    }
}

#[test]
fn gateway_virtual_services_stay_off_the_sidecar() {
    let m = mesh(&["bookinfo-gateway.yaml", "certmanager-gateway.yaml"]);
    let table = m.t.config.route_table(OUTBOUND_ROUTE_TABLE).unwrap();
    assert!(table
        .virtual_hosts
        .iter()
        .all(|v| v.name != "bookinfo.default"));
    assert!(!table
        .virtual_hosts
        .iter()
        .any(|v| v.domains.iter().any(|d| d == "*")));
    // productpage is still reachable through its default route.
    assert_eq!(
        clusters(m.route("productpage:9080", &[])),
        vec![(c("productpage", ""), 100)]
    );
}

#[test]
fn egress_google_apis_rewrites_port_80_to_443_with_tls_origination() {
    let m = mesh(&["egress-rule-google-apis.yaml"]);
    assert!(m.errors().is_empty(), "{:#?}", m.errors());
    let r = m.route_port("www.googleapis.com", 80, &[]);
    assert_eq!(
        clusters(r),
        vec![("outbound|443||www.googleapis.com".to_string(), 100)]
    );
    let origin = &m.t.clusters["outbound|443||www.googleapis.com"];
    assert_eq!(origin.tls_mode, Some(TlsMode::SIMPLE));
    assert_eq!(
        m.t.clusters["outbound|80||www.googleapis.com"].tls_mode,
        None
    );
    // The port 443 entry replaces the top-level policy, so its cluster does not inherit
    // ROUND_ROBIN (GetPortLevelTrafficPolicy, pilot/pkg/networking/util/util.go); port 80 has
    // no entry and keeps it.
    let lb = |name: &str| m.t.config.cluster(name).unwrap().lb;
    assert_eq!(lb("outbound|443||www.googleapis.com"), LbPolicy::Default);
    assert_eq!(lb("outbound|80||www.googleapis.com"), LbPolicy::RoundRobin);
}
