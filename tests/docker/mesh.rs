//! The mesh the Docker test builds, as files: the private network's addresses, the control
//! plane's directory (Kubernetes and Istio YAML), each sidecar's config file, the web app (a
//! Python server) and its document root, written on the host and mounted read-only into the
//! containers.

use std::path::{Path, PathBuf};

/// The application containers' image: the local Debian base (python3 and curl are in it).
pub const APP_IMAGE: &str = "trellis-base:bookworm";
pub const WEB_PORT: u16 = 8000;
/// How long the web app's slow endpoint takes; the sidecar's drain allowance is longer.
pub const SLOW_SECONDS: u64 = 3;

/// The addresses on the private network (its /24 is chosen at run time).
pub struct Addresses {
    pub prefix: String,
}

impl Addresses {
    pub fn host(&self, last: u8) -> String {
        format!("{}.{last}", self.prefix)
    }
    pub fn control(&self) -> String {
        self.host(2)
    }
    pub fn sleep(&self) -> String {
        self.host(10)
    }
    pub fn web(&self) -> String {
        self.host(20)
    }
    pub fn plain(&self) -> String {
        self.host(30)
    }
}

/// The whole setup, and what the steps need to reach it.
pub struct Mesh {
    pub image: String,
    pub prefix: String,
    pub network: String,
    pub addresses: Addresses,
    pub files: PathBuf,
}

impl Mesh {
    /// `docker run -d` of a container named `name` on the mesh's network at `ip`, found by
    /// `alias` there; the caller adds the rest (mounts, image, command).
    pub fn run_on_network(&self, name: &str, ip: &str, alias: &str) -> Vec<String> {
        let network = &self.network;
        [
            "run",
            "-d",
            "--name",
            name,
            "--network",
            network,
            "--ip",
            ip,
            "--network-alias",
            alias,
        ]
        .map(String::from)
        .to_vec()
    }
}

/// The control plane's directory (Kubernetes and Istio YAML), the sidecars' config file, and
/// the web app's document root, on the host, mounted read-only into the containers.
pub fn write_files(mesh: &Mesh) {
    let a = &mesh.addresses;
    let mesh_dir = mesh.files.join("mesh");
    let sidecar_dir = mesh.files.join("sidecar");
    let www = mesh.files.join("www");
    let app = mesh.files.join("app");
    for dir in [
        &mesh_dir,
        &app,
        &sidecar_dir.join("web"),
        &sidecar_dir.join("sleep"),
        &www.join("private"),
        &www.join("cgi-bin"),
    ] {
        std::fs::create_dir_all(dir).expect("create test directories");
    }
    let kube = format!(
        r#"# What `kubectl apply` would have been given: the namespace opted into injection, two
# Services and their Pods (podIP: the address the pod has on the Docker network) as the
# injector leaves them: labelled security.istio.io/tlsMode=istio (clients use mTLS to them),
# each with its service account (the sa/ of its SPIFFE id).
apiVersion: v1
kind: Namespace
metadata: {{name: default, labels: {{istio-injection: enabled}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: {WEB_PORT}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: sleep}}
spec:
  selector: {{app: sleep}}
  ports: [{{name: http, port: 80}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: web, labels: {{app: web, version: v1, security.istio.io/tlsMode: istio}}}}
spec:
  serviceAccountName: web
  containers: [{{name: web, image: {APP_IMAGE}, ports: [{{containerPort: {WEB_PORT}}}]}}]
status: {{podIP: {web}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: sleep, labels: {{app: sleep, security.istio.io/tlsMode: istio}}}}
spec:
  serviceAccountName: sleep
  containers: [{{name: sleep, image: {APP_IMAGE}}}]
status: {{podIP: {sleep}}}
"#,
        web = a.web(),
        sleep = a.sleep(),
    );
    let istio = r#"# The route: an x-fault: abort request is aborted with 418, every other one reaches web
# with a response header only the mesh adds.
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
  - name: abort
    match: [{headers: {x-fault: {exact: abort}}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: web}}]
  - name: default
    route: [{destination: {host: web}}]
    headers: {response: {set: {x-mesh-route: web-default}}}
---
# The policy, enforced by web's sidecar on its inbound side.
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-private}
spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/private/*"]}}]}]
"#;
    // Each sidecar's file: the capture listeners and who its workload is (what Istio's
    // injector hands the proxy from the pod: labels, namespace, service account; the
    // certificate the sidecar asks the control plane for names that account).
    let sidecar = |app: &str| {
        format!(
            "# Outbound capture (15001: routed by the mesh, unknown destinations passed\n\
             # through to where they were going) and inbound capture (15006: to the app on\n\
             # 127.0.0.1 at the port the client dialled).\n\
             listeners:\n\
             \x20 - {{name: virtualOutbound, address: \"0.0.0.0:15001\", direction: outbound, passthrough: true}}\n\
             \x20 - {{name: virtualInbound, address: \"0.0.0.0:15006\", direction: inbound, forwardTo: \"127.0.0.1\"}}\n\
             workload: {{namespace: default, serviceAccount: {app}, labels: {{app: {app}}}}}\n"
        )
    };
    let (web_sidecar, sleep_sidecar) = (sidecar("web"), sidecar("sleep"));
    let slow = format!(
        "#!/bin/sh\n\
         # A slow endpoint for the drain check: marks itself started, then answers late.\n\
         : > /tmp/started.$$\n\
         sleep {SLOW_SECONDS}\n\
         printf 'Content-Type: text/plain\\r\\n\\r\\nslow done\\n'\n"
    );
    let writes: [(PathBuf, &str); 8] = [
        (app.join("web.py"), WEB_APP),
        (mesh_dir.join("kube.yaml"), &kube),
        (mesh_dir.join("istio.yaml"), istio),
        (sidecar_dir.join("web/sidecar.yaml"), &web_sidecar),
        (sidecar_dir.join("sleep/sidecar.yaml"), &sleep_sidecar),
        (www.join("hello.txt"), "hello from web\n"),
        (www.join("private/secret.txt"), "secret\n"),
        (www.join("cgi-bin/slow.sh"), &slow),
    ];
    for (path, text) in writes {
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
    set_mode(&www.join("cgi-bin/slow.sh"), 0o755);
    // The containers' users (nobody for CGI, 1337 for the sidecar) read these.
    for dir in [
        &mesh.files,
        &app,
        &mesh_dir,
        &sidecar_dir,
        &sidecar_dir.join("web"),
        &sidecar_dir.join("sleep"),
        &www,
        &www.join("private"),
        &www.join("cgi-bin"),
    ] {
        set_mode(dir, 0o755);
    }
}

/// The web app: Python's `http.server` with CGI (`/cgi-bin/slow.sh`), serving the current
/// directory, plus `/headers`, which answers with the request's headers as the app received
/// them (so the test sees the `x-forwarded-client-cert` its sidecar added). CGI scripts never
/// see arbitrary headers (`CGIHTTPRequestHandler.run_cgi` passes a fixed few), hence a handler.
const WEB_APP: &str = r#"import http.server
import sys


class Handler(http.server.CGIHTTPRequestHandler):
    def do_GET(self):
        if self.path.split("?")[0] != "/headers":
            return super().do_GET()
        body = "".join(f"{k}: {v}\n" for k, v in self.headers.items()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Handler).serve_forever()
"#;

/// `HOST:CONTAINER:ro`, a read-only bind mount for `docker run -v`.
pub fn mount(host: &Path, container: &str) -> String {
    format!("{}:{container}:ro", host.display())
}

/// Put `yaml` into the control plane's directory as `name.yaml`, whole: written aside, then
/// renamed in, so the control plane's poll never reads half a file.
pub fn apply(mesh: &Mesh, name: &str, yaml: &str) {
    let aside = mesh.files.join(format!("{name}.yaml.new"));
    let path = mesh.files.join("mesh").join(format!("{name}.yaml"));
    std::fs::write(&aside, yaml).unwrap_or_else(|e| panic!("write {}: {e}", aside.display()));
    set_mode(&aside, 0o644);
    std::fs::rename(&aside, &path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}
