//! L4 routing: connections proxied as bytes (Envoy's `tcp_proxy`), chosen by what a listener
//! can see before any byte is interpreted: the destination port and address, and for TLS the
//! SNI of the ClientHello (Envoy's filter-chain match with the `tls_inspector`).
//!
//! Pilot evaluates a VirtualService `tcp`/`tls` match's static predicates (`sourceLabels`,
//! `sourceNamespace`, `gateways`) when it builds a proxy's listeners and leaves the runtime ones
//! (`destinationSubnets`, `sniHosts`, the port) to Envoy's filter-chain match
//! (matchTCP/matchTLS, buildSidecarOutboundTCPFilterChainOpts and
//! buildSidecarOutboundTLSFilterChainOpts in pilot/pkg/networking/core/tls.go). A
//! [`TcpRoute`] is one such filter chain; `source_labels` is also kept here because a Trellis
//! outbound listener may serve several clients (the simulator's shared sidecars), as its HTTP
//! `sourceLabels` are.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Envoy's `tcp_proxy` idle timeout when nothing sets one (pilot leaves it unset unless a
/// DestinationRule's `connectionPool.tcp.idleTimeout` or the proxy's metadata says otherwise).
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// One L4 filter chain: which connections it takes and where their bytes go.
#[derive(Clone, Debug, PartialEq)]
pub struct TcpRoute {
    /// For the access log and `explain`: `<virtualservice>.<namespace>` (the tcp_proxy's
    /// `stat_prefix`) or the default route's cluster name.
    pub name: String,
    /// The [`super::Listener::name`] whose connections it applies to; `None`: every outbound
    /// listener (a sidecar's outbound side, as the control plane translates services).
    pub listener: Option<String>,
    /// Envoy `destination_port`: the connection's original destination port, or the port it
    /// arrived on. `None`: any port.
    pub port: Option<u16>,
    /// Envoy `prefix_ranges` (`destinationSubnets`, or the service's addresses): the
    /// destination address must fall in one. Empty: any address.
    pub destination_subnets: Vec<Cidr>,
    /// Envoy `server_names` (`sniHosts`): the ClientHello's SNI, exact or `*.suffix`. Non-empty
    /// makes the chain a TLS one (the first bytes are inspected, never terminated).
    pub sni_hosts: Vec<String>,
    /// Envoy `application_protocols`: the ClientHello must offer one of these ALPN protocols
    /// (after the SNI step; the chain listing the client's earliest protocol wins). Empty:
    /// any, or none. pilot sets Istio's mTLS ALPNs on AUTO_PASSTHROUGH chains
    /// (builtAutoPassthroughFilterChains), so that only a mesh client's mTLS passes.
    pub application_protocols: Vec<String>,
    /// `sourceLabels`: the client's labels must include all of these.
    pub source_labels: BTreeMap<String, String>,
    /// `route[]`: clusters with weights (Envoy `weighted_clusters`); one entry is a plain
    /// `cluster`. Weight-0 destinations are left out by the control plane, as pilot does.
    pub destinations: Vec<TcpDestination>,
    /// `tcp_proxy.idle_timeout`: close both sides when no byte moved either way for this long.
    /// `None`: never (Envoy's explicit 0).
    pub idle_timeout: Option<Duration>,
    /// Envoy's network RBAC filter in front of the `tcp_proxy` (an inbound chain: the
    /// AuthorizationPolicies of the workload compiled for TCP, pilot's `Builder::BuildTCP`).
    /// Checked once, on the first bytes (or the EOF) the client sends, as Envoy's
    /// `RoleBasedAccessControlFilter::onData`; a denial closes the connection before any of
    /// the client's bytes reach the upstream. `None`: every connection is allowed.
    pub authorization: Option<Arc<crate::authz::Authorization>>,
    /// No `destinations`: the connection goes to its original destination through a
    /// passthrough cluster made for it, or on an inbound capture listener to the workload
    /// at that port ([`super::Listener::local_forward`]) — Envoy's ORIGINAL_DST
    /// `InboundPassthroughCluster` of Istio's inbound passthrough chains.
    pub passthrough: bool,
    /// The chain of a TLS-terminated TCP gateway server ([`crate::transport::policy::Plaintext::Tcp`]):
    /// it takes only connections whose TLS its listener terminated, chosen by the SNI the
    /// handshake saw, and relays their decrypted bytes; a passed-through connection is only
    /// ever taken by a chain without this flag. Envoy matches both kinds among one listener's
    /// filter chains by the same SNI (`createGatewayTCPFilterChainOpts`).
    pub terminated: bool,
}

impl Default for TcpRoute {
    fn default() -> Self {
        TcpRoute {
            name: String::new(),
            listener: None,
            port: None,
            destination_subnets: Vec::new(),
            sni_hosts: Vec::new(),
            application_protocols: Vec::new(),
            source_labels: BTreeMap::new(),
            destinations: Vec::new(),
            idle_timeout: Some(DEFAULT_TCP_IDLE_TIMEOUT),
            authorization: None,
            passthrough: false,
            terminated: false,
        }
    }
}

/// `RouteDestination`: a cluster and its relative weight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpDestination {
    /// Name of a [`super::Cluster`] in the same snapshot.
    pub cluster: String,
    pub weight: u32,
}

/// An address prefix (`10.0.0.0/8`, `192.168.1.7/32`, `::1/128`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub len: u8,
}

impl Cidr {
    /// Parse `IP` (a host prefix) or `IP/LEN`.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (ip, len) = match s.split_once('/') {
            Some((ip, len)) => (ip, Some(len)),
            None => (s, None),
        };
        let addr: IpAddr = ip.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            Some(l) => l.trim().parse::<u8>().ok().filter(|&l| l <= max)?,
            None => max,
        };
        Some(Cidr { addr, len })
    }

    /// Whether `ip` falls in this prefix (an IPv4 address never matches an IPv6 prefix).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.len as usize)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.len as usize)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: usize) -> bool {
    let whole = bits / 8;
    if a.get(..whole) != b.get(..whole) {
        return false;
    }
    let rest = bits % 8;
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    match (a.get(whole), b.get(whole)) {
        (Some(x), Some(y)) => x & mask == y & mask,
        _ => false,
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_contain_what_they_should() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.255.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        let odd = Cidr::parse("192.168.1.128/25").unwrap();
        assert!(odd.contains("192.168.1.200".parse().unwrap()));
        assert!(!odd.contains("192.168.1.100".parse().unwrap()));
        let host = Cidr::parse("127.0.0.1").unwrap();
        assert_eq!(host.len, 32);
        assert!(!host.contains("::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nope").is_none());
    }
}
