//! Forwarding headers at the mesh's edge: what Envoy's connection manager does with
//! `use_remote_address: true`, which pilot sets on every gateway listener
//! (`buildGatewayListeners` / `buildGatewayConnectionManager` in
//! pilot/pkg/networking/core/gateway.go) and never on a sidecar's.
//!
//! Before anything looks at the request (authorization, routing), an edge listener
//! (Envoy's `ConnectionManagerUtility::mutateRequestHeaders`):
//! - decides the client's address: with no trusted hops (Istio's default
//!   `gatewayTopology.numTrustedProxies: 0`) the connection's peer, whatever the client wrote
//!   in `x-forwarded-for`; with N trusted hops, the Nth address from the right of the
//!   `x-forwarded-for` it received (`getLastAddressFromXFF`), else the peer;
//! - appends its peer to `x-forwarded-for` (its own address when the peer is loopback);
//! - sets `x-forwarded-proto` from the connection (`https` over TLS), unless a trusted hop
//!   already did;
//! - treats the request as external: since Envoy 1.33 no address is internal unless
//!   `internal_address_config` says so, and pilot leaves it empty unless
//!   `ENABLE_HCM_INTERNAL_NETWORKS` is on. So `x-envoy-internal` and the `x-envoy-*` control
//!   headers a client could use to steer retries and timeouts are removed, the client's
//!   address goes in `x-envoy-external-address`, and a client's `x-request-id` is replaced
//!   (`generate_request_id` on, `preserve_external_request_id` off).
//!
//! The client address is also what authorization's `remoteIpBlocks` match on such a listener
//! ([`client_address`]).

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use crate::config::{EdgeHeaders, Listener};
use crate::http1::names::{X_FORWARDED_FOR, X_FORWARDED_PROTO, X_REQUEST_ID};
use crate::http1::{valid_value, value_str, FieldName, Fields};

use super::ids::DownstreamId;
use super::Engine;

const X_ENVOY_EXTERNAL_ADDRESS: FieldName = FieldName::from_static("x-envoy-external-address");

/// Removed from every request an edge listener takes as external (Envoy's
/// `cleanInternalHeaders`, with the three edge-only names first).
const INTERNAL_ONLY: [&str; 18] = [
    "x-envoy-decorator-operation",
    "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node",
    "x-envoy-internal",
    "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names",
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-max-retries",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-force-trace",
    "x-envoy-ip-tags",
    "x-envoy-original-url",
    "x-envoy-hedge-on-per-try-timeout",
];

/// The connection a request arrived on, as the edge rules need it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EdgeConnection {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
}

impl Engine {
    /// Apply the edge rules to a new request's head when `listener` is an edge listener.
    pub(super) fn edge_headers(
        &self,
        down: DownstreamId,
        listener: Option<&Listener>,
        headers: &mut Fields,
    ) {
        let Some(edge) = listener.and_then(|l| l.edge) else {
            return;
        };
        if let Some(conn) = self.edge_connection(down) {
            mutate_request_headers(edge, conn, headers);
        }
    }

    fn edge_connection(&self, down: DownstreamId) -> Option<EdgeConnection> {
        let d = self.conns.down(down)?;
        let tls = self
            .conns
            .get(down.conn())
            .is_some_and(|c| !c.transport.is_plain());
        Some(EdgeConnection {
            peer: d.peer,
            local: d.local,
            tls,
        })
    }
}

/// Envoy's `mutateRequestHeaders` for `use_remote_address: true` and no internal addresses.
pub(crate) fn mutate_request_headers(
    edge: EdgeHeaders,
    conn: EdgeConnection,
    headers: &mut Fields,
) {
    let client = client_address_before_append(edge, conn.peer.ip(), headers);
    let trusted_proto = edge.trusted_hops > 0 && headers.contains(&X_FORWARDED_PROTO);
    // Envoy keeps one x-forwarded-for, its fields joined with ",".
    let mut forwarded = joined(headers, &X_FORWARDED_FOR);
    let appended = if conn.peer.ip().is_loopback() {
        conn.local.ip()
    } else {
        conn.peer.ip()
    };
    if !forwarded.is_empty() {
        forwarded.push(',');
    }
    forwarded.push_str(&appended.to_string());
    set(headers, X_FORWARDED_FOR, &forwarded);
    if !trusted_proto {
        let proto = if conn.tls { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO, Bytes::from_static(proto.as_bytes()));
    }
    for name in INTERNAL_ONLY {
        headers.remove(name);
    }
    set(headers, X_ENVOY_EXTERNAL_ADDRESS, &client.to_string());
    // The upstream head gets a fresh id from the engine's RNG (`prepare_upstream_head`).
    headers.remove(&X_REQUEST_ID);
}

/// The client's address as authorization sees it on an edge listener, from a head the edge
/// rules have already edited (one more `x-forwarded-for` entry: the proxy's own append).
pub(crate) fn client_address(edge: EdgeHeaders, peer: IpAddr, headers: &Fields) -> IpAddr {
    if edge.trusted_hops == 0 {
        return peer;
    }
    nth_from_right(headers, edge.trusted_hops as usize + planted_extra_hop()).unwrap_or(peer)
}

/// `getLastAddressFromXFF(headers, trusted_hops - 1)` before the proxy appends.
fn client_address_before_append(edge: EdgeHeaders, peer: IpAddr, headers: &Fields) -> IpAddr {
    if edge.trusted_hops == 0 {
        return peer;
    }
    let skip = edge.trusted_hops as usize - 1 + planted_extra_hop();
    nth_from_right(headers, skip).unwrap_or(peer)
}

/// The planted bug `xff_trusted_hop_one_too_far`: one entry more to skip.
fn planted_extra_hop() -> usize {
    #[cfg(feature = "mutants")]
    if crate::mutants::route().xff_trusted_hop_one_too_far {
        return 1;
    }
    0
}

/// The `x-forwarded-for` entry `skip` places from the right, when it is an IP address
/// (Envoy's `getLastAddressFromXFF`: a malformed entry gives no address).
fn nth_from_right(headers: &Fields, skip: usize) -> Option<IpAddr> {
    let all = joined(headers, &X_FORWARDED_FOR);
    all.rsplit(',').nth(skip)?.trim().parse().ok()
}

/// One value of every field named `name`, as Envoy's header map coalesces an inline header
/// sent several times (`HeaderMapImpl::appendToHeader`): an empty value adds nothing, and
/// `,` separates a value only from a non-empty one before it.
fn joined(headers: &Fields, name: &FieldName) -> String {
    let mut out = String::new();
    for v in headers.get_all(name).filter_map(value_str) {
        if v.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(v);
    }
    out
}

fn set(headers: &mut Fields, name: FieldName, value: &str) {
    if valid_value(value.as_bytes()) {
        headers.insert(name, Bytes::copy_from_slice(value.as_bytes()));
    } else {
        headers.remove(&name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(peer: &str, tls: bool) -> EdgeConnection {
        EdgeConnection {
            peer: peer.parse().expect("peer"),
            local: "10.0.0.9:8080".parse().expect("local"),
            tls,
        }
    }

    fn head(fields: &[(&str, &str)]) -> Fields {
        fields.iter().copied().collect()
    }

    fn get<'a>(h: &'a Fields, name: &str) -> Option<&'a str> {
        h.get(name).and_then(value_str)
    }

    /// Envoy's conn_manager_utility_test "UseRemoteAddressWhenNotLocalHostRemoteAddress": the
    /// peer is appended, x-forwarded-proto follows the connection, the request is external.
    #[test]
    fn the_peer_is_appended_and_the_request_is_external() {
        let mut h = head(&[
            ("x-forwarded-for", "198.51.100.7"),
            ("x-envoy-retry-on", "5xx"),
            ("x-envoy-internal", "true"),
            ("x-request-id", "client-chosen"),
        ]);
        mutate_request_headers(
            EdgeHeaders::default(),
            conn("203.0.113.5:40000", true),
            &mut h,
        );
        assert_eq!(get(&h, "x-forwarded-for"), Some("198.51.100.7,203.0.113.5"));
        assert_eq!(get(&h, "x-forwarded-proto"), Some("https"));
        assert_eq!(get(&h, "x-envoy-external-address"), Some("203.0.113.5"));
        assert_eq!(get(&h, "x-envoy-retry-on"), None);
        assert_eq!(get(&h, "x-envoy-internal"), None);
        assert_eq!(
            get(&h, "x-request-id"),
            None,
            "replaced by a fresh id later"
        );
    }

    /// "UseRemoteAddressWhenLocalHostRemoteAddress": a loopback peer appends the proxy's own
    /// address.
    #[test]
    fn a_loopback_peer_appends_the_local_address() {
        let mut h = head(&[]);
        mutate_request_headers(
            EdgeHeaders::default(),
            conn("127.0.0.1:5000", false),
            &mut h,
        );
        assert_eq!(get(&h, "x-forwarded-for"), Some("10.0.0.9"));
        assert_eq!(get(&h, "x-forwarded-proto"), Some("http"));
        assert_eq!(get(&h, "x-envoy-external-address"), Some("127.0.0.1"));
    }

    /// With no trusted hops a client cannot choose its address by writing x-forwarded-for:
    /// `remoteIpBlocks` see the peer.
    #[test]
    fn without_trusted_hops_the_client_is_the_peer() {
        let mut h = head(&[
            ("x-forwarded-for", "10.1.2.3"),
            ("x-forwarded-proto", "https"),
        ]);
        let c = conn("203.0.113.5:40000", false);
        mutate_request_headers(EdgeHeaders::default(), c, &mut h);
        assert_eq!(
            client_address(EdgeHeaders::default(), c.peer.ip(), &h),
            "203.0.113.5".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(get(&h, "x-forwarded-proto"), Some("http"), "not trusted");
    }

    /// "XffNumTrustedHops": with one trusted proxy in front, the address that proxy appended
    /// (the rightmost received) is the client; its x-forwarded-proto is kept.
    #[test]
    fn trusted_hops_take_the_client_from_x_forwarded_for() {
        let edge = EdgeHeaders {
            trusted_hops: 1,
            ..Default::default()
        };
        let mut h = head(&[
            ("x-forwarded-for", "192.0.2.1, 198.51.100.7"),
            ("x-forwarded-proto", "https"),
        ]);
        let c = conn("203.0.113.5:40000", false);
        mutate_request_headers(edge, c, &mut h);
        assert_eq!(get(&h, "x-envoy-external-address"), Some("198.51.100.7"));
        assert_eq!(
            client_address(edge, c.peer.ip(), &h),
            "198.51.100.7".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(get(&h, "x-forwarded-proto"), Some("https"));
    }

    /// A malformed entry where the client should be gives no address: the peer is used.
    #[test]
    fn a_malformed_trusted_entry_falls_back_to_the_peer() {
        let edge = EdgeHeaders {
            trusted_hops: 1,
            ..Default::default()
        };
        let mut h = head(&[("x-forwarded-for", "not-an-ip")]);
        let c = conn("203.0.113.5:40000", false);
        mutate_request_headers(edge, c, &mut h);
        assert_eq!(get(&h, "x-envoy-external-address"), Some("203.0.113.5"));
        assert_eq!(client_address(edge, c.peer.ip(), &h), c.peer.ip());
    }

    /// Several `x-forwarded-for` lines are one value to Envoy, coalesced by its header map's
    /// `appendToHeader` (source/common/http/header_map_impl.cc): an empty line adds nothing
    /// and no comma, so the trusted entry is counted over the non-empty ones.
    #[test]
    fn empty_forwarded_for_lines_add_nothing() {
        let edge = EdgeHeaders {
            trusted_hops: 2,
            ..Default::default()
        };
        let mut h = head(&[
            ("x-forwarded-for", "192.0.2.1"),
            ("x-forwarded-for", ""),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        mutate_request_headers(edge, conn("203.0.113.5:40000", false), &mut h);
        assert_eq!(
            get(&h, "x-forwarded-for"),
            Some("192.0.2.1,198.51.100.7,203.0.113.5")
        );
        assert_eq!(get(&h, "x-envoy-external-address"), Some("192.0.2.1"));
        let mut only_empty = head(&[("x-forwarded-for", "")]);
        mutate_request_headers(edge, conn("203.0.113.5:40000", false), &mut only_empty);
        assert_eq!(get(&only_empty, "x-forwarded-for"), Some("203.0.113.5"));
    }
}
