//! What the L4 world is held to, from what the clients and the echo servers saw (never the
//! engine's own account, except the access-log records that are themselves checked):
//!
//! - **routing** (`Routing`): a connection to a TCP service's port connects once, to a cluster
//!   its `tcp` rule names with a positive weight — the rule whose `destinationSubnets` hold the
//!   address it dialled with the longest prefix (Envoy's destination-IP step of the
//!   filter-chain match), else the first whose `sourceLabels` the client has (pilot's
//!   matchTCP), else the service's own; one to the sniffed HTTP port (with bytes that
//!   are no HTTP) or to an undeclared port goes to the catch-all: ALLOW_ANY connects once, to
//!   its original destination (`PassthroughCluster`), REGISTRY_ONLY connects nowhere and is
//!   closed (`BlackHoleCluster`) (pilot's `buildOutboundCatchAllNetworkFilterChains`);
//! - **bytes** (`Bytes`): the server receives a prefix of what the client sent and the client
//!   a prefix of what the server echoed, in order; a connection neither side cut (no refusal,
//!   no reset, no idle timeout) whose client half-closed delivers every byte both ways and
//!   each side's EOF to the other (Envoy's `tcp_proxy` half-close);
//! - **endings** (`EndsOnce`): a refused connect or a server's reset closes the client's
//!   connection;
//! - **idle timeout** (`Deadline`): the proxy never closes a connection that is still relaying
//!   before `idle_timeout` has passed without a byte either way (`tcp_proxy` `idle_timeout`);
//! - **weights** (`Weights`): each service's connects spread over its clusters as its weights
//!   say (the 1e-7 binomial bound of [`crate::sim::balance`]);
//! - **access log** (`AccessLog`): one record per client connection that ended, naming its
//!   route (or the catch-all's cluster), with the bytes relayed each way on clean ones.

use std::collections::BTreeMap;
use std::time::Duration;

use trellis_engine::config::{BLACK_HOLE_CLUSTER, PASSTHROUGH_CLUSTER};

use super::chains::{chain_for, Chain};
use super::config::{
    cluster_name, label_route_name, route_name, subnet_route_name, tls_route_name,
};
use super::spec::{tls_rule_for, Target, SNI_NAMES};
use super::world::{dialled_ip, ConnState, Reached, World};
use crate::sim::balance::binomial_ok;
use crate::sim::check::Invariant;

impl World<'_> {
    pub(crate) fn check(&mut self) {
        // Per service and chain (its own rule, or a `destinationSubnets` one): the clusters
        // its connections reached first.
        let mut per_service: BTreeMap<(usize, Chain), Vec<usize>> = BTreeMap::new();
        for c in 0..self.conns.len() {
            let target = self.spec.conns[c].target;
            if let Some(msg) = self.routing_breach(c) {
                self.violation(
                    Invariant::Routing,
                    format!("connection {c} ({target:?}): {msg}"),
                );
                continue;
            }
            if let (Target::Service(s), Some((Reached::Cluster(cl, _), _))) =
                (target, self.conns[c].connects.first())
            {
                let chain = self.chain(c).unwrap_or(Chain::Own);
                per_service.entry((s, chain)).or_default().push(*cl);
            }
            for (invariant, msg) in self.ending_breaches(c) {
                self.violation(invariant, format!("connection {c} ({target:?}): {msg}"));
            }
            self.count(match target {
                Target::Service(_) => "service",
                Target::HttpPort => "sniffed-port",
                Target::Unknown => "undeclared-port",
                Target::Tls(_) => "tls-port",
            });
        }
        for ((s, chain), clusters) in per_service {
            self.check_weights(s, chain, &clusters);
        }
        self.check_logs();
    }

    /// The chain a connection to a TCP service's port takes (`None`: not such a connection).
    fn chain(&self, c: usize) -> Option<Chain> {
        let conn = &self.spec.conns[c];
        match conn.target {
            Target::Service(s) => {
                let service = &self.spec.services[s];
                let rules = (&service.subnet_rules[..], &service.label_rules[..]);
                Some(chain_for(rules, dialled_ip(conn), conn.client))
            }
            _ => None,
        }
    }

    /// The destinations of chain `chain` of service `s`.
    fn service_dests(&self, s: usize, chain: Chain) -> &[(usize, u32)] {
        let service = &self.spec.services[s];
        match chain {
            Chain::Own => &service.dests,
            Chain::Subnet(j) => &service.subnet_rules[j].dests,
            Chain::Labels(k) => &service.label_rules[k].dests,
        }
    }

    /// The `tls` rule a connection to the TLS port takes (`None`: the catch-all).
    fn tls_rule(&self, c: usize) -> Option<usize> {
        match self.spec.conns[c].target {
            Target::Tls(Some(name)) => tls_rule_for(&self.spec.tls_rules, SNI_NAMES[name]),
            _ => None,
        }
    }

    fn routing_breach(&self, c: usize) -> Option<String> {
        let conn = &self.conns[c];
        if let (Target::Tls(_), Some(rule)) = (self.spec.conns[c].target, self.tls_rule(c)) {
            let dests = &self.spec.tls_rules[rule].dests;
            return match conn.connects.as_slice() {
                [(Reached::Cluster(cl, _), _)] if dests.iter().any(|&(d, _)| d == *cl) => None,
                other => Some(format!(
                    "tls rule {rule}: connects {other:?}, expected one to {dests:?}"
                )),
            };
        }
        match self.spec.conns[c].target {
            Target::Service(s) => {
                let dests = self.service_dests(s, self.chain(c).unwrap_or(Chain::Own));
                match conn.connects.as_slice() {
                    [(Reached::Cluster(cl, _), _)] => {
                        (!dests.iter().any(|&(d, w)| d == *cl && w > 0))
                            .then(|| format!("reached cluster {cl}, not one of {dests:?}"))
                    }
                    other => Some(format!("connects {other:?}, expected one to {dests:?}")),
                }
            }
            Target::HttpPort | Target::Unknown | Target::Tls(_) if self.spec.allow_any => {
                match conn.connects.as_slice() {
                    [(Reached::Original, _)] => None,
                    other => Some(format!(
                        "ALLOW_ANY: connects {other:?}, expected one to the original destination"
                    )),
                }
            }
            Target::HttpPort | Target::Unknown | Target::Tls(_) => {
                if !conn.connects.is_empty() {
                    Some(format!("REGISTRY_ONLY: connected {:?}", conn.connects))
                } else if conn.closed_at.is_none() {
                    Some("REGISTRY_ONLY: the connection was never closed".into())
                } else if !conn.received.is_empty() {
                    Some("REGISTRY_ONLY: the client received bytes".into())
                } else {
                    None
                }
            }
        }
    }

    /// Bytes, EOFs, closes and the idle timeout of one routed connection.
    fn ending_breaches(&self, c: usize) -> Vec<(Invariant, String)> {
        let conn = &self.conns[c];
        let mut out = Vec::new();
        if !conn.sent.starts_with(&conn.server_received) {
            out.push((
                Invariant::Bytes,
                format!(
                    "the server received {} bytes that are not a prefix of the {} sent",
                    conn.server_received.len(),
                    conn.sent.len()
                ),
            ));
        }
        if !conn.server_sent.starts_with(&conn.received) {
            out.push((
                Invariant::Bytes,
                format!(
                    "the client received {} bytes that are not a prefix of the {} the server sent",
                    conn.received.len(),
                    conn.server_sent.len()
                ),
            ));
        }
        let refused = conn.connects.iter().any(|(_, refused)| *refused);
        if (refused || conn.server_reset) && conn.closed_at.is_none() {
            out.push((
                Invariant::EndsOnce,
                "the upstream was refused or reset, and the client's connection stayed open"
                    .to_string(),
            ));
        }
        let idle = self.spec.idle_timeout_ms.map(Duration::from_millis);
        // Both ends sent their EOF: only then may the proxy end a connection that did not
        // fail without waiting out the idle timeout.
        let both_eof = conn.ended_by_peers();
        if let (Some(closed), false, false, false) =
            (conn.closed_at, refused, conn.server_reset, both_eof)
        {
            if conn.up.is_some() {
                let last = conn.last_activity.unwrap_or(closed);
                let waited = closed.saturating_since(last);
                if idle.is_none_or(|idle| waited < idle) {
                    out.push((
                        Invariant::Deadline,
                        format!(
                            "closed {waited:?} after the last byte, idle timeout {idle:?}, before both ends sent their EOF, without a failure ({})",
                            conn.summary()
                        ),
                    ));
                }
            }
        }
        // A server that finished first: its EOF reaches the client in the same instant (the
        // relay passes a FIN on as it reads it), the client still sending.
        if let Some(fin) = conn.server_fin_at {
            if !conn.server_reset && conn.client_eof_at.is_none_or(|at| at > fin) {
                out.push((
                    Invariant::Bytes,
                    format!(
                        "the server's EOF at {fin} reached the client at {:?} ({})",
                        conn.client_eof_at,
                        conn.summary()
                    ),
                ));
            }
        }
        let clean = conn.up.is_some() && !refused && !conn.server_reset;
        let idle_cut = conn.closed_at.is_some() && !both_eof;
        if clean && !idle_cut && conn.eof_sent {
            if conn.server_received != conn.sent || !conn.server_saw_eof {
                out.push((
                    Invariant::Bytes,
                    format!(
                        "the client sent {} bytes and its EOF; the server got {} (EOF: {})",
                        conn.sent.len(),
                        conn.server_received.len(),
                        conn.server_saw_eof
                    ),
                ));
            } else if conn.closed_at.is_some()
                && (conn.received != conn.server_sent || !conn.client_saw_eof)
            {
                out.push((
                    Invariant::Bytes,
                    format!(
                        "the server echoed {} bytes and its EOF; the client got {} (EOF: {})",
                        conn.server_sent.len(),
                        conn.received.len(),
                        conn.client_saw_eof
                    ),
                ));
            }
        }
        out
    }

    fn check_weights(&mut self, s: usize, chain: Chain, clusters: &[usize]) {
        let dests = self.service_dests(s, chain).to_vec();
        let dests = &dests;
        let total: u64 = dests.iter().map(|&(_, w)| u64::from(w)).sum();
        let n = clusters.len() as u64;
        if n < 20 || total == 0 {
            return;
        }
        for &(d, w) in dests {
            let hits = clusters.iter().filter(|&&c| c == d).count() as u64;
            let p = w as f64 / total as f64;
            if !binomial_ok(hits, n, p) {
                let msg = format!(
                    "service {s}: cluster {d} took {hits} of {n} connections, weight share {p:.3} (destinations {dests:?}); P < 1e-7"
                );
                self.violation(Invariant::Weights, msg);
                return;
            }
        }
    }

    fn check_logs(&mut self) {
        let mut by_conn: BTreeMap<u64, usize> = BTreeMap::new();
        for (i, log) in self.logs.iter().enumerate() {
            if by_conn.insert(log.downstream.0, i).is_some() {
                let msg = format!("two access-log records for connection {:?}", log.downstream);
                self.violation(Invariant::AccessLog, msg);
                return;
            }
        }
        for c in 0..self.conns.len() {
            let conn = &self.conns[c];
            let (Some(down), Some(_)) = (conn.down, conn.closed_at) else {
                continue;
            };
            let Some(&i) = by_conn.get(&down.0) else {
                let msg = format!("connection {c} ended without an access-log record");
                self.violation(Invariant::AccessLog, msg);
                return;
            };
            if let Some(msg) = self.log_breach(c, conn, i) {
                self.violation(Invariant::AccessLog, format!("connection {c}: {msg}"));
                return;
            }
        }
    }

    fn log_breach(&self, c: usize, conn: &ConnState, i: usize) -> Option<String> {
        let log = &self.logs[i];
        let target = self.spec.conns[c].target;
        let (route, cluster) = (log.route.as_deref(), log.cluster.as_deref());
        match (target, conn.connects.first()) {
            (Target::Service(s), Some((Reached::Cluster(cl, _), _))) => {
                let want = match self.chain(c).unwrap_or(Chain::Own) {
                    Chain::Own => route_name(s),
                    Chain::Subnet(j) => subnet_route_name(s, j),
                    Chain::Labels(k) => label_route_name(s, k),
                };
                if route != Some(want.as_str()) || cluster != Some(cluster_name(*cl).as_str()) {
                    return Some(format!(
                        "logged route {route:?} cluster {cluster:?}, expected {want} and {}",
                        cluster_name(*cl)
                    ));
                }
            }
            (Target::Tls(_), Some((Reached::Cluster(_, _), _))) => {
                let want = self.tls_rule(c).map(tls_route_name);
                if route != want.as_deref() {
                    return Some(format!("logged route {route:?}, expected {want:?}"));
                }
            }
            (Target::HttpPort | Target::Unknown | Target::Tls(_), _) => {
                // Envoy's ORIGINAL_DST cluster: one `PassthroughCluster`, the original
                // destination its host.
                let (want, host) = if self.spec.allow_any {
                    let dst = super::world::original_dst(&self.spec.conns[c]);
                    (
                        PASSTHROUGH_CLUSTER,
                        Some(dst).filter(|_| !conn.connects.is_empty()),
                    )
                } else {
                    (BLACK_HOLE_CLUSTER, None)
                };
                if cluster != Some(want) || route != Some(want) || log.upstream_host != host {
                    return Some(format!(
                        "logged route {route:?} cluster {cluster:?} host {:?}, expected {want} and {host:?}",
                        log.upstream_host
                    ));
                }
            }
            _ => {}
        }
        let refused = conn.connects.iter().any(|(_, r)| *r);
        let clean = conn.up.is_some() && !refused && !conn.server_reset && conn.ended_by_peers();
        if clean
            && (log.request_body_bytes != conn.server_received.len() as u64
                || log.response_body_bytes != conn.received.len() as u64)
        {
            return Some(format!(
                "logged {} bytes up and {} down, relayed {} and {}",
                log.request_body_bytes,
                log.response_body_bytes,
                conn.server_received.len(),
                conn.received.len()
            ));
        }
        None
    }
}
