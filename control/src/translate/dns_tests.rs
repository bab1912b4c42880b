//! ServiceEntries with DNS resolution become endpoints from the registry's DNS answers, as
//! pilot's `convertServiceEntryToInstances` and Envoy's STRICT_DNS / LOGICAL_DNS clusters
//! make them (`catalog::service_entry_services`).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use super::{translate, Registry};
use crate::istio::parse_str;

const ENTRIES: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: by-endpoint}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
  endpoints:
  - {address: a.backend.example, ports: {http: 8080}}
  - {address: 192.0.2.50}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: by-host}
spec:
  hosts: [www.example.org, also.example.org]
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 8000}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: round-robin}
spec:
  hosts: [rr.example.net]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS_ROUND_ROBIN
"#;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn endpoints(t: &super::Translation, cluster: &str) -> Vec<SocketAddr> {
    t.config
        .cluster(cluster)
        .unwrap_or_else(|| panic!("no cluster {cluster}: {:#?}", t.diagnostics))
        .endpoints
        .iter()
        .map(|e| e.address)
        .collect()
}

#[test]
fn dns_names_become_the_endpoints_their_answers_give() {
    let set = parse_str(ENTRIES, "se.yaml").expect("parses");
    let registry = Registry {
        services: Vec::new(),
        dns: BTreeMap::from([
            (
                "a.backend.example".to_string(),
                vec![ip("192.0.2.1"), ip("192.0.2.2")],
            ),
            ("www.example.org".to_string(), vec![ip("198.51.100.7")]),
            (
                "rr.example.net".to_string(),
                vec![ip("203.0.113.1"), ip("203.0.113.2")],
            ),
        ]),
    };
    let t = translate(&set, &registry);
    // STRICT_DNS: every address of the name, on the endpoint's port; IPs as they are.
    assert_eq!(
        endpoints(&t, "outbound|80||api.example.com"),
        [
            "192.0.2.1:8080".parse().expect("addr"),
            "192.0.2.2:8080".parse().expect("addr"),
            "192.0.2.50:80".parse().expect("addr"),
        ]
    );
    // No endpoints: each host is its own endpoint, on targetPort.
    assert_eq!(
        endpoints(&t, "outbound|80||www.example.org"),
        ["198.51.100.7:8000".parse::<SocketAddr>().expect("addr")]
    );
    assert!(
        endpoints(&t, "outbound|80||also.example.org").is_empty(),
        "a host without an answer has no endpoint"
    );
    assert!(t.diagnostics.iter().any(|d| d
        .to_string()
        .contains("\"also.example.org\" has no address yet")));
    // LOGICAL_DNS: the first address only.
    assert_eq!(
        endpoints(&t, "outbound|80||rr.example.net"),
        ["203.0.113.1:80".parse::<SocketAddr>().expect("addr")]
    );
}

#[test]
fn without_answers_dns_entries_have_no_endpoints_and_say_why() {
    let set = parse_str(ENTRIES, "se.yaml").expect("parses");
    let t = translate(&set, &Registry::default());
    assert_eq!(
        endpoints(&t, "outbound|80||api.example.com"),
        ["192.0.2.50:80".parse::<SocketAddr>().expect("addr")]
    );
    assert!(endpoints(&t, "outbound|80||www.example.org").is_empty());
}
