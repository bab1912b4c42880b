//! # trellis-control: the control plane
//!
//! Istio resource types, config sources, translation to the engine's configuration model, and
//! the `explain` route checker.
