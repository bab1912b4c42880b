//! Envoy's `server_names` match for L4 filter chains; the ClientHello peek it reads the name
//! from is the transport layer's ([`crate::transport::client_hello`]).

pub use crate::transport::client_hello::{peek, Peek};

/// Whether `sni` matches one of Envoy's `server_names`: exact, or `*.suffix` for any name
/// ending in `.suffix` (at least one label before it). Case-insensitive.
pub fn sni_matches(pattern: &str, sni: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            let (sni, suffix) = (sni.as_bytes(), suffix.as_bytes());
            sni.len() > suffix.len() + 1
                && sni[sni.len() - suffix.len() - 1] == b'.'
                && sni[sni.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        }
        None => pattern.eq_ignore_ascii_case(sni),
    }
}

#[cfg(test)]
#[path = "sni_tests.rs"]
mod tests;
