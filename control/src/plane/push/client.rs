//! The sidecar's side of the push protocol: what it holds, and its answer to each push.
//!
//! Sans-IO like the server: the transport hands each [`ServerMessage`] to [`Client::handle`]
//! with a function that applies a document (translates it and swaps it into the engine), and
//! sends back the answer. A refused document is NACKed with its reason and the client keeps
//! holding its last good one, which is also what [`Client::hello`] announces after a
//! reconnect, so the server resumes from there.

use super::delta::{apply, digest};
use super::wire::{ClientMessage, Held, ServerMessage, Version};
use crate::plane::document::SidecarDocument;
use crate::translate::Workload;

/// A sidecar's protocol state.
#[derive(Clone, Debug)]
pub struct Client {
    node: String,
    workload: Workload,
    held: Option<(Held, SidecarDocument)>,
}

impl Client {
    pub fn new(node: impl Into<String>, workload: Workload) -> Self {
        Client {
            node: node.into(),
            workload,
            held: None,
        }
    }

    /// The first message of every connection.
    pub fn hello(&self) -> ClientMessage {
        ClientMessage::Hello {
            node: self.node.clone(),
            workload: self.workload.clone(),
            held: self.held.as_ref().map(|(h, _)| *h),
        }
    }

    /// Who the sidecar is.
    pub fn workload(&self) -> &Workload {
        &self.workload
    }

    /// The document applied last, and its version.
    pub fn held(&self) -> Option<(&Held, &SidecarDocument)> {
        self.held.as_ref().map(|(h, d)| (h, d))
    }

    /// Answer a push. `apply` runs the document (`Err` is the NACK's reason); it is not called
    /// when the push cannot be read against what the client holds (the answer is then
    /// [`ClientMessage::Resync`]).
    pub fn handle(
        &mut self,
        message: ServerMessage,
        apply_document: impl FnOnce(Version, &SidecarDocument) -> Result<(), String>,
    ) -> ClientMessage {
        let (version, expected, document) = match message {
            ServerMessage::Full {
                version,
                digest: expected,
                document,
            } => {
                // A whole document that does not match its digest will not get better by
                // sending it again: refuse it rather than ask for it again.
                if digest(&document) != expected {
                    return ClientMessage::Nack {
                        version,
                        reason: "document does not match its digest".into(),
                    };
                }
                (version, expected, document)
            }
            ServerMessage::Delta {
                version,
                base,
                digest,
                delta,
            } => {
                let Some((held, doc)) = self.held.as_ref().filter(|(h, _)| h.digest == base) else {
                    return ClientMessage::Resync;
                };
                debug_assert_eq!(held.digest, base);
                match apply(doc, &delta) {
                    Ok(d) => (version, digest, d),
                    Err(_) => return ClientMessage::Resync,
                }
            }
            // The transports route certificate messages elsewhere (`ServerMessage::is_push`).
            other => {
                debug_assert!(false, "not a push: {other:?}");
                return ClientMessage::Resync;
            }
        };
        if digest(&document) != expected {
            return ClientMessage::Resync;
        }
        match apply_document(version, &document) {
            Ok(()) => {
                self.held = Some((
                    Held {
                        version,
                        digest: expected,
                    },
                    document,
                ));
                ClientMessage::Ack { version }
            }
            Err(reason) => ClientMessage::Nack { version, reason },
        }
    }
}
