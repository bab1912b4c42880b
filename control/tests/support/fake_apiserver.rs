//! A Kubernetes API server double for tests: the list/watch protocol kube's watcher speaks,
//! over plain HTTP/1.1 on loopback, with objects held in memory.
//!
//! - `GET /api/v1/<plural>` and `/apis/<group>/<version>/<plural>` list every object of the
//!   kind, in pages (`limit`, `continue`), with `metadata.resourceVersion` in the list; items
//!   of built-in kinds carry no `apiVersion`/`kind`, as a real server's lists do.
//! - `?watch=true&resourceVersion=N` streams, as newline-delimited JSON in a chunked
//!   response, every `ADDED`/`MODIFIED`/`DELETED` event after `N`, a `BOOKMARK` when the
//!   watch's `timeoutSeconds` ends it, and an `ERROR` event with a `410` Status when `N` is
//!   older than what the server still has ([`FakeApiServer::expire_watches`]).
//! - A list or watch is of every namespace or one (`/api/v1/namespaces/<ns>/<plural>`), with
//!   `metadata.name`/`metadata.namespace` field selectors (`fake_apiserver_scope.rs`).
//! - A kind that is not served (a CRD not installed) answers `404` with a Status.
//! - `POST /apis/authentication.k8s.io/v1/tokenreviews` answers a TokenReview: the tokens
//!   given to [`FakeApiServer::add_token`] authenticate as their service account, any other
//!   is not authenticated (the fields istiod's `getTokenReviewResult` reads).
//! - ConfigMaps are written too (`GET`/`POST`/`PUT` of one object): `fake_apiserver_writes.rs`.
//! - [`FakeApiServer::stop`] drops the listener and every connection; `restart` serves the
//!   same objects on the same port again, as an API server in front of the same etcd would.

#![allow(dead_code)]

#[path = "fake_apiserver_http.rs"]
mod http;
#[path = "fake_apiserver_scope.rs"]
mod scope;
#[path = "fake_apiserver_writes.rs"]
mod writes;

use http::{chunk, not_found, respond};

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// `(group, plural)`: a kind as the server stores it, whatever version it is asked at.
type KindKey = (String, String);
/// `(namespace, name)`.
type ObjectKey = (String, String);

#[derive(Default)]
struct State {
    revision: u64,
    /// Served kinds → versions (the built-in kinds at v1; CRDs as installed).
    served: BTreeMap<KindKey, BTreeSet<String>>,
    objects: BTreeMap<KindKey, BTreeMap<ObjectKey, Value>>,
    /// `(revision, kind, type, object)`, oldest first.
    events: Vec<(u64, KindKey, &'static str, Value)>,
    /// A watch from a revision below this is answered `410 Gone`.
    oldest: u64,
    /// Bumped by `expire_watches`: open watches end with `410 Gone`.
    epoch: u64,
    /// Bumped by `stop`: open connections are dropped.
    incarnation: u64,
    /// Every request line, in order.
    requests: Vec<String>,
    /// Service-account tokens: token → (namespace, service account).
    tokens: BTreeMap<String, (String, String)>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The server. Dropping it stops it.
pub struct FakeApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accepting: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

/// The plural of a kind as Kubernetes forms it for the kinds used here.
pub fn plural(kind: &str) -> String {
    let lower = kind.to_lowercase();
    match lower.strip_suffix('y') {
        Some(stem) if !stem.ends_with(['a', 'e', 'o', 'u']) => format!("{stem}ies"),
        _ => format!("{lower}s"),
    }
}

fn kind_key_of(object: &Value) -> KindKey {
    let api_version = object["apiVersion"].as_str().unwrap_or("v1");
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let kind = object["kind"].as_str().expect("object without kind");
    (group.to_string(), plural(kind))
}

fn object_key_of(object: &Value) -> ObjectKey {
    let meta = &object["metadata"];
    (
        meta["namespace"].as_str().unwrap_or("").to_string(),
        meta["name"]
            .as_str()
            .expect("object without name")
            .to_string(),
    )
}

impl FakeApiServer {
    /// Serve on a free loopback port, the built-in kinds installed, no CRD.
    pub fn start() -> FakeApiServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake API server");
        let addr = listener.local_addr().expect("local address");
        let mut state = State {
            revision: 1,
            ..State::default()
        };
        for (group, plural) in [
            ("", "namespaces"),
            ("", "services"),
            ("", "pods"),
            ("", "serviceaccounts"),
            ("", "configmaps"),
            ("", "nodes"),
            ("discovery.k8s.io", "endpointslices"),
        ] {
            state.served.insert(
                (group.to_string(), plural.to_string()),
                BTreeSet::from(["v1".to_string()]),
            );
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            changed: Condvar::new(),
        });
        let mut server = FakeApiServer {
            addr,
            shared,
            accepting: None,
        };
        server.accept_on(listener);
        server
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kubeconfig pointing at this server, written under `dir`.
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\nusers:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: fake, namespace: default}}\ncurrent-context: fake\n",
            self.addr
        );
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    /// Install a CRD: `plural.group` served at `versions`.
    pub fn install_crd(&self, group: &str, plural: &str, versions: &[&str]) {
        let mut state = self.shared.lock();
        state.served.insert(
            (group.to_string(), plural.to_string()),
            versions.iter().map(|v| v.to_string()).collect(),
        );
    }

    /// Install Istio's networking and security CRDs (all their versions).
    pub fn install_istio_crds(&self) {
        for plural in [
            "virtualservices",
            "destinationrules",
            "gateways",
            "serviceentries",
            "sidecars",
            "workloadentries",
        ] {
            self.install_crd(
                "networking.istio.io",
                plural,
                &["v1", "v1beta1", "v1alpha3"],
            );
        }
        for plural in [
            "peerauthentications",
            "authorizationpolicies",
            "requestauthentications",
        ] {
            self.install_crd("security.istio.io", plural, &["v1", "v1beta1"]);
        }
    }

    /// Create or replace an object (`kubectl apply`): an `ADDED` or `MODIFIED` event.
    pub fn apply(&self, mut object: Value) {
        let mut state = self.shared.lock();
        state.revision += 1;
        let revision = state.revision;
        let kind = kind_key_of(&object);
        let meta = object["metadata"].as_object_mut().expect("metadata");
        let cluster_scoped = ["namespaces", "nodes"].contains(&kind.1.as_str());
        if !cluster_scoped && !meta.contains_key("namespace") {
            // `kubectl apply` puts a namespaced object without one in its context's namespace.
            meta.insert("namespace".into(), json!("default"));
        }
        let key = object_key_of(&object);
        let meta = object["metadata"].as_object_mut().expect("metadata");
        meta.insert("resourceVersion".into(), json!(revision.to_string()));
        meta.entry("uid")
            .or_insert_with(|| json!(format!("uid-{}-{}-{}", kind.1, key.0, key.1)));
        let objects = state.objects.entry(kind.clone()).or_default();
        let kind_of_event = if objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        objects.insert(key, object.clone());
        state.events.push((revision, kind, kind_of_event, object));
        self.shared.changed.notify_all();
    }

    /// Every document of a YAML text, applied in order.
    pub fn apply_yaml(&self, text: &str) {
        use serde::Deserialize;
        for doc in serde_yaml::Deserializer::from_str(text) {
            let value = serde_json::to_value(serde_yaml::Value::deserialize(doc).unwrap()).unwrap();
            if !value.is_null() {
                self.apply(value);
            }
        }
    }

    /// Delete an object: a `DELETED` event.
    pub fn delete(&self, api_version: &str, kind: &str, namespace: &str, name: &str) {
        let removed = self.remove(api_version, kind, namespace, name);
        let mut state = self.shared.lock();
        state.revision += 1;
        let revision = state.revision;
        let key = kind_key_of(&json!({"apiVersion": api_version, "kind": kind}));
        state.events.push((revision, key, "DELETED", removed));
        self.shared.changed.notify_all();
    }

    /// Delete an object without an event a watch could see (as if it had been compacted
    /// away): only a relist can learn of it.
    pub fn delete_silently(&self, api_version: &str, kind: &str, namespace: &str, name: &str) {
        self.remove(api_version, kind, namespace, name);
    }

    fn remove(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Value {
        let mut state = self.shared.lock();
        let key = kind_key_of(&json!({"apiVersion": api_version, "kind": kind}));
        state
            .objects
            .get_mut(&key)
            .and_then(|o| o.remove(&(namespace.to_string(), name.to_string())))
            .unwrap_or_else(|| panic!("no {kind} {namespace}/{name} to delete"))
    }

    /// Compact history: every open watch ends with `410 Gone`, and watches from an older
    /// resourceVersion are refused with it, so clients must list again.
    pub fn expire_watches(&self) {
        let mut state = self.shared.lock();
        state.oldest = state.revision + 1;
        state.epoch += 1;
        self.shared.changed.notify_all();
    }

    /// Stop answering: the listener closes and every open connection is dropped.
    pub fn stop(&mut self) {
        if let Some((stop, thread)) = self.accepting.take() {
            stop.store(true, Ordering::SeqCst);
            let _ = thread.join();
        }
        self.shared.lock().incarnation += 1;
        self.shared.changed.notify_all();
    }

    /// Serve again on the same port, with the same objects.
    pub fn restart(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.addr) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("rebind {}: {e}", self.addr),
            }
        };
        self.accept_on(listener);
    }

    /// `token` authenticates as `namespace`/`service_account` in TokenReviews.
    pub fn add_token(&self, token: &str, namespace: &str, service_account: &str) {
        let account = (namespace.to_string(), service_account.to_string());
        self.shared.lock().tokens.insert(token.to_string(), account);
    }

    /// Every request line received so far.
    pub fn requests(&self) -> Vec<String> {
        self.shared.lock().requests.clone()
    }

    fn accept_on(&mut self, listener: TcpListener) {
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        let shared = Arc::clone(&self.shared);
        let thread = std::thread::spawn(move || {
            while !stop_flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let shared = Arc::clone(&shared);
                        std::thread::spawn(move || serve(stream, &shared));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        self.accepting = Some((stop, thread));
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One connection: one request, answered, then closed.
fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nonblocking(false);
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut length = 0;
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => return,
            Ok(_) if header == "\r\n" || header == "\n" => break,
            Ok(_) => {
                if let Some((name, value)) = header.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
            }
        }
    }
    let request_line = request_line.trim_end().to_string();
    let incarnation = {
        let mut state = shared.lock();
        state.requests.push(request_line.clone());
        state.incarnation
    };
    let mut body = vec![0; length];
    if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
        return;
    }
    if let Some((status, answer)) = writes::configmap_request(&request_line, &body, shared) {
        return respond(stream, &status, &answer);
    }
    if request_line.starts_with("POST /apis/authentication.k8s.io/v1/tokenreviews") {
        let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let token = review["spec"]["token"].as_str().unwrap_or_default();
        let account = shared.lock().tokens.get(token).cloned();
        let status = match account {
            Some((ns, sa)) => {
                json!({"authenticated": true, "audiences": review["spec"]["audiences"],
                "user": {"username": format!("system:serviceaccount:{ns}:{sa}"),
                         "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{ns}"),
                                    "system:authenticated"]}})
            }
            None => json!({"authenticated": false, "error": "invalid bearer token"}),
        };
        let answer = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                            "metadata": {}, "spec": review["spec"], "status": status});
        return respond(stream, "201 Created", &answer);
    }
    let target = request_line.split(' ').nth(1).unwrap_or("/").to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let params: BTreeMap<&str, &str> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let Some(scope) = scope::Scope::of(path, &params) else {
        return not_found(stream);
    };
    let (group, version) = (scope.group, scope.version);
    let kind: KindKey = (group.to_string(), scope.plural.to_string());
    let api_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    {
        let state = shared.lock();
        if !state.served.get(&kind).is_some_and(|v| v.contains(version)) {
            drop(state);
            return not_found(stream);
        }
    }
    if params.get("watch") == Some(&"true") {
        watch(
            stream,
            shared,
            &kind,
            &scope,
            &api_version,
            &params,
            incarnation,
        );
    } else {
        list(stream, shared, &kind, &scope, &api_version, &params);
    }
}

/// An object as served at `api_version`: CRs at the version asked, built-in kinds as given.
fn served_object(object: &Value, api_version: &str, group: &str) -> Value {
    let mut object = object.clone();
    if !group.is_empty() {
        object["apiVersion"] = json!(api_version);
    }
    object
}

fn list(
    stream: TcpStream,
    shared: &Shared,
    kind: &KindKey,
    scope: &scope::Scope<'_>,
    api_version: &str,
    params: &BTreeMap<&str, &str>,
) {
    let state = shared.lock();
    let all: Vec<&Value> = state
        .objects
        .get(kind)
        .map(|o| o.values().filter(|o| scope.keeps(o)).collect())
        .unwrap_or_default();
    let start: usize = params
        .get("continue")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let limit: usize = params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(usize::MAX);
    let end = start.saturating_add(limit).min(all.len());
    let items: Vec<Value> = all[start.min(end)..end]
        .iter()
        .map(|o| {
            let mut item = served_object(o, api_version, &kind.0);
            if kind.0.is_empty() || kind.0 == "discovery.k8s.io" {
                // A real server's lists of built-in kinds leave these out.
                if let Some(map) = item.as_object_mut() {
                    map.remove("apiVersion");
                    map.remove("kind");
                }
            }
            item
        })
        .collect();
    let mut metadata = json!({"resourceVersion": state.revision.to_string()});
    if end < all.len() {
        metadata["continue"] = json!(end.to_string());
    }
    let body =
        json!({"kind": "List", "apiVersion": api_version, "metadata": metadata, "items": items});
    drop(state);
    respond(stream, "200 OK", &body);
}

fn watch(
    mut stream: TcpStream,
    shared: &Shared,
    kind: &KindKey,
    scope: &scope::Scope<'_>,
    api_version: &str,
    params: &BTreeMap<&str, &str>,
    incarnation: u64,
) {
    let from: u64 = params
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map_or(Duration::from_secs(290), Duration::from_secs);
    let bookmarks = params.get("allowWatchBookmarks") == Some(&"true");
    let deadline = Instant::now() + timeout;
    if write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return;
    }
    let gone = |revision: u64, oldest: u64| {
        json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "reason": "Expired", "code": 410,
            "message": format!("too old resource version: {revision} ({oldest})")}})
    };
    let mut sent = from;
    let mut state = shared.lock();
    let epoch = state.epoch;
    if from < state.oldest {
        let event = gone(from, state.oldest);
        drop(state);
        let _ = chunk(&mut stream, &event);
        let _ = write!(stream, "0\r\n\r\n");
        return;
    }
    loop {
        if state.incarnation != incarnation {
            // Stopped: drop the connection mid-stream, as a dying server does.
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
        if state.epoch != epoch {
            let event = gone(sent, state.oldest);
            drop(state);
            let _ = chunk(&mut stream, &event);
            let _ = write!(stream, "0\r\n\r\n");
            return;
        }
        let pending: Vec<Value> = state
            .events
            .iter()
            .filter(|(revision, k, _, o)| *revision > sent && k == kind && scope.keeps(o))
            .map(|(_, _, kind_of_event, object)| {
                json!({"type": kind_of_event, "object": served_object(object, api_version, &kind.0)})
            })
            .collect();
        sent = state.revision;
        if Instant::now() >= deadline {
            // A real bookmark names the kind; the objects held tell it here.
            let kind_name = state
                .objects
                .get(kind)
                .and_then(|o| o.values().next())
                .and_then(|o| o["kind"].as_str())
                .unwrap_or("Unknown")
                .to_string();
            let bookmark = bookmarks.then(|| {
                json!({"type": "BOOKMARK", "object": {"apiVersion": api_version, "kind": kind_name,
                    "metadata": {"resourceVersion": state.revision.to_string()}}})
            });
            drop(state);
            for event in pending.iter().chain(bookmark.iter()) {
                let _ = chunk(&mut stream, event);
            }
            let _ = write!(stream, "0\r\n\r\n");
            return;
        }
        if !pending.is_empty() {
            drop(state);
            for event in &pending {
                if chunk(&mut stream, event).is_err() {
                    return;
                }
            }
            state = shared.lock();
            continue;
        }
        state = shared
            .changed
            .wait_timeout(state, Duration::from_millis(50))
            .map(|(guard, _)| guard)
            .unwrap_or_else(|e| e.into_inner().0);
    }
}
