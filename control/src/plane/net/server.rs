//! The control plane's transport: [`serve`] owns one [`push::Server`] and runs it on tokio.
//!
//! One task per connection reads frames (through a [`Link`]) and hands the messages to the
//! loop over a bounded queue; the loop hands them, the source's snapshots and the timers to the
//! state machine, and passes each frame it sends to its connection's task. The state machine
//! has at most one push in flight per sidecar, so a connection's queue of frames to write
//! needs room for one; a connection whose queue is still full is stuck and is dropped (it
//! reconnects and resumes). The source publishes snapshots on a `watch` channel: only the
//! newest matters, so nothing queues up behind a slow loop.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::time::sleep_until;
use trellis_engine::Instant;

use super::link::{Link, LinkError, Wake};
use super::{Clock, Keepalive, Listener};
use crate::plane::push::wire::encode;
use crate::plane::push::{ClientMessage, ConnId, Event, Input, PushConfig, Server};
use crate::plane::Snapshot;

/// The server's settings.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerConfig {
    pub push: PushConfig,
    pub keepalive: Keepalive,
    /// A sidecar that does not take a frame within this long is disconnected, so one stuck
    /// sidecar cannot stall the others.
    pub write_timeout: Duration,
}

impl ServerConfig {
    pub fn new(push: PushConfig) -> Self {
        ServerConfig {
            push,
            keepalive: Keepalive::default(),
            write_timeout: Duration::from_secs(5),
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
}

/// Messages from the connections' tasks to the loop.
enum Note {
    Message(ConnId, ClientMessage),
    Closed(ConnId, LinkError),
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
                    let link = Link::new(stream, config.keepalive, config.write_timeout);
                    tokio::spawn(connection(conn, link, frames, notes_tx.clone()));
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

/// One sidecar's connection: its messages to the loop, the loop's frames to it.
async fn connection<S: AsyncRead + AsyncWrite + Send + 'static>(
    conn: ConnId,
    mut link: Link<S>,
    mut frames: mpsc::Receiver<Vec<u8>>,
    notes: mpsc::Sender<Note>,
) {
    let ended = loop {
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
        }
    };
    let _ = notes.send(Note::Closed(conn, ended)).await;
}
