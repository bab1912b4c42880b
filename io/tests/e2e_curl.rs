//! End to end with a real client: `curl` → the epoll driver running the real engine → the local
//! mesh's upstream servers, all on 127.0.0.1 with ephemeral ports.
//!
//! curl is an independent HTTP/1.1 implementation, so these check the driver and the engine
//! against the outside world rather than against our own client. CI installs curl
//! (scripts/test.sh); when it is missing these tests fail with a message instead of skipping.

use std::path::PathBuf;
use std::process::{Command, Output};

use trellis_local_mesh::{LocalMesh, LocalMeshOptions};

fn require_curl() {
    let found = Command::new("sh")
        .args(["-c", "command -v curl"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "curl is required by the end-to-end tests (apt-get install curl; scripts/test.sh does it)"
    );
}

fn mesh() -> LocalMesh {
    require_curl();
    LocalMesh::start(&LocalMeshOptions {
        port: 0,
        selfcheck: false,
        seed: Some(7),
        handle_signals: false,
        ..LocalMeshOptions::default()
    })
    .expect("local mesh starts")
}

fn curl(args: &[&str]) -> Output {
    let out = Command::new("curl")
        .args(["-s", "-S", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("trellis-io-{}-{name}", std::process::id()))
}

#[test]
fn get_is_routed_to_the_right_version() {
    let mesh = mesh();
    let url = format!("http://{}/reviews/1", mesh.proxy_addr());

    let jason = curl(&["-H", "host: reviews", "-H", "end-user: jason", &url]);
    assert_eq!(String::from_utf8_lossy(&jason.stdout), "reviews-v2\n");

    // Without the header: the 80/20 split between v1 and v3, never v2.
    for _ in 0..5 {
        let other = curl(&["-H", "host: reviews", &url]);
        let body = String::from_utf8_lossy(&other.stdout).into_owned();
        assert!(body == "reviews-v1\n" || body == "reviews-v3\n", "{body:?}");
    }
    let headers = curl(&["-i", "-H", "host: reviews", "-H", "end-user: jason", &url]);
    let text = String::from_utf8_lossy(&headers.stdout).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("x-upstream: reviews-v2"), "{text}");
    mesh.shutdown().expect("clean shutdown");
}

#[test]
fn keep_alive_connection_is_reused() {
    let mesh = mesh();
    let a = format!("http://{}/a", mesh.proxy_addr());
    let b = format!("http://{}/b", mesh.proxy_addr());
    // One curl command, two URLs: the second transfer reuses the first connection, which
    // curl reports as zero new connects.
    let out = curl(&[
        "-H",
        "host: reviews",
        "-H",
        "end-user: jason",
        "-w",
        "[connects=%{num_connects}]\n",
        &a,
        &b,
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "reviews-v2\n[connects=1]\nreviews-v2\n[connects=0]\n"
    );
    mesh.shutdown().expect("clean shutdown");
}

#[test]
fn chunked_post_body_is_echoed_byte_exact() {
    let mesh = mesh();
    // 300 KiB of every byte value, larger than one read buffer and than a socket buffer's
    // first window, so partial writes and backpressure are exercised.
    let body: Vec<u8> = (0..300 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let input = temp_path("chunked-in");
    let output = temp_path("chunked-out");
    std::fs::write(&input, &body).unwrap();
    let url = format!("http://{}/echo", mesh.proxy_addr());
    let data = format!("@{}", input.display());
    curl(&[
        "-H",
        "host: reviews",
        "-H",
        "transfer-encoding: chunked",
        "-H",
        "content-type: application/octet-stream",
        "--data-binary",
        &data,
        "-o",
        output.to_str().unwrap(),
        &url,
    ]);
    let echoed = std::fs::read(&output).unwrap();
    let _ = std::fs::remove_file(&input);
    let _ = std::fs::remove_file(&output);
    assert_eq!(echoed.len(), body.len());
    assert!(echoed == body, "echoed body differs");
    mesh.shutdown().expect("clean shutdown");
}
