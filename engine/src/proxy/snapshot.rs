//! A compiled configuration snapshot: the config plus its compiled router and the route table
//! of each listener. Requests hold an `Arc<Snapshot>` for their whole life, so a config swap
//! never changes the rules under a request in flight.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::{Config, Listener, Route, RouteAction};
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
    #[error("cluster {cluster:?}: {error}")]
    Locality {
        cluster: String,
        error: crate::locality::LocalityLbError,
    },
}

impl From<RouteError> for ConfigError {
    fn from(err: RouteError) -> Self {
        ConfigError::Route(err.to_string())
    }
}

/// A configuration compiled once (routes, regexes, names) and shareable by every engine that
/// runs it: a runtime with one engine per core, or a simulator with an engine per sidecar,
/// compiles each pushed snapshot once instead of once per engine.
#[derive(Clone)]
pub struct CompiledConfig(pub(crate) Arc<Snapshot>);

impl CompiledConfig {
    /// Compile `config`, or say why it cannot run.
    pub fn compile(config: Arc<Config>) -> Result<CompiledConfig, ConfigError> {
        Ok(CompiledConfig(Arc::new(Snapshot::build(config)?)))
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.0.config
    }
}

impl std::fmt::Debug for CompiledConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CompiledConfig")
            .field(&self.0.config.version)
            .finish()
    }
}

pub(crate) struct Snapshot {
    pub config: Arc<Config>,
    pub router: Router,
    /// Parallel to `config.listeners`.
    pub listener_tables: Vec<TableId>,
    /// Parallel to `config.listeners`: the names as shared strings, so a connection (and an
    /// access-log record) takes a reference instead of a copy.
    pub listener_names: Vec<Arc<str>>,
    /// `[table][vhost][route]`, parallel to `config.route_tables`: each route's name and the
    /// cluster of each of its destinations, shared for the access log.
    pub route_names: Vec<Vec<Vec<RouteNames>>>,
}

/// A route's names as shared strings (see [`Snapshot::route_names`]).
pub(crate) struct RouteNames {
    pub route: Arc<str>,
    /// Parallel to the route's `Forward` destinations; empty for other actions.
    pub clusters: Vec<Arc<str>>,
}

impl Snapshot {
    pub fn build(config: Arc<Config>) -> Result<Snapshot, ConfigError> {
        let mut names = std::collections::BTreeSet::new();
        for cluster in &config.clusters {
            if !names.insert(cluster.name.as_str()) {
                return Err(ConfigError::DuplicateCluster(cluster.name.clone()));
            }
            if let Some(layout) = &cluster.locality {
                layout.validate(cluster.endpoints.len()).map_err(|error| {
                    ConfigError::Locality {
                        cluster: cluster.name.clone(),
                        error,
                    }
                })?;
            }
        }
        for table in config.route_tables.iter().filter(|t| t.validate_clusters) {
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
        for route in &config.tcp_routes {
            for dest in &route.destinations {
                if !names.contains(dest.cluster.as_str()) {
                    return Err(ConfigError::MissingCluster {
                        route: route.name.clone(),
                        cluster: dest.cluster.clone(),
                    });
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
            // A gateway HTTPS server's own table (its chain's RDS) must exist too: requests
            // through that chain never fall back to the listener's.
            let chains = listener.tls.iter().flat_map(|tls| tls.servers.iter());
            for name in chains.filter_map(|s| s.route_table.as_deref()) {
                if router.table(name).is_none() {
                    return Err(ConfigError::MissingRouteTable {
                        listener: listener.name.clone(),
                        table: name.to_string(),
                    });
                }
            }
        }
        let listener_names = config
            .listeners
            .iter()
            .map(|l| Arc::from(l.name.as_str()))
            .collect();
        let route_names = config
            .route_tables
            .iter()
            .map(|t| {
                t.virtual_hosts
                    .iter()
                    .map(|v| v.routes.iter().map(RouteNames::of).collect())
                    .collect()
            })
            .collect();
        Ok(Snapshot {
            config,
            router,
            listener_tables,
            listener_names,
            route_names,
        })
    }

    /// The name of the listener a connection arriving on `local` belongs to: exact address
    /// first, then a wildcard-IP listener on the same port.
    pub fn listener_name_for(&self, local: SocketAddr) -> Option<Arc<str>> {
        let listeners = &self.config.listeners;
        let index = listeners
            .iter()
            .position(|l| l.address == local)
            .or_else(|| {
                listeners.iter().position(|l| {
                    l.address.ip().is_unspecified() && l.address.port() == local.port()
                })
            })?;
        self.listener_names.get(index).cloned()
    }

    /// The shared names of route `route` of virtual host `vhost` in table `table`.
    pub fn route_names(&self, table: usize, vhost: usize, route: usize) -> Option<&RouteNames> {
        self.route_names.get(table)?.get(vhost)?.get(route)
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

impl RouteNames {
    fn of(route: &Route) -> RouteNames {
        let clusters = match &route.action {
            RouteAction::Forward(dests) => dests
                .iter()
                .map(|d| Arc::from(d.cluster.as_str()))
                .collect(),
            _ => Vec::new(),
        };
        RouteNames {
            route: Arc::from(route.name.as_str()),
            clusters,
        }
    }
}
