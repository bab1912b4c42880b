//! Typed ids: a request, a downstream (client) connection, an upstream connection.
//!
//! Drivers know one kind of id, [`ConnId`], for every socket. Inside the engine a connection
//! id is always one of two roles, [`DownstreamId`] or [`UpstreamId`], so a request's client
//! connection can't be handed where its upstream one is expected; both wrap the same `ConnId`
//! (one slab holds both kinds, so the ids drivers see are allocated exactly as before).
//! [`RequestId`] keys the request slab. Every id carries a slab generation, so a stale one
//! (a timer whose owner has gone) finds nothing.

use std::fmt;

pub use super::api::ConnId;

/// A request in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct RequestId(u64);

/// A connection a listener accepted (the client side).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct DownstreamId(ConnId);

/// A connection the engine opened to an upstream host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct UpstreamId(ConnId);

impl DownstreamId {
    /// Only for an id whose connection was just checked (or made) to be a downstream one.
    pub fn new(conn: ConnId) -> Self {
        DownstreamId(conn)
    }

    pub fn conn(self) -> ConnId {
        self.0
    }
}

impl UpstreamId {
    /// Only for an id whose connection was just checked (or made) to be an upstream one.
    pub fn new(conn: ConnId) -> Self {
        UpstreamId(conn)
    }

    pub fn conn(self) -> ConnId {
        self.0
    }
}

impl From<DownstreamId> for ConnId {
    fn from(id: DownstreamId) -> ConnId {
        id.0
    }
}

impl From<UpstreamId> for ConnId {
    fn from(id: UpstreamId) -> ConnId {
        id.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// A slab key: an id made of a slot index and its generation, packed into a `u64`.
pub(crate) trait SlabKey: Copy {
    fn from_raw(raw: u64) -> Self;
    fn raw(self) -> u64;
}

impl SlabKey for ConnId {
    fn from_raw(raw: u64) -> Self {
        ConnId(raw)
    }
    fn raw(self) -> u64 {
        self.0
    }
}

impl SlabKey for RequestId {
    fn from_raw(raw: u64) -> Self {
        RequestId(raw)
    }
    fn raw(self) -> u64 {
        self.0
    }
}
