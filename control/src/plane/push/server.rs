//! The control plane's side of the push protocol, sans-IO in the quinn-proto style: the
//! transport hands in what happened ([`Server::handle`], [`Server::handle_timeout`]) with the
//! time, and pulls out what to send ([`Server::poll_transmit`]), what to report
//! ([`Server::poll_event`]) and when to be woken ([`Server::poll_timeout`]). No clock, no
//! sockets, no randomness: the simulator can run it as a node.
//!
//! Per connection, at most one push is in flight: the next waits for the sidecar's ACK or
//! NACK. That bounds what is queued per sidecar to one message, gives every delta a base the
//! sidecar is known to hold (the last document it acked), and lets a burst of releases
//! collapse into one push of the newest. A sidecar that reconnects says what it holds; when
//! that is already its current document nothing is sent. A NACKed document is not sent again
//! (it would be refused again): the sidecar keeps its last good one until a later release
//! gives it a different document.
//!
//! Documents are computed once per release and per scope (namespace and applicable Sidecar
//! resource), not once per sidecar: sidecars sharing a scope share the document.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use trellis_engine::Instant;

use super::debounce::Debounce;
use super::delta::{diff, digest};
use super::wire::{ClientMessage, Digest, Held, ServerMessage, Version};
use crate::istio::Source;
use crate::plane::document::SidecarDocument;
use crate::plane::scope::{sidecar_for, ScopeIndex};
use crate::plane::snapshot::Snapshot;
use crate::translate::Workload;

/// A connection, numbered by the transport.
pub type ConnId = u64;

/// What happened, for the transport to hand in.
#[derive(Clone, Debug)]
pub enum Input {
    /// The source produced a snapshot (pushed after the debounce).
    Snapshot(Arc<Snapshot>),
    /// A message arrived on a connection (the first one opens it).
    Message(ConnId, ClientMessage),
    /// The connection is gone.
    Disconnected(ConnId),
}

/// What the control plane reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A release was made: every sidecar converges to `version` next.
    Released { version: Version },
    Acked {
        conn: ConnId,
        node: String,
        version: Version,
    },
    /// A sidecar refused a document; it keeps its last good one.
    Nacked {
        conn: ConnId,
        node: String,
        version: Version,
        reason: String,
    },
    /// A message that makes no sense here (an ACK before `Hello` ...); ignored.
    ProtocolError { conn: ConnId, reason: String },
}

/// Where one sidecar stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SidecarStatus {
    pub conn: ConnId,
    pub node: String,
    /// Version and digest of the document it holds, as far as the server knows.
    pub acked: Option<(Version, Digest)>,
    pub in_flight: Option<Version>,
    /// Digest of the last document it refused.
    pub nacked: Option<Digest>,
    /// Whether it holds (or has refused) the document of the latest release.
    pub current: bool,
}

#[derive(Clone, Debug)]
struct Sent {
    version: Version,
    digest: Digest,
    document: Arc<SidecarDocument>,
}

#[derive(Debug)]
struct Conn {
    node: String,
    workload: Workload,
    /// What the sidecar said it holds in its `Hello`: taken as acked once a release gives it
    /// that same document, even a release made after the hello (a restarted control plane
    /// whose sidecars reconnect before its first release resends them nothing).
    announced: Option<Held>,
    acked: Option<Sent>,
    in_flight: Option<Sent>,
    nacked: Option<Digest>,
}

/// Debounce settings.
#[derive(Clone, Copy, Debug)]
pub struct PushConfig {
    pub debounce_after: Duration,
    pub debounce_max: Duration,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            debounce_after: super::debounce::DEBOUNCE_AFTER,
            debounce_max: super::debounce::DEBOUNCE_MAX,
        }
    }
}

/// The push state machine.
#[derive(Debug)]
pub struct Server {
    debounce: Debounce,
    /// The newest snapshot (released or waiting for the debounce).
    latest: Option<Arc<Snapshot>>,
    /// The snapshot sidecars converge to, its scoping index, and its version.
    released: Option<(Arc<Snapshot>, ScopeIndex)>,
    version: Version,
    /// Documents of the release, by (namespace, applicable Sidecar).
    documents: BTreeMap<(String, Option<Source>), (Digest, Arc<SidecarDocument>)>,
    conns: BTreeMap<ConnId, Conn>,
    transmits: VecDeque<(ConnId, ServerMessage)>,
    events: VecDeque<Event>,
    #[cfg(feature = "mutants")]
    mutations: super::mutants::Mutations,
}

impl Server {
    pub fn new(config: PushConfig) -> Self {
        Server {
            debounce: Debounce::new(config.debounce_after, config.debounce_max),
            latest: None,
            released: None,
            version: 0,
            documents: BTreeMap::new(),
            conns: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            #[cfg(feature = "mutants")]
            mutations: super::mutants::Mutations::default(),
        }
    }

    /// Switch planted bugs on (the simulator's self-test).
    #[cfg(feature = "mutants")]
    pub fn set_mutations(&mut self, mutations: super::mutants::Mutations) {
        self.mutations = mutations;
    }

    /// The version of the latest release (0 before the first).
    pub fn version(&self) -> Version {
        self.version
    }

    /// Hand in what happened at `now`.
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Snapshot(snapshot) => {
                if self.latest.as_ref().map(|s| s.digest) != Some(snapshot.digest) {
                    self.latest = Some(snapshot);
                    self.debounce.change(now);
                }
            }
            Input::Message(conn, message) => self.on_message(conn, message),
            Input::Disconnected(conn) => {
                self.conns.remove(&conn);
            }
        }
    }

    /// Time has reached `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.debounce.handle_timeout(now) {
            self.release();
        }
    }

    /// When to call [`Server::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.debounce.poll_timeout()
    }

    /// The next message to send, and on which connection.
    pub fn poll_transmit(&mut self) -> Option<(ConnId, ServerMessage)> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Every connected sidecar that said hello, by connection.
    pub fn status(&mut self) -> Vec<SidecarStatus> {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        ids.into_iter()
            .filter_map(|id| {
                let target = self.target(id).map(|(d, _)| d);
                let c = self.conns.get(&id)?;
                Some(SidecarStatus {
                    conn: id,
                    node: c.node.clone(),
                    acked: c.acked.as_ref().map(|s| (s.version, s.digest)),
                    in_flight: c.in_flight.as_ref().map(|s| s.version),
                    nacked: c.nacked,
                    current: target.is_none_or(|t| {
                        c.acked.as_ref().is_some_and(|s| s.digest == t) || c.nacked == Some(t)
                    }),
                })
            })
            .collect()
    }

    fn release(&mut self) {
        let Some(latest) = self.latest.clone() else {
            return;
        };
        let index = ScopeIndex::new(&latest);
        self.released = Some((latest, index));
        self.version += 1;
        self.documents.clear();
        self.events.push_back(Event::Released {
            version: self.version,
        });
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.sync(id);
        }
    }

    fn on_message(&mut self, id: ConnId, message: ClientMessage) {
        match message {
            ClientMessage::Hello {
                node,
                workload,
                held,
            } => self.on_hello(id, node, workload, held),
            answer => self.on_answer(id, answer),
        }
    }

    fn on_hello(&mut self, id: ConnId, node: String, workload: Workload, held: Option<Held>) {
        // A sidecar holding its current document resumes without a resend (`sync`).
        let conn = Conn {
            node,
            workload,
            announced: held,
            acked: None,
            in_flight: None,
            nacked: None,
        };
        self.conns.insert(id, conn);
        self.sync(id);
    }

    /// An ACK, NACK or resync request.
    fn on_answer(&mut self, id: ConnId, message: ClientMessage) {
        let Some(conn) = self.conns.get_mut(&id) else {
            self.events.push_back(Event::ProtocolError {
                conn: id,
                reason: format!("{message:?} before Hello"),
            });
            return;
        };
        let answered = |conn: &Conn, version: Version| {
            conn.in_flight
                .as_ref()
                .is_some_and(|s| s.version == version)
        };
        match message {
            ClientMessage::Ack { version } if answered(conn, version) => {
                conn.acked = conn.in_flight.take();
                self.events.push_back(Event::Acked {
                    conn: id,
                    node: conn.node.clone(),
                    version,
                });
            }
            ClientMessage::Nack { version, reason } if answered(conn, version) => {
                conn.nacked = conn.in_flight.take().map(|s| s.digest);
                self.events.push_back(Event::Nacked {
                    conn: id,
                    node: conn.node.clone(),
                    version,
                    reason,
                });
            }
            ClientMessage::Resync => {
                conn.acked = None;
                conn.announced = None;
                conn.in_flight = None;
            }
            other => {
                self.events.push_back(Event::ProtocolError {
                    conn: id,
                    reason: format!("{other:?} answers no push in flight"),
                });
                return;
            }
        }
        self.sync(id);
    }

    /// The current document for `workload` (computed once per scope and release).
    fn document_for(&mut self, workload: &Workload) -> Option<(Digest, Arc<SidecarDocument>)> {
        let (snapshot, index) = self.released.as_ref()?;
        let key = (
            workload.namespace.clone(),
            sidecar_for(snapshot, workload).map(|s| s.source.clone()),
        );
        if let Some(found) = self.documents.get(&key) {
            return Some(found.clone());
        }
        let document = Arc::new(index.scope(snapshot, workload).document);
        let entry = (digest(&document), document);
        self.documents.insert(key, entry.clone());
        Some(entry)
    }

    fn target(&mut self, id: ConnId) -> Option<(Digest, Arc<SidecarDocument>)> {
        let conn = self.conns.get(&id)?;
        let workload = self.effective_workload(&conn.node, &conn.workload);
        self.document_for(&workload)
    }

    /// Who a sidecar is: what it said, with the labels and service account of its pod when the
    /// snapshot has a workload instance of that name in its namespace (pilot's
    /// `SetWorkloadLabels`, pilot/pkg/model/context.go: the pod's labels over the proxy's own).
    fn effective_workload(&self, node: &str, said: &Workload) -> Workload {
        let pod = self
            .released
            .as_ref()
            .and_then(|(snapshot, _)| snapshot.workload(&said.namespace, node));
        match pod {
            Some(pod) => {
                let mut labels = said.labels.clone();
                labels.extend(pod.workload.labels.clone());
                Workload {
                    namespace: said.namespace.clone(),
                    service_account: pod.workload.service_account.clone(),
                    labels,
                    locality: pod
                        .workload
                        .locality
                        .clone()
                        .or_else(|| said.locality.clone()),
                }
            }
            None => said.clone(),
        }
    }

    /// Send the connection its current document if it needs it and nothing is in flight.
    fn sync(&mut self, id: ConnId) {
        let Some((digest, document)) = self.target(id) else {
            return;
        };
        let version = self.version;
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        #[cfg(feature = "mutants")]
        let resumes = |h: &Held| {
            h.digest == digest || (self.mutations.resume_by_version && h.version >= version)
        };
        #[cfg(not(feature = "mutants"))]
        let resumes = |h: &Held| h.digest == digest;
        if conn.acked.is_none() {
            if let Some(held) = conn.announced.filter(resumes) {
                conn.acked = Some(Sent {
                    version: held.version,
                    digest,
                    document: document.clone(),
                });
            }
        }
        if conn.in_flight.is_some()
            || conn.acked.as_ref().is_some_and(|s| s.digest == digest)
            || conn.nacked == Some(digest)
        {
            return;
        }
        let message = match &conn.acked {
            Some(base) => ServerMessage::Delta {
                version,
                base: base.digest,
                digest,
                delta: diff(&base.document, &document),
            },
            None => ServerMessage::Full {
                version,
                digest,
                document: SidecarDocument::clone(&document),
            },
        };
        conn.in_flight = Some(Sent {
            version,
            digest,
            document,
        });
        self.transmits.push_back((id, message));
    }
}
