//! # sim-tests: deterministic in-memory worlds around the Trellis engine
