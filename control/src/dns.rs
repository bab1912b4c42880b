//! Name resolution for ServiceEntries with `resolution: DNS` or `DNS_ROUND_ROBIN`.
//!
//! Under Istio such a ServiceEntry becomes an Envoy `STRICT_DNS` (or `LOGICAL_DNS`) cluster
//! and Envoy resolves the names itself. Trellis's engine never touches the network outside
//! the connections it is handed, so names are resolved here, outside translation, by whoever
//! builds the registry: the control plane before it pushes, or a file-configured proxy before
//! it translates. The answers travel in [`Registry::dns`](crate::translate::Registry) and the
//! translation turns them into endpoints (`translate::catalog`).
//!
//! What follows Envoy and Istio:
//! - IPv4 answers only, as `SelectDNSLookupFamily` (pilot/pkg/networking/util/util.go) chooses
//!   `V4_ONLY` for a proxy with IPv4 addresses (an IPv6-only name gets no endpoints);
//! - a failed lookup keeps the last good answer (Envoy's strict DNS cluster keeps its hosts
//!   when a refresh fails) and is reported;
//! - answers are sorted and deduplicated, so the same answers give the same config version
//!   whatever order the resolver returned them in.
//!
//! The system resolver (`getaddrinfo`, so `/etc/hosts` and `resolv.conf` apply) gives no TTL,
//! so callers re-resolve on a fixed interval ([`DEFAULT_REFRESH`]) instead of Envoy's
//! `respect_dns_ttl`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::diag::Diagnostic;
use crate::istio::service_entry::Resolution;
use crate::istio::ResourceSet;

/// How often names are resolved again.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(30);

/// Resolved names: name → sorted, deduplicated IPv4 addresses.
pub type DnsAnswers = BTreeMap<String, Vec<IpAddr>>;

/// Something that turns a name into addresses.
pub trait Resolver: Send + Sync {
    fn lookup(&self, name: &str) -> io::Result<Vec<IpAddr>>;
}

/// The operating system's resolver (`getaddrinfo`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn lookup(&self, name: &str) -> io::Result<Vec<IpAddr>> {
        Ok((name, 0u16).to_socket_addrs()?.map(|a| a.ip()).collect())
    }
}

/// Every name the ServiceEntries of `resources` need resolved: for DNS resolution, each
/// endpoint address that is not an IP, or each host when there are no endpoints (pilot's
/// `convertServiceEntryToInstances` makes the host its own endpoint then). Wildcard hosts
/// cannot be resolved and are left out (Istio rejects them with DNS resolution).
pub fn names_to_resolve(resources: &ResourceSet) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for se in &resources.service_entries {
        let spec = &se.spec;
        if !matches!(
            spec.resolution,
            Some(Resolution::DNS | Resolution::DNS_ROUND_ROBIN)
        ) {
            continue;
        }
        if spec.endpoints.is_empty() && spec.workload_selector.is_none() {
            names.extend(spec.hosts.iter().filter(|h| !h.contains('*')).cloned());
        }
        names.extend(
            spec.endpoints
                .iter()
                .filter(|e| !e.address.is_empty() && e.address.parse::<IpAddr>().is_err())
                .map(|e| e.address.clone()),
        );
    }
    names
}

/// Answers kept between resolutions, so a failure keeps the last good one and a refresh can
/// tell whether anything changed.
pub struct DnsCache {
    resolver: Box<dyn Resolver>,
    answers: Mutex<DnsAnswers>,
    /// The names the last [`DnsCache::answers_for`] asked for, resolved or not: what a
    /// [`DnsCache::refresh_asked`] resolves again.
    asked: Mutex<BTreeSet<String>>,
}

impl fmt::Debug for DnsCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsCache")
            .field("answers", &*self.lock())
            .finish_non_exhaustive()
    }
}

impl DnsCache {
    pub fn new(resolver: impl Resolver + 'static) -> Self {
        DnsCache {
            resolver: Box::new(resolver),
            answers: Mutex::new(DnsAnswers::new()),
            asked: Mutex::new(BTreeSet::new()),
        }
    }

    /// A cache over the system resolver, shareable between a loader and its refresher.
    pub fn system() -> DnsHandle {
        DnsHandle(Arc::new(DnsCache::new(SystemResolver)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DnsAnswers> {
        // A panic elsewhere while holding the lock leaves the map consistent (each write
        // replaces one entry), so a poisoned lock is still usable.
        self.answers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The answers for `names`: cached ones as they are, the others resolved now. Names no
    /// longer asked for are forgotten.
    pub fn answers_for(&self, names: &BTreeSet<String>) -> (DnsAnswers, Vec<Diagnostic>) {
        let mut diags = Vec::new();
        names.clone_into(
            &mut self
                .asked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let mut answers = self.lock();
        answers.retain(|name, _| names.contains(name));
        for name in names {
            if !answers.contains_key(name) {
                if let Some(found) = self.resolve(name, &mut diags) {
                    answers.insert(name.clone(), found);
                }
            }
        }
        (answers.clone(), diags)
    }

    /// Resolve every name in `names` again; true when any answer changed (the caller then
    /// translates again). A failed lookup keeps its last answer.
    pub fn refresh(&self, names: &BTreeSet<String>) -> (bool, Vec<Diagnostic>) {
        let mut diags = Vec::new();
        let fresh: Vec<(String, Option<Vec<IpAddr>>)> = names
            .iter()
            .map(|n| (n.clone(), self.resolve(n, &mut diags)))
            .collect();
        let mut answers = self.lock();
        let before = answers.clone();
        answers.retain(|name, _| names.contains(name));
        for (name, found) in fresh {
            if let Some(found) = found {
                answers.insert(name, found);
            }
        }
        (*answers != before, diags)
    }

    /// [`DnsCache::refresh`] of the names last asked for.
    pub fn refresh_asked(&self) -> (bool, Vec<Diagnostic>) {
        let asked = self
            .asked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        self.refresh(&asked)
    }

    /// One lookup, reduced to sorted IPv4 addresses; `None` (and a diagnostic) on failure.
    fn resolve(&self, name: &str, diags: &mut Vec<Diagnostic>) -> Option<Vec<IpAddr>> {
        match self.resolver.lookup(name) {
            Ok(found) => {
                let v4: BTreeSet<IpAddr> = found.into_iter().filter(IpAddr::is_ipv4).collect();
                if v4.is_empty() {
                    diags.push(Diagnostic::warning(format!(
                        "DNS: {name} has no IPv4 address (lookups are IPv4 only, as Istio's V4_ONLY)"
                    )));
                }
                Some(v4.into_iter().collect())
            }
            Err(e) => {
                diags.push(Diagnostic::warning(format!(
                    "DNS: cannot resolve {name}: {e}; its last answer (if any) is kept"
                )));
                None
            }
        }
    }
}

/// A shared [`DnsCache`]; equal when it is the same cache (so options holding one compare).
#[derive(Clone, Debug)]
pub struct DnsHandle(pub Arc<DnsCache>);

impl PartialEq for DnsHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for DnsHandle {}

impl std::ops::Deref for DnsHandle {
    type Target = DnsCache;
    fn deref(&self) -> &DnsCache {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Answers from a table; `fail` names fail; counts lookups.
    struct Table {
        answers: Mutex<BTreeMap<String, Vec<IpAddr>>>,
        lookups: AtomicUsize,
    }

    impl Resolver for Arc<Table> {
        fn lookup(&self, name: &str) -> io::Result<Vec<IpAddr>> {
            self.lookups.fetch_add(1, Ordering::Relaxed);
            self.answers
                .lock()
                .expect("lock")
                .get(name)
                .cloned()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such name"))
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn answers_are_sorted_v4_cached_and_kept_on_failure() {
        let table = Arc::new(Table {
            answers: Mutex::new(BTreeMap::from([(
                "a.example".to_string(),
                vec![ip(2), "2001:db8::1".parse().expect("v6"), ip(1), ip(2)],
            )])),
            lookups: AtomicUsize::new(0),
        });
        let cache = DnsCache::new(table.clone());
        let (answers, diags) = cache.answers_for(&set(&["a.example", "missing.example"]));
        assert_eq!(answers["a.example"], vec![ip(1), ip(2)]);
        assert!(!answers.contains_key("missing.example"));
        assert!(diags[0]
            .to_string()
            .contains("cannot resolve missing.example"));
        let lookups = table.lookups.load(Ordering::Relaxed);
        cache.answers_for(&set(&["a.example"]));
        assert_eq!(
            table.lookups.load(Ordering::Relaxed),
            lookups,
            "cached answers are not looked up again"
        );

        // Nothing changed: no change reported.
        assert!(!cache.refresh(&set(&["a.example"])).0);
        // The name moves: a change.
        table
            .answers
            .lock()
            .expect("lock")
            .insert("a.example".into(), vec![ip(3)]);
        assert!(cache.refresh(&set(&["a.example"])).0);
        assert_eq!(
            cache.answers_for(&set(&["a.example"])).0["a.example"],
            vec![ip(3)]
        );
        // The name stops resolving: the last answer stays.
        table.answers.lock().expect("lock").clear();
        let (changed, diags) = cache.refresh(&set(&["a.example"]));
        assert!(!changed);
        assert_eq!(diags.len(), 1);
        assert_eq!(
            cache.answers_for(&set(&["a.example"])).0["a.example"],
            vec![ip(3)]
        );
    }

    #[test]
    fn the_system_resolver_reads_hosts_entries() {
        let found = SystemResolver
            .lookup("localhost")
            .expect("localhost resolves");
        assert!(found.iter().any(IpAddr::is_loopback), "{found:?}");
    }

    #[test]
    fn names_come_from_dns_service_entries_only() {
        let resources = crate::istio::parse_str(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: by-host}
spec:
  hosts: [api.example.com, "*.wild.example"]
  ports: [{number: 443, name: https, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: by-endpoint}
spec:
  hosts: [db.internal]
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  resolution: DNS_ROUND_ROBIN
  endpoints: [{address: db1.example.net}, {address: 10.0.0.9}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: static}
spec:
  hosts: [s.example]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints: [{address: static.example.net}]
"#,
            "se.yaml",
        )
        .expect("parses");
        assert_eq!(
            names_to_resolve(&resources),
            set(&["api.example.com", "db1.example.net"])
        );
    }
}
