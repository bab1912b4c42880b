//! The sidecar's transport: [`run_client`] keeps one connection to the control plane and
//! answers its pushes through a [`push::Client`], which decides everything (what to announce,
//! ACK, NACK or resync).
//!
//! Each connection opens with the client's hello, which says what it holds, so the server
//! resumes from there and resends nothing current. When a connection ends (closed, silent past
//! the keepalive timeout, a connect that fails or does not finish in time) the client waits a
//! [`Backoff`] delay and connects again; the delay starts over once a connection is made.

use std::convert::Infallible;
use std::time::Duration;

use tokio::time::timeout;

use super::backoff::{Backoff, BackoffConfig};
use super::link::{Link, LinkError, Wake};
use super::{Connector, Keepalive};
use crate::plane::document::SidecarDocument;
use crate::plane::push::wire::{encode, FrameError, Held, Version};
use crate::plane::push::{Client, ClientMessage, ServerMessage};

/// The client's settings.
#[derive(Clone, Copy, Debug)]
pub struct ClientConfig {
    pub keepalive: Keepalive,
    /// A connect that has not finished by then is abandoned (a partition can swallow it).
    pub connect_timeout: Duration,
    pub write_timeout: Duration,
    pub backoff: BackoffConfig,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            keepalive: Keepalive::default(),
            connect_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            backoff: BackoffConfig::default(),
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
    loop {
        let ended = session(
            &mut connector,
            &mut client,
            &config,
            &mut backoff,
            &mut apply,
            &mut report,
        )
        .await;
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
    client: &mut Client,
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
    match answer_pushes(&mut link, client, apply, report).await {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

async fn answer_pushes<S: tokio::io::AsyncRead + tokio::io::AsyncWrite>(
    link: &mut Link<S>,
    client: &mut Client,
    apply: &mut impl FnMut(Version, &SidecarDocument) -> Result<(), String>,
    report: &mut impl FnMut(ClientReport),
) -> Result<Infallible, SessionError> {
    link.send(&encode(&client.hello())?).await?;
    report(ClientReport::Connected);
    loop {
        match link.next::<ServerMessage>().await? {
            Wake::Message(push) => {
                let answer = client.handle(push, &mut *apply);
                let frame = encode(&answer)?;
                report(ClientReport::Answered {
                    answer,
                    held: client.held().map(|(h, _)| *h),
                });
                link.send(&frame).await?;
            }
            Wake::KeepaliveDue => link.send_keepalive().await?,
        }
    }
}
