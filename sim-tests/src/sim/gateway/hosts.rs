//! Host-name relations as pilot computes them (pkg/config/host/name.go), for the gateway
//! world's generator and its reference alike.

/// `Name.SubsetOf`: every name `n` matches is matched by `o` (`*` wildcards on either side).
pub fn subset_of(n: &str, o: &str) -> bool {
    match (n.strip_prefix('*'), o.strip_prefix('*')) {
        (Some(n_rest), Some(o_rest)) => n.len() >= o.len() && n_rest.ends_with(o_rest),
        (Some(_), None) => false,
        (None, Some(o_rest)) => n.ends_with(o_rest),
        (None, None) => n == o,
    }
}

/// `Name.Matches`: the two names overlap (some name is matched by both).
pub fn overlaps(n: &str, o: &str) -> bool {
    match (n.strip_prefix('*'), o.strip_prefix('*')) {
        (Some(n_rest), Some(o_rest)) if n.len() < o.len() => o_rest.ends_with(n_rest),
        (Some(n_rest), Some(o_rest)) => n_rest.ends_with(o_rest),
        (Some(n_rest), None) => o.ends_with(n_rest),
        (None, Some(o_rest)) => n.ends_with(o_rest),
        (None, None) => n == o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// pilot's `TestNameMatches` and `TestNameSubsetOf` cases (pkg/config/host/name_test.go),
    /// in kind.
    #[test]
    fn subsets_and_overlaps_as_pilot_has_them() {
        assert!(subset_of("a.example.com", "*.example.com"));
        assert!(subset_of("*.a.example.com", "*.example.com"));
        assert!(!subset_of("*.example.com", "*.a.example.com"));
        assert!(subset_of("*.example.com", "*"));
        assert!(!subset_of("*", "*.example.com"));
        assert!(overlaps("*", "*.example.com"));
        assert!(overlaps("*.example.com", "*"));
        assert!(overlaps("*.example.com", "a.example.com"));
        assert!(!overlaps("c.other.org", "*.example.com"));
    }
}
