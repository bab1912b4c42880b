//! The security world's invariants, checked from what the simulator knows independently of
//! the engines: who each caller is and which certificates the CA issued it, which bytes
//! crossed the network in plaintext and under which mode each connection was accepted, when
//! each handshake could at the earliest have verified a certificate, and the reference
//! evaluation of the policies ([`super::policy::reference_allows`]).
//!
//! - [`Invariant::MtlsStrict`]: no request that crossed the network in plaintext on a
//!   connection accepted under STRICT reaches a workload (connections accepted before a
//!   switch to STRICT keep serving, as Envoy drains a listener's old filter chain).
//! - [`Invariant::PeerIdentity`]: a request that came over mTLS carries, in
//!   `x-forwarded-client-cert`, the inbound workload's own id (`By=`) and exactly the SPIFFE
//!   id and a certificate (`Hash=`) the CA issued to the calling workload, presented by a
//!   connection of that caller still open; one that came in plaintext carries no such header
//!   (a forged one is removed).
//! - [`Invariant::CertExpiry`]: no request arrives over mTLS when every open connection that
//!   could have carried it verified an expired certificate: the client's at or after the
//!   first bytes of its second flight reached the server, the server's at or after its first
//!   flight reached the client (both lower bounds of when the peer checked it), later than
//!   the certificate's notAfter.
//! - [`Invariant::Authorization`]: a request reaching its workload is one the reference
//!   allows under the policies in force then; a `403 RBAC: access denied` is one the
//!   reference denies under some generation of the policies in force while it was in flight.
//! - [`Invariant::Authentication`] (JWT, [`super::jwt`]): no request whose token fails
//!   verification reaches a workload whose RequestAuthentication is in force; a `401` answers
//!   only a request whose token fails, to a service with a RequestAuthentication in force at
//!   some instant while it was in flight. A verified token's `<iss>/<sub>` is the request
//!   principal the authorization reference sees.
//! - [`Invariant::RootRotation`] ([`super::rotation`]): a handshake refused for an unknown CA
//!   met a certificate whose root the verifier's bundle did not hold when the connection
//!   began (an impostor's, or one still chained only to a root a rotation dropped: during the
//!   overlap none is refused for which root signed whom); no request arrives over a connection
//!   whose certificates chained to a root the other end did not trust (after the overlap a
//!   certificate of the old root alone is refused); and a bundle or certificate update closes
//!   no established connection.

use bytes::Bytes;
use trellis_engine::{ConnId, Instant};

use super::ca::{Roots, UNIX_BASE};
use super::policy::{reference_allows, Asked, Target};
use super::spec::{CallerKind, PeerAuthMode};
use super::world::World;
use crate::sim::check::Invariant;

/// TLS's content type of a handshake record: the first byte of a ClientHello.
const TLS_HANDSHAKE: u8 = 0x16;
const REQ_HEADER: &[u8] = b"x-sim-req:";

/// One TCP connection between a caller (or its sidecar) and a service's inbound sidecar.
pub(crate) struct Link {
    pub caller: usize,
    pub service: usize,
    /// The outbound sidecar's end; `None` for a caller outside the mesh.
    pub out: Option<(usize, ConnId)>,
    /// The outside caller's request this connection carries.
    pub req: Option<usize>,
    /// The inbound sidecar's end, once accepted.
    pub inb: Option<ConnId>,
    /// The certificates each end's sidecar held when it opened / accepted the connection.
    pub client_cert: Option<usize>,
    pub server_cert: Option<usize>,
    pub accepted_mode: Option<PeerAuthMode>,
    /// The roots each end's bundle held when it opened / accepted the connection (a root
    /// rotation changes them: [`super::rotation`]); 0 for an end without a sidecar.
    pub client_roots: Roots,
    pub server_roots: Roots,
    /// When the server's first bytes reached the client.
    first_s2c: Option<Instant>,
    /// When the client's first bytes after that reached the server.
    server_verify_lb: Option<Instant>,
    /// Whether the client's first byte was not a TLS handshake record.
    plaintext: Option<bool>,
    scan: Vec<u8>,
    /// Requests seen crossing in plaintext.
    pub carried: Vec<usize>,
    /// When the inbound sidecar's end went away (its engine closed it or heard the close),
    /// or the connect failed: from then on nothing it carried can reach the workload. The
    /// client's own close does not count, since bytes it sent before still arrive.
    pub closed_at: Option<Instant>,
    pub c2s_last: Instant,
    pub s2c_last: Instant,
}

impl Link {
    pub fn new(
        caller: usize,
        service: usize,
        opened: Instant,
        out: Option<(usize, ConnId)>,
        req: Option<usize>,
        client_cert: Option<usize>,
    ) -> Link {
        Link {
            caller,
            service,
            out,
            req,
            inb: None,
            client_cert,
            server_cert: None,
            accepted_mode: None,
            client_roots: 0,
            server_roots: 0,
            first_s2c: None,
            server_verify_lb: None,
            plaintext: None,
            scan: Vec::new(),
            carried: Vec::new(),
            closed_at: None,
            c2s_last: opened,
            s2c_last: opened,
        }
    }

    /// Client bytes entering the network: is this plaintext, and which requests cross in it.
    pub fn observe_client_bytes(&mut self, data: &[u8]) {
        let Some(&first) = data.first() else {
            return;
        };
        if *self.plaintext.get_or_insert(first != TLS_HANDSHAKE) {
            self.scan.extend_from_slice(data);
            while let Some(at) = find(&self.scan, REQ_HEADER) {
                let rest = &self.scan[at + REQ_HEADER.len()..];
                let Some(end) = find(rest, b"\r\n") else {
                    break;
                };
                let id = std::str::from_utf8(&rest[..end])
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok());
                self.carried.extend(id);
                let consumed = at + REQ_HEADER.len() + end;
                self.scan.drain(..consumed);
            }
            let keep = self.scan.len().saturating_sub(64);
            self.scan.drain(..keep);
        }
    }

    pub fn note_s2c(&mut self, now: Instant) {
        self.first_s2c.get_or_insert(now);
    }

    pub fn note_c2s(&mut self, now: Instant) {
        if self.first_s2c.is_some() && self.server_verify_lb.is_none() {
            self.server_verify_lb = Some(now);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// UNIX seconds at a simulated instant, as the engine's clock tells rustls.
fn unix_at(t: Instant) -> u64 {
    UNIX_BASE.as_secs() + t.as_nanos() / 1_000_000_000
}

/// A caller's request and what became of it.
pub(crate) struct Req {
    pub caller: usize,
    pub index: usize,
    pub started: Instant,
    pub response: Vec<u8>,
    /// An outside caller's bytes, sent once connected.
    pub pending: Option<Bytes>,
    /// An outside caller's connection for it.
    pub link: Option<usize>,
    pub done: bool,
}

impl Req {
    pub fn new(caller: usize, index: usize) -> Req {
        Req {
            caller,
            index,
            started: Instant::ZERO,
            response: Vec::new(),
            pending: None,
            link: None,
            done: false,
        }
    }
}

/// What a workload read of one request head.
pub(crate) struct Seen {
    pub req: Option<usize>,
    pub method: String,
    pub path: String,
    /// Every `x-forwarded-client-cert` value, joined with `,`.
    pub xfcc: Option<String>,
    pub content_length: usize,
}

impl Seen {
    pub fn of(head: &httparse::Request<'_, '_>) -> Seen {
        let mut seen = Seen {
            req: None,
            method: head.method.unwrap_or("").to_string(),
            path: head.path.unwrap_or("").to_string(),
            xfcc: None,
            content_length: 0,
        };
        for h in head.headers.iter() {
            let value = String::from_utf8_lossy(h.value);
            if h.name.eq_ignore_ascii_case("x-sim-req") {
                seen.req = value.trim().parse().ok();
            } else if h.name.eq_ignore_ascii_case("x-forwarded-client-cert") {
                match &mut seen.xfcc {
                    Some(v) => {
                        v.push(',');
                        v.push_str(&value);
                    }
                    None => seen.xfcc = Some(value.into_owned()),
                }
            } else if h.name.eq_ignore_ascii_case("content-length") {
                seen.content_length = value.trim().parse().unwrap_or(0);
            }
        }
        seen
    }
}

/// `key=value` of one XFCC element (`By=...;Hash=...;Subject="";URI=...`).
fn xfcc_field<'v>(element: &'v str, key: &str) -> Option<&'v str> {
    element.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then_some(v.trim())
    })
}

impl World<'_> {
    fn principal_of(&self, caller: usize) -> String {
        let c = &self.spec.callers[caller];
        format!(
            "{}/ns/{}/sa/{}",
            super::ca::TRUST_DOMAIN,
            c.namespace,
            c.account
        )
    }

    fn service_spiffe(&self, s: usize) -> String {
        let svc = &self.spec.services[s];
        format!(
            "spiffe://{}/ns/{}/sa/{}",
            super::ca::TRUST_DOMAIN,
            svc.namespace,
            svc.app
        )
    }

    /// Whether a link's handshake must have met an expired certificate.
    fn born_expired(&self, l: &Link) -> bool {
        let client = (l.client_cert.zip(l.server_verify_lb))
            .is_some_and(|(k, t)| unix_at(t) > self.certs[k].not_after + 1);
        let server = (l.server_cert.zip(l.first_s2c))
            .is_some_and(|(k, t)| unix_at(t) > self.certs[k].not_after + 1);
        client || server
    }

    /// Whether each end's certificate chains to a root the other end's bundle held when the
    /// connection began.
    fn roots_agree(&self, l: &Link) -> bool {
        let trusted = |cert: Option<usize>, roots: Roots| {
            cert.is_some_and(|k| self.certs[k].root & roots != 0)
        };
        trusted(l.client_cert, l.server_roots) && trusted(l.server_cert, l.client_roots)
    }

    /// [`Invariant::RootRotation`]: a handshake that sidecar `e` refused because the peer's
    /// certificate chains to no root of its bundle (webpki's `UnknownIssuer`) must have met a
    /// certificate whose root that bundle did not hold throughout the handshake: an
    /// impostor's, or, after a rotation's overlap, one still chained only to the old root.
    pub(crate) fn check_refusal(
        &mut self,
        e: usize,
        conn: ConnId,
        upstream: bool,
        error: &trellis_engine::transport::TransformError,
    ) {
        use trellis_engine::transport::TransformErrorKind;
        if error.kind != TransformErrorKind::PeerRefused || !error.detail.contains("unknown CA") {
            return;
        }
        let link = if upstream {
            (self.links.iter()).rposition(|l| l.out == Some((e, conn)))
        } else {
            (self.links.iter()).rposition(|l| l.service == e && l.inb == Some(conn))
        };
        let Some(l) = link.map(|i| &self.links[i]) else {
            return;
        };
        let (cert, roots) = match upstream {
            true => (l.server_cert, l.client_roots),
            false => (l.client_cert, l.server_roots),
        };
        let Some(k) = cert else {
            return;
        };
        // A bundle only ever gains the new root and then loses the old one, so a root held
        // both when the connection began and now was held whenever the handshake read it.
        let roots = roots & self.roots_of(e);
        let root = self.certs[k].root;
        if root & roots != 0 {
            let msg = format!(
                "sidecar {e} refused certificate {k} of {} (root {root:b}) as signed by an \
                 unknown CA, though its bundle held that root ({roots:b}): {}",
                self.certs[k].spiffe, error.detail
            );
            self.violation(Invariant::RootRotation, msg);
        } else if root != 0 {
            self.count("rotation-refused-untrusted-root");
        }
    }

    /// The workload of service `s` received a request.
    pub(crate) fn on_workload_request(&mut self, s: usize, seen: Seen) {
        let Some(req) = seen.req.filter(|r| *r < self.requests.len()) else {
            let msg = format!("workload of service {s} received a request no caller sent");
            self.violation(Invariant::Bytes, msg);
            return;
        };
        self.count("delivered");
        let c = self.requests[req].caller;
        let caller = &self.spec.callers[c];
        let q = &caller.requests[self.requests[req].index];
        if q.service != s || q.method != seen.method || q.path != seen.path {
            let msg = format!(
                "request {req} ({} {} for service {}) reached service {s} as {} {}",
                q.method, q.path, q.service, seen.method, seen.path
            );
            self.violation(Invariant::Routing, msg);
            return;
        }
        let mtls = caller.kind.is_mtls();
        if !mtls {
            let strict = (self.links.iter()).position(|l| {
                l.carried.contains(&req) && l.accepted_mode == Some(PeerAuthMode::Strict)
            });
            if let Some(link) = strict {
                let msg = format!(
                    "request {req} crossed in plaintext on connection {link}, which service {s} \
                     accepted under STRICT (caller {c}, {:?}), and reached the workload",
                    caller.kind
                );
                self.violation(Invariant::MtlsStrict, msg);
            }
            if let Some(xfcc) = &seen.xfcc {
                let msg = format!(
                    "request {req} came in plaintext from caller {c} but reached the workload \
                     with x-forwarded-client-cert {xfcc:?}"
                );
                self.violation(Invariant::PeerIdentity, msg);
            }
        } else if caller.kind == CallerKind::Impostor {
            let msg = format!(
                "request {req} from an impostor (a certificate for {} signed outside the trust                  bundle) was accepted by service {s} and reached the workload with                  x-forwarded-client-cert {:?}",
                self.principal_of(0),
                seen.xfcc
            );
            self.violation(Invariant::PeerIdentity, msg);
            return;
        } else {
            self.check_peer(req, c, s, seen.xfcc.as_deref());
        }
        let unix_now = unix_at(self.now);
        let jwt_on = self.jwt.as_ref().is_some_and(|j| j.on[s]);
        let token = q.token.as_ref().filter(|_| jwt_on);
        if let Some(t) = token.filter(|t| !t.valid_at(unix_now)) {
            let msg = format!(
                "request {req} reached the workload of service {s}, whose RequestAuthentication \
                 is in force, with a token that fails verification at UNIX {unix_now}: {t:?}"
            );
            self.violation(Invariant::Authentication, msg);
            return;
        }
        let request_principal = token.map(super::jwt::TokenSpec::principal);
        let policies = self.policy_gens.last().map(|g| &g.1[..]).unwrap_or(&[]);
        let principal = mtls.then(|| self.principal_of(c));
        let svc = &self.spec.services[s];
        let target = Target {
            namespace: &svc.namespace,
            app: &svc.app,
        };
        let asked = Asked {
            method: &q.method,
            path: &q.path,
            principal: principal.as_deref(),
            request_principal: request_principal.as_deref(),
        };
        if !reference_allows(policies, &target, &asked) {
            let msg = format!(
                "request {req} ({} {} from {}) reached the workload of {} although the \
                 policies deny it",
                q.method,
                q.path,
                principal.as_deref().unwrap_or("a plaintext peer"),
                svc.app
            );
            self.violation(Invariant::Authorization, msg);
        }
    }

    /// A request over mTLS: the identity the workload is told, and the certificate behind it.
    fn check_peer(&mut self, req: usize, c: usize, s: usize, xfcc: Option<&str>) {
        let want_uri = format!("spiffe://{}", self.principal_of(c));
        let want_by = self.service_spiffe(s);
        let last = xfcc.and_then(|v| v.rsplit(',').next());
        let (by, hash, uri) = match last {
            Some(e) => (
                xfcc_field(e, "By"),
                xfcc_field(e, "Hash"),
                xfcc_field(e, "URI"),
            ),
            None => (None, None, None),
        };
        if uri != Some(want_uri.as_str()) || by != Some(want_by.as_str()) {
            let msg = format!(
                "request {req} from caller {c} ({want_uri}) over mTLS reached {want_by} with \
                 x-forwarded-client-cert {xfcc:?}"
            );
            self.violation(Invariant::PeerIdentity, msg);
            return;
        }
        let cert = (0..self.certs.len()).find(|&k| {
            self.certs[k].spiffe == want_uri && Some(self.certs[k].hash.as_str()) == hash
        });
        let Some(cert) = cert else {
            let msg = format!(
                "request {req}: certificate hash {hash:?} is none the CA issued to {want_uri}"
            );
            self.violation(Invariant::PeerIdentity, msg);
            return;
        };
        let now = self.now;
        let candidates: Vec<&Link> = (self.links.iter())
            .filter(|l| l.caller == c && l.service == s && l.client_cert == Some(cert))
            .filter(|l| l.server_verify_lb.is_some() && l.closed_at.is_none_or(|t| t >= now))
            .collect();
        if candidates.is_empty() {
            let msg = format!(
                "request {req} arrived with {want_uri}'s certificate {cert} but no open \
                 connection of that caller to service {s} presented it"
            );
            self.violation(Invariant::PeerIdentity, msg);
        } else if candidates.iter().all(|l| !self.roots_agree(l)) {
            let l = candidates[0];
            let msg = format!(
                "request {req} from {want_uri} reached {want_by} over a handshake where a \
                 certificate chained only to a root the other end did not trust (client cert \
                 root {:b}, server's bundle {:b}; server cert root {:?}, client's bundle {:b})",
                self.certs[cert].root,
                l.server_roots,
                l.server_cert.map(|k| self.certs[k].root),
                l.client_roots,
            );
            self.violation(Invariant::RootRotation, msg);
        } else if candidates.iter().all(|l| self.born_expired(l)) {
            let l = candidates[0];
            let msg = format!(
                "request {req} from {want_uri} reached {want_by} over a handshake that met an \
                 expired certificate (client cert valid until {}, server cert until {:?}; \
                 client's second flight reached the server at UNIX {:?})",
                self.certs[cert].not_after,
                l.server_cert.map(|k| self.certs[k].not_after),
                l.server_verify_lb.map(unix_at),
            );
            self.violation(Invariant::CertExpiry, msg);
        }
    }

    /// A caller's request ended (its connection closed): classify, and hold a 403 from the
    /// RBAC filter to the reference.
    pub(crate) fn finish(&mut self, req: usize, outcome: &str) {
        if self.requests[req].done {
            return;
        }
        self.requests[req].done = true;
        let response = std::mem::take(&mut self.requests[req].response);
        let status = response
            .strip_prefix(b"HTTP/1.1 ")
            .and_then(|r| r.get(..3))
            .and_then(|s| std::str::from_utf8(s).ok())
            .map(str::to_string);
        let label = match (&status, outcome) {
            (Some(s), _) => s.clone(),
            (None, "") => "no-response".to_string(),
            (None, o) => o.to_string(),
        };
        self.trace.bytes(label.as_bytes());
        self.count(&label);
        if self.spec.callers[self.requests[req].caller].kind == CallerKind::ExternalTls {
            self.check_external_tls(req, &response);
            return;
        }
        if status.as_deref() == Some("401") {
            self.check_unauthenticated(req);
            return;
        }
        let denied = status.as_deref() == Some("403")
            && find(&response, trellis_engine::authz::DENIED_BODY.as_bytes()).is_some();
        if !denied {
            return;
        }
        let c = self.requests[req].caller;
        let caller = &self.spec.callers[c];
        let q = &caller.requests[self.requests[req].index];
        let svc = &self.spec.services[q.service];
        if caller.kind == CallerKind::Impostor {
            let msg = format!(
                "request {req} from an impostor was answered 403 RBAC by {}: its handshake \
                 was accepted",
                svc.app
            );
            self.violation(Invariant::PeerIdentity, msg);
            return;
        }
        let principal = caller.kind.is_mtls().then(|| self.principal_of(c));
        let target = Target {
            namespace: &svc.namespace,
            app: &svc.app,
        };
        let started = self.requests[req].started;
        // The request principal it may have had: none, or its token's if that verified when
        // the request started (and so at any instant before).
        let verified = (q.token.as_ref())
            .filter(|t| t.valid_at(unix_at(started)))
            .filter(|_| {
                (self.jwt.as_ref()).is_some_and(|j| j.on_during(q.service, started, self.now))
            })
            .map(super::jwt::TokenSpec::principal);
        let asks: Vec<Asked<'_>> = [None, verified.as_deref()]
            .into_iter()
            .map(|request_principal| Asked {
                method: &q.method,
                path: &q.path,
                principal: principal.as_deref(),
                request_principal,
            })
            .collect();
        let gens = &self.policy_gens;
        let in_force = (0..gens.len()).filter(|&i| {
            let until = gens.get(i + 1).map_or(Instant::FAR_FUTURE, |g| g.0);
            gens[i].0 <= self.now && until > started
        });
        let mut in_force = in_force.peekable();
        let denies_somewhere = in_force.peek().is_none()
            || in_force.any(|i| {
                asks.iter()
                    .any(|a| !reference_allows(&gens[i].1, &target, a))
            });
        if !denies_somewhere {
            let msg = format!(
                "request {req} ({} {} from {}) to {} was answered 403 RBAC although the \
                 policies allow it",
                q.method,
                q.path,
                principal.as_deref().unwrap_or("a plaintext peer"),
                svc.app
            );
            self.violation(Invariant::Authorization, msg);
        }
    }

    /// A `401` from the inbound sidecar's JWT filter: the request's token must fail, at a
    /// service whose RequestAuthentication was in force at some instant while it was in
    /// flight (a token that fails at its end failed then too: expiry only comes later).
    fn check_unauthenticated(&mut self, req: usize) {
        let (c, i, started) = (
            self.requests[req].caller,
            self.requests[req].index,
            self.requests[req].started,
        );
        let q = &self.spec.callers[c].requests[i];
        let unix_now = unix_at(self.now);
        let on = (self.jwt.as_ref()).is_some_and(|j| j.on_during(q.service, started, self.now));
        let fails = q.token.as_ref().is_some_and(|t| !t.valid_at(unix_now));
        if !(on && fails) {
            let msg = format!(
                "request {req} to service {} was answered 401 (RequestAuthentication in force \
                 while in flight: {on}; token: {:?}, valid at UNIX {unix_now}: {})",
                q.service,
                q.token,
                q.token.as_ref().is_some_and(|t| t.valid_at(unix_now))
            );
            self.violation(Invariant::Authentication, msg);
        }
    }
}
