//! `trellis init` end to end, as root, in a private network namespace laid out like a pod: the
//! "pod" namespace (this test thread's) holds the application and the sidecar, with address
//! 10.10.0.2 on a veth whose other end (10.10.0.1) is in an "outside" namespace holding a
//! remote service and inbound clients. The capture rules are loaded by each backend in turn
//! (nft, iptables-legacy), and a real `trellis proxy` runs as uid/gid 1337 (setpriv), with the
//! outbound virtual listener on 15001 and the inbound one on 15006
//! (deploy/examples/captured-sidecar.yaml's shape). It shows:
//!
//! (a) the application's connection to a service VIP (10.96.0.10:9080, where nothing listens)
//!     is captured to 15001 and routed by its Host to the service's endpoint; a connection to
//!     an address the mesh does not know is forwarded to its original destination, parsed as
//!     HTTP on a port a service declares HTTP (9080) and as bytes on any other port (Istio's
//!     virtual outbound catch-all chain to PassthroughCluster);
//! (b) an inbound connection to the application's port arrives through 15006 and reaches the
//!     application on 127.0.0.1 at that port;
//! (c) the proxy's own upstream connections (uid 1337) are not captured again: (a) and (b)
//!     complete instead of looping — except, as Istio's run.go wants, its connections over
//!     `lo` to the pod's own non-loopback address (the pod calling its own service), which go
//!     to the inbound listener and from there to the application;
//! (d) excluded ports (`-d` inbound, `-o` outbound) bypass the proxy;
//! (e) running init twice leaves one copy of the rules, and `--cleanup` leaves
//!     `nft list ruleset` / `iptables-save` exactly as before.
//!
//! The dual-stack cases add IPv6 addresses (fd00:10::2 in the pod) and check the outbound,
//! excluded and inbound paths over IPv6 too.
//!
//! Needs root, `ip`, `setpriv`, `nft` and `iptables-legacy` (scripts/test.sh installs
//! nftables and iptables); without them it fails, saying what is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod capture_support;
use capture_support::*;

fn write_config(dir: &Path, ipv6: bool) -> PathBuf {
    let path = dir.join("sidecar.yaml");
    let v6_listeners = if ipv6 {
        "  - {name: virtualOutbound6, address: \"[::]:15001\", direction: outbound, passthrough: true}
  - {name: virtualInbound6, address: \"[::]:15006\", direction: inbound, forwardTo: \"127.0.0.1\"}
"
    } else {
        ""
    };
    std::fs::write(
        &path,
        format!(
            "{VIRTUAL_LISTENERS}{v6_listeners}services:
  - host: reviews
    ports: [9080]
    endpoints:
      - {{address: \"{OUTSIDE_IP}:9090\"}}
  - host: self
    ports: [80]
    endpoints:
      - {{address: \"{POD_IP}:8080\"}}
"
        ),
    )
    .expect("config written");
    path
}

/// The backend's view of all rules, without what changes by itself: counters, comments, and
/// for iptables the empty built-in chains of a table the kernel instantiated on first use.
fn ruleset(backend: &str) -> String {
    let lines: Vec<String> = match backend {
        "nft" => stdout("nft", &["list", "ruleset"])
            .lines()
            .map(str::to_string)
            .collect(),
        _ => (stdout("iptables-legacy-save", &[]) + &stdout("ip6tables-legacy-save", &[]))
            .lines()
            .filter(|l| l.starts_with('-') || (l.starts_with(':') && l.contains(" - [")))
            .map(|l| l.split(" [").next().unwrap_or(l).to_string())
            .collect(),
    };
    lines.join("\n")
}

/// Wait (5 s at most) for a line of `log()` containing `needle`; `what` says what is missing.
fn await_line(log: &impl Fn() -> String, needle: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !log().lines().any(|l| l.contains(needle)) {
        assert!(Instant::now() < deadline, "{what}\n{}", log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn capture_end_to_end(backend: &str, ipv6: bool) {
    enter_pod_netns();
    let outside = Outside::create();
    let before = ruleset(backend);

    // Rules: excluded inbound 8081 and outbound 9091 (d).
    let init = |extra: &[&str]| {
        let family = if ipv6 { "on" } else { "off" };
        let mut args = vec!["init", "--backend", backend, "--ipv6", family];
        args.extend_from_slice(&["-d", "8081", "-o", "9091"]);
        args.extend_from_slice(extra);
        run(TRELLIS, &args)
    };
    init(&[]);
    let once = ruleset(backend);
    init(&[]);
    assert_eq!(
        ruleset(backend),
        once,
        "init twice must not duplicate rules"
    );
    assert_ne!(once, before);

    // The application (pod) and the remote service (outside).
    serve("app-8080", "0.0.0.0:8080".parse().unwrap());
    serve("app-8081", "0.0.0.0:8081".parse().unwrap());
    outside.run(move || {
        for port in [9080, 9090, 9091, 9092] {
            serve(
                &format!("remote-{port}"),
                format!("{OUTSIDE_IP}:{port}").parse().unwrap(),
            );
        }
        if ipv6 {
            serve(
                "remote6-9092",
                format!("[{OUTSIDE_IP6}]:9092").parse().unwrap(),
            );
            serve(
                "remote6-9091",
                format!("[{OUTSIDE_IP6}]:9091").parse().unwrap(),
            );
        }
    });

    // The sidecar, as the proxy user.
    let dir = std::env::temp_dir().join(format!(
        "trellis-capture-{backend}-{ipv6}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = write_config(&dir, ipv6);
    let log_path = dir.join("proxy.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let proxy = Proc(
        Command::new("setpriv")
            .args(["--reuid", "1337", "--regid", "1337", "--clear-groups", "--"])
            .arg(TRELLIS)
            .args(["proxy", "--config"])
            .arg(&config)
            .args([
                "--cores",
                "1",
                "--no-pin",
                "--no-watch",
                "--status-port",
                "15020",
            ])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("setpriv (util-linux) is required"),
    );
    wait_ready(15021);
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // (a) A service VIP nobody listens on: captured, routed by Host to reviews' endpoint; the
    // proxy's own connection to it (c) went out uncaptured.
    let answer = get("10.96.0.10:9080", "reviews:9080");
    assert!(
        answer.contains("remote-9090 peer=10.10.0.2 proxied=true"),
        "{backend}: {answer}\n{}",
        log()
    );
    // (a) A port no service has: to the original destination through the proxy, as bytes
    // (pilot's virtual outbound catch-all chain, a tcp_proxy to PassthroughCluster: nothing
    // parses the request, so no x-request-id is added).
    let answer = get("10.10.0.1:9092", "example.com");
    assert!(
        answer.contains("remote-9092 peer=10.10.0.2 proxied=false"),
        "{backend}: {answer}\n{}",
        log()
    );
    await_line(
        &log,
        "10.10.0.1:9092 route=PassthroughCluster",
        &format!("{backend}: no TCP passthrough record for 9092"),
    );
    // An unknown address on a port an HTTP service has (reviews' 9080): sniffed as HTTP and
    // passed through by the `allow_any` virtual host, parsed on the way.
    let answer = get("10.10.0.1:9080", "example.com");
    assert!(
        answer.contains("remote-9080 peer=10.10.0.2 proxied=true"),
        "{backend}: {answer}\n{}",
        log()
    );
    // The pod calling its own service: app → outbound → (the proxy's connection to the pod's
    // own address, over lo, is sent to 15006 by Istio's uid rule) → inbound → app.
    let answer = get("10.96.0.11:80", "self");
    assert!(
        answer.contains("app-8080 peer=127.0.0.1 proxied=true"),
        "{backend}: {answer}\n{}",
        log()
    );
    // The access log line may follow the response by a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !log()
        .lines()
        .any(|l| l.contains("InboundPassthroughCluster 127.0.0.1:8080") && l.contains("\"self\""))
    {
        assert!(
            Instant::now() < deadline,
            "{backend}: the self call did not pass the inbound listener\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // (d) An excluded outbound port: straight there.
    let answer = get("10.10.0.1:9091", "example.com");
    assert!(
        answer.contains("remote-9091 peer=10.10.0.2 proxied=false"),
        "{backend}: {answer}"
    );
    // (b) Inbound to the application's port: through 15006, to 127.0.0.1:8080.
    let answer = outside.run(|| get("10.10.0.2:8080", "app"));
    assert!(
        answer.contains("app-8080 peer=127.0.0.1 proxied=true"),
        "{backend}: {answer}\n{}",
        log()
    );
    // (d) An excluded inbound port: straight to the application.
    let answer = outside.run(|| get("10.10.0.2:8081", "app"));
    assert!(
        answer.contains("app-8081 peer=10.10.0.1 proxied=false"),
        "{backend}: {answer}"
    );
    // The proxy's own ports are never captured inbound: its readiness answers from outside.
    let answer = outside.run(|| get_path("10.10.0.2:15021", "probe", "/healthz/ready"));
    assert!(answer.contains("200 OK"), "{backend}: {answer}");
    if ipv6 {
        // The same over IPv6: outbound to an unknown address, the excluded port, inbound.
        let answer = get(&format!("[{OUTSIDE_IP6}]:9092"), "example.com");
        assert!(
            answer.contains(&format!("remote6-9092 peer={POD_IP6} proxied=false")),
            "{backend}: {answer}\n{}",
            log()
        );
        await_line(
            &log,
            "[fd00:10::1]:9092 route=PassthroughCluster",
            &format!("{backend}: no TCP passthrough record for [{OUTSIDE_IP6}]:9092"),
        );
        let answer = get(&format!("[{OUTSIDE_IP6}]:9091"), "example.com");
        assert!(answer.contains("proxied=false"), "{backend}: {answer}");
        let answer = outside.run(|| get(&format!("[{POD_IP6}]:8080"), "app"));
        assert!(
            answer.contains("app-8080 peer=127.0.0.1 proxied=true"),
            "{backend}: {answer}\n{}",
            log()
        );
    }
    // The status port is not captured either, and /quitquitquit refuses other hosts.
    let answer = outside.run(|| http("POST", "10.10.0.2:15020", "x", "/quitquitquit"));
    assert!(
        answer.contains("403") && answer.contains("Only requests from localhost"),
        "{backend}: {answer}"
    );
    assert!(
        get_path("127.0.0.1:15021", "x", "/healthz/ready").contains("200 OK"),
        "{backend}: still serving"
    );
    drop(proxy);

    // (e) Cleanup restores the rules exactly, and is idempotent.
    run(TRELLIS, &["init", "--backend", backend, "--cleanup"]);
    assert_eq!(
        ruleset(backend),
        before,
        "{backend}: cleanup left rules behind"
    );
    run(TRELLIS, &["init", "--backend", backend, "--cleanup"]);
    assert_eq!(ruleset(backend), before);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nft_capture_end_to_end() {
    capture_end_to_end("nft", false);
}

#[test]
fn iptables_legacy_capture_end_to_end() {
    capture_end_to_end("iptables", false);
}

/// IPv6 as well (`--ipv6 on`: an `inet` table, or ip6tables), with the sidecar also
/// listening on [::]:15001 and [::]:15006.
#[test]
fn nft_capture_dual_stack() {
    capture_end_to_end("nft", true);
}

#[test]
fn iptables_legacy_capture_dual_stack() {
    capture_end_to_end("iptables", true);
}

#[test]
fn init_without_net_admin_says_so() {
    let out = Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--",
        ])
        .args([TRELLIS, "init", "--backend", "nft"])
        .output()
        .expect("setpriv (util-linux) is required");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CAP_NET_ADMIN"), "{stderr}");
}

#[test]
fn bad_flags_name_the_flag() {
    let out = Command::new(TRELLIS)
        .args(["init", "--dry-run", "-x", "10.0.0.0/40"])
        .output()
        .expect("trellis runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("-x/--istio-service-exclude-cidr"),
        "{stderr}"
    );
}

#[test]
fn pod_annotations_fill_in_what_no_flag_gave() {
    let dir = std::env::temp_dir().join(format!("trellis-annotations-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("annotations");
    std::fs::write(
        &file,
        "kubectl.kubernetes.io/default-container=\"app\"\n\
         traffic.sidecar.istio.io/excludeOutboundPorts=\"5432\"\n\
         traffic.sidecar.istio.io/includeInboundPorts=\"8080,8443\"\n",
    )
    .expect("annotations written");
    let out = Command::new(TRELLIS)
        .args([
            "init",
            "--dry-run",
            "--backend",
            "iptables",
            "--ipv6",
            "off",
        ])
        .args(["-b", "9080", "--pod-annotations"])
        .arg(&file)
        .output()
        .expect("trellis runs");
    let rules = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        rules.contains("-A ISTIO_OUTPUT -p tcp --dport 5432 -j RETURN"),
        "{rules}"
    );
    // The flag wins over the annotation.
    assert!(rules.contains("-A ISTIO_INBOUND -p tcp --dport 9080 -j ISTIO_IN_REDIRECT"));
    assert!(!rules.contains("--dport 8443"), "{rules}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--backend auto` with an nft that cannot load rules (as on a kernel without nf_tables)
/// falls back to iptables, saying so.
#[test]
fn auto_falls_back_to_iptables_when_nft_cannot_load() {
    enter_pod_netns();
    let dir = std::env::temp_dir().join(format!("trellis-fallback-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let fake = dir.join("nft");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'Error: Could not process rule: No such file or directory' >&2\nexit 1\n",
    )
    .expect("fake nft");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(TRELLIS)
        .args(["init", "--ipv6", "off"])
        .env("PATH", &path)
        .output()
        .expect("trellis runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("trying iptables"), "{stderr}");
    assert!(stderr.contains("No such file or directory"), "{stderr}");
    let saved = stdout("iptables-legacy-save", &["-t", "nat"]);
    assert!(
        saved.contains("-A OUTPUT -m comment --comment trellis-init -j ISTIO_OUTPUT"),
        "{saved}"
    );
    // `--cleanup` (auto) removes them whichever tool loaded them.
    run(TRELLIS, &["init", "--cleanup"]);
    assert!(!stdout("iptables-legacy-save", &["-t", "nat"]).contains("ISTIO"));
    let _ = std::fs::remove_dir_all(&dir);
}
