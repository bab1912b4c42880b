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

/// Every authority a client may use for `fqdn` served on `ports`: for a Kubernetes host
/// `name.ns.svc.cluster.local`, `name`, `name.ns`, `name.ns.svc` and the FQDN, each also with
/// `:port`; for other hosts the host and `host:port`; wildcards as they are.
pub fn domains(fqdn: &str, ports: &[u16]) -> Vec<String> {
    if fqdn.contains('*') {
        return vec![fqdn.to_string()];
    }
    let mut names = Vec::new();
    if let Some(stem) = fqdn.strip_suffix(&format!(".{CLUSTER_SUFFIX}")) {
        if let Some((name, ns)) = stem.split_once('.') {
            if !ns.contains('.') {
                names.push(name.to_string());
                names.push(format!("{name}.{ns}"));
                names.push(format!("{name}.{ns}.svc"));
            }
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
        let d = domains("reviews.default.svc.cluster.local", &[9080]);
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
            domains("www.googleapis.com", &[80, 443]),
            vec![
                "www.googleapis.com",
                "www.googleapis.com:80",
                "www.googleapis.com:443"
            ]
        );
        assert_eq!(domains("*.example.com", &[80]), vec!["*.example.com"]);
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
        let d = domains(&fqdn, &ports);
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
