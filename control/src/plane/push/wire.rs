//! The push protocol's messages and their framing: each message is one JSON object behind a
//! 4-byte big-endian length (RESEARCH.md, "Control plane: wire format and scoping", says why
//! this and not delta xDS over gRPC).
//!
//! A sidecar opens with [`ClientMessage::Hello`] (who it is, and the version and digest of the
//! document it holds, if any); the server answers with a [`ServerMessage::Full`] document
//! unless the sidecar already holds the current one, then sends [`ServerMessage::Delta`]s;
//! the sidecar answers each with [`ClientMessage::Ack`] or [`ClientMessage::Nack`].
//!
//! Certificates travel on the same connection (istio-agent's CSR to istiod, and the root pushed
//! as the `istio-ca-root-cert` ConfigMap is): a sidecar sends
//! [`ClientMessage::CertificateRequest`] (a CSR for its namespace and service account, with a
//! token when it has no certificate yet), the server answers [`ServerMessage::Certificate`] or
//! [`ServerMessage::CertificateRefused`], and pushes [`ServerMessage::TrustBundle`] when the
//! roots change. These never go through the document state machines: the transports route them
//! to [`super::csr`] and [`super::renewal`].
//!
//! Versioning: [`PROTOCOL`] is the protocol's version. Messages are added, never changed: a
//! peer that does not know a message's `type` cannot decode it and closes the connection,
//! which the other side reports (a sidecar asking a version-1 control plane for a certificate
//! sees its connection dropped, and keeps its files' certificate if it has one).
//!
//! An empty frame ([`KEEPALIVE`]) carries no message: the transports send one when they have
//! been quiet a while, so each side can tell a silent peer from a dead link (gRPC's keepalive
//! pings play this part under xDS; pkg/keepalive/options.go). No message encodes to an empty
//! frame (JSON never is), so the two cannot be confused.

use serde::{Deserialize, Serialize};

use super::delta::DocumentDelta;
use crate::plane::document::SidecarDocument;
use crate::translate::Workload;

/// The protocol's version: 1 was documents only; 2 added certificates.
pub const PROTOCOL: u32 = 2;

/// A secret carried in a message (a service-account token): never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// A push's version: the control plane's generation counter (one per debounced release).
pub type Version = u64;

/// A document's digest (FNV-1a of its JSON): equal digests, equal documents.
pub type Digest = u64;

/// What a sidecar holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub version: Version,
    pub digest: Digest,
}

/// Sidecar → control plane.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// First message on a connection.
    Hello {
        /// The sidecar's name (its pod's), for reports.
        node: String,
        workload: Workload,
        held: Option<Held>,
    },
    /// The document of `version` is applied.
    Ack { version: Version },
    /// The document of `version` is refused; the sidecar keeps what it held.
    Nack { version: Version, reason: String },
    /// A delta did not apply to what the sidecar holds: send the whole document.
    Resync,
    /// Sign `csr` (PEM) for `spiffe://<trust domain>/ns/<namespace>/sa/<service_account>`.
    /// The caller is the connection's client certificate when it presented one; otherwise
    /// `token` (a Kubernetes service-account token), or a node claim the control plane was
    /// told to trust.
    CertificateRequest {
        csr: String,
        namespace: String,
        service_account: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<Secret>,
    },
}

/// Control plane → sidecar.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The whole document.
    Full {
        version: Version,
        digest: Digest,
        document: SidecarDocument,
    },
    /// Changes against the document of digest `base` (the last one the sidecar acked).
    Delta {
        version: Version,
        base: Digest,
        digest: Digest,
        delta: DocumentDelta,
    },
    /// The answer to a [`ClientMessage::CertificateRequest`]: the certificate then the
    /// intermediates (PEM), the trust bundle, and the validity (Unix seconds).
    Certificate {
        chain: String,
        bundle: String,
        not_before: u64,
        not_after: u64,
    },
    /// The CSR is refused, and why (which check).
    CertificateRefused { reason: String },
    /// The mesh's roots changed (a root rotation: both, during the overlap).
    TrustBundle { bundle: String },
}

impl ServerMessage {
    /// A push's version; `None` for the certificate messages.
    pub fn version(&self) -> Option<Version> {
        match self {
            ServerMessage::Full { version, .. } | ServerMessage::Delta { version, .. } => {
                Some(*version)
            }
            _ => None,
        }
    }

    /// A config push (as opposed to a certificate message).
    pub fn is_push(&self) -> bool {
        self.version().is_some()
    }
}

/// A frame with no message: "still here".
pub const KEEPALIVE: [u8; 4] = [0; 4];

/// Frames larger than this are refused (a bound on what a peer can make us buffer).
pub const MAX_FRAME: usize = 64 << 20;

/// Why bytes could not be read as a message.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is over the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("invalid message: {0}")]
    Json(#[from] serde_json::Error),
}

/// One message as a frame.
pub fn encode<M: Serialize>(message: &M) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(message)?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge(body.len()))?;
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Reassembles frames from a byte stream.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buffer: Vec<u8>,
}

impl FrameDecoder {
    /// Bytes received.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole message, if one has arrived ([`KEEPALIVE`] frames are skipped).
    pub fn next_message<M: for<'de> Deserialize<'de>>(&mut self) -> Result<Option<M>, FrameError> {
        loop {
            let Some(header) = self.buffer.get(..4) else {
                return Ok(None);
            };
            let mut len = [0u8; 4];
            len.copy_from_slice(header);
            let len = u32::from_be_bytes(len) as usize;
            if len > MAX_FRAME {
                return Err(FrameError::TooLarge(len));
            }
            if self.buffer.len() < 4 + len {
                return Ok(None);
            }
            if len == 0 {
                self.buffer.drain(..4);
                continue;
            }
            let message = serde_json::from_slice(&self.buffer[4..4 + len]);
            self.buffer.drain(..4 + len);
            return Ok(Some(message?));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_any_split() {
        let messages = vec![
            ClientMessage::Hello {
                node: "reviews-v1-0".into(),
                workload: Workload::default(),
                held: Some(Held {
                    version: 3,
                    digest: 9,
                }),
            },
            ClientMessage::Ack { version: 3 },
            ClientMessage::Nack {
                version: 4,
                reason: "invalid regex".into(),
            },
        ];
        // Keepalives between and around the messages carry nothing.
        let mut bytes: Vec<u8> = KEEPALIVE.to_vec();
        for m in &messages {
            bytes.extend(encode(m).unwrap());
            bytes.extend(KEEPALIVE);
        }
        for chunk in [1, 3, 7, bytes.len()] {
            let mut d = FrameDecoder::default();
            let mut out = Vec::new();
            for piece in bytes.chunks(chunk) {
                d.push(piece);
                while let Some(m) = d.next_message::<ClientMessage>().unwrap() {
                    out.push(m);
                }
            }
            assert_eq!(out, messages);
        }
    }

    /// A pod-backed endpoint maps its Service port to a container port (`ports`); serde
    /// buffers an internally tagged message, and the map's integer keys used not to survive it.
    #[test]
    fn a_full_document_with_mapped_endpoint_ports_decodes() {
        use crate::translate::inbound_protocols::InboundProtocol;
        use crate::translate::{Registry, Service, ServiceEndpoint};
        let mut endpoint = ServiceEndpoint::new("10.0.0.20".parse().unwrap(), &[("app", "web")]);
        endpoint.ports.insert(8000, 8080);
        let service = Service::kubernetes("web", "default", &[8000]).with_endpoint(endpoint);
        let message = ServerMessage::Full {
            version: 1,
            digest: 2,
            document: SidecarDocument {
                registry: Registry {
                    services: vec![service],
                    ..Registry::default()
                },
                resources: Vec::new(),
                inbound: vec![(8080, InboundProtocol::Detect)],
                mesh: crate::plane::mesh_settings::MeshSettings {
                    protocol_detection_timeout_ms: Some(1500),
                    ..Default::default()
                },
            },
        };
        let mut d = FrameDecoder::default();
        d.push(&encode(&message).unwrap());
        assert_eq!(d.next_message::<ServerMessage>().unwrap(), Some(message));
    }

    #[test]
    fn certificate_messages_round_trip_and_never_print_the_token() {
        let request = ClientMessage::CertificateRequest {
            csr: "-----BEGIN CERTIFICATE REQUEST-----".into(),
            namespace: "shop".into(),
            service_account: "cart".into(),
            token: Some(Secret("eyJhbGciOi.secret".into())),
        };
        let mut d = FrameDecoder::default();
        d.push(&encode(&request).unwrap());
        assert_eq!(
            d.next_message::<ClientMessage>().unwrap(),
            Some(request.clone())
        );
        assert!(!format!("{request:?}").contains("secret"));
        // Without a token the field is left out.
        let anonymous = ClientMessage::CertificateRequest {
            csr: "csr".into(),
            namespace: "shop".into(),
            service_account: "cart".into(),
            token: None,
        };
        let json = String::from_utf8(encode(&anonymous).unwrap()[4..].to_vec()).unwrap();
        assert_eq!(
            json,
            r#"{"type":"certificate_request","csr":"csr","namespace":"shop","service_account":"cart"}"#
        );
        for answer in [
            ServerMessage::Certificate {
                chain: "chain".into(),
                bundle: "roots".into(),
                not_before: 1,
                not_after: 2,
            },
            ServerMessage::CertificateRefused {
                reason: "no credential".into(),
            },
            ServerMessage::TrustBundle {
                bundle: "roots".into(),
            },
        ] {
            assert!(!answer.is_push());
            d.push(&encode(&answer).unwrap());
            assert_eq!(d.next_message::<ServerMessage>().unwrap(), Some(answer));
        }
    }

    #[test]
    fn an_oversized_length_is_refused_before_buffering_it() {
        let mut d = FrameDecoder::default();
        d.push(&u32::MAX.to_be_bytes());
        assert!(matches!(
            d.next_message::<ClientMessage>(),
            Err(FrameError::TooLarge(_))
        ));
    }
}
