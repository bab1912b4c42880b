//! DestinationRule `tls` and auto mTLS per cluster, against pilot's `buildAutoMtlsSettings`
//! (pilot/pkg/networking/core/cluster_tls.go), with bookinfo's own mTLS rules.

use trellis_engine::config::UpstreamTls;

use super::super::tests::{registry, run};
use super::super::{translate, Translation};
use crate::istio::{load_file, parse_str};

fn tls_of<'a>(t: &'a Translation, cluster: &str) -> &'a UpstreamTls {
    &t.config
        .cluster(cluster)
        .unwrap_or_else(|| panic!("no cluster {cluster}"))
        .tls
}

const REVIEWS_V1: &str = "outbound|9080|v1|reviews.default.svc.cluster.local";
const REVIEWS: &str = "outbound|9080||reviews.default.svc.cluster.local";

#[test]
fn no_rule_is_auto_mtls() {
    let t = run("");
    assert!(matches!(tls_of(&t, REVIEWS), UpstreamTls::Auto { .. }));
}

#[test]
fn bookinfo_all_mtls_is_istio_mutual_for_every_subset() {
    let path = crate::shared_dir()
        .join("istio/samples/bookinfo/networking/destination-rule-all-mtls.yaml");
    let set = load_file(&path).expect("bookinfo's YAML loads");
    let t = translate(&set, &registry());
    for cluster in [REVIEWS, REVIEWS_V1] {
        assert_eq!(
            tls_of(&t, cluster),
            &UpstreamTls::IstioMutual {
                sni: None,
                subject_alt_names: vec![]
            },
            "{cluster}"
        );
    }
    // The plain bookinfo rules set no `tls`: auto mTLS.
    let path =
        crate::shared_dir().join("istio/samples/bookinfo/networking/destination-rule-all.yaml");
    let t = translate(&load_file(&path).expect("loads"), &registry());
    assert!(matches!(tls_of(&t, REVIEWS_V1), UpstreamTls::Auto { .. }));
}

#[test]
fn tls_without_a_mode_is_disable_and_subsets_override() {
    let t = run(r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy: {tls: {sni: ignored.example}}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy: {tls: {mode: ISTIO_MUTUAL, subjectAltNames: ["spiffe://cluster.local/ns/default/sa/reviews"]}}
"#);
    assert_eq!(tls_of(&t, REVIEWS), &UpstreamTls::Disable);
    assert_eq!(
        tls_of(&t, REVIEWS_V1),
        &UpstreamTls::IstioMutual {
            sni: None,
            subject_alt_names: vec!["spiffe://cluster.local/ns/default/sa/reviews".into()]
        }
    );
}

#[test]
fn a_disabled_destination_namespace_turns_auto_mtls_off() {
    let t = run(r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: DISABLE}}
"#);
    assert_eq!(tls_of(&t, REVIEWS), &UpstreamTls::Disable);
}

#[test]
fn simple_origination_reads_its_files_and_defaults_sni_to_the_host() {
    let dir = std::env::temp_dir().join(format!("trellis-upstream-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let yaml = format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: r}}\nspec:\n  host: ratings\n  trafficPolicy: {{tls: {{mode: SIMPLE, caCertificates: {:?}}}}}\n",
        ca.display().to_string()
    );
    let t = translate(&parse_str(&yaml, "t.yaml").unwrap(), &registry());
    match tls_of(&t, "outbound|9080||ratings.default.svc.cluster.local") {
        UpstreamTls::Origination(o) => {
            assert_eq!(o.sni, "ratings.default.svc.cluster.local");
            assert!(o
                .ca_pem
                .as_deref()
                .is_some_and(|p| p.contains("BEGIN CERTIFICATE")));
            assert!(o.client_cert.is_none());
        }
        other => panic!("{other:?}"),
    }
    // A file that cannot be read is an error, and the origination fails closed.
    let yaml = yaml.replace(&ca.display().to_string(), "/nonexistent/ca.pem");
    let t = translate(&parse_str(&yaml, "t.yaml").unwrap(), &registry());
    assert!(t
        .diagnostics
        .iter()
        .any(|d| d.message.contains("cannot read /nonexistent/ca.pem")));
    match tls_of(&t, "outbound|9080||ratings.default.svc.cluster.local") {
        UpstreamTls::Origination(o) => assert!(o.ca_pem.is_none() && !o.insecure_skip_verify),
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// pilot: "Use Service Accounts if Subject Alt names are not specified" — for auto mTLS and
/// for ISTIO_MUTUAL without `subjectAltNames`; a rule's own list wins.
#[test]
fn the_services_accounts_are_the_expected_identities() {
    use super::super::{Service, ServiceEndpoint};
    let mut registry = registry();
    let ep = |ip: u8, sa: &str| {
        let mut e = ServiceEndpoint::new(
            std::net::IpAddr::from([10, 0, 9, ip]),
            &[("app", "details")],
        );
        e.service_account = Some(sa.into());
        e
    };
    registry.services.push(
        Service::kubernetes("details", "default", &[9080])
            .with_endpoint(ep(1, "details"))
            .with_endpoint(ep(2, "details-canary"))
            .with_endpoint(ep(3, "details")),
    );
    let details = "outbound|9080||details.default.svc.cluster.local";
    let expected = vec![
        "spiffe://cluster.local/ns/default/sa/details".to_string(),
        "spiffe://cluster.local/ns/default/sa/details-canary".to_string(),
    ];
    let t = translate(&parse_str("", "t.yaml").unwrap(), &registry);
    assert_eq!(
        tls_of(&t, details),
        &UpstreamTls::Auto {
            subject_alt_names: expected.clone()
        }
    );
    let rule = |tls: &str| {
        format!("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: d}}\nspec: {{host: details, trafficPolicy: {{tls: {tls}}}}}\n")
    };
    let t = translate(
        &parse_str(&rule("{mode: ISTIO_MUTUAL}"), "t.yaml").unwrap(),
        &registry,
    );
    assert_eq!(
        tls_of(&t, details),
        &UpstreamTls::IstioMutual {
            sni: None,
            subject_alt_names: expected
        }
    );
    let t = translate(
        &parse_str(
            &rule("{mode: ISTIO_MUTUAL, subjectAltNames: [spiffe://x/ns/a/sa/b]}"),
            "t.yaml",
        )
        .unwrap(),
        &registry,
    );
    assert_eq!(
        tls_of(&t, details),
        &UpstreamTls::IstioMutual {
            sni: None,
            subject_alt_names: vec!["spiffe://x/ns/a/sa/b".into()]
        }
    );
}

/// A `tls.sni` a ClientHello cannot carry (an IP literal, a name with a space) is reported and
/// replaced by the SNI the rule would send without it (pilot passes any string to Envoy;
/// RFC 6066 §3 allows DNS names only); a DNS name is kept.
#[test]
fn an_sni_that_is_no_dns_name_is_reported_and_replaced() {
    let rule = |mode: &str, sni: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: r}}\nspec:\n  host: ratings\n  trafficPolicy: {{tls: {{mode: {mode}, sni: {sni:?}, insecureSkipVerify: true}}}}\n"
        )
    };
    const RATINGS: &str = "outbound|9080||ratings.default.svc.cluster.local";
    for bad in ["10.0.0.7", "not a name"] {
        let t = translate(
            &parse_str(&rule("ISTIO_MUTUAL", bad), "t.yaml").unwrap(),
            &registry(),
        );
        assert!(
            matches!(
                tls_of(&t, RATINGS),
                UpstreamTls::IstioMutual { sni: None, .. }
            ),
            "{bad}"
        );
        assert!(
            t.diagnostics
                .iter()
                .any(|d| d.message.contains("is not a DNS name") && d.message.contains(bad)),
            "{bad}: {:?}",
            t.diagnostics
        );
        let t = translate(
            &parse_str(&rule("SIMPLE", bad), "t.yaml").unwrap(),
            &registry(),
        );
        match tls_of(&t, RATINGS) {
            UpstreamTls::Origination(o) => assert_eq!(o.sni, "ratings.default.svc.cluster.local"),
            other => panic!("{other:?}"),
        }
    }
    let t = translate(
        &parse_str(&rule("ISTIO_MUTUAL", "ratings.example"), "t.yaml").unwrap(),
        &registry(),
    );
    assert!(matches!(
        tls_of(&t, RATINGS),
        UpstreamTls::IstioMutual { sni: Some(s), .. } if s == "ratings.example"
    ));
    assert!(!t.diagnostics.iter().any(|d| d.message.contains("DNS name")));
}
