//! TLS-terminated TCP gateway servers (a `TLS` or TCP server with `SIMPLE`, `MUTUAL`,
//! `OPTIONAL_MUTUAL` or `ISTIO_MUTUAL`) next to servers of other kinds on one port.
//!
//! pilot merges every TLS server of a port (MergeGateways in pilot/pkg/model/gateway.go) and
//! buildGatewayTCPBasedFilterChains (pilot/pkg/networking/core/gateway.go) gives each its own
//! filter chain on the one listener: an HTTPS server an HTTP connection manager
//! (createGatewayHTTPFilterChainOpts), a terminating TCP server a chain whose `server_names`
//! are its hosts (`TLSServerInfo.SNIHosts`, GetSNIHostsForServer) with its own
//! `DownstreamTlsContext` and the `tcp_proxy` of the first bound VirtualService's applying
//! `tcp` rule (createGatewayTCPFilterChainOpts → buildGatewayNetworkFiltersFromTCPRoutes), a
//! passthrough server a chain per `tls` route. Envoy picks one chain by the ClientHello's SNI.

use std::collections::BTreeMap;

use trellis_engine::proxy::choose_chain;
use trellis_engine::transport::policy::{ClientCertificates, Plaintext};

use super::mixed_tests::{errors, run, server, Files, PASSED_P};
use crate::diag::Severity;

/// A VirtualService bound to `gw` sending `host`'s connections to `backend:9000` with a `tcp`
/// rule, and the backend's ServiceEntry.
fn tcp_rule(name: &str, host: &str, backend: &str) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: istio-system}}\nspec:\n  hosts: [{host}]\n  gateways: [gw]\n  tcp:\n  - route: [{{destination: {{host: {backend}, port: {{number: 9000}}}}}}]\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {backend}, namespace: istio-system}}\nspec:\n  hosts: [{backend}]\n  ports: [{{number: 9000, name: tcp, protocol: TCP}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1}}]\n"
    )
}

/// An HTTPS server, two TLS-terminated TCP servers of different modes, a passthrough server
/// and a terminating TCP server no rule serves, all on 443: one listener terminating three
/// chains in server order, each saying whether its plaintext is HTTP or TCP (the server without
/// a rule has none: createGatewayTCPFilterChainOpts builds nothing for it); the passthrough
/// chain's names beside them; and L4 chains each taking only its own kind of connection,
/// chosen by the SNI as Envoy chooses among the listener's filter chains.
#[test]
fn https_terminated_tcp_and_passthrough_servers_share_a_port() {
    let files = Files::new("tls-tcp");
    let t = run(&[
        server(
            443,
            "HTTPS",
            "a",
            "a.example.com",
            Some(&files.tls("SIMPLE", "")),
        ),
        server(
            443,
            "TLS",
            "db",
            "db.example.com",
            Some(&files.tls("SIMPLE", "")),
        ),
        server(
            443,
            "TCP",
            "mq",
            "\"*.mq.example.com\"",
            Some(&files.tls("MUTUAL", "")),
        ),
        server(
            443,
            "TLS",
            "p",
            "p.example.com",
            Some("{mode: PASSTHROUGH}"),
        ),
        server(
            443,
            "TLS",
            "idle",
            "idle.example.com",
            Some(&files.tls("SIMPLE", "")),
        ),
        tcp_rule("db", "db.example.com", "db.backend.test"),
        tcp_rule("mq", "\"*.mq.example.com\"", "mq.backend.test"),
        PASSED_P.to_string(),
    ]);
    assert!(errors(&t).is_empty(), "{:?}", errors(&t));
    let warned: Vec<&str> = (t.diagnostics.iter())
        .filter(|d| d.severity == Severity::Warning)
        .map(|d| d.message.as_str())
        .collect();
    assert!(
        warned
            .iter()
            .any(|m| m.contains("idle.example.com") && m.contains("no filter chain")),
        "{warned:?}"
    );
    assert_eq!(t.config.listeners.len(), 1);
    let listener = &t.config.listeners[0];
    let tls = listener.tls.as_ref().expect("terminates");
    let chains: Vec<(&str, Plaintext, &ClientCertificates)> = (tls.servers.iter())
        .map(|s| (s.hosts[0].as_str(), s.plaintext, &s.clients))
        .collect();
    assert_eq!(
        chains,
        [
            (
                "a.example.com",
                Plaintext::Http,
                &ClientCertificates::NotRequested
            ),
            (
                "db.example.com",
                Plaintext::Tcp,
                &ClientCertificates::NotRequested
            ),
            (
                "*.mq.example.com",
                Plaintext::Tcp,
                &ClientCertificates::Required
            ),
        ]
    );
    // idle.example.com has no rule, so no chain (pilot's "listener missed network filter"):
    // its ClientHello is no chain's, and the engine closes it without a handshake.
    let names: Vec<Vec<String>> = (tls.servers.iter().map(|s| s.hosts.clone()))
        .chain(tls.passthrough.iter().cloned())
        .collect();
    assert_eq!(
        trellis_engine::transport::tls::termination::server_for_sni(
            &names,
            Some("idle.example.com")
        ),
        None
    );
    assert_eq!(tls.passthrough, [vec!["p.example.com".to_string()]]);
    assert_eq!(
        tls.servers[0].route_table.as_deref(),
        Some("https.443.a.gw.istio-system")
    );
    assert_eq!(
        tls.servers[1].route_table, None,
        "a TCP chain has no route table"
    );

    let routes = &t.config.tcp_routes;
    let dst = listener.address;
    let choose = |sni: &str, terminated: bool| {
        let on = (listener.name.as_str(), false);
        let hello = (Some(sni), &[][..]);
        let choice = choose_chain(routes, on, dst, &BTreeMap::new(), hello, Some(terminated));
        choice.chosen.map(|i| {
            (routes[i].destinations.first()).map_or("(closed)".to_string(), |d| d.cluster.clone())
        })
    };
    assert_eq!(
        choose("db.example.com", true).as_deref(),
        Some("outbound|9000||db.backend.test")
    );
    assert_eq!(
        choose("eu.mq.example.com", true).as_deref(),
        Some("outbound|9000||mq.backend.test")
    );
    assert_eq!(
        choose("p.example.com", false).as_deref(),
        Some("outbound|443||p.example.com")
    );
    // Each kind only reaches chains of its own kind.
    assert_eq!(choose("db.example.com", false), None);
    assert_eq!(choose("p.example.com", true).as_deref(), Some("(closed)"));
    let db = (routes.iter())
        .find(|r| r.name == "db.istio-system")
        .expect("db chain");
    assert_eq!(db.sni_hosts, ["db.example.com"]);
    assert!(db.terminated);
}

/// Two TLS-terminated TCP servers with different hosts on one port are two chains, each
/// routing by its own bound VirtualService (createGatewayTCPFilterChainOpts runs per server:
/// the first VirtualService whose hosts meet the server's, so `one.example.com`'s is not the
/// `*` server's);
/// a server with host `*` has no `server_names` and takes every other name (toFilterChainMatch
/// in pilot/pkg/networking/core/listener.go leaves them out when a host is `*`).
#[test]
fn each_terminating_tcp_server_routes_by_its_own_rule() {
    let files = Files::new("tls-tcp-two");
    let t = run(&[
        server(
            9443,
            "TLS",
            "one",
            "one.example.com",
            Some(&files.tls("SIMPLE", "")),
        ),
        server(
            9443,
            "TLS",
            "all",
            "\"*\"",
            Some(&files.tls("OPTIONAL_MUTUAL", "")),
        ),
        tcp_rule("one", "one.example.com", "one.backend.test"),
        tcp_rule("all", "two.example.com", "all.backend.test"),
    ]);
    assert!(errors(&t).is_empty(), "{:?}", errors(&t));
    let listener = &t.config.listeners[0];
    let routes = &t.config.tcp_routes;
    let choose = |sni: Option<&str>| {
        let on = (listener.name.as_str(), false);
        let choice = choose_chain(
            routes,
            on,
            listener.address,
            &BTreeMap::new(),
            (sni, &[]),
            Some(true),
        );
        choice
            .chosen
            .map(|i| routes[i].destinations[0].cluster.clone())
    };
    assert_eq!(
        choose(Some("one.example.com")).as_deref(),
        Some("outbound|9000||one.backend.test")
    );
    assert_eq!(
        choose(Some("two.example.com")).as_deref(),
        Some("outbound|9000||all.backend.test")
    );
    assert_eq!(
        choose(None).as_deref(),
        Some("outbound|9000||all.backend.test")
    );
    let all = (routes.iter())
        .find(|r| r.name == "all.istio-system")
        .expect("chain");
    assert!(all.sni_hosts.is_empty(), "{:?}", all.sni_hosts);
}
