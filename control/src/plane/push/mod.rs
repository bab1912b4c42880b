//! The push protocol: how sidecars get their documents and say whether they run them.
//!
//! - [`server`]: the control plane's sans-IO state machine (debounced releases, one push in
//!   flight per sidecar, full document then deltas, ACK/NACK, resume on reconnect).
//! - [`client`]: the sidecar's side (what it holds; ACK, NACK or resync).
//! - [`wire`]: the messages and their length-prefixed JSON framing.
//! - [`delta`]: a document as changes against the one the sidecar holds.
//! - [`csr`]: the CA's side of certificates over the channel (who may have which identity).
//! - [`renewal`]: the sidecar's side (when to ask, what it holds meanwhile).
//! - [`debounce`]: istiod's debounce (100 ms quiet period, 10 s maximum).

pub mod client;
pub mod csr;
pub mod debounce;
pub mod delta;
#[cfg(feature = "mutants")]
pub mod mutants;
pub mod renewal;
pub mod server;
pub mod wire;

pub use client::Client;
pub use server::{ConnId, Event, Input, PushConfig, Server, SidecarStatus};
pub use wire::{ClientMessage, Held, ServerMessage, Version};

#[cfg(test)]
mod tests;
