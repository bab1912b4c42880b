//! Authorization at the start of an inbound request: the listener's compiled
//! AuthorizationPolicies ([`crate::authz`]) decide before routing, as Envoy's RBAC HTTP filter
//! sits before the router in the filter chain pilot builds for a sidecar's inbound listener.
//!
//! A denial is Envoy's local reply (`rbac_filter.cc`): 403 with body `RBAC: access denied`,
//! and `rbac_access_denied_matched_policy[...]` as the response-code details, which the engine
//! reports as an [`Event::AuthzDenied`]. The connection stays open for the next request.

use std::sync::Arc;

use crate::authz::{AuthzRequest, Note, DENIED_BODY};
use crate::config::{Direction, Listener};
use crate::time::Instant;

use super::api::Event;
use super::authenticate::AuthnOutcome;
use super::conn::{Conn, Side};
use super::ids::{DownstreamId, RequestId};
use super::Engine;

impl Engine {
    /// Run the listener's request authentication, then its authorization, for request `id`;
    /// `false` when it was refused (and already answered). `listener` is the configuration of
    /// the request's listener in the snapshot it started on (looked up once by the caller).
    pub(super) fn authorize(
        &mut self,
        now: Instant,
        id: RequestId,
        down: DownstreamId,
        listener: Option<&Listener>,
    ) -> bool {
        let jwt = match self.authenticate(now, id, down, listener) {
            AuthnOutcome::Refused => return false,
            AuthnOutcome::Passed(payload) => payload,
        };
        let Some(config) = listener else {
            return true;
        };
        let Some(authz) = config
            .authorization
            .as_ref()
            .filter(|_| config.direction == Direction::Inbound)
        else {
            return true;
        };
        let (Some(req), Some(conn)) = (self.requests.get(id), self.conns.get(down.conn())) else {
            return true;
        };
        let Conn {
            side: Side::Down(d),
            transport,
            ..
        } = conn
        else {
            return true;
        };
        let view = AuthzRequest {
            method: req.head.method.as_str(),
            authority: &req.head.authority,
            // Normalized when the head was accepted (`crate::path`), as Envoy's RBAC
            // filter sees `:path` after the connection manager normalized it.
            path: &req.head.target,
            headers: &req.head.headers,
            peer: d.peer,
            destination: d.original_dst.unwrap_or(d.local),
            peer_names: transport.peer_principal_names(),
            // The SNI the client sent to this proxy's TLS (a gateway's HTTPS server, or the
            // `outbound_.<port>_.<subset>_.<host>` name of a mesh client); none on plaintext.
            sni: transport.server_name(),
            jwt: jwt.as_ref(),
            // A gateway decided who the client is from its peer (and trusted hops).
            client: config
                .edge
                .map(|edge| super::edge::client_address(edge, d.peer.ip(), &req.head.headers)),
        };
        let peer = d.peer;
        let (verdict, audited) = counted_verdict(authz, &view, &mut self.stats);
        if let Some(policy) = audited {
            self.push_event(Event::AuthzAudited {
                conn: down.conn(),
                peer,
                policy,
            });
        }
        match verdict.details() {
            None => {
                self.stats.rbac_allowed += 1;
                true
            }
            Some(details) => {
                self.stats.rbac_denied += 1;
                self.push_event(Event::AuthzDenied {
                    conn: down.conn(),
                    peer,
                    details,
                });
                self.local_reply(now, id, 403, None, DENIED_BODY, &[]);
                false
            }
        }
    }
}

/// Evaluate `authz` for `view`, counting shadow results and audits in `stats` (Envoy's RBAC
/// filter stats, HTTP and network alike); the audited policy, if any, comes back with the
/// verdict for the caller's event.
pub(super) fn counted_verdict(
    authz: &crate::authz::Authorization,
    view: &AuthzRequest<'_>,
    stats: &mut super::EngineStats,
) -> (crate::authz::Verdict, Option<Arc<str>>) {
    let mut audited: Option<Arc<str>> = None;
    let verdict = authz.evaluate(view, &mut |note| match note {
        Note::Audited(policy) => {
            stats.rbac_audited += 1;
            audited = Some(policy);
        }
        Note::Shadow { allowed: true } => stats.rbac_shadow_allowed += 1,
        Note::Shadow { allowed: false } => stats.rbac_shadow_denied += 1,
    });
    (verdict, audited)
}
