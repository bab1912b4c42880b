//! `explain` on the bookinfo samples and on broken input.

use std::path::{Path, PathBuf};

use super::*;

fn samples() -> PathBuf {
    let dir = crate::shared_dir().join("istio/samples/bookinfo/networking");
    assert!(
        dir.is_dir(),
        "bookinfo samples missing at {} (set TRELLIS_SHARED_DIR to the shared/ folder)",
        dir.display()
    );
    dir
}

/// A scratch directory under the target dir holding `files`.
fn scratch(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/explain-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (file, text) in files {
        std::fs::write(dir.join(file), text).unwrap();
    }
    dir
}

fn copy_samples(name: &str, files: &[&str]) -> PathBuf {
    let owned: Vec<(String, String)> = files
        .iter()
        .map(|f| {
            (
                f.to_string(),
                std::fs::read_to_string(samples().join(f)).unwrap(),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = owned
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    scratch(name, &refs)
}

#[test]
fn jason_hits_v2_and_others_fall_through_with_the_reason() {
    let dir = copy_samples(
        "test-v2",
        &[
            "destination-rule-all.yaml",
            "virtual-service-reviews-test-v2.yaml",
        ],
    );
    let report = explain(
        &dir,
        &ExplainRequest::new("reviews:9080").header("end-user", "jason"),
    )
    .unwrap();
    assert_eq!(report.outcome, Outcome::Matched);
    let m = report.matched.as_ref().unwrap();
    assert_eq!(m.index, 0);
    let ActionReport::Forward { destinations } = &m.action else {
        panic!()
    };
    assert_eq!(destinations[0].subset.as_deref(), Some("v2"));
    assert_eq!(
        destinations[0].cluster,
        "outbound|9080|v2|reviews.default.svc.cluster.local"
    );
    assert_eq!(
        destinations[0].destination_rule.as_ref().unwrap().name,
        "reviews"
    );
    let text = report.to_string();
    assert!(text.contains("http[0]: MATCHED"), "{text}");
    assert!(text.contains("subset v2"), "{text}");
    assert!(text.contains("VirtualService default/reviews"), "{text}");

    let report = explain(&dir, &ExplainRequest::new("reviews:9080")).unwrap();
    let m = report.matched.as_ref().unwrap();
    assert_eq!(m.index, 1);
    assert!(!report.rules[0].matched);
    assert!(
        report.rules[0].failures[0].contains("end-user"),
        "{:?}",
        report.rules[0]
    );
    let text = report.to_string();
    assert!(text.contains("http[1]: MATCHED"), "{text}");
    assert!(text.contains("subset v1"), "{text}");
    assert!(text.contains("end-user"), "{text}");
    assert!(text.contains("retries: 2 attempts"), "{text}");

    let json = serde_json::to_string(&report).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["outcome"], "matched");
    assert_eq!(v["matched"]["action"]["destinations"][0]["subset"], "v1");
}

#[test]
fn whole_bookinfo_directory_explains_fault_and_policy() {
    // Every sample at once: later VirtualServices for the same host are reported as conflicts,
    // and the first one in file order wins, as in Istio.
    let report = explain(&samples(), &ExplainRequest::new("details")).unwrap();
    assert_eq!(report.outcome, Outcome::Matched);
    let m = report.matched.as_ref().unwrap();
    assert_eq!(m.fault.as_ref().unwrap().abort, Some((555, 100.0)));
    let text = report.to_string();
    assert!(text.contains("abort with 555 for 100%"), "{text}");
    assert!(text.contains("fault-injection-details-v1.yaml"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
    assert!(json["diagnostics"]
        .as_array()
        .is_some_and(|d| !d.is_empty()));
}

#[test]
fn delay_and_tls_mode_are_shown() {
    let dir = copy_samples(
        "delay",
        &[
            "destination-rule-all-mtls.yaml",
            "virtual-service-ratings-test-delay.yaml",
        ],
    );
    let report = explain(
        &dir,
        &ExplainRequest::new("ratings").header("end-user", "jason"),
    )
    .unwrap();
    let m = report.matched.as_ref().unwrap();
    assert_eq!(
        m.fault.as_ref().unwrap().delay,
        Some(("7s".to_string(), 100.0))
    );
    let ActionReport::Forward { destinations } = &m.action else {
        panic!()
    };
    assert_eq!(
        destinations[0].policy.as_ref().unwrap().tls_mode.as_deref(),
        Some("ISTIO_MUTUAL")
    );
    assert!(report.to_string().contains("tls ISTIO_MUTUAL"));
}

#[test]
fn unknown_host_and_missing_subset_are_explained() {
    let dir = copy_samples("no-dr", &["virtual-service-reviews-v3.yaml"]);
    let report = explain(&dir, &ExplainRequest::new("nowhere.example.com")).unwrap();
    assert_eq!(report.outcome, Outcome::NoVirtualHost);
    assert!(report.to_string().contains("none serves"));
    let report = explain(&dir, &ExplainRequest::new("reviews")).unwrap();
    assert!(report
        .diagnostics
        .iter()
        .any(|d| d.code.as_deref() == Some("IST0101")));
    assert!(report.to_string().contains("IST0101"));
    // Pilot routes to the missing subset's cluster anyway; Envoy answers 503 NC for it.
    assert!(report.to_string().contains("answered 503 (NC)"), "{report}");
}

#[test]
fn broken_file_error_names_file_resource_and_field() {
    let dir = scratch(
        "broken",
        &[(
            "bad.yaml",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n      weight: lots\n",
        )],
    );
    let err = explain(&dir, &ExplainRequest::new("reviews"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad.yaml"), "{err}");
    assert!(err.contains("VirtualService default/reviews"), "{err}");
    assert!(err.contains("spec.http[0].route[0].weight"), "{err}");
}

#[test]
fn bad_request_header_is_an_error() {
    let dir = copy_samples("hdr", &["virtual-service-reviews-v3.yaml"]);
    let err = explain(
        &dir,
        &ExplainRequest::new("reviews").header("bad header", "x"),
    )
    .unwrap_err();
    assert!(matches!(err, ConfigError::Request(_)), "{err:?}");
}

/// `explain` reports the `Location` the engine would send, after `prefixRewrite` and
/// `derivePort: FROM_REQUEST_PORT` (pilot's ApplyRedirect), and decides `sourceNamespace`
/// for the calling workload's namespace (sourceMatchHTTP).
#[test]
fn redirect_location_and_source_namespace() {
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http:
  - match: [{uri: {prefix: /old}, sourceNamespace: shop}]
    redirect: {prefixRewrite: /new, derivePort: FROM_REQUEST_PORT}
  - route: [{destination: {host: ratings, port: {number: 9080}}}]
"#;
    let set = crate::istio::parse_str(vs, "vs.yaml").unwrap();
    let mut req = ExplainRequest::new("ratings.default:9080");
    req.path = "/old/a?x=1".into();
    req.source_namespace = Some("shop".into());
    let report = explain_resources(&set, &req).unwrap();
    let Some(ActionReport::Redirect { location }) = report.matched.as_ref().map(|m| &m.action)
    else {
        panic!("not a redirect: {report}")
    };
    assert_eq!(
        location.location.as_deref(),
        Some("http://ratings.default:9080/new/a?x=1")
    );
    req.source_namespace = None;
    let report = explain_resources(&set, &req).unwrap();
    assert!(
        matches!(
            report.matched.as_ref().map(|m| &m.action),
            Some(ActionReport::Forward { .. })
        ),
        "{report}"
    );
}

/// `explain` names a rule's mirrors with their share (pilot's mirror then mirrors, see
/// translate::mirrors).
#[test]
fn a_mirrored_rule_shows_its_mirrors() {
    let dir = copy_samples("mirror", &["destination-rule-all.yaml"]);
    std::fs::write(
        dir.join("vs.yaml"),
        r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v1}}]
    mirror: {host: reviews, subset: v2}
    mirrorPercentage: {value: 12.5}
"#,
    )
    .unwrap();
    let report = explain(&dir, &ExplainRequest::new("reviews:9080")).unwrap();
    let m = report.matched.as_ref().unwrap();
    assert_eq!(
        m.mirrors,
        vec![MirrorReport {
            cluster: "outbound|9080|v2|reviews.default.svc.cluster.local".into(),
            percent: 12.5,
            host_suffix: false,
        }]
    );
    let text = report.to_string();
    assert!(
        text.contains(
            "mirror: outbound|9080|v2|reviews.default.svc.cluster.local for 12.5% of requests"
        ),
        "{text}"
    );
}

/// `explain` shows a rule's CORS policy (translate::cors).
#[test]
fn a_rule_with_a_cors_policy_shows_it() {
    let dir = copy_samples("cors", &["destination-rule-all.yaml"]);
    std::fs::write(
        dir.join("vs.yaml"),
        r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v1}}]
    corsPolicy:
      allowOrigins: [{exact: "https://app.example"}, {regex: "https://.*\\.corp"}]
      allowMethods: [GET, POST]
      maxAge: 10m
      unmatchedPreflights: IGNORE
"#,
    )
    .unwrap();
    let report = explain(&dir, &ExplainRequest::new("reviews:9080")).unwrap();
    let cors = report.matched.as_ref().unwrap().cors.clone().unwrap();
    assert_eq!(
        cors.allow_origins,
        vec![
            "exact \"https://app.example\"".to_string(),
            "regex \"https://.*\\\\.corp\"".to_string()
        ]
    );
    let text = report.to_string();
    assert!(
        text.contains("cors: origins [exact \"https://app.example\""),
        "{text}"
    );
    assert!(text.contains("methods \"GET,POST\""), "{text}");
    assert!(
        text.contains("preflights from other origins: answered 200 without allow-origin"),
        "{text}"
    );
}
