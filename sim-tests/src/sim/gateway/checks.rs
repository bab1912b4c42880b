//! The gateway world's checks: every request's fate against the reference
//! ([`super::reference`]): refused where no server listens, closed where no filter chain or a
//! `MUTUAL` server's missing certificate says so, otherwise served through the chain the SNI
//! selects (the client accepts only that server's certificate) with the answer the route
//! configuration gives: the backend (which saw the request once, with its path and `Host`),
//! 404, or the redirect to HTTPS.

use trellis_engine::proxy::{RequestLog, ResponseFlag};

use std::net::IpAddr;

use super::authz::CLIENT_IP;
use super::reference::{Answer, Expected};
use super::spec::PATHS;
use super::world::World;
use super::{edge, jwt};
use crate::sim::check::Invariant;

impl World<'_> {
    pub(crate) fn check(&mut self) {
        for r in 0..self.reqs.len() {
            self.check_request(r);
        }
    }

    fn check_request(&mut self, r: usize) {
        let req = self.spec.requests[r].clone();
        let state = &self.reqs[r];
        let Some(expected) = state.expected.clone() else {
            return;
        };
        let what = format!(
            "request {r} (port {}, SNI {:?}, ALPN {:?}, cert {:?}, Host {:?}, path {})",
            req.port,
            req.sni_name(),
            req.alpn(),
            req.cert,
            req.host_field(),
            PATHS[req.path]
        );
        let relayed: Vec<(usize, u16, usize)> = (state.relayed.iter())
            .map(|(k, p, b)| (*k, *p, b.len()))
            .collect();
        let seen = format!(
            "refused {}, TLS error {:?}, response {:?}, backends saw {:?}, relayed (backend, port, bytes) {relayed:?} of a first flight of {}",
            state.refused, state.tls_error, state.response, state.reached, state.first_flight.len()
        );
        let mut problems: Vec<(Invariant, String)> = Vec::new();
        let unanswered = state.response.is_none() && state.reached.is_empty();
        match &expected {
            Expected::NoListener => {
                if !state.refused {
                    problems.push((
                        Invariant::Routing,
                        "no server has the port, yet it listens".into(),
                    ));
                }
            }
            Expected::NoChain => {
                if !unanswered {
                    problems.push((
                        Invariant::GatewayTls,
                        "no server's hosts name the SNI (and none is `*`), yet it was served"
                            .into(),
                    ));
                }
            }
            Expected::Passthrough(k) => {
                let want = vec![(*k, 8443, state.first_flight.to_vec())];
                if state.relayed != want || state.response.is_some() || !state.reached.is_empty() {
                    problems.push((Invariant::Routing, format!("a passthrough chain should relay the ClientHello to backend {k}'s TLS port, untouched")));
                }
            }
            Expected::TcpRelay { server, backend } => {
                let want = vec![(*backend, 9000, state.plain_sent.clone())];
                if let Some(e) = &state.tls_error {
                    problems.push((
                        Invariant::GatewayTls,
                        format!("expected server {server}'s chain; the handshake failed: {e}"),
                    ));
                } else if state.relayed != want
                    || state.response.is_some()
                    || !state.reached.is_empty()
                {
                    problems.push((Invariant::Routing, format!("server {server} should relay the plaintext to backend {backend}'s TCP port")));
                }
            }
            Expected::AutoRelay { backend, port } => {
                let want = vec![(*backend, *port, state.first_flight.to_vec())];
                if state.relayed != want || state.response.is_some() || !state.reached.is_empty() {
                    problems.push((Invariant::Routing, format!("an AUTO_PASSTHROUGH chain should relay the ClientHello to backend {backend}'s port {port}, untouched")));
                }
            }
            Expected::AutoNoEndpoints => {
                if !unanswered || !state.closed {
                    problems.push((
                        Invariant::Routing,
                        "an AUTO_PASSTHROUGH chain to a cluster without endpoints should close the connection".into(),
                    ));
                }
            }
            Expected::TcpDenied { server } => {
                if let Some(e) = &state.tls_error {
                    problems.push((
                        Invariant::GatewayTls,
                        format!("expected server {server}'s chain; the handshake failed: {e}"),
                    ));
                } else if !unanswered || state.relayed.iter().any(|(_, _, b)| !b.is_empty()) {
                    problems.push((Invariant::Authorization, format!("the gateway's AuthorizationPolicies deny this connection on server {server}'s TCP chain, yet bytes were relayed")));
                }
            }
            Expected::PassthroughDenied => {
                if !unanswered || state.relayed.iter().any(|(_, _, b)| !b.is_empty()) {
                    problems.push((Invariant::Authorization, "the gateway's AuthorizationPolicies deny this connection on its passthrough chain, yet bytes were relayed".into()));
                }
            }
            Expected::ClientRejects(s) => {
                if !unanswered || state.tls_error.is_none() {
                    problems.push((Invariant::GatewayTls, format!("a sidecar's mTLS should refuse server {s}'s certificate, no mesh identity")));
                }
            }
            Expected::ClientRefused(s) => {
                if !unanswered {
                    problems.push((Invariant::GatewayTls, format!("server {s} asks for a certificate the client's ({:?}) does not satisfy, yet it was served", req.cert)));
                }
            }
            Expected::Served { chain, answer } => {
                if state.refused {
                    problems.push((
                        Invariant::Routing,
                        "a server has the port, yet nothing listens".into(),
                    ));
                } else if let (Some(s), Some(e)) = (chain, &state.tls_error) {
                    problems.push((
                        Invariant::GatewayTls,
                        format!("expected server {s}'s chain; the handshake failed: {e}"),
                    ));
                } else {
                    problems.extend(self.check_answer(r, answer));
                    problems.extend(self.check_log(r, answer));
                }
            }
        }
        let relays = matches!(
            expected,
            Expected::Passthrough(_) | Expected::TcpRelay { .. } | Expected::AutoRelay { .. }
        );
        // Envoy's tcp_proxy connects upstream as the connection is accepted (`onNewConnection`,
        // the default IMMEDIATE connect mode), before the handshake that refuses the client
        // ends: a refused client of a TCP chain may open its backend's connection, never send
        // it a byte.
        let refused_tcp = matches!(expected, Expected::ClientRefused(s) | Expected::ClientRejects(s)
            if self.spec.servers[s].mode.relays_tcp())
            || matches!(
                expected,
                Expected::TcpDenied { .. } | Expected::PassthroughDenied
            );
        let sent_nothing = state.relayed.iter().all(|(_, _, bytes)| bytes.is_empty());
        let may_open_backend = relays || (refused_tcp && sent_nothing);
        if !may_open_backend && !state.relayed.is_empty() {
            problems.push((
                Invariant::Routing,
                "relayed to a backend's TLS or TCP port".to_string(),
            ));
        }
        let outcome = match &expected {
            Expected::Passthrough(_) => "passthrough",
            Expected::TcpRelay { .. } => "tcp-relay",
            Expected::AutoRelay { .. } => "auto-relay",
            Expected::AutoNoEndpoints => "auto-no-endpoints",
            Expected::ClientRejects(_) => "client-rejects",
            Expected::TcpDenied { .. } => "tcp-denied",
            Expected::PassthroughDenied => "passthrough-denied",
            Expected::NoListener => "no-listener",
            Expected::NoChain => "no-chain",
            Expected::ClientRefused(_) => "client-refused",
            Expected::Served {
                answer: Answer::Backend(_),
                ..
            } => "backend",
            Expected::Served {
                answer: Answer::NotFound,
                ..
            } => "404",
            Expected::Served {
                answer: Answer::Redirect(_),
                ..
            } => "redirect",
            Expected::Served {
                answer: Answer::Denied,
                ..
            } => "denied-403",
            Expected::Served {
                answer: Answer::JwtRejected(401),
                ..
            } => "jwt-401",
            Expected::Served {
                answer: Answer::JwtRejected(_),
                ..
            } => "jwt-403-audience",
        };
        self.count(outcome);
        for (invariant, problem) in problems {
            let msg = format!("{what}: {problem}; expected {expected:?}; {seen}");
            self.violation(invariant, msg);
        }
    }

    /// The gateway logged the request once, as Envoy's access log would: its status, `NR`
    /// for a 404 no route gave, the backend's cluster for a forwarded one.
    fn check_log(&self, r: usize, answer: &Answer) -> Vec<(Invariant, String)> {
        let Some(down) = self.reqs[r].down else {
            return Vec::new();
        };
        let records: Vec<&RequestLog> = (self.logs.iter())
            .filter(|l| l.downstream == down)
            .collect();
        let [record] = records[..] else {
            return vec![(
                Invariant::AccessLog,
                format!("{} access-log records", records.len()),
            )];
        };
        let no_route = record.flags.contains(&ResponseFlag::NoRouteFound);
        let (status, cluster) = match answer {
            Answer::Backend(k) => (200, Some(format!("outbound|8080||svc-{k}.backend.test"))),
            Answer::NotFound => (404, None),
            Answer::Redirect(_) => (301, None),
            // Envoy resolves the route before its filters, so the record may name a cluster.
            Answer::Denied => (403, None),
            Answer::JwtRejected(status) => (*status, None),
        };
        let good = record.status == status
            && no_route == matches!(answer, Answer::NotFound)
            && (cluster.is_none() || record.cluster.as_deref() == cluster.as_deref());
        if good {
            Vec::new()
        } else {
            let msg = format!(
                "logged {} {} cluster {:?}, expected {status} (NR: {}) cluster {cluster:?}",
                record.status,
                record.flags_string(),
                record.cluster,
                matches!(answer, Answer::NotFound)
            );
            vec![(Invariant::AccessLog, msg)]
        }
    }

    fn check_answer(&self, r: usize, answer: &Answer) -> Vec<(Invariant, String)> {
        let req = &self.spec.requests[r];
        let state = &self.reqs[r];
        let mut out = Vec::new();
        let Some(response) = &state.response else {
            out.push((Invariant::EndsOnce, "no response".to_string()));
            return out;
        };
        let jwt_status = match answer {
            Answer::JwtRejected(status) => Some(*status),
            _ => None,
        };
        if response.status == 403 && *answer != Answer::Denied && jwt_status != Some(403) {
            out.push((
                Invariant::Authorization,
                "answered 403 where the gateway's AuthorizationPolicies allow".to_string(),
            ));
            return out;
        }
        if response.status == 401 && jwt_status != Some(401) {
            out.push((
                Invariant::Authorization,
                "answered 401 where the JWT filter lets the request through".to_string(),
            ));
            return out;
        }
        match answer {
            Answer::Backend(k) => {
                let keys = &self.certs.jwt;
                let authn = jwt::authenticate(jwt::applied(self.spec, req), req.token.as_ref());
                let want = (*k, edge::target_after(req, keys, &authn), req.host_field());
                if response.status != 200 || response.backend != Some(*k) {
                    out.push((
                        Invariant::Routing,
                        format!(
                            "answered {} by backend {:?}",
                            response.status, response.backend
                        ),
                    ));
                }
                let seen: Vec<(usize, String, String)> = (state.reached.iter())
                    .map(|(b, h)| (*b, h.path.clone(), h.host.clone()))
                    .collect();
                if seen != [want.clone()] {
                    out.push((
                        Invariant::Routing,
                        format!("backends should have seen exactly {want:?}"),
                    ));
                } else {
                    let peer = IpAddr::from(CLIENT_IP);
                    let fields = edge::expected_fields(self.spec, req, peer, keys, &authn);
                    let got = edge::seen_fields(&state.reached[0].1.fields);
                    if got != fields {
                        out.push((
                            Invariant::Routing,
                            format!("the backend's edge fields were {got:?}, expected {fields:?}"),
                        ));
                    }
                }
            }
            Answer::JwtRejected(status) => {
                if response.status != *status || !state.reached.is_empty() {
                    out.push((
                        Invariant::Authorization,
                        format!(
                            "answered {} where the JWT filter refuses the token with {status}",
                            response.status
                        ),
                    ));
                }
            }
            Answer::NotFound => {
                if response.status != 404 || !state.reached.is_empty() {
                    out.push((Invariant::Routing, format!("answered {}", response.status)));
                }
            }
            Answer::Denied => {
                if response.status != 403 || !state.reached.is_empty() {
                    out.push((
                        Invariant::Authorization,
                        format!(
                            "answered {} where the gateway's RBAC denies",
                            response.status
                        ),
                    ));
                }
            }
            Answer::Redirect(location) => {
                if response.status != 301
                    || response.location.as_deref() != Some(location.as_str())
                    || !state.reached.is_empty()
                {
                    out.push((
                        Invariant::Routing,
                        format!("answered {} to {:?}", response.status, response.location),
                    ));
                }
            }
        }
        out
    }
}
