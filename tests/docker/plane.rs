//! The Docker mesh's control plane with its certificate authority, as a cluster runs istiod:
//! the CA's plug-in files (`trellis ca init`, Istio's `cacerts` secret) mounted into the
//! control-plane container, which serves the push channel over TLS with a certificate for its
//! Service name and signs the sidecars' workload certificates on that channel; each sidecar
//! gets only the mesh root, mounted where Istio's injector mounts the `istio-ca-root-cert`
//! ConfigMap, to check the control plane with.
//!
//! Who may claim which identity: in a cluster the sidecar sends its pod's service-account token
//! and the control plane has the API server review it (TokenReview). These containers have no
//! API server, so the control plane runs with `--trust-node-claims` (signs the namespace and
//! service account the sidecar names, as `e2e_plane_mtls` does) and the test says so;
//! the token path is `e2e_plane_kube`'s.

use std::time::Duration;

use super::mesh::{mount, set_mode, Mesh};
use super::pod::{logs, running};
use super::{docker, wait_until, Cleanup};

/// The name sidecars dial (the trellis-control Service's, a network alias of the container):
/// one of the names the control plane's serving certificate is issued for.
pub const PLANE_NAME: &str = "trellis-control.trellis-system.svc";
pub const PLANE_PORT: u16 = 15012;
/// Where Istio's injector mounts the mesh root (`istio-ca-root-cert`) in the sidecar.
pub const ROOT_CERT_PATH: &str = "/var/run/secrets/istio/root-cert.pem";

/// The CA's directory on the host (made by [`make_ca`]).
pub fn ca_dir(mesh: &Mesh) -> std::path::PathBuf {
    mesh.files.join("ca")
}

/// `trellis ca init` in a container of the image: a root and an intermediate, written as the
/// image's user (1337, who runs the control plane and reads the keys).
pub fn make_ca(mesh: &Mesh, cleanup: &mut Cleanup) {
    let dir = ca_dir(mesh);
    std::fs::create_dir_all(&dir).expect("create the CA directory");
    set_mode(&dir, 0o777);
    let name = format!("{}-ca-init", mesh.prefix);
    cleanup.container(&name);
    let volume = format!("{}:/ca", dir.display());
    docker(&[
        "run",
        "--rm",
        "--name",
        &name,
        "-v",
        &volume,
        &mesh.image,
        "ca",
        "init",
        "--dir",
        "/ca",
    ])
    .expect("`trellis ca init` in a container");
    assert!(
        dir.join("root-cert.pem").is_file(),
        "`trellis ca init` wrote no root-cert.pem"
    );
}

/// The sidecar's mount of the mesh root (only the root: never the CA's keys).
pub fn root_cert_mount(mesh: &Mesh) -> String {
    mount(&ca_dir(mesh).join("root-cert.pem"), ROOT_CERT_PATH)
}

/// `trellis control` in its container, serving `mesh/` over mTLS with the CA of [`make_ca`].
pub fn start_control_plane(mesh: &Mesh, cleanup: &mut Cleanup) {
    let name = format!("{}-control", mesh.prefix);
    cleanup.container(&name);
    let ip = mesh.addresses.control();
    let listen = format!("0.0.0.0:{PLANE_PORT}");
    let mut args = mesh.run_on_network(&name, &ip, PLANE_NAME);
    args.extend(
        [
            "-v",
            &mount(&mesh.files.join("mesh"), "/mesh"),
            "-v",
            &mount(&ca_dir(mesh), "/etc/cacerts"),
            &mesh.image,
            "control",
            "--dir",
            "/mesh",
            "--listen",
            &listen,
            "--poll-ms",
            "200",
            "--ca-dir",
            "/etc/cacerts",
            "--trust-node-claims",
        ]
        .map(String::from),
    );
    docker(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .expect("the control plane container starts");
    wait_until(
        "the control plane to serve over mTLS",
        Duration::from_secs(30),
        || {
            let logs = logs(&name);
            if logs.contains("ERROR") || !running(&name) {
                panic!("the control plane failed:\n{logs}");
            }
            (logs.contains("push channel over mTLS") && logs.contains(&PLANE_PORT.to_string()))
                .then_some(())
                .ok_or(logs)
        },
    );
}

/// The sidecar's arguments for the push channel: the control plane by name, checked with the
/// mounted root; its certificate comes over that channel.
pub fn sidecar_channel_args() -> Vec<String> {
    vec![
        "--control-plane".into(),
        format!("{PLANE_NAME}:{PLANE_PORT}"),
        "--control-plane-ca".into(),
        ROOT_CERT_PATH.into(),
    ]
}

/// Wait for the sidecar's log line saying the control plane's certificate is installed, and
/// return the SPIFFE id it names.
pub fn wait_for_certificate(sidecar: &str) -> String {
    wait_until(
        &format!("{sidecar} to install its workload certificate"),
        Duration::from_secs(30),
        || {
            let logs = logs(sidecar);
            logs.lines()
                .find(|l| l.contains("workload certificate from the control plane installed"))
                .and_then(|l| l.split("id=").nth(1))
                .map(|id| id.split_whitespace().next().unwrap_or_default().to_string())
                .ok_or(logs)
        },
    )
}
