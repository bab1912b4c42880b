//! A route to a subset no DestinationRule defines, end to end: the real `trellis proxy` with
//! Istio's own bookinfo YAML (`../shared/istio/samples/bookinfo/networking/`), real upstreams
//! on loopback and curl as the client.
//!
//! Istio's answer: pilot routes to the subset's cluster whether or not it exists
//! (GetDestinationCluster in pilot/pkg/networking/core/route/route.go, in route tables built
//! with `ValidateClusters: false`), and Envoy's router answers the requests it draws there
//! with 503, an empty body and the flag NC (Filter::decodeHeaders in
//! source/common/router/router.cc). This is the "503 after applying a VirtualService before
//! its DestinationRule" that Istio's traffic-management guide warns about. With a 50/50 split
//! between a defined and an undefined subset, half the requests fail: the missing destination
//! keeps its weight instead of the defined one taking all the traffic.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use trellis_local_mesh::upstream::Upstream;

mod common;
use common::{curl_i, shared_dir, spawn_proxy, wait_for, Killed};

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("address").port()
}

fn sample(name: &str) -> PathBuf {
    let path = shared_dir()
        .join("istio/samples/bookinfo/networking")
        .join(name);
    assert!(path.is_file(), "Istio sample {} is missing", path.display());
    path
}

/// `trellis proxy` with an outbound listener on `port`, `reviews` v1 and v3 in the registry,
/// Istio YAML from `paths` plus the `inline` resources.
fn start(
    dir: &Path,
    port: u16,
    v1: &Upstream,
    v3: &Upstream,
    paths: &[PathBuf],
    inline: &str,
) -> Killed {
    let config = dir.join("proxy.yaml");
    let mut f = std::fs::File::create(&config).expect("config file");
    write!(
        f,
        r#"listeners:
  - {{name: outbound, address: "127.0.0.1:{port}", direction: outbound}}
services:
  - host: reviews
    ports: [9080]
    endpoints:
      - {{address: "{}", labels: {{version: v1}}}}
      - {{address: "{}", labels: {{version: v3}}}}
istio:
  paths:
"#,
        v1.addr(),
        v3.addr()
    )
    .expect("write");
    for p in paths {
        writeln!(f, "    - {:?}", p.display().to_string()).expect("write");
    }
    write!(f, "  resources:\n{inline}").expect("write");
    drop(f);
    let proxy = spawn_proxy(&config, &[], &dir.join("proxy.log"));
    wait_for(SocketAddr::from(([127, 0, 0, 1], port)));
    proxy
}

/// `GET http://reviews:9080/` through the proxy: status, head, body.
fn get(port: u16) -> (u16, String, String) {
    let url = format!("http://127.0.0.1:{port}/");
    curl_i(&["-H", "host: reviews:9080", &url])
}

const DR_V1_ONLY: &str = r#"    - apiVersion: networking.istio.io/v1
      kind: DestinationRule
      metadata: {name: reviews}
      spec:
        host: reviews
        subsets:
        - {name: v1, labels: {version: v1}}
"#;

#[test]
fn a_route_to_an_undefined_subset_is_answered_503_nc_with_its_weight() {
    let v1 = Upstream::start("reviews-v1").expect("upstream v1");
    let v3 = Upstream::start("reviews-v3").expect("upstream v3");
    let dir = std::env::temp_dir().join(format!("trellis-e2e-nc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");

    // virtual-service-all-v1.yaml without any DestinationRule: subset v1 has no cluster.
    let port = free_port();
    let proxy = start(
        &dir,
        port,
        &v1,
        &v3,
        &[sample("virtual-service-all-v1.yaml")],
        "    []\n",
    );
    let (status, head, body) = get(port);
    assert_eq!(status, 503, "{head}");
    assert!(body.is_empty(), "Envoy's NC answer has no body: {body:?}");
    assert!(
        head.contains("x-trellis-response-flags: NC"),
        "the flag says no cluster: {head}"
    );
    let log = std::fs::read_to_string(dir.join("proxy.log")).expect("proxy log");
    assert!(
        log.contains("IST0101") && log.contains("referenced subset not found"),
        "the load names the missing subset: {log}"
    );
    assert_eq!(v1.requests() + v3.requests(), 0, "nothing was forwarded");
    drop(proxy);

    // virtual-service-reviews-50-v3.yaml with a DestinationRule that defines only v1: the
    // v3 half keeps its weight and is answered 503 NC; the v1 half is served.
    let port = free_port();
    let proxy = start(
        &dir,
        port,
        &v1,
        &v3,
        &[sample("virtual-service-reviews-50-v3.yaml")],
        DR_V1_ONLY,
    );
    let (mut served, mut refused) = (0, 0);
    for _ in 0..40 {
        let (status, head, body) = get(port);
        match status {
            200 => {
                assert_eq!(body, "reviews-v1\n", "{head}");
                served += 1;
            }
            503 => {
                assert!(head.contains("x-trellis-response-flags: NC"), "{head}");
                refused += 1;
            }
            other => panic!("unexpected status {other}: {head}"),
        }
    }
    assert!(served > 0 && refused > 0, "v1 {served}, NC {refused}");
    assert_eq!(v3.requests(), 0, "v3 is not a subset here");
    drop(proxy);

    // With destination-rule-reviews.yaml (v1, v2, v3) both halves are served.
    let port = free_port();
    let _proxy = start(
        &dir,
        port,
        &v1,
        &v3,
        &[
            sample("virtual-service-reviews-50-v3.yaml"),
            sample("destination-rule-reviews.yaml"),
        ],
        "    []\n",
    );
    for _ in 0..20 {
        let (status, head, _) = get(port);
        assert_eq!(status, 200, "{head}");
    }
    assert!(v3.requests() > 0, "v3 serves its half now");
}
