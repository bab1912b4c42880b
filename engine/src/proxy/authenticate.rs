//! Request authentication at the start of an inbound request: the listener's compiled
//! RequestAuthentications ([`crate::authn`]) check the request's JWTs before authorization
//! runs, as Envoy's `jwt_authn` filter sits before the RBAC filters in the inbound chain pilot
//! builds.
//!
//! A refusal is Envoy's local reply (`jwt_authn/filter.cc` `onComplete`): 401 (403 for a
//! disallowed audience) with the reason as body (`Jwt verification fails`, `Jwt is expired`
//! ...) and `www-authenticate: Bearer realm="<original URI>", error="invalid_token"`, reported
//! as an [`Event::AuthnDenied`] with `jwt_authn_access_denied{...}` details. A request with no
//! token passes with no principal; authorization's `requestPrincipals` then decide.

use crate::authn::{Authenticated, AuthnRequest, JwtPayload};
use crate::config::{Direction, Listener};
use crate::time::Instant;

use super::api::Event;
use super::conn::{Conn, Side};
use super::ids::{DownstreamId, RequestId};
use super::Engine;

/// Envoy's `MaximumUriLength` for the realm.
const MAX_REALM_PATH: usize = 256;

/// What request authentication decided.
pub(super) enum AuthnOutcome {
    /// Refused and already answered.
    Refused,
    /// Let through, with the verified token's payload if there was one.
    Passed(Option<JwtPayload>),
}

impl Engine {
    /// Run the listener's JWT authentication for request `id` (editing its headers and target
    /// as Envoy's filter does).
    pub(super) fn authenticate(
        &mut self,
        now: Instant,
        id: RequestId,
        down: DownstreamId,
        listener: Option<&Listener>,
    ) -> AuthnOutcome {
        let Some(config) = listener else {
            return AuthnOutcome::Passed(None);
        };
        let Some(authn) = config
            .authentication
            .clone()
            .filter(|_| config.direction == Direction::Inbound)
        else {
            return AuthnOutcome::Passed(None);
        };
        let unix_now = self.unix_seconds(now);
        let Some(Conn {
            side: Side::Down(d),
            transport,
            ..
        }) = self.conns.get(down.conn())
        else {
            return AuthnOutcome::Passed(None);
        };
        let peer = d.peer;
        let tls = transport.peer_identity().is_some();
        let Some(req) = self.requests.get_mut(id) else {
            return AuthnOutcome::Passed(None);
        };
        let head = &mut req.head;
        // Envoy builds the realm from the URI as received; a verified token's query parameter
        // may be gone from the target by the time a later token fails.
        let received_target = head.query().is_some().then(|| head.target.clone());
        let result = authn.authenticate(&mut AuthnRequest {
            method: head.method.as_str(),
            target: &mut head.target,
            headers: &mut head.headers,
            unix_now,
        });
        match result {
            Ok(outcome) => {
                self.stats.jwt_authn_allowed += 1;
                let payload = match outcome {
                    Authenticated::Verified(payload) => {
                        self.stats.jwt_authn_verified += 1;
                        Some(payload)
                    }
                    Authenticated::Anonymous | Authenticated::CorsPreflight => None,
                };
                AuthnOutcome::Passed(payload)
            }
            Err(status) => {
                if let Some(target) = received_target {
                    head.target = target;
                }
                let realm = realm(head, tls);
                self.stats.jwt_authn_denied += 1;
                self.push_event(Event::AuthnDenied {
                    conn: down.conn(),
                    peer,
                    status,
                    details: status.details(),
                });
                let mut challenge = format!("Bearer realm=\"{realm}\"");
                if status != crate::authn::Status::JwtMissed {
                    challenge.push_str(", error=\"invalid_token\"");
                }
                self.local_reply(
                    now,
                    id,
                    status.http_status(),
                    None,
                    status.message(),
                    &[("www-authenticate", &challenge)],
                );
                AuthnOutcome::Refused
            }
        }
    }

    /// `now` as whole seconds since the UNIX epoch, on the engine's clock.
    pub(crate) fn unix_seconds(&self, now: Instant) -> u64 {
        (self.unix_base + std::time::Duration::from_nanos(now.as_nanos())).as_secs()
    }
}

/// Envoy's `buildOriginalUri`: `<x-forwarded-proto>://<host><path>`, the path cut at 256
/// bytes. The scheme is the request's `x-forwarded-proto`, else that of the connection.
fn realm(head: &crate::http1::RequestHead, tls: bool) -> String {
    let scheme = head
        .headers
        .get("x-forwarded-proto")
        .and_then(crate::http1::value_str)
        .unwrap_or(if tls { "https" } else { "http" });
    let mut cut = head.target.len().min(MAX_REALM_PATH);
    while !head.target.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{scheme}://{}{}", head.authority, &head.target[..cut])
}
