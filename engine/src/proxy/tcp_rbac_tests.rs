//! The network RBAC filter on an L4 chain (`tcp_rbac`): checked on the client's first bytes,
//! as Envoy's `RoleBasedAccessControlFilter::onData`
//! (source/extensions/filters/network/rbac/rbac_filter.cc); a denial closes the connection
//! and none of the client's bytes reach the upstream.

use std::sync::Arc;

use bytes::Bytes;

use super::tests::{config, drain, sent_to};
use super::*;
use crate::authz::{Action, Authorization, Cidr, Permission, Policy, Principal, Rbac, RbacFilter};
use crate::config::{Cluster, Endpoint, TcpDestination, TcpRoute};

/// An ALLOW filter admitting peers in `cidr` only.
fn allow_peers(cidr: &str) -> Arc<Authorization> {
    Arc::new(Authorization {
        filters: vec![RbacFilter {
            rules: Some(Rbac {
                action: Action::Allow,
                policies: vec![Policy {
                    name: "ns[default]-policy[peers]-rule[0]".into(),
                    permissions: vec![Permission::DestinationPort(27017)],
                    principals: vec![Principal::DirectRemoteIp(Cidr::parse(cidr).unwrap())],
                }],
            }),
            shadow: None,
        }],
    })
}

fn engine_with(authz: Arc<Authorization>) -> Engine {
    let mut c = config();
    c.clusters.push(Cluster {
        name: "db".into(),
        endpoints: vec![Endpoint {
            sidecar: false,
            address: "10.0.0.10:27017".parse().unwrap(),
            weight: 1,
            labels: Default::default(),
        }],
        ..Default::default()
    });
    c.tcp_routes = vec![TcpRoute {
        name: "inbound|27017||".into(),
        listener: Some("out".into()),
        destinations: vec![TcpDestination {
            cluster: "db".into(),
            weight: 1,
        }],
        authorization: Some(authz),
        ..TcpRoute::default()
    }];
    Engine::try_new(Arc::new(c), 1).unwrap()
}

/// A client at `peer` sends `hello` on a connection to 10.9.9.9:27017 whose upstream is up;
/// what the upstream got, and the outputs after the bytes.
fn hello_from(engine: &mut Engine, peer: &str) -> (Vec<u8>, Vec<Output>, ConnId) {
    let t = Instant::ZERO;
    let mut accepted = Accepted::new(peer.parse().unwrap(), "127.0.0.1:15001".parse().unwrap());
    accepted.original_dst = Some("10.9.9.9:27017".parse().unwrap());
    let down = engine.accept(t, accepted);
    let up = drain(engine)
        .iter()
        .find_map(|o| match o {
            Output::Connect { conn, .. } => Some(*conn),
            _ => None,
        })
        .expect("tcp_proxy connects at once (onNewConnection)");
    engine.handle(t, Input::Connected { conn: up });
    drain(engine);
    let data = Bytes::from_static(b"hello");
    engine.handle(t, Input::Received { conn: down, data });
    let out = drain(engine);
    (sent_to(&out, up), out, down)
}

#[test]
fn an_allowed_peer_is_relayed() {
    let mut engine = engine_with(allow_peers("127.0.0.0/8"));
    let (upstream_got, _, _) = hello_from(&mut engine, "127.0.0.1:5555");
    assert_eq!(upstream_got, b"hello");
    assert_eq!(engine.stats().rbac_allowed, 1);
}

#[test]
fn a_denied_peer_is_closed_before_its_bytes_go_anywhere() {
    let mut engine = engine_with(allow_peers("10.1.0.0/16"));
    let (upstream_got, out, down) = hello_from(&mut engine, "127.0.0.1:5555");
    assert!(upstream_got.is_empty(), "{out:?}");
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Close { conn, .. } if *conn == down)),
        "{out:?}"
    );
    assert_eq!(engine.stats().rbac_denied, 1);
    let denied = std::iter::from_fn(|| engine.poll_event()).find_map(|e| match e {
        Event::AuthzDenied { details, .. } => Some(details),
        _ => None,
    });
    assert_eq!(
        denied.as_deref(),
        Some("rbac_access_denied_matched_policy[none]")
    );
}
