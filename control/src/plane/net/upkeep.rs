//! The control plane's own certificates kept current: its serving certificates (the push
//! channel's, the webhook's) re-issued at half their life, root rotations applied, and the
//! trust bundle published when it changes (an overlap ends), with the push channel's
//! client-certificate roots following it.
//!
//! istiod renews its own DNS certificate the same way (pilot/pkg/bootstrap/istio_ca.go and
//! `RotateCert`/`watchRootCertAndGenKeyCert` in pilot/pkg/bootstrap/certcontroller.go): a new
//! certificate at the grace period, swapped in for new handshakes only. Time is the wall clock
//! here (certificates are checked against it); the choices are [`crate::ca::RotatingCa`]'s.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use super::issuer::Issuer;
use super::reload::{ReloadableCert, ReloadableRoots};
use super::tls::TlsError;
use crate::ca::{renewal_due, CaError, CertificateAuthority};

/// Even with nothing due, look again this often (the wall clock may have jumped).
const LONGEST_SLEEP: Duration = Duration::from_secs(60);
/// After a failed renewal, try again this soon.
const RETRY: Duration = Duration::from_secs(5);

/// One serving certificate, kept current.
pub struct Serving {
    /// For the reports: `push channel`, `webhook`.
    pub what: &'static str,
    names: Vec<String>,
    ttl: Duration,
    cert: Arc<ReloadableCert>,
    renew_at: SystemTime,
    /// The root it chains to: when the CA's serving root moves on, it is re-issued.
    root: String,
}

/// Why a serving certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl Serving {
    /// The first certificate for `names` from `issuer`, valid `ttl`.
    pub fn issue(
        what: &'static str,
        issuer: &Issuer,
        names: Vec<String>,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Serving, ServingError> {
        let files = issuer.issue_serving(&names, now, ttl)?;
        let cert = ReloadableCert::new(&files.cert_chain, &files.key)?;
        Ok(Serving {
            what,
            names,
            ttl,
            cert,
            renew_at: renewal_due(now, now + ttl),
            root: files.root_cert,
        })
    }

    /// What rustls presents (for [`super::reload::reloadable_server_config`]).
    pub fn cert(&self) -> Arc<ReloadableCert> {
        self.cert.clone()
    }

    fn renew(&mut self, issuer: &Issuer, now: SystemTime) -> Result<(), ServingError> {
        let files = issuer.issue_serving(&self.names, now, self.ttl)?;
        self.cert.replace(&files.cert_chain, &files.key)?;
        self.renew_at = renewal_due(now, now + self.ttl);
        self.root = files.root_cert;
        Ok(())
    }
}

/// A rotation asked for: sign with this CA, trusting the old roots for the overlap.
pub struct Rotation {
    pub ca: CertificateAuthority,
    pub overlap: Duration,
}

/// What the upkeep did.
#[derive(Debug)]
pub enum UpkeepReport {
    Renewed {
        what: &'static str,
        renew_in: Duration,
    },
    RenewFailed {
        what: &'static str,
        error: String,
    },
    Rotated {
        overlap: Duration,
    },
    RotationRefused(CaError),
    /// The roots trusted now (how many certificates).
    BundleChanged {
        roots: usize,
    },
}

/// Keep `serving` current and apply `rotations`, until `rotations` closes (then the
/// certificates are still renewed, forever). `roots`: the push channel's client check.
pub async fn upkeep(
    issuer: Arc<Issuer>,
    mut serving: Vec<Serving>,
    roots: Option<Arc<ReloadableRoots>>,
    mut rotations: mpsc::Receiver<Rotation>,
    mut report: impl FnMut(UpkeepReport),
) {
    let mut bundle = issuer.bundle();
    let mut rotations_open = true;
    loop {
        let now = SystemTime::now();
        let next_change = issuer.refresh(now);
        if bundle.has_changed().unwrap_or(false) {
            let pem = bundle.borrow_and_update().clone();
            if let Some(roots) = &roots {
                if let Err(e) = roots.replace(&pem) {
                    report(UpkeepReport::RenewFailed {
                        what: "client certificate roots",
                        error: e.to_string(),
                    });
                }
            }
            report(UpkeepReport::BundleChanged {
                roots: pem.matches("BEGIN CERTIFICATE").count(),
            });
        }
        let serving_root = issuer.serving_root(now);
        let mut wake = now + LONGEST_SLEEP;
        for cert in &mut serving {
            if now >= cert.renew_at || cert.root != serving_root {
                match cert.renew(&issuer, now) {
                    Ok(()) => report(UpkeepReport::Renewed {
                        what: cert.what,
                        renew_in: cert.renew_at.duration_since(now).unwrap_or_default(),
                    }),
                    Err(e) => {
                        report(UpkeepReport::RenewFailed {
                            what: cert.what,
                            error: e.to_string(),
                        });
                        wake = wake.min(now + RETRY);
                    }
                }
            }
            wake = wake.min(cert.renew_at.max(now));
        }
        if let Some(change) = next_change {
            wake = wake.min(change);
        }
        let sleep = wake.duration_since(now).unwrap_or_default();
        tokio::select! {
            rotation = rotations.recv(), if rotations_open => match rotation {
                Some(Rotation { ca, overlap }) => match issuer.rotate(ca, SystemTime::now(), overlap) {
                    Ok(()) => report(UpkeepReport::Rotated { overlap }),
                    Err(e) => report(UpkeepReport::RotationRefused(e)),
                },
                None => rotations_open = false,
            },
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}
