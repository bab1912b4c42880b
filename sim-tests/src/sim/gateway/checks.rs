//! The gateway world's checks: every request's fate against the reference
//! ([`super::reference`]): refused where no server listens, closed where no filter chain or a
//! `MUTUAL` server's missing certificate says so, otherwise served through the chain the SNI
//! selects (the client accepts only that server's certificate) with the answer the route
//! configuration gives: the backend (which saw the request once, with its path and `Host`),
//! 404, or the redirect to HTTPS.

use super::reference::{Answer, Expected};
use super::spec::PATHS;
use super::world::World;
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
            "request {r} (port {}, SNI {:?}, cert {}, Host {:?}, path {})",
            req.port,
            req.sni.map(|n| super::spec::NAMES[n]),
            req.cert,
            req.host_field(),
            PATHS[req.path]
        );
        let seen = format!(
            "refused {}, TLS error {:?}, response {:?}, backends saw {:?}",
            state.refused, state.tls_error, state.response, state.reached
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
            Expected::CertRequired(s) => {
                if !unanswered {
                    problems.push((Invariant::GatewayTls, format!("server {s} is MUTUAL and the client had no certificate, yet it was served")));
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
                }
            }
        }
        let outcome = match &expected {
            Expected::NoListener => "no-listener",
            Expected::NoChain => "no-chain",
            Expected::CertRequired(_) => "cert-required",
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
        };
        self.count(outcome);
        for (invariant, problem) in problems {
            let msg = format!("{what}: {problem}; expected {expected:?}; {seen}");
            self.violation(invariant, msg);
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
        match answer {
            Answer::Backend(k) => {
                let want = (*k, PATHS[req.path].to_string(), req.host_field());
                if response.status != 200 || response.backend != Some(*k) {
                    out.push((
                        Invariant::Routing,
                        format!(
                            "answered {} by backend {:?}",
                            response.status, response.backend
                        ),
                    ));
                }
                if state.reached != [want.clone()] {
                    out.push((
                        Invariant::Routing,
                        format!("backends should have seen exactly {want:?}"),
                    ));
                }
            }
            Answer::NotFound => {
                if response.status != 404 || !state.reached.is_empty() {
                    out.push((Invariant::Routing, format!("answered {}", response.status)));
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
