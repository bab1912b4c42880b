//! Kubernetes Secrets holding TLS credentials, for a Gateway server's `credentialName`.
//!
//! pilot serves a gateway's certificates from Secrets in the gateway's namespace
//! (pilot/pkg/credentials/kube/secrets.go): `ExtractCertInfo` takes `cert`/`key` (a generic
//! Secret) or `tls.crt`/`tls.key` (a `kubernetes.io/tls` Secret), an empty value counting as
//! missing; `GetCaCert` looks for `<name>-cacert` first, then `<name>` itself, and
//! `ExtractRoot` takes `cacert` or `ca.crt`. The errors say which keys were expected and which
//! were found, as pilot's do. Secrets are read from the same YAML as the Istio resources
//! (`kind: Secret`, `data` base64 as Kubernetes stores it, or `stringData`), and are never sent
//! to sidecars.

use std::collections::BTreeMap;

use base64::Engine as _;

use super::Source;

/// A Secret's data, decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct TlsSecret {
    pub source: Source,
    data: BTreeMap<String, Vec<u8>>,
}

/// What a server's certificate needs from Secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    pub chain_pem: String,
    pub key_pem: String,
}

impl TlsSecret {
    /// Read a `v1 Secret` document: `data` values are base64, `stringData` values text (the
    /// API server folds `stringData` into `data`, later keys winning).
    pub fn from_value(value: &serde_yaml::Value, source: Source) -> Result<TlsSecret, String> {
        let mut data = BTreeMap::new();
        if let Some(map) = value.get("data").and_then(serde_yaml::Value::as_mapping) {
            for (k, v) in map {
                let (Some(k), Some(v)) = (k.as_str(), v.as_str()) else {
                    return Err("data: keys and values are strings".to_string());
                };
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v.split_whitespace().collect::<String>())
                    .map_err(|e| format!("data.{k}: not base64: {e}"))?;
                data.insert(k.to_string(), bytes);
            }
        }
        if let Some(map) = value
            .get("stringData")
            .and_then(serde_yaml::Value::as_mapping)
        {
            for (k, v) in map {
                let (Some(k), Some(v)) = (k.as_str(), v.as_str()) else {
                    return Err("stringData: keys and values are strings".to_string());
                };
                data.insert(k.to_string(), v.as_bytes().to_vec());
            }
        }
        Ok(TlsSecret { source, data })
    }

    fn has_value(&self, keys: &[&str]) -> bool {
        keys.iter()
            .all(|k| self.data.get(*k).is_some_and(|v| !v.is_empty()))
    }

    fn has_keys(&self, keys: &[&str]) -> bool {
        keys.iter().all(|k| self.data.contains_key(*k))
    }

    fn text(&self, key: &str) -> Result<String, String> {
        let bytes = self.data.get(key).cloned().unwrap_or_default();
        String::from_utf8(bytes).map_err(|_| format!("key {key:?} is not PEM text"))
    }

    /// The keys found, as pilot's `truncatedKeysMessage` lists them.
    fn found(&self) -> String {
        let keys: Vec<&str> = self.data.keys().map(String::as_str).collect();
        if keys.len() < 3 {
            keys.join(", ")
        } else {
            format!("{}, and {} more...", keys[..3].join(", "), keys.len() - 3)
        }
    }

    /// pilot's `ExtractCertInfo`.
    pub fn cert_info(&self) -> Result<CertInfo, String> {
        for (cert, key) in [("cert", "key"), ("tls.crt", "tls.key")] {
            if self.has_value(&[cert, key]) {
                return Ok(CertInfo {
                    chain_pem: self.text(cert)?,
                    key_pem: self.text(key)?,
                });
            }
        }
        for (cert, key) in [("cert", "key"), ("tls.crt", "tls.key")] {
            if self.has_keys(&[cert, key]) {
                return Err(format!(
                    "found keys {cert:?} and {key:?}, but they were empty"
                ));
            }
        }
        Err(format!(
            "found secret, but didn't have expected keys (cert and key) or (tls.crt and tls.key); found: {}",
            self.found()
        ))
    }

    /// pilot's `ExtractRoot`.
    pub fn root(&self) -> Result<String, String> {
        for key in ["cacert", "ca.crt"] {
            if self.has_value(&[key]) {
                return self.text(key);
            }
        }
        for key in ["cacert", "ca.crt"] {
            if self.has_keys(&[key]) {
                return Err(format!("found key {key:?}, but it was empty"));
            }
        }
        Err(format!(
            "found secret, but didn't have expected keys cacert or ca.crt; found: {}",
            self.found()
        ))
    }
}

/// The Secrets a gateway proxy can read: those of its own namespace.
#[derive(Clone, Copy, Debug)]
pub struct Credentials<'a> {
    pub secrets: &'a [TlsSecret],
    pub namespace: &'a str,
}

impl Credentials<'_> {
    fn get(&self, name: &str) -> Option<&TlsSecret> {
        self.secrets
            .iter()
            .find(|s| s.source.name == name && s.source.namespace == self.namespace)
    }

    /// pilot's `GetCertInfo`: the server certificate and key of Secret `name`.
    pub fn cert_info(&self, name: &str) -> Result<CertInfo, String> {
        self.get(name)
            .ok_or_else(|| format!("secret {}/{name} not found", self.namespace))?
            .cert_info()
            .map_err(|e| format!("secret {}/{name}: {e}", self.namespace))
    }

    /// pilot's `GetCaCert` for `name` (a `credentialName`, or a `caCertCredentialName`):
    /// `<name>-cacert` first, then `<name>`.
    pub fn ca_cert(&self, name: &str) -> Result<String, String> {
        let separate = format!("{name}-cacert");
        let (found, secret) = match self.get(&separate) {
            Some(s) => (separate, s),
            None => (
                name.to_string(),
                self.get(name)
                    .ok_or_else(|| format!("secret {}/{name} not found", self.namespace))?,
            ),
        };
        secret
            .root()
            .map_err(|e| format!("secret {}/{found}: {e}", self.namespace))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str, yaml: &str) -> TlsSecret {
        let value: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
        let source = Source {
            file: "s.yaml".into(),
            kind: "Secret".into(),
            namespace: "istio-system".into(),
            name: name.into(),
        };
        TlsSecret::from_value(&value, source).unwrap()
    }

    /// pilot/pkg/credentials/kube/secrets.go: generic keys first, then the TLS type's; a
    /// separate `<name>-cacert` Secret for the CA wins over the Secret's own `ca.crt`.
    #[test]
    fn keys_and_lookups_follow_pilot() {
        let tls = secret(
            "web",
            "data: {tls.crt: Q0VSVA==, tls.key: S0VZ, ca.crt: T1dO}\n",
        );
        let generic = secret("web-cacert", "stringData: {cacert: SEPARATE}\n");
        assert_eq!(
            tls.cert_info(),
            Ok(CertInfo {
                chain_pem: "CERT".into(),
                key_pem: "KEY".into()
            })
        );
        let only = [tls.clone()];
        let creds = Credentials {
            secrets: &only,
            namespace: "istio-system",
        };
        assert_eq!(creds.ca_cert("web").as_deref(), Ok("OWN"));
        let both = [tls, generic];
        let creds = Credentials {
            secrets: &both,
            namespace: "istio-system",
        };
        assert_eq!(creds.ca_cert("web").as_deref(), Ok("SEPARATE"));
        assert!(creds
            .cert_info("missing")
            .unwrap_err()
            .contains("not found"));
        let other_ns = Credentials {
            secrets: &both,
            namespace: "default",
        };
        assert!(
            other_ns.cert_info("web").is_err(),
            "a gateway reads its own namespace"
        );
    }

    #[test]
    fn empty_and_missing_keys_are_named() {
        let empty = secret("e", "stringData: {tls.crt: \"\", tls.key: \"\"}\n");
        assert_eq!(
            empty.cert_info().unwrap_err(),
            "found keys \"tls.crt\" and \"tls.key\", but they were empty"
        );
        let other = secret("o", "stringData: {a: x, b: y, c: z, d: w}\n");
        assert!(other
            .cert_info()
            .unwrap_err()
            .ends_with("found: a, b, c, and 1 more..."));
        assert!(other.root().unwrap_err().contains("cacert or ca.crt"));
        let bad: serde_yaml::Value = serde_yaml::from_str("data: {tls.crt: \"!!\"}").unwrap();
        let source = Source {
            file: "s.yaml".into(),
            kind: "Secret".into(),
            namespace: "default".into(),
            name: "bad".into(),
        };
        assert!(TlsSecret::from_value(&bad, source).is_err());
    }
}
