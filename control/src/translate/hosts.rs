//! Host names as Istio resolves them, and the authorities a virtual host answers to.
//!
//! Istio expands a short name (no dot) in the namespace of the resource that wrote it:
//! `reviews` in `default` is `reviews.default.svc.cluster.local`. A name with a dot is taken as
//! fully qualified (so `reviews.default` is *not* expanded, as in istiod). The sidecar's route
//! table then lists every way a client can spell a Kubernetes service, with and without port.

/// The cluster domain suffix of Kubernetes service hosts.
pub const CLUSTER_SUFFIX: &str = "svc.cluster.local";

/// Resolve a host as written in a resource of namespace `namespace`.
pub fn resolve(host: &str, namespace: &str) -> String {
    if host.contains('.') || host.contains('*') {
        host.to_string()
    } else {
        format!("{host}.{namespace}.{CLUSTER_SUFFIX}")
    }
}

/// Every authority a client in namespace `client_namespace` may use for `fqdn` served on
/// `ports`, each also with `:port`, as pilot lists a virtual host's domains for a sidecar whose
/// DNS domain is `<client_namespace>.svc.cluster.local` (generateVirtualHostDomains,
/// GenerateAltVirtualHosts and generateAltVirtualHostsForKubernetesService in
/// pilot/pkg/networking/core/httproute.go): for a Kubernetes host `name.ns.svc.cluster.local`
/// the FQDN, `name.ns` and `name.ns.svc`, and the bare `name` only when `ns` is the client's
/// own namespace; for other hosts the host alone; wildcards as they are.
pub fn domains(fqdn: &str, ports: &[u16], client_namespace: &str) -> Vec<String> {
    if fqdn.contains('*') {
        return vec![fqdn.to_string()];
    }
    let mut names = Vec::new();
    if let Some(stem) = fqdn.strip_suffix(&format!(".{CLUSTER_SUFFIX}")) {
        // pilot cuts at the first `.svc.` and the first `.`: `name` and `ns` are what lies
        // around that first dot (`ns` may itself hold dots, then it is never the client's).
        let stem = fqdn.find(".svc.").map_or(stem, |i| &fqdn[..i]);
        if let Some((name, ns)) = stem.split_once('.') {
            if ns == client_namespace {
                names.push(name.to_string());
            }
            names.push(stem.to_string());
            names.push(format!("{stem}.svc"));
        }
    }
    names.push(fqdn.to_string());
    let mut out = Vec::with_capacity(names.len() * (ports.len() + 1));
    for name in &names {
        out.push(name.clone());
        for port in ports {
            out.push(format!("{name}:{port}"));
        }
    }
    out
}

/// Whether `host` (possibly a `*.suffix` wildcard) covers `fqdn`.
pub fn host_covers(host: &str, fqdn: &str) -> bool {
    if host == "*" || host == fqdn {
        return true;
    }
    match host.strip_prefix('*') {
        Some(suffix) => fqdn.ends_with(suffix) && fqdn.len() > suffix.len(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_expand_in_namespace() {
        assert_eq!(resolve("reviews", "shop"), "reviews.shop.svc.cluster.local");
        assert_eq!(resolve("reviews.default", "shop"), "reviews.default");
        assert_eq!(resolve("www.googleapis.com", "x"), "www.googleapis.com");
        assert_eq!(resolve("*", "x"), "*");
    }

    #[test]
    fn kubernetes_domains() {
        let d = domains("reviews.default.svc.cluster.local", &[9080], "default");
        for want in [
            "reviews",
            "reviews:9080",
            "reviews.default",
            "reviews.default:9080",
            "reviews.default.svc",
            "reviews.default.svc:9080",
            "reviews.default.svc.cluster.local",
            "reviews.default.svc.cluster.local:9080",
        ] {
            assert!(d.iter().any(|x| x == want), "missing {want} in {d:?}");
        }
        assert_eq!(d.len(), 8);
    }

    #[test]
    fn external_and_wildcard_domains() {
        assert_eq!(
            domains("www.googleapis.com", &[80, 443], "default"),
            vec![
                "www.googleapis.com",
                "www.googleapis.com:80",
                "www.googleapis.com:443"
            ]
        );
        assert_eq!(domains("*.example.com", &[80], "x"), vec!["*.example.com"]);
    }

    /// generateAltVirtualHostsForKubernetesService (pilot/pkg/networking/core/httproute.go): a
    /// client in another namespace gets `name.ns` and `name.ns.svc`, never the bare `name`,
    /// which would shadow (or be shadowed by) a service of that name in its own namespace.
    #[test]
    fn short_name_only_from_the_same_namespace() {
        let d = domains("reviews.shop.svc.cluster.local", &[], "default");
        assert_eq!(
            d,
            [
                "reviews.shop",
                "reviews.shop.svc",
                "reviews.shop.svc.cluster.local"
            ]
        );
        let d = domains("reviews.shop.svc.cluster.local", &[], "shop");
        assert_eq!(d[0], "reviews");
        assert_eq!(d.len(), 4);
        // A name with no namespace part is not a Kubernetes service: the FQDN only.
        assert_eq!(
            domains("reviews.svc.cluster.local", &[], "default"),
            ["reviews.svc.cluster.local"]
        );
    }

    #[test]
    fn wildcard_cover() {
        assert!(host_covers("*.example.com", "a.example.com"));
        assert!(!host_covers("*.example.com", "example.com"));
        assert!(host_covers("*", "anything"));
        assert!(!host_covers("a.b", "a.c"));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use quickcheck_macros::quickcheck;

    #[quickcheck]
    fn domains_are_unique_and_include_the_fqdn(name: String, ports: Vec<u16>) -> bool {
        let name: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(20)
            .collect();
        if name.is_empty() {
            return true;
        }
        let mut ports = ports;
        ports.sort_unstable();
        ports.dedup();
        let fqdn = resolve(&name, "ns");
        let d = domains(&fqdn, &ports, "ns");
        let mut sorted = d.clone();
        sorted.sort();
        sorted.dedup();
        sorted.len() == d.len()
            && d.contains(&fqdn)
            && d.contains(&name)
            && d.len() == 4 * (ports.len() + 1)
    }

    #[quickcheck]
    fn resolve_is_idempotent(host: String, ns: String) -> bool {
        let ns: String = ns.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        let once = resolve(&host, &ns);
        resolve(&once, &ns) == once || !once.contains('.')
    }
}
