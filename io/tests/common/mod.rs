//! Helpers shared by the end-to-end tests (`io/tests/e2e_*.rs`): a proxy started from a
//! `trellis proxy` config file's text, upstream servers that behave (or misbehave) on purpose,
//! real clients run as processes (curl, sha256sum, python3), and deterministic bulk content.
//!
//! Each test binary uses only some of these, hence `dead_code` is allowed here.
#![allow(dead_code)]

pub mod content;
pub mod mesh;
pub mod one_core;
pub mod proxy;
pub mod python;
pub mod server;
pub mod tools;
