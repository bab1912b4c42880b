//! The fake API server's writes to ConfigMaps (what istiod's namespace controller does, and
//! `trellis control --kube` after it): `GET` of `/api/v1/namespaces/<ns>/configmaps/<name>`,
//! `POST` and `PUT` of `/api/v1/namespaces/<ns>/configmaps[/<name>]`, with a real server's answers: `404` for a
//! missing object, `409 AlreadyExists` for a second create, `409 Conflict` for a replace whose
//! `resourceVersion` is not the stored one. Every write is an event a watch sees.

use serde_json::{json, Value};

use super::{FakeApiServer, KindKey, Shared};

impl FakeApiServer {
    /// A core (`v1`) object as stored, e.g. `get("configmaps", "shop", "istio-ca-root-cert")`
    /// (`None`: there is none).
    pub fn get(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let kind = (String::new(), plural.to_string());
        let key = (namespace.to_string(), name.to_string());
        self.shared.lock().objects.get(&kind)?.get(&key).cloned()
    }
}

fn status(code: u16, reason: &str, message: String) -> (String, Value) {
    let line = match code {
        404 => "404 Not Found",
        409 => "409 Conflict",
        _ => "400 Bad Request",
    };
    (
        line.to_string(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "details": {}, "code": code}),
    )
}

/// The answer to a ConfigMap request, or `None` when `request_line` is not one.
pub fn configmap_request(
    request_line: &str,
    body: &[u8],
    shared: &Shared,
) -> Option<(String, Value)> {
    let mut words = request_line.split(' ');
    let method = words.next()?;
    let target = words.next()?;
    let path = target.split('?').next()?;
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (namespace, name) = match segments.as_slice() {
        // Lists and watches are the reading side's.
        ["api", "v1", "namespaces", _, "configmaps"] if method == "GET" => return None,
        ["api", "v1", "namespaces", ns, "configmaps"] => (*ns, None),
        ["api", "v1", "namespaces", ns, "configmaps", name] => (*ns, Some(*name)),
        _ => return None,
    };
    let kind: KindKey = (String::new(), "configmaps".to_string());
    let mut state = shared.lock();
    let key = |name: &str| (namespace.to_string(), name.to_string());
    match (method, name) {
        ("GET", Some(name)) => Some(
            match state.objects.get(&kind).and_then(|o| o.get(&key(name))) {
                Some(object) => ("200 OK".to_string(), object.clone()),
                None => status(404, "NotFound", format!("configmaps \"{name}\" not found")),
            },
        ),
        ("POST", None) | ("PUT", Some(_)) => {
            let mut object: Value = match serde_json::from_slice(body) {
                Ok(object) => object,
                Err(e) => return Some(status(400, "BadRequest", e.to_string())),
            };
            let Some(object_name) = object["metadata"]["name"].as_str().map(str::to_string) else {
                return Some(status(
                    400,
                    "BadRequest",
                    "metadata.name is required".into(),
                ));
            };
            let stored = state
                .objects
                .get(&kind)
                .and_then(|o| o.get(&key(&object_name)));
            let stored_version = stored.map(|o| o["metadata"]["resourceVersion"].clone());
            match (method, stored_version) {
                ("POST", Some(_)) => {
                    return Some(status(409, "AlreadyExists",
                        format!("configmaps \"{object_name}\" already exists")))
                }
                ("PUT", None) => {
                    return Some(status(404, "NotFound", format!("configmaps \"{object_name}\" not found")))
                }
                ("PUT", Some(version)) if object["metadata"]["resourceVersion"] != version => {
                    return Some(status(409, "Conflict", format!(
                        "Operation cannot be fulfilled on configmaps \"{object_name}\": the object has been modified")))
                }
                _ => {}
            }
            state.revision += 1;
            let revision = state.revision;
            object["apiVersion"] = json!("v1");
            object["kind"] = json!("ConfigMap");
            object["metadata"]["namespace"] = json!(namespace);
            object["metadata"]["resourceVersion"] = json!(revision.to_string());
            let event = if method == "POST" {
                "ADDED"
            } else {
                "MODIFIED"
            };
            state
                .objects
                .entry(kind.clone())
                .or_default()
                .insert(key(&object_name), object.clone());
            state.events.push((revision, kind, event, object.clone()));
            shared.changed.notify_all();
            let line = if method == "POST" {
                "201 Created"
            } else {
                "200 OK"
            };
            Some((line.to_string(), object))
        }
        _ => Some(status(
            400,
            "BadRequest",
            format!("{method} {path} is not served here"),
        )),
    }
}
