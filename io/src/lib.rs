//! # trellis-io: runtimes that drive the sans-IO engine with real sockets
