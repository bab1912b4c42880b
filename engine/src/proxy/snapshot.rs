//! A compiled configuration snapshot: the config plus its compiled router and the route table
//! of each listener. Requests hold an `Arc<Snapshot>` for their whole life, so a config swap
//! never changes the rules under a request in flight.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::{Config, Listener};
use crate::route::{RouteError, Router, TableId};

/// Why a configuration snapshot was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigError {
    #[error("routes: {0}")]
    Route(String),
    #[error("listener {listener:?} names route table {table:?}, which does not exist")]
    MissingRouteTable { listener: String, table: String },
    #[error("route {route:?} forwards to cluster {cluster:?}, which does not exist")]
    MissingCluster { route: String, cluster: String },
    #[error("cluster {0:?} is defined twice")]
    DuplicateCluster(String),
}

impl From<RouteError> for ConfigError {
    fn from(err: RouteError) -> Self {
        ConfigError::Route(err.to_string())
    }
}

pub(crate) struct Snapshot {
    pub config: Arc<Config>,
    pub router: Router,
    /// Parallel to `config.listeners`.
    pub listener_tables: Vec<TableId>,
}

impl Snapshot {
    pub fn build(config: Arc<Config>) -> Result<Snapshot, ConfigError> {
        let mut names = std::collections::BTreeSet::new();
        for cluster in &config.clusters {
            if !names.insert(cluster.name.as_str()) {
                return Err(ConfigError::DuplicateCluster(cluster.name.clone()));
            }
        }
        for table in &config.route_tables {
            for vhost in &table.virtual_hosts {
                for route in &vhost.routes {
                    if let crate::config::RouteAction::Forward(dests) = &route.action {
                        for dest in dests {
                            if !names.contains(dest.cluster.as_str()) {
                                return Err(ConfigError::MissingCluster {
                                    route: route.name.clone(),
                                    cluster: dest.cluster.clone(),
                                });
                            }
                        }
                    }
                }
            }
        }
        let router = Router::new(config.clone())?;
        let mut listener_tables = Vec::with_capacity(config.listeners.len());
        for listener in &config.listeners {
            let table = router.table(&listener.route_table).ok_or_else(|| {
                ConfigError::MissingRouteTable {
                    listener: listener.name.clone(),
                    table: listener.route_table.clone(),
                }
            })?;
            listener_tables.push(table);
        }
        Ok(Snapshot {
            config,
            router,
            listener_tables,
        })
    }

    /// The listener a connection arriving on `local` belongs to: exact address first, then a
    /// wildcard-IP listener on the same port.
    pub fn listener_for(&self, local: SocketAddr) -> Option<&Listener> {
        let listeners = &self.config.listeners;
        listeners.iter().find(|l| l.address == local).or_else(|| {
            listeners
                .iter()
                .find(|l| l.address.ip().is_unspecified() && l.address.port() == local.port())
        })
    }

    /// The listener called `name` and its route table.
    pub fn listener_named(&self, name: &str) -> Option<(&Listener, TableId)> {
        let index = self.config.listeners.iter().position(|l| l.name == name)?;
        Some((
            &self.config.listeners[index],
            *self.listener_tables.get(index)?,
        ))
    }
}
