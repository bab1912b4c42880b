//! # sim-tests: deterministic in-memory worlds around the Trellis engine
//!
//! The engine is sans-IO, so a test can be its whole environment: [`world::World`] plays the
//! clients, the upstream servers, the network and the clock, and every run is reproducible from
//! its seed. Scenario tests live in `tests/`; [`build`] keeps their configs short; [`codec`] reads
//! what the engine sends with an HTTP/1.1 reader of its own, never the engine's codec. [`sim`] is the
//! whole-mesh simulator: many engines, servers and a faulty network, driven from one seed.

pub mod build;
pub mod codec;
pub mod fixtures;
pub mod sim;
pub mod world;
