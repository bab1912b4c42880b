//! Authorization of an L4 connection: Envoy's network RBAC filter, which pilot puts in front of
//! the `tcp_proxy` of a sidecar's inbound TCP filter chains (`Builder::BuildTCP` in
//! pilot/pkg/security/authz/builder/builder.go). The policies it carries were compiled for TCP
//! by the control plane (HTTP-only fields dropped as pilot's `Model::Generate(forTCP)` does), so
//! only connection attributes are looked at: the peer's address and verified identity, the
//! destination address and port, the SNI.
//!
//! Envoy checks once, on the connection's first data
//! (`RoleBasedAccessControlFilter::onData` in
//! source/extensions/filters/network/rbac/rbac_filter.cc), and on a denial closes the
//! connection without flushing: none of the client's bytes reach the upstream.

use crate::authz::AuthzRequest;
use crate::http1::Fields;

use super::api::Event;
use super::authorize::counted_verdict;
use super::conn::{Conn, Side};
use super::ids::DownstreamId;
use super::tcp_session::TcpPhase;
use super::Engine;

impl Engine {
    /// Whether the client's bytes on `id` may go on: `true` when its chain has no RBAC, when
    /// it was already checked, or when there is nothing to check yet (no data, no EOF);
    /// `false` after a denial, whose received bytes are dropped here and whose session the
    /// caller (`tcp`, the layer above) then ends.
    pub(super) fn tcp_authorized(&mut self, id: DownstreamId) -> bool {
        let Some(Conn {
            side: Side::Down(d),
            transport,
            ..
        }) = self.conns.get(id.conn())
        else {
            return true;
        };
        let Some(session) = d.tcp.as_deref() else {
            return true;
        };
        let Some(authz) = session.rbac.clone() else {
            return true;
        };
        if !matches!(session.phase, TcpPhase::Relaying(_)) {
            // The bytes wait in the receive buffer until the upstream is there.
            return true;
        }
        if d.recv.is_empty() && !d.read_closed {
            return true;
        }
        let headers = Fields::default();
        let view = AuthzRequest {
            method: "",
            authority: "",
            path: "",
            headers: &headers,
            peer: d.peer,
            destination: d.original_dst.unwrap_or(d.local),
            peer_names: transport.peer_principal_names(),
            // requested_server_name: the SNI of this proxy's TLS (mesh mTLS), else the one the
            // tls_inspector read from a passed-through ClientHello.
            sni: transport.server_name().or(session.sni.as_deref()),
            jwt: None,
            // A network filter's remote address is the connection's peer.
            client: Some(d.peer.ip()),
        };
        let peer = d.peer;
        let (verdict, audited) = counted_verdict(&authz, &view, &mut self.stats);
        if let Some(policy) = audited {
            self.push_event(Event::AuthzAudited {
                conn: id.conn(),
                peer,
                policy,
            });
        }
        match verdict.details() {
            None => {
                self.stats.rbac_allowed += 1;
                if let Some(session) = self.conns.down_mut(id).and_then(|d| d.tcp.as_deref_mut()) {
                    session.rbac = None;
                }
                true
            }
            Some(details) => {
                self.stats.rbac_denied += 1;
                self.push_event(Event::AuthzDenied {
                    conn: id.conn(),
                    peer,
                    details,
                });
                if let Some(d) = self.conns.down_mut(id) {
                    // NoFlush: what the client sent is dropped, never relayed.
                    d.recv.clear();
                }
                false
            }
        }
    }
}
