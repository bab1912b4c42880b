//! The proxy configurations the end-to-end tests use, written as `trellis proxy --config` files
//! with Istio resources inline, exactly as a user would write them.

use std::net::SocketAddr;

/// Listener on an ephemeral port; the test reads the bound address from the proxy.
pub const LISTENER: &str = r#"listeners:
  - {name: outbound, address: "127.0.0.1:0", direction: outbound, passthrough: false}
"#;

/// Service `app` with three versions: `end-user: jason` → v2, everyone else split
/// `v1_weight`/`100 - v1_weight` between v1 and v3 (Istio's reviews example).
pub fn app(v1: SocketAddr, v2: SocketAddr, v3: SocketAddr, v1_weight: u32) -> String {
    format!(
        r#"{LISTENER}services:
  - host: app
    ports: [80]
    endpoints:
      - {{address: "{v1}", labels: {{version: v1}}}}
      - {{address: "{v2}", labels: {{version: v2}}}}
      - {{address: "{v3}", labels: {{version: v3}}}}
istio:
  resources:
    - apiVersion: networking.istio.io/v1
      kind: DestinationRule
      metadata: {{name: app}}
      spec:
        host: app
        subsets:
          - {{name: v1, labels: {{version: v1}}}}
          - {{name: v2, labels: {{version: v2}}}}
          - {{name: v3, labels: {{version: v3}}}}
    - apiVersion: networking.istio.io/v1
      kind: VirtualService
      metadata: {{name: app}}
      spec:
        hosts: [app]
        http:
          - name: jason
            match:
              - headers:
                  end-user: {{exact: jason}}
            route:
              - destination: {{host: app, subset: v2}}
          - name: split
            route:
              - destination: {{host: app, subset: v1}}
                weight: {v1_weight}
              - destination: {{host: app, subset: v3}}
                weight: {v3_weight}
"#,
        v3_weight = 100 - v1_weight
    )
}

/// One service per (host, endpoint), each with its own VirtualService carrying `timeout` and no
/// retries, so each misbehaviour is seen as it is rather than hidden by a retry.
pub fn services(entries: &[(&str, SocketAddr)], timeout: &str) -> String {
    let mut text = format!("{LISTENER}services:\n");
    for (host, addr) in entries {
        text.push_str(&format!(
            "  - host: {host}\n    ports: [80]\n    endpoints:\n      - {{address: \"{addr}\"}}\n"
        ));
    }
    text.push_str("istio:\n  resources:\n");
    for (host, _) in entries {
        text.push_str(&format!(
            r#"    - apiVersion: networking.istio.io/v1
      kind: VirtualService
      metadata: {{name: {host}}}
      spec:
        hosts: [{host}]
        http:
          - timeout: {timeout}
            retries: {{attempts: 0}}
            route:
              - destination: {{host: {host}}}
"#
        ));
    }
    text
}
