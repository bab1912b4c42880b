//! Application probes through the sidecar (Istio's pkg/kube/inject/app_probe.go).
//!
//! With mTLS the kubelet cannot reach the application's own probe ports through the sidecar,
//! so the injector rewrites each `httpGet`, `tcpSocket` or `grpc` probe of an application
//! container into an `httpGet` on the sidecar's status port (15020) at
//! `/app-health/<container>/readyz|livez|startupz` (`FormatProberURL` in
//! pilot/cmd/pilot-agent/status/server.go), and hands the original probes to the sidecar as
//! JSON in `ISTIO_KUBE_APP_PROBERS`, keyed by those paths (`DumpAppProbers`): named ports are
//! resolved against the container's ports there, and a probe already on the status port is
//! left out, which is what keeps a second injection from recording the rewritten probe.
//!
//! Lifecycle hooks (`/app-lifecycle/.../prestopz|poststartz` in Istio) are left as the
//! application wrote them: the Trellis sidecar serves the three probe paths only.

use std::collections::BTreeMap;

use serde_yaml::{Mapping, Value};

/// `status.KubeAppProberEnvName`.
pub const APP_PROBERS_ENV: &str = "ISTIO_KUBE_APP_PROBERS";

/// The probe fields and the path segment each is served under.
const PROBES: [(&str, &str); 3] = [
    ("readinessProbe", "readyz"),
    ("livenessProbe", "livez"),
    ("startupProbe", "startupz"),
];

fn key(name: &str) -> Value {
    Value::String(name.to_string())
}

/// The original probe as the sidecar will run it (`kubeProbeToInternalProber` then
/// `updateNamedPort`): `None` when it is not a network probe, names a port the container
/// does not have, or already targets the status port.
fn internal_prober(
    probe: &Mapping,
    named_ports: &BTreeMap<String, i64>,
    status_port: u16,
) -> Option<serde_json::Value> {
    let mut out = serde_json::Map::new();
    let action_key = ["httpGet", "tcpSocket", "grpc"]
        .into_iter()
        .find(|k| probe.contains_key(key(k)))?;
    let mut action = probe.get(key(action_key))?.clone();
    if action_key != "grpc" {
        let port = action.get_mut("port")?;
        match port {
            Value::String(name) => *port = Value::from(*named_ports.get(name.as_str())?),
            Value::Number(n) if n.as_i64() == Some(i64::from(status_port)) => return None,
            _ => {}
        }
    }
    out.insert(action_key.to_string(), serde_json::to_value(&action).ok()?);
    if let Some(timeout) = probe.get(key("timeoutSeconds")) {
        out.insert("timeoutSeconds".into(), serde_json::to_value(timeout).ok()?);
    }
    Some(serde_json::Value::Object(out))
}

/// The probe rewritten onto the status port (`convertAppProber`).
fn rewritten(probe: &Mapping, path: &str, status_port: u16) -> Option<Mapping> {
    let mut out = probe.clone();
    let mut http = match out.get(key("httpGet")) {
        Some(Value::Mapping(existing)) => existing.clone(),
        Some(_) => return None,
        None if out.contains_key(key("tcpSocket")) || out.contains_key(key("grpc")) => {
            Mapping::new()
        }
        None => return None,
    };
    out.remove(key("tcpSocket"));
    out.remove(key("grpc"));
    http.insert(key("path"), key(path));
    http.insert(key("port"), Value::from(status_port));
    if http.get(key("scheme")).and_then(Value::as_str) == Some("HTTPS") {
        http.insert(key("scheme"), key("HTTP"));
    }
    out.insert(key("httpGet"), Value::Mapping(http));
    Some(out)
}

/// Rewrite the probes of every container but the sidecar in `containers` (init containers,
/// then containers, as Istio), collecting the originals into `probers`.
pub fn rewrite_probes(
    containers: &mut [Value],
    status_port: u16,
    probers: &mut serde_json::Map<String, serde_json::Value>,
) {
    for container in containers.iter_mut() {
        let Some(container) = container.as_mapping_mut() else {
            continue;
        };
        let name = container
            .get(key("name"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if name == super::PROXY_CONTAINER {
            continue;
        }
        let named_ports: BTreeMap<String, i64> = container
            .get(key("ports"))
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .filter_map(|p| {
                Some((
                    p.get("name")?.as_str()?.to_string(),
                    p.get("containerPort")?.as_i64()?,
                ))
            })
            .collect();
        for (field, segment) in PROBES {
            let Some(Value::Mapping(probe)) = container.get(key(field)) else {
                continue;
            };
            let path = format!("/app-health/{name}/{segment}");
            if let Some(original) = internal_prober(probe, &named_ports, status_port) {
                probers.insert(path.clone(), original);
            }
            if let Some(new_probe) = rewritten(probe, &path, status_port) {
                container.insert(key(field), Value::Mapping(new_probe));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn containers(yaml: &str) -> Vec<Value> {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn http_and_tcp_probes_move_to_the_status_port_and_named_ports_resolve() {
        let mut list = containers(
            r#"
- name: web
  ports: [{name: http, containerPort: 8080}]
  readinessProbe: {httpGet: {path: /ready, port: http, scheme: HTTPS}, timeoutSeconds: 2}
  livenessProbe: {tcpSocket: {port: 8080}, periodSeconds: 5}
  startupProbe: {exec: {command: [true]}}
"#,
        );
        let mut probers = serde_json::Map::new();
        rewrite_probes(&mut list, 15020, &mut probers);
        let web = &list[0];
        assert_eq!(
            web["readinessProbe"]["httpGet"],
            serde_yaml::from_str::<Value>(
                "{path: /app-health/web/readyz, port: 15020, scheme: HTTP}"
            )
            .unwrap()
        );
        assert_eq!(
            web["livenessProbe"]["httpGet"]["path"],
            key("/app-health/web/livez")
        );
        assert!(web["livenessProbe"].get("tcpSocket").is_none());
        assert_eq!(web["livenessProbe"]["periodSeconds"], Value::from(5));
        assert!(
            web["startupProbe"].get("httpGet").is_none(),
            "exec probes stay"
        );
        assert_eq!(
            serde_json::Value::Object(probers),
            serde_json::json!({
                "/app-health/web/readyz": {"httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTPS"}, "timeoutSeconds": 2},
                "/app-health/web/livez": {"tcpSocket": {"port": 8080}},
            })
        );
        // A second pass records nothing new: the probes are on the status port now.
        let mut again = serde_json::Map::new();
        rewrite_probes(&mut list, 15020, &mut again);
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn istios_hello_probes_testdata_rewrites_the_same() {
        // pkg/kube/inject/testdata/inject/hello-probes.yaml(.injected); Istio's lifecycle
        // entries (/app-lifecycle/...) are the part Trellis leaves out (see the module docs).
        let mut list = containers(
            r#"
- name: hello
  ports: [{name: http, containerPort: 80}]
  livenessProbe: {httpGet: {port: http}}
  readinessProbe: {httpGet: {port: 3333}}
- name: world
  ports: [{name: http, containerPort: 90}]
  livenessProbe: {httpGet: {port: http}}
  readinessProbe: {exec: {command: [cat, /tmp/healthy]}}
"#,
        );
        let mut probers = serde_json::Map::new();
        rewrite_probes(&mut list, 15020, &mut probers);
        assert_eq!(
            serde_json::Value::Object(probers).to_string(),
            r#"{"/app-health/hello/livez":{"httpGet":{"port":80}},"/app-health/hello/readyz":{"httpGet":{"port":3333}},"/app-health/world/livez":{"httpGet":{"port":90}}}"#
        );
        let expected: Vec<Value> = containers(
            r#"
- name: hello
  ports: [{name: http, containerPort: 80}]
  livenessProbe: {httpGet: {port: 15020, path: /app-health/hello/livez}}
  readinessProbe: {httpGet: {port: 15020, path: /app-health/hello/readyz}}
- name: world
  ports: [{name: http, containerPort: 90}]
  livenessProbe: {httpGet: {port: 15020, path: /app-health/world/livez}}
  readinessProbe: {exec: {command: [cat, /tmp/healthy]}}
"#,
        );
        assert_eq!(list, expected);
    }
}
