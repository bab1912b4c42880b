//! The sidecar's transport: [`run_client`] keeps one connection to the control plane and
//! answers its pushes through a [`push::Client`], which decides everything (what to announce,
//! ACK, NACK or resync).
//!
//! Each connection opens with the client's hello, which says what it holds, so the server
//! resumes from there and resends nothing current. When a connection ends (closed, silent past
//! the keepalive timeout, a connect that fails or does not finish in time) the client waits a
//! [`Backoff`] delay and connects again; the delay starts over once a connection is made.
//!
//! With [`ClientConfig::certificates`], the client also keeps the sidecar's certificate
//! (istio-agent's job): a new key and a CSR when it holds none and at half its life
//! ([`Renewal`]), each answer handed to the settings' `install`, refusals retried with a
//! doubling delay while the old certificate stays installed, and new roots installed when the
//! control plane pushes them. The certificate state outlives connections.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::{sleep_until, timeout};

use super::backoff::{Backoff, BackoffConfig};
use super::link::{Link, LinkError, Wake};
use super::{Connector, Keepalive};
use crate::plane::document::SidecarDocument;
use crate::plane::push::renewal::{HeldCertificate, Renewal};
use crate::plane::push::wire::{encode, FrameError, Held, Secret, ServerMessage, Version};
use crate::plane::push::{Client, ClientMessage};

/// The client's settings.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub keepalive: Keepalive,
    /// A connect that has not finished by then is abandoned (a partition can swallow it).
    pub connect_timeout: Duration,
    pub write_timeout: Duration,
    pub backoff: BackoffConfig,
    /// Get the sidecar's certificate from the control plane (`None`: it has its own files).
    pub certificates: Option<CertificateSettings>,
}

/// Reads the service-account token to send with a CSR (a projected token is rotated by the
/// kubelet, so it is read again each time).
pub type TokenSource = Arc<dyn Fn() -> Option<String> + Send + Sync>;
/// Installs a certificate (new, or with new roots); `Err` is reported and the request retried.
pub type Install = Arc<dyn Fn(&HeldCertificate) -> Result<(), String> + Send + Sync>;

/// Who the sidecar asks to be, and what to do with the answers.
#[derive(Clone)]
pub struct CertificateSettings {
    pub namespace: String,
    pub service_account: String,
    pub token: Option<TokenSource>,
    pub install: Install,
}

impl std::fmt::Debug for CertificateSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateSettings")
            .field("namespace", &self.namespace)
            .field("service_account", &self.service_account)
            .field("token", &self.token.is_some())
            .finish()
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            keepalive: Keepalive::default(),
            connect_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            backoff: BackoffConfig::default(),
            certificates: None,
        }
    }
}

impl ClientConfig {
    /// How long after the network heals a client is connected again at the latest, whatever
    /// it was doing when it broke: still on a connection it has not yet found dead (the
    /// keepalive timeout, then the first delay), or in a connect the partition swallowed (the
    /// connect timeout, then the longest delay). Add round trips and the server's debounce for
    /// the time to converge.
    pub fn reconnect_bound(&self) -> Duration {
        (self.keepalive.timeout + self.backoff.initial).max(self.connect_timeout + self.backoff.max)
    }
}

/// What the client reports.
#[derive(Debug)]
pub enum ClientReport {
    Connected,
    /// A push was answered; `held` is what the client holds after it.
    Answered {
        answer: ClientMessage,
        held: Option<Held>,
    },
    /// The connection (or the attempt) ended; the next attempt comes after `retry_in`.
    Disconnected {
        error: String,
        retry_in: Duration,
    },
    /// A CSR was sent.
    CertificateRequested,
    /// A certificate (or new roots for it) is installed.
    CertificateInstalled {
        not_after: SystemTime,
        renew_at: SystemTime,
    },
    /// The control plane refused the CSR (or the answer could not be installed); the next
    /// request comes after `retry_in`, and the certificate held (if any) stays.
    CertificateRefused {
        reason: String,
        retry_in: Duration,
    },
}

/// Why a session with the server ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    #[error("connect did not finish within {0:?}")]
    ConnectTimeout(Duration),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("cannot encode an answer: {0}")]
    Encode(#[from] FrameError),
}

/// Connect to the control plane for ever (never returns; ends when the future is dropped),
/// answering pushes with `apply` (as
/// [`Client::handle`] takes it). `seed` spreads the reconnects of different sidecars (their
/// node name's hash will do).
pub async fn run_client<C: Connector>(
    mut connector: C,
    mut client: Client,
    config: ClientConfig,
    seed: u64,
    mut apply: impl FnMut(Version, &SidecarDocument) -> Result<(), String>,
    mut report: impl FnMut(ClientReport),
) {
    let mut backoff = Backoff::new(config.backoff, seed);
    let mut renewal = Renewal::default();
    let clock = WallClock::start();
    loop {
        let ended = session(
            &mut connector,
            (&mut client, &mut renewal, &clock),
            &config,
            &mut backoff,
            &mut apply,
            &mut report,
        )
        .await;
        renewal.disconnected();
        let retry_in = backoff.delay();
        report(ClientReport::Disconnected {
            error: ended.to_string(),
            retry_in,
        });
        tokio::time::sleep(retry_in).await;
    }
}

/// One connection, until it ends.
async fn session<C: Connector>(
    connector: &mut C,
    state: (&mut Client, &mut Renewal, &WallClock),
    config: &ClientConfig,
    backoff: &mut Backoff,
    apply: &mut impl FnMut(Version, &SidecarDocument) -> Result<(), String>,
    report: &mut impl FnMut(ClientReport),
) -> SessionError {
    let stream = match timeout(config.connect_timeout, connector.connect()).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return SessionError::Connect(e),
        Err(_) => return SessionError::ConnectTimeout(config.connect_timeout),
    };
    backoff.reset();
    let mut link = Link::new(stream, config.keepalive, config.write_timeout);
    match answer_pushes(&mut link, state, config, apply, report).await {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

async fn answer_pushes<S: tokio::io::AsyncRead + tokio::io::AsyncWrite>(
    link: &mut Link<S>,
    (client, renewal, clock): (&mut Client, &mut Renewal, &WallClock),
    config: &ClientConfig,
    apply: &mut impl FnMut(Version, &SidecarDocument) -> Result<(), String>,
    report: &mut impl FnMut(ClientReport),
) -> Result<Infallible, SessionError> {
    link.send(&encode(&client.hello())?).await?;
    report(ClientReport::Connected);
    loop {
        let certificates = config.certificates.as_ref();
        if let Some(settings) = certificates {
            if renewal.due(clock.now()) {
                request_certificate(link, settings, renewal, clock, report).await?;
            }
        }
        let renew_at = certificates
            .and(renewal.next_request())
            .map(|t| clock.deadline(t));
        let wake = tokio::select! {
            biased;
            wake = link.next::<ServerMessage>() => wake?,
            _ = sleep_until(renew_at.unwrap_or_else(tokio::time::Instant::now)), if renew_at.is_some() => continue,
        };
        match wake {
            Wake::Message(push) if push.is_push() => {
                let answer = client.handle(push, &mut *apply);
                let frame = encode(&answer)?;
                report(ClientReport::Answered {
                    answer,
                    held: client.held().map(|(h, _)| *h),
                });
                link.send(&frame).await?;
            }
            Wake::Message(message) => {
                certificate_message(message, certificates, renewal, clock.now(), report)
            }
            Wake::KeepaliveDue => link.send_keepalive().await?,
        }
    }
}

/// A new key and its CSR, sent.
async fn request_certificate<S: tokio::io::AsyncRead + tokio::io::AsyncWrite>(
    link: &mut Link<S>,
    settings: &CertificateSettings,
    renewal: &mut Renewal,
    clock: &WallClock,
    report: &mut impl FnMut(ClientReport),
) -> Result<(), SessionError> {
    // ECDSA P-256, as istio-agent's keys.
    let made = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).and_then(|key| {
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key)?
            .pem()?;
        Ok((key.serialize_pem(), csr))
    });
    let (key, csr) = match made {
        Ok(made) => made,
        Err(e) => {
            let retry_in = renewal.refused(clock.now());
            report(ClientReport::CertificateRefused {
                reason: format!("cannot make a key and CSR: {e}"),
                retry_in,
            });
            return Ok(());
        }
    };
    let request = ClientMessage::CertificateRequest {
        csr,
        namespace: settings.namespace.clone(),
        service_account: settings.service_account.clone(),
        token: settings.token.as_ref().and_then(|read| read()).map(Secret),
    };
    link.send(&encode(&request)?).await?;
    renewal.requested(key);
    report(ClientReport::CertificateRequested);
    Ok(())
}

/// A certificate, a refusal or new roots.
fn certificate_message(
    message: ServerMessage,
    settings: Option<&CertificateSettings>,
    renewal: &mut Renewal,
    now: SystemTime,
    report: &mut impl FnMut(ClientReport),
) {
    let installed = match (message, settings) {
        (ServerMessage::CertificateRefused { reason }, _) => Err(reason),
        (_, None) => return,
        (
            ServerMessage::Certificate {
                chain,
                bundle,
                not_before,
                not_after,
            },
            Some(settings),
        ) => match renewal.certificate(now, chain, bundle, not_before, not_after) {
            Ok(held) => (settings.install)(held).map(|()| Some(held.not_after)),
            Err(e) => Err(e.to_string()),
        },
        (ServerMessage::TrustBundle { bundle }, Some(settings)) => match renewal.bundle(bundle) {
            Some(held) => (settings.install)(held).map(|()| Some(held.not_after)),
            None => Ok(None),
        },
        (ServerMessage::Full { .. } | ServerMessage::Delta { .. }, _) => return,
    };
    match installed {
        Ok(Some(not_after)) => report(ClientReport::CertificateInstalled {
            not_after,
            renew_at: renewal.next_request().unwrap_or(not_after),
        }),
        Ok(None) => {}
        Err(reason) => {
            let retry_in = renewal.refused(now);
            report(ClientReport::CertificateRefused { reason, retry_in });
        }
    }
}

/// Wall-clock time for certificates, advanced by tokio's clock from the wall time read once
/// at start: monotonic, and in step with the timers that wait for renewal (turmoil's simulated
/// clock in tests, so a renewal delay takes simulated time).
#[derive(Clone, Copy, Debug)]
struct WallClock {
    wall: SystemTime,
    at: tokio::time::Instant,
}

impl WallClock {
    fn start() -> Self {
        WallClock {
            wall: SystemTime::now(),
            at: tokio::time::Instant::now(),
        }
    }

    fn now(&self) -> SystemTime {
        self.wall + self.at.elapsed()
    }

    /// The tokio instant at which the clock reads `t` (now, if it is past).
    fn deadline(&self, t: SystemTime) -> tokio::time::Instant {
        let ahead = t.duration_since(self.now()).unwrap_or_default();
        tokio::time::Instant::now() + ahead
    }
}
