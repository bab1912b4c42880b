//! The mesh's identity in the Docker test: what a user looks at to see that the sidecars talk
//! mTLS with the certificates the control plane issued, and that Istio's security resources
//! act on those identities.
//!
//! - The caller's SPIFFE id reaches the web app in `x-forwarded-client-cert` (Istio's inbound
//!   `forward_client_cert_details: APPEND_FORWARD`, pilot `buildSidecarInboundHTTPOpts`), and a
//!   forged one from outside the mesh is removed (SANITIZE on a plaintext connection).
//! - An AuthorizationPolicy `from.source.principals` (Istio's `principal` is the peer
//!   certificate's URI SAN without `spiffe://`, pilot `security/authz/model/generator.go`
//!   `srcPrincipalGenerator`) allows sleep and nobody else: a plaintext caller has no principal.
//! - A mesh-wide PeerAuthentication STRICT (root namespace, no selector) makes web's sidecar
//!   refuse plaintext connections outright, while sleep's mTLS requests still pass.

use std::time::Duration;

use super::mesh::{apply, Mesh, WEB_PORT};
use super::pod::{curl_from, curl_in, logs, Pod, Response};
use super::wait_until;

const TRUST_DOMAIN: &str = "cluster.local";
/// How long a changed file in the control plane's directory may take to reach the sidecars.
const PUSH_TIMEOUT: Duration = Duration::from_secs(30);

fn spiffe_id(service_account: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/ns/default/sa/{service_account}")
}

/// The value of the `x-forwarded-client-cert` line in the web app's `/headers` answer.
fn xfcc_seen_by_app(r: &Response) -> Option<String> {
    r.body.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("x-forwarded-client-cert")
            .then(|| value.trim().to_string())
    })
}

/// Step 6: the certificates each sidecar got name its workload's service account, and the web
/// app sees the caller's identity in `x-forwarded-client-cert`, which only mTLS can put there.
pub fn check_caller_identity(sleep: &Pod, web: &Pod, plain: &str, ids: (&str, &str)) {
    assert_eq!(ids.0, spiffe_id("sleep"), "the sleep sidecar's certificate");
    assert_eq!(ids.1, spiffe_id("web"), "the web sidecar's certificate");
    let url = format!("http://web:{WEB_PORT}/headers");
    let r = curl_from(sleep, &url, &[]);
    assert_eq!(r.status, 200, "{:?} {}", r.headers, r.body);
    let xfcc = xfcc_seen_by_app(&r).unwrap_or_else(|| {
        panic!(
            "the web app got no x-forwarded-client-cert, so the hop was not mTLS:\n{}\nweb sidecar:\n{}",
            r.body,
            logs(&web.sidecar)
        )
    });
    assert!(
        xfcc.contains(&format!("URI={}", spiffe_id("sleep")))
            && xfcc.contains(&format!("By={}", spiffe_id("web"))),
        "the web app should see sleep's SPIFFE id, by web's: {xfcc}"
    );
    eprintln!("web app got x-forwarded-client-cert: {xfcc}");

    // From outside the mesh (plain has no sidecar), in PERMISSIVE mode: answered, but a forged
    // header naming sleep does not reach the app.
    let forged = format!("x-forwarded-client-cert: URI={}", spiffe_id("sleep"));
    let r = curl_in(plain, &url, &["-H", &forged])
        .unwrap_or_else(|e| panic!("plaintext from plain, PERMISSIVE: {e}"));
    assert_eq!(r.status, 200, "PERMISSIVE accepts plaintext: {}", r.body);
    assert_eq!(
        xfcc_seen_by_app(&r),
        None,
        "a plaintext caller's x-forwarded-client-cert must be removed: {}",
        r.body
    );
}

fn callers_policy(principal: &str) -> String {
    format!(
        "# Only this identity may call web (ALLOW: whoever no rule matches is denied).\n\
         apiVersion: security.istio.io/v1\n\
         kind: AuthorizationPolicy\n\
         metadata: {{name: web-callers, namespace: default}}\n\
         spec:\n\
         \x20 selector: {{matchLabels: {{app: web}}}}\n\
         \x20 action: ALLOW\n\
         \x20 rules: [{{from: [{{source: {{principals: [\"{principal}\"]}}}}]}}]\n"
    )
}

fn status_in(container: &str, url: &str) -> Result<u16, String> {
    curl_in(container, url, &[]).map(|r| r.status)
}

/// Poll until `container`'s request to `url` gets `want` (the push on its way), with the
/// last answer in the failure message.
fn wait_for_status(what: &str, container: &str, url: &str, want: u16) -> Response {
    wait_until(what, PUSH_TIMEOUT, || match curl_in(container, url, &[]) {
        Ok(r) if r.status == want => Ok(r),
        Ok(r) => Err(format!("{} {}", r.status, r.body.trim())),
        Err(e) => Err(e),
    })
}

/// Step 7: an AuthorizationPolicy on `principals`: sleep's identity allowed, the plaintext
/// caller (no identity) denied; naming another identity denies sleep too; then sleep's again.
pub fn check_principals(mesh: &Mesh, sleep: &Pod, plain: &str) {
    let url = format!("http://web:{WEB_PORT}/hello.txt");
    let sleep_principal = format!("{TRUST_DOMAIN}/ns/default/sa/sleep");
    apply(mesh, "web-callers", &callers_policy(&sleep_principal));
    let denied = wait_for_status(
        "the principals policy to deny the caller without an identity",
        plain,
        &url,
        403,
    );
    assert_eq!(denied.body.trim(), "RBAC: access denied");
    let allowed = curl_from(sleep, &url, &[]);
    assert_eq!(
        (allowed.status, allowed.body.trim()),
        (200, "hello from web"),
        "sleep's identity is allowed"
    );

    apply(
        mesh,
        "web-callers",
        &callers_policy(&format!("{TRUST_DOMAIN}/ns/default/sa/somebody-else")),
    );
    let denied = wait_for_status(
        "a policy naming another identity to deny sleep",
        &sleep.app,
        &url,
        403,
    );
    assert_eq!(denied.body.trim(), "RBAC: access denied");

    apply(mesh, "web-callers", &callers_policy(&sleep_principal));
    wait_for_status("sleep to be allowed again", &sleep.app, &url, 200);
}

const STRICT: &str = "# Mesh-wide (the root namespace, no selector): sidecars accept only mTLS.\n\
apiVersion: security.istio.io/v1\n\
kind: PeerAuthentication\n\
metadata: {name: default, namespace: istio-system}\n\
spec: {mtls: {mode: STRICT}}\n";

/// Step 8: PeerAuthentication STRICT: the plaintext connection from outside the mesh is
/// refused (no HTTP answer at all, and the app never sees it), sleep's still gets 200.
pub fn check_strict(mesh: &Mesh, sleep: &Pod, web: &Pod, plain: &str) {
    let marker = "/hello.txt?from=plain-strict";
    let url = format!("http://web:{WEB_PORT}{marker}");
    // Before: PERMISSIVE, the plaintext caller gets an answer (the principals policy's 403).
    assert_eq!(status_in(plain, &url), Ok(403), "before STRICT");
    apply(mesh, "mesh-mtls", STRICT);
    let refused = wait_until(
        "STRICT to refuse plaintext at web's sidecar",
        PUSH_TIMEOUT,
        || match curl_in(plain, &url, &[]) {
            Err(e) => Ok(e),
            Ok(r) => Err(format!("still answered {}", r.status)),
        },
    );
    // curl: (52) Empty reply from server, or (56) Recv failure: Connection reset by peer.
    assert!(
        refused.contains("curl: (52)") || refused.contains("curl: (56)"),
        "the plaintext connection is closed without an answer: {refused}"
    );
    eprintln!("STRICT, plaintext from plain: {}", refused.trim());
    let r = curl_from(sleep, &format!("http://web:{WEB_PORT}/hello.txt"), &[]);
    assert_eq!(
        (r.status, r.header("x-mesh-route")),
        (200, Some("web-default")),
        "sleep's requests are mTLS and still pass under STRICT: {}",
        r.body
    );
    assert!(
        !logs(&web.app).contains("from=plain"),
        "no plaintext request from plain reached the web app:\n{}",
        logs(&web.app)
    );
}
