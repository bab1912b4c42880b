//! Why a configuration could not be compiled into a [`super::Router`].
//!
//! Every error carries a [`Location`] naming the route table, virtual host and route it comes
//! from, so an operator can find the offending VirtualService rule without guessing: a config
//! snapshot is rejected as a whole, and "bad regex somewhere" is not actionable.

use std::fmt;

/// Where in the configuration a problem was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// Route table name.
    pub table: String,
    /// Virtual host name (and index in the table), when the problem is inside one.
    pub vhost: Option<(usize, String)>,
    /// Route name (and index in the virtual host), when the problem is inside one.
    pub route: Option<(usize, String)>,
}

impl Location {
    pub(crate) fn table(table: &str) -> Self {
        Location {
            table: table.to_owned(),
            vhost: None,
            route: None,
        }
    }

    pub(crate) fn vhost(&self, index: usize, name: &str) -> Self {
        Location {
            vhost: Some((index, name.to_owned())),
            ..self.clone()
        }
    }

    pub(crate) fn route(&self, index: usize, name: &str) -> Self {
        Location {
            route: Some((index, name.to_owned())),
            ..self.clone()
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "route table {:?}", self.table)?;
        if let Some((i, name)) = &self.vhost {
            write!(f, ", virtual host #{i} {name:?}")?;
        }
        if let Some((i, name)) = &self.route {
            write!(f, ", route #{i} {name:?}")?;
        }
        Ok(())
    }
}

/// A configuration the router refuses to compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("route table {table:?} is defined more than once")]
    DuplicateTable { table: String },
    #[error("{at}: empty domain")]
    EmptyDomain { at: Box<Location> },
    #[error("{at}: domain {domain:?} is already served by virtual host {other:?}")]
    DuplicateDomain {
        at: Box<Location>,
        domain: String,
        other: String,
    },
    #[error("{at}: {field}: bad regex {pattern:?}: {reason}")]
    BadRegex {
        at: Box<Location>,
        field: String,
        pattern: String,
        reason: String,
    },
    #[error("{at}: {field}: invalid header name {name:?}")]
    InvalidHeaderName {
        at: Box<Location>,
        field: String,
        name: String,
    },
    #[error("{at}: {field}: invalid value {value:?} for header {name:?}")]
    InvalidHeaderValue {
        at: Box<Location>,
        field: String,
        name: String,
        value: String,
    },
    #[error(
        "{at}: {field}: header {name:?} may not be modified (use rewrite.authority for the host)"
    )]
    ProtectedHeader {
        at: Box<Location>,
        field: String,
        name: String,
    },
    #[error("{at}: every destination has weight 0")]
    AllWeightsZero { at: Box<Location> },
    #[error("{at}: rewrite sets both uri and uri_regex")]
    ConflictingRewrite { at: Box<Location> },
    #[error("{at}: {field}: status {status} is not allowed ({allowed})")]
    InvalidStatus {
        at: Box<Location>,
        field: String,
        status: u16,
        allowed: &'static str,
    },
}
