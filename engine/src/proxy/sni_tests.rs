//! Envoy's `server_names` match.

use super::*;

#[test]
fn server_names_match_exactly_or_by_wildcard_suffix() {
    assert!(sni_matches("db.example.com", "DB.example.com"));
    assert!(sni_matches("*.example.com", "db.example.com"));
    assert!(sni_matches("*.example.com", "a.b.example.com"));
    assert!(!sni_matches("*.example.com", "example.com"));
    assert!(!sni_matches("*.example.com", ".example.com"));
    assert!(!sni_matches("*.example.com", "dbexample.com"));
    assert!(!sni_matches("db.example.com", "db.example.org"));
    assert!(!sni_matches("*.é.com", "aé.com"));
}
