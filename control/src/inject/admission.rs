//! The mutating admission webhook's logic: an `admission.k8s.io/v1` `AdmissionReview` in, the
//! review with its `response` out. Sans-IO: the HTTPS server (`trellis control
//! --webhook-listen`) only moves bytes.
//!
//! Follows `serveInject` and `inject` in pkg/kube/inject/webhook.go: a body that is missing,
//! not JSON, or not a review is refused with HTTP 400/415 and a message saying which; a review
//! is always answered with its `uid` echoed. A Pod is injected (the API server already applied
//! the webhook configuration's namespace and object selectors, so only `injectRequired`
//! remains); the answer is `allowed: true` with `patchType: JSONPatch` and the base64 RFC 6902
//! patch from the pod as sent to the pod injected. A pod that is not to be injected is allowed
//! unchanged; one that cannot be (a bad annotation) is refused with the reason, which the API
//! server shows to whoever created it.
//!
//! Native sidecars are decided per pod as the webhook's `inject` does: `DetectNativeSidecar`
//! over the nodes the server watches (its pod's node, or every node), or, without them, only
//! when `ENABLE_NATIVE_SIDECARS=true` ([`super::native`]).

use base64::Engine as _;
use serde_json::{json, Value};

use super::native::{detect, NodeVersions};
use super::patch::diff;
use super::pod::{inject_template, Outcome, Owner, Selection};
use super::settings::InjectSettings;
use super::InjectError;

/// An HTTP answer to `POST /inject`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookAnswer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl WebhookAnswer {
    fn error(status: u16, message: String) -> Self {
        WebhookAnswer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: (message + "\n").into_bytes(),
        }
    }
}

/// The answer to one request to the webhook's path; `nodes`: the nodes' kubelet versions when
/// the server watches them.
pub fn answer(
    content_type: Option<&str>,
    body: &[u8],
    settings: &InjectSettings,
    nodes: Option<&NodeVersions>,
) -> WebhookAnswer {
    if body.is_empty() {
        return WebhookAnswer::error(400, "no body found".into());
    }
    let media_type = content_type.map(|c| {
        c.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    });
    if media_type.as_deref() != Some("application/json") {
        return WebhookAnswer::error(
            415,
            format!(
                "contentType={}, expect application/json",
                content_type.unwrap_or("(none)")
            ),
        );
    }
    let review: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return WebhookAnswer::error(400, format!("could not decode body: {e}")),
    };
    let api_version = review.get("apiVersion").and_then(Value::as_str);
    let kind = review.get("kind").and_then(Value::as_str);
    if kind != Some("AdmissionReview") || api_version != Some("admission.k8s.io/v1") {
        return WebhookAnswer::error(
            400,
            format!(
                "expected an admission.k8s.io/v1 AdmissionReview, got apiVersion {api_version:?} kind {kind:?}"
            ),
        );
    }
    let Some(request) = review.get("request") else {
        return WebhookAnswer::error(400, "the AdmissionReview has no request".into());
    };
    let Some(uid) = request.get("uid").and_then(Value::as_str) else {
        return WebhookAnswer::error(400, "the AdmissionReview's request has no uid".into());
    };
    let response = match respond(request, settings, nodes) {
        Ok(Some(patch)) => json!({
            "uid": uid,
            "allowed": true,
            "patchType": "JSONPatch",
            "patch": base64::engine::general_purpose::STANDARD.encode(patch),
        }),
        Ok(None) => json!({"uid": uid, "allowed": true}),
        Err(e) => json!({
            "uid": uid,
            "allowed": false,
            "status": {"message": e.to_string(), "code": 400},
        }),
    };
    let out = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    });
    WebhookAnswer {
        status: 200,
        content_type: "application/json",
        body: out.to_string().into_bytes(),
    }
}

/// The JSONPatch for the request's pod (`None`: allowed unchanged).
fn respond(
    request: &Value,
    settings: &InjectSettings,
    nodes: Option<&NodeVersions>,
) -> Result<Option<Vec<u8>>, InjectError> {
    let kind = request
        .get("kind")
        .and_then(|k| k.get("kind"))
        .and_then(Value::as_str);
    if kind != Some("Pod") {
        // Only pods are selected by the webhook configuration; let anything else through.
        return Ok(None);
    }
    let Some(object) = request.get("object").filter(|o| o.is_object()) else {
        return Err(InjectError::Invalid("the request has no object".into()));
    };
    let mut pod: serde_yaml::Value =
        serde_yaml::to_value(object).map_err(|e| InjectError::Invalid(format!("the pod: {e}")))?;
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|ns| !ns.is_empty())
        .or_else(|| request.get("namespace").and_then(Value::as_str))
        .unwrap_or("default")
        .to_string();
    let owner = pod_owner(object);
    let node_name = object
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let native = detect(settings.native_sidecars, nodes, node_name);
    let map = pod
        .as_mapping_mut()
        .ok_or_else(|| InjectError::Invalid("the pod is not an object".into()))?;
    let take =
        |map: &mut serde_yaml::Mapping, field: &str| -> Result<serde_yaml::Mapping, InjectError> {
            match map.remove(field) {
                None | Some(serde_yaml::Value::Null) => Ok(serde_yaml::Mapping::new()),
                Some(serde_yaml::Value::Mapping(m)) => Ok(m),
                Some(_) => Err(InjectError::Invalid(format!(
                    "the pod's {field} is not an object"
                ))),
            }
        };
    let mut metadata = take(map, "metadata")?;
    let mut spec = take(map, "spec")?;
    let outcome = inject_template(
        &mut metadata,
        &mut spec,
        &namespace,
        &owner,
        Selection::Webhook,
        settings,
        native,
    )?;
    if outcome != Outcome::Injected {
        return Ok(None);
    }
    map.insert("metadata".into(), serde_yaml::Value::Mapping(metadata));
    map.insert("spec".into(), serde_yaml::Value::Mapping(spec));
    let injected: Value =
        serde_json::to_value(&pod).map_err(|e| InjectError::Internal(e.to_string()))?;
    let patch = diff(object, &injected);
    serde_json::to_vec(&patch)
        .map(Some)
        .map_err(|e| InjectError::Internal(e.to_string()))
}

/// The pod's workload (`GetDeployMetaFromPod` in pkg/kube/util.go): its controller, with a
/// ReplicaSet carrying `pod-template-hash` read as its Deployment; else the pod itself.
pub fn pod_owner(pod: &Value) -> Owner {
    let text = |v: &Value, p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let controller = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|refs| {
            refs.iter()
                .find(|r| r.get("controller") == Some(&Value::Bool(true)))
        });
    let Some(controller) = controller else {
        let name = match text(pod, "/metadata/name") {
            n if !n.is_empty() => n,
            _ => text(pod, "/metadata/generateName")
                .trim_end_matches('-')
                .to_string(),
        };
        return Owner {
            name,
            api_version: "v1".into(),
            kind: "Pod".into(),
        };
    };
    let mut owner = Owner {
        name: text(controller, "/name"),
        api_version: text(controller, "/apiVersion"),
        kind: text(controller, "/kind"),
    };
    let hash = text(pod, "/metadata/labels/pod-template-hash");
    if owner.kind == "ReplicaSet" && !hash.is_empty() {
        if let Some(deployment) = owner.name.strip_suffix(&format!("-{hash}")) {
            owner = Owner {
                name: deployment.into(),
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
            };
        }
    }
    owner
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(kind: &str, object: Value) -> Vec<u8> {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
               "request": {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": kind},
                           "namespace": "shop", "object": object}})
        .to_string()
        .into_bytes()
    }

    fn response(answer: &WebhookAnswer) -> Value {
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        serde_json::from_slice::<Value>(&answer.body).unwrap()["response"].clone()
    }

    #[test]
    fn other_kinds_and_opted_out_pods_are_allowed_without_a_patch() {
        let settings = InjectSettings::default();
        let service = answer(
            Some("application/json"),
            &review("Service", json!({})),
            &settings,
            None,
        );
        assert_eq!(response(&service), json!({"uid": "u-1", "allowed": true}));
        let opted_out = json!({"metadata": {"annotations": {"sidecar.istio.io/inject": "false"}},
                               "spec": {"containers": [{"name": "a"}]}});
        let answer = answer(
            Some("application/json; charset=utf-8"),
            &review("Pod", opted_out),
            &settings,
            None,
        );
        assert_eq!(response(&answer), json!({"uid": "u-1", "allowed": true}));
    }

    #[test]
    fn a_pod_is_patched_in_the_requests_namespace() {
        let pod = json!({"metadata": {"name": "web-0", "labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "web"}]}});
        let answer = answer(
            Some("application/json"),
            &review("Pod", pod),
            &InjectSettings::default(),
            None,
        );
        let response = response(&answer);
        assert_eq!(response["patchType"], "JSONPatch");
        let patch = base64::engine::general_purpose::STANDARD
            .decode(response["patch"].as_str().unwrap())
            .unwrap();
        let ops: Vec<Value> = serde_json::from_slice(&patch).unwrap();
        let config = ops
            .iter()
            .find(|op| op["path"] == "/metadata/annotations")
            .map(|op| {
                op["value"]["sidecar.trellis.dev/proxyConfig"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .unwrap();
        assert!(config.contains(r#""namespace":"shop""#), "{config}");
    }

    /// The pod's containers after applying the answer's patch (`add` of whole lists only,
    /// which is all a first injection of these pods adds under /spec).
    fn patched_spec(answer: &WebhookAnswer, pod: &Value) -> Value {
        let response = response(answer);
        let patch = base64::engine::general_purpose::STANDARD
            .decode(response["patch"].as_str().expect("a patch"))
            .expect("base64");
        let ops: Vec<Value> = serde_json::from_slice(&patch).expect("JSON Patch");
        let mut spec = pod["spec"].clone();
        for op in ops {
            if let Some(field) = op["path"].as_str().and_then(|p| p.strip_prefix("/spec/")) {
                if !field.contains('/') {
                    spec[field] = op["value"].clone();
                } else if let Some((list, index)) = field.split_once('/') {
                    let index: usize = index.parse().expect("index");
                    let items = spec[list].as_array_mut().expect("list");
                    items.insert(index, op["value"].clone());
                }
            }
        }
        spec
    }

    fn names(list: &Value) -> Vec<&str> {
        list.as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect()
    }

    #[test]
    fn auto_mode_detects_native_sidecars_from_the_pods_node() {
        // DetectNativeSidecar (pkg/kube/inject/webhook.go): the pod's node decides.
        let settings = InjectSettings {
            native_sidecars: crate::inject::NativeSidecarMode::Auto,
            ..InjectSettings::default()
        };
        let nodes = NodeVersions(
            [("new", "v1.33.1"), ("old", "v1.31.4")]
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        );
        for (node, native) in [("new", true), ("old", false)] {
            let pod = json!({"metadata": {"name": "job-x"},
                             "spec": {"nodeName": node, "containers": [{"name": "work"}]}});
            let answer = answer(
                Some("application/json"),
                &review("Pod", pod.clone()),
                &settings,
                Some(&nodes),
            );
            let spec = patched_spec(&answer, &pod);
            if native {
                assert_eq!(
                    names(&spec["initContainers"]),
                    ["istio-init", "istio-proxy"]
                );
                assert_eq!(names(&spec["containers"]), ["work"]);
            } else {
                assert_eq!(names(&spec["initContainers"]), ["istio-init"]);
                assert_eq!(names(&spec["containers"]), ["istio-proxy", "work"]);
            }
        }
        // Without a view of the nodes, auto is off.
        let pod = json!({"spec": {"containers": [{"name": "work"}]}});
        let answer = answer(
            Some("application/json"),
            &review("Pod", pod.clone()),
            &settings,
            None,
        );
        assert_eq!(
            names(&patched_spec(&answer, &pod)["initContainers"]),
            ["istio-init"]
        );
    }

    #[test]
    fn the_owner_of_a_replica_set_pod_is_its_deployment() {
        let pod = json!({"metadata": {"generateName": "reviews-v1-7f9-", "labels": {"pod-template-hash": "7f9"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "reviews-v1-7f9", "controller": true}]}});
        let owner = pod_owner(&pod);
        assert_eq!(
            (owner.name.as_str(), owner.kind.as_str()),
            ("reviews-v1", "Deployment")
        );
        let bare = pod_owner(&json!({"metadata": {"generateName": "debug-"}}));
        assert_eq!((bare.name.as_str(), bare.kind.as_str()), ("debug", "Pod"));
    }
}
