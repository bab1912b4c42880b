//! What one sidecar gets: the services, VirtualServices, DestinationRules and ServiceEntries
//! its workload can see, as Istio's `Sidecar` resource and `exportTo` scope them.
//!
//! - **Visibility** (`exportTo`): a VirtualService, DestinationRule or ServiceEntry is seen
//!   from namespace N when its `exportTo` is empty (Istio's default, `*`), has `*`, names N,
//!   or has `.` and lives in N; `~` exports to nobody. A Kubernetes Service says the same with
//!   its `networking.istio.io/exportTo` annotation (comma separated). pilot:
//!   `IsServiceVisible`, `virtualServiceIndex`, `destinationRuleIndex` in
//!   pilot/pkg/model/push_context.go.
//! - **Which Sidecar** (`doGetSidecarScope`, push_context.go): in the workload's namespace,
//!   the first whose `workloadSelector` labels the workload has, else the first without a
//!   selector; else the root namespace's (`istio-system`) selector-less one; else the default
//!   scope, which imports `*/*`. Istio orders by creation time; a directory has none, so file
//!   order stands in for it.
//! - **Egress hosts** (`convertIstioListenerToWrapper`, `selectServices` in
//!   pilot/pkg/model/sidecar.go; `SelectVirtualServices` in virtualservice.go): `ns/dnsName`,
//!   `ns` being a namespace, `*` (any) or `.` (the workload's); `~ns/dnsName` excludes. A
//!   service is imported when an entry for its own namespace or for `*` matches its host
//!   (`dnsName` exact, `*.suffix` or `*`); a VirtualService when one of its hosts (short names
//!   resolved in its namespace) matches an entry for its namespace or `*`, in either direction
//!   (pilot's legacy `Matches`). Several egress listeners are one union here, since a Trellis
//!   sidecar has one outbound route table; `port` and `bind` of a listener are not applied.
//! - **Destinations of imported VirtualServices** are imported too, when visible
//!   (`collectImportedServices`), so a route never names a service its sidecar cannot reach;
//!   pilot trims such a service to the ports the routes use and skips rules whose
//!   `sourceNamespaces` exclude the sidecar, which this does not.
//! - **Also left out**: VirtualServices bound only to gateways (not `mesh`), Sidecars (applied
//!   here), Gateways (a sidecar ignores them), DestinationRules and ServiceEntries none of
//!   whose hosts the sidecar imports.

use std::collections::{BTreeMap, BTreeSet};

use super::document::{Resource as DocResource, SidecarDocument};
use super::snapshot::Snapshot;
use crate::analyze::conflicts::export_scopes;
use crate::analyze::vs_gateways::host_matches;
use crate::istio::{Resource, SidecarSpec, Source, VirtualServiceSpec};
use crate::translate::hosts::{host_covers, resolve};
use crate::translate::inbound_protocols::inbound_protocols;
use crate::translate::workload::ROOT_NAMESPACE;
use crate::translate::{Registry, Workload};

/// The Service annotation carrying its export scopes.
pub const SERVICE_EXPORT_TO_ANNOTATION: &str = "networking.istio.io/exportTo";

/// A sidecar's scope and its document.
#[derive(Clone, Debug, PartialEq)]
pub struct Scoped {
    /// The Sidecar resource that applied, if any.
    pub sidecar: Option<Source>,
    pub document: SidecarDocument,
}

/// The scope of the sidecar in front of `workload`.
pub fn scope(snapshot: &Snapshot, workload: &Workload) -> Scoped {
    ScopeIndex::new(snapshot).scope(snapshot, workload)
}

/// What scoping needs of each resource (export scopes, resolved hosts), computed once per
/// snapshot so that scoping many sidecars does not recompute it each time.
#[derive(Clone, Debug)]
pub struct ScopeIndex {
    digest: u64,
    /// Kubernetes Service host → export scopes (only annotated ones).
    service_scopes: BTreeMap<String, BTreeSet<String>>,
    service_entries: Vec<Indexed>,
    /// Only those bound to `mesh`.
    virtual_services: Vec<Indexed>,
    /// VirtualServices without hosts (delegates), by namespace and name: sent to a sidecar
    /// with the roots that name them (`translate::delegation` merges them there).
    delegates: BTreeMap<(String, String), Indexed>,
    destination_rules: Vec<Indexed>,
}

#[derive(Clone, Debug)]
struct Indexed {
    source: Source,
    scopes: BTreeSet<String>,
    /// Hosts resolved in the resource's namespace.
    hosts: Vec<String>,
    /// A VirtualService's destination hosts (routes and mirror), resolved likewise.
    destinations: Vec<String>,
    /// The delegates a root VirtualService's rules name (namespace, name).
    delegates: Vec<(String, String)>,
}

impl Indexed {
    fn new(source: &Source, export_to: &[String], hosts: &[String]) -> Self {
        Indexed {
            source: source.clone(),
            scopes: export_scopes(export_to, &source.namespace),
            hosts: hosts
                .iter()
                .map(|h| resolve(h, &source.namespace))
                .collect(),
            destinations: Vec::new(),
            delegates: Vec::new(),
        }
    }

    /// A VirtualService's index entry: hosts, destinations and the delegates it names.
    fn virtual_service(vs: &Resource<VirtualServiceSpec>) -> Self {
        let mut indexed = Indexed::new(&vs.source, &vs.spec.export_to, &vs.spec.hosts);
        let rules = vs.spec.http.iter();
        indexed.destinations = rules
            .clone()
            .flat_map(|r| r.route.iter().map(|d| &d.destination).chain(&r.mirror))
            .map(|d| resolve(&d.host, vs.namespace()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        indexed.delegates = rules
            .filter_map(|r| r.delegate.as_ref())
            .map(|d| {
                let ns = d.namespace.as_deref().filter(|n| !n.is_empty());
                (ns.unwrap_or(vs.namespace()).to_string(), d.name.clone())
            })
            .collect();
        indexed
    }
}

impl ScopeIndex {
    pub fn new(snapshot: &Snapshot) -> Self {
        let r = &snapshot.resources;
        ScopeIndex {
            digest: snapshot.digest,
            service_scopes: service_export_scopes(snapshot),
            service_entries: r
                .service_entries
                .iter()
                .map(|se| Indexed::new(&se.source, &se.spec.export_to, &se.spec.hosts))
                .collect(),
            virtual_services: r
                .virtual_services
                .iter()
                .filter(|vs| {
                    !vs.spec.hosts.is_empty()
                        && (vs.spec.gateways.is_empty()
                            || vs.spec.gateways.iter().any(|g| g == "mesh"))
                })
                .map(Indexed::virtual_service)
                .collect(),
            delegates: r
                .virtual_services
                .iter()
                .filter(|vs| vs.spec.hosts.is_empty())
                .map(|vs| {
                    let key = (vs.namespace().to_string(), vs.source.name.clone());
                    (key, Indexed::virtual_service(vs))
                })
                .collect(),
            destination_rules: r
                .destination_rules
                .iter()
                .map(|dr| {
                    Indexed::new(
                        &dr.source,
                        &dr.spec.export_to,
                        std::slice::from_ref(&dr.spec.host),
                    )
                })
                .collect(),
        }
    }

    /// The scope of the sidecar in front of `workload` in `snapshot` (the one indexed).
    pub fn scope(&self, snapshot: &Snapshot, workload: &Workload) -> Scoped {
        debug_assert_eq!(self.digest, snapshot.digest, "index of another snapshot");
        let ns = workload.namespace.as_str();
        let sidecar = sidecar_for(snapshot, workload);
        let imports = match sidecar {
            Some(sc) => Imports::of(&sc.spec, ns),
            None => Imports::everything(),
        };
        // VirtualServices first: the services their routes name are imported too
        // (`collectImportedServices`: "infer more possible destinations from virtual services").
        let mut kept: Vec<&Source> = Vec::new();
        let mut destinations: BTreeSet<&str> = BTreeSet::new();
        for vs in &self.virtual_services {
            let ns_of = vs.source.namespace.as_str();
            if visible_in(&vs.scopes, ns)
                && vs.hosts.iter().any(|h| imports.virtual_service(h, ns_of))
            {
                kept.push(&vs.source);
                destinations.extend(vs.destinations.iter().map(String::as_str));
                for delegate in vs.delegates.iter().filter_map(|d| self.delegates.get(d)) {
                    if !kept.contains(&&delegate.source) {
                        kept.push(&delegate.source);
                        destinations.extend(delegate.destinations.iter().map(String::as_str));
                    }
                }
            }
        }
        let mut registry = Registry {
            dns: snapshot.registry.dns.clone(),
            ..Registry::default()
        };
        for svc in &snapshot.registry.services {
            let visible = self
                .service_scopes
                .get(svc.host.as_str())
                .is_none_or(|scopes| visible_in(scopes, ns));
            if visible
                && (imports.service(&svc.host, &svc.namespace)
                    || destinations.contains(svc.host.as_str()))
            {
                registry.services.push(svc.clone());
            }
        }
        let mut imported_hosts: BTreeSet<&str> =
            registry.services.iter().map(|s| s.host.as_str()).collect();
        let mut entries: Vec<&Source> = Vec::new();
        for se in &self.service_entries {
            let ns_of = se.source.namespace.as_str();
            if visible_in(&se.scopes, ns)
                && se
                    .hosts
                    .iter()
                    .any(|h| imports.service(h, ns_of) || destinations.contains(h.as_str()))
            {
                imported_hosts.extend(se.hosts.iter().map(String::as_str));
                entries.push(&se.source);
            }
        }
        // ServiceEntries before VirtualServices, as in the snapshot.
        entries.extend(kept);
        let mut kept = entries;
        for dr in &self.destination_rules {
            let applies = dr.hosts.iter().any(|host| {
                if host.starts_with('*') {
                    imported_hosts.iter().any(|h| host_covers(host, h))
                } else {
                    imported_hosts.contains(host.as_str())
                }
            });
            if applies && visible_in(&dr.scopes, ns) {
                kept.push(&dr.source);
            }
        }
        // Security policies: those of the root namespace and the workload's (translation in
        // the sidecar picks what selects it), and every namespace-wide PeerAuthentication
        // (auto mTLS asks the destination namespace's mode: `BestEffortInferServiceMTLSMode`).
        let r = &snapshot.resources;
        let own = |source: &Source| {
            source.namespace == ns || source.namespace == crate::translate::workload::ROOT_NAMESPACE
        };
        for pa in &r.peer_authentications {
            if !pa.spec.has_selector() || own(&pa.source) {
                kept.push(&pa.source);
            }
        }
        kept.extend(
            r.authorization_policies
                .iter()
                .map(|p| &p.source)
                .chain(r.request_authentications.iter().map(|p| &p.source))
                .filter(|s| own(s)),
        );
        let resources = kept
            .into_iter()
            .filter_map(|source| {
                Some(DocResource {
                    file: source.file.clone(),
                    document: snapshot.documents.get(source)?.clone(),
                })
            })
            .collect();
        Scoped {
            sidecar: sidecar.map(|s| s.source.clone()),
            document: SidecarDocument {
                registry,
                resources,
                inbound: inbound_protocols(&snapshot.registry, workload)
                    .into_iter()
                    .collect(),
                // The mesh config, with the Sidecar's own outbound traffic policy.
                mesh: (snapshot.mesh)
                    .under_sidecar(sidecar.and_then(|s| s.spec.outbound_traffic_policy.as_ref())),
            },
        }
    }
}

/// Whether a resource with these export scopes is seen from `namespace`.
fn visible_in(scopes: &BTreeSet<String>, namespace: &str) -> bool {
    scopes.contains("*") || scopes.contains(namespace)
}

/// Host → scopes of every Kubernetes Service with an `exportTo` annotation.
fn service_export_scopes(snapshot: &Snapshot) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for svc in &snapshot.kube.services {
        let Some(annotation) = svc
            .object
            .metadata
            .annotations
            .get(SERVICE_EXPORT_TO_ANNOTATION)
            .filter(|a| !a.trim().is_empty())
        else {
            continue;
        };
        let list: Vec<String> = annotation
            .split(',')
            .map(|s| s.trim().to_string())
            .collect();
        out.insert(
            resolve(&svc.source.name, &svc.source.namespace),
            export_scopes(&list, &svc.source.namespace),
        );
    }
    out
}

/// The Sidecar resource that applies to `workload` (see the module docs).
pub fn sidecar_for<'a>(
    snapshot: &'a Snapshot,
    workload: &Workload,
) -> Option<&'a Resource<SidecarSpec>> {
    let sidecars = &snapshot.resources.sidecars;
    let in_ns = |r: &&Resource<SidecarSpec>| r.namespace() == workload.namespace;
    let selected = sidecars.iter().filter(in_ns).find(|r| {
        r.spec
            .workload_selector
            .as_ref()
            .is_some_and(|s| workload.matches_labels(&s.labels))
    });
    let namespace_wide = || {
        sidecars
            .iter()
            .filter(in_ns)
            .find(|r| r.spec.workload_selector.is_none())
    };
    let root = || {
        sidecars
            .iter()
            .find(|r| r.namespace() == ROOT_NAMESPACE && r.spec.workload_selector.is_none())
    };
    selected.or_else(namespace_wide).or_else(root)
}

/// A Sidecar's egress hosts, by namespace (`*` for any).
struct Imports {
    hosts: BTreeMap<String, Vec<String>>,
    excluded: BTreeMap<String, Vec<String>>,
}

impl Imports {
    /// The default scope: `*/*`.
    fn everything() -> Self {
        Imports {
            hosts: BTreeMap::from([("*".to_string(), vec!["*".to_string()])]),
            excluded: BTreeMap::new(),
        }
    }

    /// `egress[].hosts` of `spec`, `.` meaning `namespace`.
    fn of(spec: &SidecarSpec, namespace: &str) -> Self {
        let mut imports = Imports {
            hosts: BTreeMap::new(),
            excluded: BTreeMap::new(),
        };
        let entries = spec.egress.iter().flat_map(|listener| {
            listener
                .get("hosts")
                .and_then(|h| h.as_sequence())
                .map(|s| s.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>())
                .unwrap_or_default()
        });
        for entry in entries {
            let Some((ns, name)) = entry.split_once('/').filter(|(_, n)| !n.contains('/')) else {
                continue; // pilot logs "Illegal host in sidecar resource" and skips it
            };
            let (excluded, ns) = match ns.strip_prefix('~') {
                Some("") => (true, "*"),
                Some(rest) => (true, rest),
                None => (false, ns),
            };
            let ns = if ns == "." { namespace } else { ns };
            let target = if excluded {
                &mut imports.excluded
            } else {
                &mut imports.hosts
            };
            target
                .entry(ns.to_string())
                .or_default()
                .push(name.to_string());
        }
        imports
    }

    /// Whether an entry of `table` for `namespace` or for `*` satisfies `matches`.
    fn any_entry(
        table: &BTreeMap<String, Vec<String>>,
        namespace: &str,
        matches: impl Fn(&str) -> bool,
    ) -> bool {
        [namespace, "*"].iter().any(|ns| {
            table
                .get(*ns)
                .is_some_and(|names| names.iter().any(|n| matches(n)))
        })
    }

    /// `selectServices`: an entry for the service's namespace or `*` covers its host.
    fn service(&self, host: &str, namespace: &str) -> bool {
        let covers = |n: &str| host_covers(n, host);
        !Self::any_entry(&self.excluded, namespace, covers)
            && Self::any_entry(&self.hosts, namespace, covers)
    }

    /// `SelectVirtualServices` (legacy `Matches`: either side may be the wildcard).
    fn virtual_service(&self, host: &str, namespace: &str) -> bool {
        !Self::any_entry(&self.excluded, namespace, |n| host_covers(n, host))
            && Self::any_entry(&self.hosts, namespace, |n| host_matches(host, n))
    }
}
