//! The control plane's transport: [`serve`] owns one [`push::Server`] and runs it on tokio.
//!
//! One task per connection reads frames (through a [`Link`]) and hands the messages to the
//! loop over a bounded queue; the loop hands them, the source's snapshots and the timers to the
//! state machine, and passes each frame it sends to its connection's task. The state machine
//! has at most one push in flight per sidecar, so a connection's queue of frames to write
//! needs room for one; a connection whose queue is still full is stuck and is dropped (it
//! reconnects and resumes). The source publishes snapshots on a `watch` channel: only the
//! newest matters, so nothing queues up behind a slow loop.
//!
//! With [`ServerConfig::tls`], each connection's task runs the TLS handshake before anything
//! else (so a slow handshake holds up no other sidecar) and reads the client certificate's
//! SPIFFE id. Certificate requests are answered by that task through [`Issuer`] (a
//! TokenReview may take a round trip to the API server; the loop never waits for it), and never
//! reach the document state machine.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::time::sleep_until;
use trellis_engine::Instant;

use super::issuer::{Issuer, Outcome};
use super::link::{Link, LinkError, Wake};
use super::tls::client_spiffe_id;
use super::{Clock, Keepalive, Listener};
use crate::plane::push::wire::{encode, ServerMessage};
use crate::plane::push::{ClientMessage, ConnId, Event, Input, PushConfig, Server};
use crate::plane::Snapshot;

/// The server's settings.
#[derive(Clone, Debug, Default)]
pub struct ServerConfig {
    pub push: PushConfig,
    pub keepalive: Keepalive,
    /// A sidecar that does not take a frame within this long is disconnected, so one stuck
    /// sidecar cannot stall the others. Also the bound on a TLS handshake.
    pub write_timeout: Duration,
    /// TLS on every connection (`None`: plaintext, `--insecure-plaintext`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The CA answering certificate requests (`None`: they are refused).
    pub issuer: Option<Arc<Issuer>>,
}

impl ServerConfig {
    pub fn new(push: PushConfig) -> Self {
        ServerConfig {
            push,
            keepalive: Keepalive::default(),
            write_timeout: Duration::from_secs(5),
            tls: None,
            issuer: None,
        }
    }
}

/// What the server reports, with the state machine's time.
#[derive(Debug)]
pub enum ServerReport {
    /// What the state machine reported (releases, ACKs, NACKs, protocol errors).
    Push(Event),
    Connected {
        conn: ConnId,
        peer: SocketAddr,
    },
    Disconnected {
        conn: ConnId,
        reason: String,
    },
    AcceptFailed(std::io::Error),
    /// The TLS handshake finished; `peer_identity` is the client certificate's SPIFFE id.
    Secured {
        conn: ConnId,
        peer_identity: Option<String>,
    },
    /// A certificate request was answered.
    Certificate {
        conn: ConnId,
        outcome: Outcome,
    },
}

/// Messages from the connections' tasks to the loop.
enum Note {
    Message(ConnId, ClientMessage),
    Closed(ConnId, LinkError),
    Secured(ConnId, Option<String>),
    Certificate(ConnId, Outcome),
}

/// How many messages the connections may have waiting for the loop before their readers wait.
const NOTE_QUEUE: usize = 1024;
/// Frames waiting to be written on one connection: the one push in flight and a spare.
const FRAME_QUEUE: usize = 2;
/// After a failed accept (out of file descriptors ...), wait this long before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Serve sidecars on `listener` with the snapshots published on `snapshots` (the current one
/// is taken at once, so a restarted server serves what its source holds). Never returns: it
/// serves until the future is dropped; a closed `snapshots` channel leaves the last snapshot
/// served.
pub async fn serve<L: Listener>(
    mut listener: L,
    config: ServerConfig,
    mut snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    mut report: impl FnMut(Instant, ServerReport),
) {
    let clock = Clock::start();
    let mut server = Server::new(config.push);
    let (notes_tx, mut notes) = mpsc::channel::<Note>(NOTE_QUEUE);
    let mut writers: BTreeMap<ConnId, mpsc::Sender<Vec<u8>>> = BTreeMap::new();
    let mut next_conn: ConnId = 1;
    let mut source_open = true;
    if let Some(snapshot) = snapshots.borrow_and_update().clone() {
        server.handle(clock.now(), Input::Snapshot(snapshot));
    }
    loop {
        let wake = server.poll_timeout().map(|t| clock.deadline(t));
        tokio::select! {
            // Biased: the same inputs are handled in the same order (turmoil runs replay).
            // Messages first, so a reconnecting sidecar's goodbye and hello keep their order.
            biased;
            Some(note) = notes.recv() => match note {
                Note::Message(conn, message) => {
                    server.handle(clock.now(), Input::Message(conn, message));
                }
                Note::Secured(conn, peer_identity) => {
                    report(clock.now(), ServerReport::Secured { conn, peer_identity });
                }
                Note::Certificate(conn, outcome) => {
                    report(clock.now(), ServerReport::Certificate { conn, outcome });
                }
                Note::Closed(conn, reason) => {
                    if writers.remove(&conn).is_some() {
                        server.handle(clock.now(), Input::Disconnected(conn));
                        report(clock.now(), ServerReport::Disconnected {
                            conn,
                            reason: reason.to_string(),
                        });
                    }
                }
            },
            changed = snapshots.changed(), if source_open => match changed {
                Ok(()) => {
                    if let Some(snapshot) = snapshots.borrow_and_update().clone() {
                        server.handle(clock.now(), Input::Snapshot(snapshot));
                    }
                }
                Err(_) => source_open = false,
            },
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let conn = next_conn;
                    next_conn += 1;
                    let (frames_tx, frames) = mpsc::channel(FRAME_QUEUE);
                    writers.insert(conn, frames_tx);
                    let settings = config.clone();
                    tokio::spawn(connection(conn, stream, settings, frames, notes_tx.clone()));
                    report(clock.now(), ServerReport::Connected { conn, peer });
                }
                Err(e) => {
                    report(clock.now(), ServerReport::AcceptFailed(e));
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            },
            _ = sleep_until(wake.unwrap_or_else(tokio::time::Instant::now)), if wake.is_some() => {}
        }
        server.handle_timeout(clock.now());
        while let Some((conn, message)) = server.poll_transmit() {
            let queued = match (encode(&message), writers.get(&conn)) {
                (Ok(frame), Some(writer)) => writer.try_send(frame).map_err(|e| match e {
                    mpsc::error::TrySendError::Full(_) => "its frames are not being written",
                    mpsc::error::TrySendError::Closed(_) => "it is closing",
                }),
                (Err(_), _) => Err("the push does not encode"),
                // Closed already; its `Closed` note is on its way.
                (Ok(_), None) => Ok(()),
            };
            if let Err(reason) = queued {
                // Dropping the sender ends the connection's task.
                writers.remove(&conn);
                server.handle(clock.now(), Input::Disconnected(conn));
                report(
                    clock.now(),
                    ServerReport::Disconnected {
                        conn,
                        reason: reason.into(),
                    },
                );
            }
        }
        while let Some(event) = server.poll_event() {
            report(clock.now(), ServerReport::Push(event));
        }
    }
}

/// One sidecar's connection: its TLS handshake, then [`exchange`].
async fn connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    conn: ConnId,
    stream: S,
    config: ServerConfig,
    frames: mpsc::Receiver<Vec<u8>>,
    notes: mpsc::Sender<Note>,
) {
    let Some(tls) = config.tls.clone() else {
        let link = Link::new(stream, config.keepalive, config.write_timeout);
        return exchange(conn, link, None, config.issuer, frames, notes).await;
    };
    let accept = tokio_rustls::TlsAcceptor::from(tls).accept(stream);
    let stream = match tokio::time::timeout(config.write_timeout, accept).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            let _ = notes
                .send(Note::Closed(conn, LinkError::Handshake(e.to_string())))
                .await;
            return;
        }
        Err(_) => {
            let reason = format!("did not finish within {:?}", config.write_timeout);
            let _ = notes
                .send(Note::Closed(conn, LinkError::Handshake(reason)))
                .await;
            return;
        }
    };
    let peer = client_spiffe_id(&stream);
    if notes.send(Note::Secured(conn, peer.clone())).await.is_err() {
        return;
    }
    let link = Link::new(stream, config.keepalive, config.write_timeout);
    exchange(conn, link, Some(peer), config.issuer, frames, notes).await;
}

/// A connection's messages to the loop, the loop's frames to it, and its certificate requests
/// answered here. `tls`: `None` on plaintext, else the client certificate's SPIFFE id if any.
async fn exchange<S: AsyncRead + AsyncWrite + Send + 'static>(
    conn: ConnId,
    mut link: Link<S>,
    tls: Option<Option<String>>,
    issuer: Option<Arc<Issuer>>,
    mut frames: mpsc::Receiver<Vec<u8>>,
    notes: mpsc::Sender<Note>,
) {
    // The roots, pushed when they change: to a sidecar that presented a certificate (at once,
    // as it may hold older ones from before a reconnect), and to one that asked for one (from
    // its request on).
    let mut bundle: Option<watch::Receiver<String>> = None;
    if let (Some(Some(_)), Some(issuer)) = (&tls, &issuer) {
        let mut roots = issuer.bundle();
        roots.mark_changed();
        bundle = Some(roots);
    }
    let ended = loop {
        let bundle_changed = async {
            match bundle.as_mut() {
                Some(b) => b.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            frame = frames.recv() => match frame {
                Some(frame) => {
                    if let Err(e) = link.send(&frame).await {
                        break e;
                    }
                }
                // The loop dropped this connection.
                None => return,
            },
            wake = link.next::<ClientMessage>() => match wake {
                Ok(Wake::Message(ClientMessage::CertificateRequest {
                    csr,
                    namespace,
                    service_account,
                    token,
                })) => {
                    let (answer, outcome) = match (&tls, &issuer) {
                        (Some(peer), Some(issuer)) => {
                            if bundle.is_none() {
                                let mut roots = issuer.bundle();
                                roots.borrow_and_update();
                                bundle = Some(roots);
                            }
                            issuer
                                .answer(peer.as_deref(), &csr, &namespace, &service_account, token)
                                .await
                        }
                        (None, _) => refuse("certificates are issued over TLS only", &namespace, &service_account),
                        (_, None) => refuse("this control plane issues no certificates", &namespace, &service_account),
                    };
                    if notes.send(Note::Certificate(conn, outcome)).await.is_err() {
                        return;
                    }
                    let sent = match encode(&answer) {
                        Ok(frame) => link.send(&frame).await,
                        Err(e) => Err(e.into()),
                    };
                    if let Err(e) = sent {
                        break e;
                    }
                }
                Ok(Wake::Message(message)) => {
                    if notes.send(Note::Message(conn, message)).await.is_err() {
                        return;
                    }
                }
                Ok(Wake::KeepaliveDue) => {
                    if let Err(e) = link.send_keepalive().await {
                        break e;
                    }
                }
                Err(e) => break e,
            },
            true = bundle_changed => {
                let roots = bundle.as_mut().map(|b| b.borrow_and_update().clone());
                let message = ServerMessage::TrustBundle { bundle: roots.unwrap_or_default() };
                let sent = match encode(&message) {
                    Ok(frame) => link.send(&frame).await,
                    Err(e) => Err(e.into()),
                };
                if let Err(e) = sent {
                    break e;
                }
            }
        }
    };
    let _ = notes.send(Note::Closed(conn, ended)).await;
}

/// A refusal that no CA check made (the channel itself cannot carry certificates).
fn refuse(why: &str, namespace: &str, service_account: &str) -> (ServerMessage, Outcome) {
    (
        ServerMessage::CertificateRefused {
            reason: why.to_string(),
        },
        Outcome::Refused {
            caller: format!("{namespace}/{service_account}"),
            refusal: crate::plane::push::csr::CsrRefusal::Unavailable(why.to_string()),
        },
    )
}
