//! Fetching the JWKS of a RequestAuthentication `jwksUri`, on the control side only: pilot's
//! JWKS resolver (`pilot/pkg/model/jwks_resolver.go`) with its default `istiod` fetch mode.
//! The sidecar never fetches; it receives the keys inline, as pilot pushes a `local_jwks`.
//!
//! - A `jwksUri` is fetched over HTTP(S) with the rule's timeout (default 5 s); a rule with an
//!   issuer and no URI finds it by OpenID discovery (`<issuer>/.well-known/openid-configuration`,
//!   its `jwks_uri`).
//! - Results are cached per (issuer, URI). [`JwksResolver::refresh`] fetches every cached
//!   entry again (the control plane calls it every 20 minutes, pilot's
//!   `PILOT_JWT_PUB_KEY_REFRESH_INTERVAL`, and every minute while some fetch fails) and says
//!   whether anything changed, so the control plane pushes only then; an entry unused or not
//!   refreshed for a week is dropped (`JwtPubKeyEvictionDuration`).
//! - A fetch that fails is not an open door: the rule gets [`PUBLIC_ONLY_JWKS`], a key whose
//!   private half was discarded when it was made, so every token of that issuer fails with
//!   `Jwt verification fails` until a fetch succeeds (pilot's `PublicOnlyJwks`, "fail closed").
//!
//! Wall-clock time is used here (cache ages), never in the engine.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// pilot's default fetch timeout for a JWT rule without `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// pilot's `PILOT_JWT_PUB_KEY_REFRESH_INTERVAL` default.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(20 * 60);
/// pilot's `JwtPubKeyRefreshIntervalOnFailure`.
pub const REFRESH_INTERVAL_ON_FAILURE: Duration = Duration::from_secs(60);
/// pilot's `JwtPubKeyEvictionDuration`.
pub const EVICTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// A JWKS whose one RSA key has no private half anywhere (generated for Trellis with openssl
/// and the private key shredded): no token can verify against it.
pub const PUBLIC_ONLY_JWKS: &str = r#"{"keys":[{"kty":"RSA","e":"AQAB","n":"x0QoirUTEvVyOGd-2P82X5iDYdtl002AGNFKpmXb1kgIhBEKX0mAGyPnx9ll9n8HROX5V7MIa14NKrooBxQWLUzv-R_90y7hj529Wr8nDQcY7GLOlw9ki2IDZFH14gm_qwIoXRXhxfFsL0eFoOK6RUmOA9fWHund5P4dwPkJtV32Dzx5qzLgX9t6wBhBi7XfucWREKxZ94hyEROmANw1ws7WWfoRQR6h8geI0nZaUGLy83XIhbNHBdrNgYO9qtUGOu3ng2518xcwfIa9Oj3fSsHz0A2bDM5e_LRhLSfFEyXPN7bbGoiEpfx16cOgiKZU_lGOuiiW35pYit9kGGX6Kw"}]}"#;

/// Fetch one URL's body (GET, success status only) within a timeout.
pub type Fetch = dyn Fn(&str, Duration) -> Result<String, String> + Send + Sync;

/// Where translation gets the JWKS text of a rule that names only a URI (or only an issuer).
pub trait JwksSource {
    /// The JWKS text, or why it could not be had.
    fn resolve(&self, issuer: &str, uri: &str, timeout: Duration) -> Result<String, String>;
}

/// For the sidecar, which never fetches: every URI is an error (its rule fails closed).
pub struct NoFetch;

impl JwksSource for NoFetch {
    fn resolve(&self, _issuer: &str, uri: &str, _timeout: Duration) -> Result<String, String> {
        Err(format!(
            "jwksUri {uri:?} reached the sidecar unresolved: the control plane fetches JWKS, \
             a sidecar never does"
        ))
    }
}

#[derive(Clone, Debug)]
struct Entry {
    /// The last good JWKS text, `None` until a fetch succeeds.
    jwks: Option<String>,
    timeout: Duration,
    last_refreshed: Option<Instant>,
    last_used: Instant,
    last_error: Option<String>,
}

/// The cache and the fetcher.
pub struct JwksResolver {
    fetch: Box<Fetch>,
    entries: Mutex<BTreeMap<(String, String), Entry>>,
}

impl std::fmt::Debug for JwksResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksResolver").finish_non_exhaustive()
    }
}

impl Default for JwksResolver {
    fn default() -> Self {
        JwksResolver::with_fetcher(Box::new(http_get))
    }
}

impl JwksResolver {
    /// A resolver fetching with `fetch` (tests give their own).
    pub fn with_fetcher(fetch: Box<Fetch>) -> Self {
        JwksResolver {
            fetch,
            entries: Mutex::new(BTreeMap::new()),
        }
    }

    /// The process-wide resolver (`trellis proxy --config` and `trellis control` share its
    /// cache within one process).
    pub fn global() -> &'static JwksResolver {
        static GLOBAL: OnceLock<JwksResolver> = OnceLock::new();
        GLOBAL.get_or_init(JwksResolver::default)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Entry>> {
        // A panic while holding the lock leaves plain data: keep using it.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fetch the JWKS at `uri`, or (empty `uri`) the one OpenID discovery names for `issuer`.
    fn fetch_now(&self, issuer: &str, uri: &str, timeout: Duration) -> Result<String, String> {
        if !uri.is_empty() {
            return (self.fetch)(uri, timeout);
        }
        if issuer.is_empty() {
            return Err("neither jwksUri nor issuer to discover it from".into());
        }
        let discovery = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let doc = (self.fetch)(&discovery, timeout)?;
        let doc: serde_json::Value = serde_json::from_str(&doc)
            .map_err(|e| format!("OpenID discovery document {discovery}: {e}"))?;
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| format!("OpenID discovery document {discovery} has no jwks_uri"))?;
        (self.fetch)(jwks_uri, timeout)
    }

    /// Whether the last fetch of some cached entry failed (the control plane then refreshes
    /// sooner).
    pub fn has_failures(&self) -> bool {
        self.lock().values().any(|e| e.last_error.is_some())
    }

    /// `(issuer, uri, error)` of every entry whose last fetch failed, for the log.
    pub fn failures(&self) -> Vec<(String, String, String)> {
        self.lock()
            .iter()
            .filter_map(|((issuer, uri), e)| {
                let err = e.last_error.clone()?;
                Some((issuer.clone(), uri.clone(), err))
            })
            .collect()
    }

    /// Fetch every cached entry again (dropping those unused or stale for [`EVICTION`]);
    /// `true` when some JWKS text changed.
    pub fn refresh(&self) -> bool {
        let now = Instant::now();
        let keys: Vec<((String, String), Duration)> = {
            let mut entries = self.lock();
            entries.retain(|_, e| {
                now.duration_since(e.last_used) < EVICTION
                    && e.last_refreshed
                        .is_none_or(|t| now.duration_since(t) < EVICTION)
            });
            entries
                .iter()
                .map(|(k, e)| (k.clone(), e.timeout))
                .collect()
        };
        let mut changed = false;
        for ((issuer, uri), timeout) in keys {
            // Fetch without the lock: a slow server must not block translation.
            let result = self.fetch_now(&issuer, &uri, timeout);
            let mut entries = self.lock();
            let Some(entry) = entries.get_mut(&(issuer.clone(), uri.clone())) else {
                continue;
            };
            match result {
                Ok(text) => {
                    changed |= entry.jwks.as_deref() != Some(text.as_str());
                    entry.jwks = Some(text);
                    entry.last_refreshed = Some(Instant::now());
                    entry.last_error = None;
                }
                // The last good JWKS (or the fail-closed one) stays; the error is reported by
                // `failures`.
                Err(e) => entry.last_error = Some(e),
            }
        }
        changed
    }
}

impl JwksSource for JwksResolver {
    /// The cached JWKS, or a fetch now (pilot's `GetPublicKey`: no retry on this path).
    fn resolve(&self, issuer: &str, uri: &str, timeout: Duration) -> Result<String, String> {
        let key = (issuer.to_string(), uri.to_string());
        let now = Instant::now();
        if let Some(entry) = self.lock().get_mut(&key) {
            entry.last_used = now;
            entry.timeout = timeout;
            if let Some(jwks) = &entry.jwks {
                return Ok(jwks.clone());
            }
        }
        let result = self.fetch_now(issuer, uri, timeout);
        let mut entries = self.lock();
        let entry = entries.entry(key).or_insert_with(|| Entry {
            jwks: None,
            timeout,
            last_refreshed: None,
            last_used: now,
            last_error: None,
        });
        match &result {
            Ok(text) => {
                entry.jwks = Some(text.clone());
                entry.last_refreshed = Some(Instant::now());
                entry.last_error = None;
            }
            Err(e) => entry.last_error = Some(e.clone()),
        }
        result
    }
}

/// GET `url` with ureq (rustls, Mozilla's roots), whole-request timeout, 2xx only.
fn http_get(url: &str, timeout: Duration) -> Result<String, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .build()
        .into();
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("GET {url}: reading the body: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn counting(body: &'static str) -> (Arc<AtomicUsize>, JwksResolver) {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let resolver = JwksResolver::with_fetcher(Box::new(move |url, _| {
            c.fetch_add(1, Ordering::SeqCst);
            match url {
                "https://issuer.example/.well-known/openid-configuration" => {
                    Ok(r#"{"jwks_uri":"https://issuer.example/keys"}"#.into())
                }
                "https://issuer.example/keys" | "https://keys.example/jwks.json" => Ok(body.into()),
                other => Err(format!("connection refused: {other}")),
            }
        }));
        (calls, resolver)
    }

    #[test]
    fn a_resolved_uri_is_cached_and_fetched_again_only_on_refresh() {
        let (calls, r) = counting(r#"{"keys":[]}"#);
        let uri = "https://keys.example/jwks.json";
        assert_eq!(
            r.resolve("iss", uri, DEFAULT_TIMEOUT).unwrap(),
            r#"{"keys":[]}"#
        );
        assert_eq!(
            r.resolve("iss", uri, DEFAULT_TIMEOUT).unwrap(),
            r#"{"keys":[]}"#
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "the second resolve is a cache hit"
        );
        assert!(!r.refresh(), "same text: nothing to push");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn an_issuer_without_uri_is_resolved_by_openid_discovery() {
        let (calls, r) = counting(r#"{"keys":[1]}"#);
        assert_eq!(
            r.resolve("https://issuer.example/", "", DEFAULT_TIMEOUT)
                .unwrap(),
            r#"{"keys":[1]}"#
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2, "discovery, then the keys");
    }

    #[test]
    fn a_failed_fetch_is_reported_and_retried_by_refresh() {
        let (_, r) = counting("{}");
        let err = r
            .resolve("iss", "https://down.example/jwks", DEFAULT_TIMEOUT)
            .unwrap_err();
        assert!(err.contains("connection refused"), "{err}");
        assert!(r.has_failures());
        assert!(!r.refresh());
        assert!(r.has_failures(), "still failing");
    }

    #[test]
    fn the_public_only_jwks_is_a_valid_set_with_one_rsa_key() {
        let jwks = trellis_engine::authn::Jwks::parse(PUBLIC_ONLY_JWKS).unwrap();
        assert_eq!(jwks.len(), 1);
        assert!(jwks.skipped().is_empty());
    }

    #[test]
    fn the_sidecar_source_never_fetches() {
        let err = NoFetch
            .resolve("iss", "https://keys.example/jwks.json", DEFAULT_TIMEOUT)
            .unwrap_err();
        assert!(err.contains("never"), "{err}");
    }
}
