//! bookinfo through the ingress gateway, end to end: `trellis proxy --gateway` started as a
//! user starts it, reading Istio's own bookinfo YAML in place from `../shared/istio/samples/`,
//! with small upstream servers standing in for productpage and reviews v1/v2/v3, driven by real
//! curl (issue 12's test).
//!
//! What Istio does, and so what is checked:
//! 1. `bookinfo-gateway.yaml` + `virtual-service-all-v1.yaml`: `/productpage` reaches
//!    productpage through the gateway; `/reviews/0` gets 404 NR (the gateway-bound `bookinfo`
//!    VirtualService has no rule for it, and `all-v1` binds to `mesh` only).
//! 2. Adding `virtual-service-reviews-test-v2.yaml` (the jason → v2 routing; the samples'
//!    `reviews-jason-v2-v3` equivalent) changes nothing at the gateway: it has no `gateways`,
//!    so it binds to `mesh` (the sidecars) only. jason still gets productpage and 404 NR.
//! 3. The same jason routing bound to a second Gateway (port 9090, host
//!    `reviews.bookinfo.example`) is served there: jason → reviews-v2, others → reviews-v1; a
//!    host no server names gets 404 NR on that port.

use std::io::Write;
use std::path::{Path, PathBuf};

use trellis_local_mesh::upstream::Upstream;

mod common;
use common::{curl_i, free_offset, spawn_gateway, wait_for, wait_gone, Killed};

fn samples() -> PathBuf {
    trellis_control::shared_dir().join("istio/samples/bookinfo/networking")
}

fn gateway_addr(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

/// Status line, the response-flags header and the body of a curl -i output.
struct Answer {
    status: u16,
    flags: Option<String>,
    body: String,
}

fn get(url: &str, headers: &[&str]) -> Answer {
    let mut args = Vec::new();
    for h in headers {
        args.push("-H");
        args.push(*h);
    }
    args.push(url);
    let (status, head, body) = curl_i(&args);
    let flags = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("x-trellis-response-flags")
            .then(|| value.trim().to_string())
    });
    Answer {
        status,
        flags,
        body,
    }
}

/// bookinfo's workloads, one upstream each.
struct Bookinfo {
    productpage: Upstream,
    reviews: [Upstream; 3],
}

impl Bookinfo {
    fn start() -> Self {
        let up = |name: &str| Upstream::start(name).expect("upstream");
        Bookinfo {
            productpage: up("productpage"),
            reviews: [up("reviews-v1"), up("reviews-v2"), up("reviews-v3")],
        }
    }

    /// The `services:` registry of the proxy config.
    fn services(&self) -> String {
        let mut out = format!(
            "services:\n  - host: productpage\n    ports: [9080]\n    endpoints: [{{address: \"{}\", labels: {{app: productpage, version: v1}}}}]\n  - host: reviews\n    ports: [9080]\n    endpoints:\n",
            self.productpage.addr()
        );
        for (i, r) in self.reviews.iter().enumerate() {
            out.push_str(&format!(
                "      - {{address: \"{}\", labels: {{app: reviews, version: v{}}}}}\n",
                r.addr(),
                i + 1
            ));
        }
        // all-v1 also names ratings and details: registered, never called here.
        for host in ["ratings", "details"] {
            out.push_str(&format!(
                "  - host: {host}\n    ports: [9080]\n    endpoints: [{{address: \"127.0.0.1:9\", labels: {{version: v1}}}}]\n"
            ));
        }
        out
    }
}

/// Start `trellis proxy --gateway` on loopback with `paths` (Istio YAML) and `inline` extra
/// resources; Gateway port P listens on 127.0.0.1:P+offset.
fn start_gateway(
    dir: &Path,
    bookinfo: &Bookinfo,
    paths: &[PathBuf],
    inline: &str,
    offset: u16,
) -> Killed {
    let config = dir.join("gateway.yaml");
    let mut f = std::fs::File::create(&config).expect("config file");
    write!(f, "{}istio:\n  paths:\n", bookinfo.services()).expect("write");
    for p in paths {
        writeln!(f, "    - {:?}", p.display().to_string()).expect("write");
    }
    write!(f, "  resources:\n{inline}").expect("write");
    drop(f);
    spawn_gateway(&config, offset, &dir.join("gateway.log"))
}

/// The jason routing of `virtual-service-reviews-test-v2.yaml`, bound to a Gateway of its own.
const REVIEWS_GATEWAY: &str = r#"    - apiVersion: networking.istio.io/v1
      kind: Gateway
      metadata: {name: reviews-gateway}
      spec:
        selector: {istio: ingressgateway}
        servers:
          - port: {number: 9090, name: http-reviews, protocol: HTTP}
            hosts: [reviews.bookinfo.example]
    - apiVersion: networking.istio.io/v1
      kind: VirtualService
      metadata: {name: reviews-at-gateway}
      spec:
        hosts: [reviews.bookinfo.example]
        gateways: [reviews-gateway]
        http:
          - match: [{headers: {end-user: {exact: jason}}}]
            route: [{destination: {host: reviews, subset: v2}}]
          - route: [{destination: {host: reviews, subset: v1}}]
"#;

#[test]
fn bookinfo_through_the_ingress_gateway_with_curl() {
    let bookinfo = Bookinfo::start();
    let dir = std::env::temp_dir().join(format!("trellis-gateway-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let offset = free_offset(&[8080, 9090]);
    let http = format!("http://127.0.0.1:{}", 8080 + offset);
    let reviews_port = format!("http://127.0.0.1:{}", 9090 + offset);
    let mut paths = vec![
        samples().join("bookinfo-gateway.yaml"),
        samples().join("destination-rule-all.yaml"),
        samples().join("virtual-service-all-v1.yaml"),
    ];

    // 1. bookinfo-gateway + all-v1.
    let gw = start_gateway(&dir, &bookinfo, &paths, "    []\n", offset);
    wait_for(
        format!("127.0.0.1:{}", 8080 + offset)
            .parse()
            .expect("address"),
    );
    let a = get(&format!("{http}/productpage"), &[]);
    assert_eq!((a.status, a.body.as_str()), (200, "productpage\n"));
    let a = get(
        &format!("{http}/productpage"),
        &["Host: bookinfo.example.com"],
    );
    assert_eq!(
        (a.status, a.body.as_str()),
        (200, "productpage\n"),
        "hosts: [\"*\"]"
    );
    let a = get(&format!("{http}/reviews/0"), &[]);
    assert_eq!((a.status, a.flags.as_deref()), (404, Some("NR")));
    drop(gw);
    wait_gone(gateway_addr(8080 + offset));

    // 2. + the jason routing as the sample writes it (bound to `mesh`): nothing changes here.
    paths.push(samples().join("virtual-service-reviews-test-v2.yaml"));
    let gw = start_gateway(&dir, &bookinfo, &paths, "    []\n", offset);
    wait_for(
        format!("127.0.0.1:{}", 8080 + offset)
            .parse()
            .expect("address"),
    );
    let a = get(&format!("{http}/productpage"), &["end-user: jason"]);
    assert_eq!((a.status, a.body.as_str()), (200, "productpage\n"));
    let a = get(&format!("{http}/reviews/0"), &["end-user: jason"]);
    assert_eq!((a.status, a.flags.as_deref()), (404, Some("NR")));
    assert_eq!(
        bookinfo.reviews.iter().map(Upstream::requests).sum::<u64>(),
        0
    );
    drop(gw);
    wait_gone(gateway_addr(8080 + offset));

    // 3. The same routing bound to a gateway: served on its port, for its host only.
    let gw = start_gateway(&dir, &bookinfo, &paths, REVIEWS_GATEWAY, offset);
    wait_for(
        format!("127.0.0.1:{}", 9090 + offset)
            .parse()
            .expect("address"),
    );
    let host = "Host: reviews.bookinfo.example";
    let a = get(
        &format!("{reviews_port}/reviews/0"),
        &[host, "end-user: jason"],
    );
    assert_eq!((a.status, a.body.as_str()), (200, "reviews-v2\n"));
    for _ in 0..3 {
        let a = get(&format!("{reviews_port}/reviews/0"), &[host]);
        assert_eq!((a.status, a.body.as_str()), (200, "reviews-v1\n"));
    }
    let a = get(
        &format!("{reviews_port}/reviews/0"),
        &["Host: unknown.example", "end-user: jason"],
    );
    assert_eq!(
        (a.status, a.flags.as_deref()),
        (404, Some("NR")),
        "unknown host"
    );
    // The bookinfo port is unchanged.
    let a = get(&format!("{http}/productpage"), &[host]);
    assert_eq!((a.status, a.body.as_str()), (200, "productpage\n"));
    assert_eq!(bookinfo.reviews[2].requests(), 0, "v3 is never routed to");
    drop(gw);
    wait_gone(gateway_addr(8080 + offset));
    let _ = std::fs::remove_dir_all(&dir);
}
