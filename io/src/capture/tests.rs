//! Golden tests of the generated rules. The cases carry the names and flags of
//! istio-iptables' own golden cases (tools/istio-iptables/pkg/capture/run_test.go), so each
//! `testdata/<case>.iptables` can be read side by side with Istio's `<case>.golden`: the same
//! rules in the same order, except that (a) our chains are declared `:CHAIN - [0:0]` instead
//! of `-N CHAIN` (idempotent), (b) rules in PREROUTING/OUTPUT carry `-m comment --comment
//! trellis-init` (exact cleanup), and (c) `-b "*"` always excludes the proxy's own ports
//! 15090, 15021 and 15020, which Istio's injection template passes in `-d`.
//! `testdata/<case>.nft` is the same rule set for nft. Set UPDATE_GOLDEN=1 to rewrite them
//! after a deliberate change, and review the diff.

use std::path::PathBuf;

use super::apply::{render, IptablesTools, Tool};
use super::iptables::{self, existing, Existing};
use super::nft;
use super::rules::build;
use super::spec::{CaptureOptions, CaptureSpec};

fn opts(pairs: &[(&str, &str)]) -> CaptureOptions {
    let mut o = CaptureOptions {
        // istio-iptables' test defaults: no inbound, no outbound capture unless a case says.
        inbound_ports: Some(String::new()),
        outbound_include_ranges: Some(String::new()),
        ..CaptureOptions::default()
    };
    for (flag, value) in pairs {
        let v = Some(value.to_string());
        match *flag {
            "-b" => o.inbound_ports = v,
            "-d" => o.inbound_exclude_ports = v,
            "-i" => o.outbound_include_ranges = v,
            "-x" => o.outbound_exclude_ranges = v,
            "-q" => o.outbound_include_ports = v,
            "-o" => o.outbound_exclude_ports = v,
            "-u" => o.proxy_uid = v,
            "-g" => o.proxy_gid = v,
            "-k" => o.reroute_interfaces = v,
            "-c" => o.exclude_interfaces = v,
            other => panic!("no flag {other}"),
        }
    }
    o
}

fn cases() -> Vec<(&'static str, CaptureOptions, bool)> {
    vec![
        ("empty", opts(&[]), false),
        (
            "inbound-ports-include",
            opts(&[("-b", "32000,31000")]),
            false,
        ),
        ("inbound-ports-wildcard", opts(&[("-b", "*")]), false),
        (
            "outbound-ports-include",
            opts(&[("-q", "32000,31000")]),
            false,
        ),
        ("ipnets", opts(&[("-i", "10.0.0.0/8")]), false),
        (
            "kube-virt-interfaces",
            opts(&[("-k", "eth1,eth2"), ("-i", "*")]),
            false,
        ),
        ("basic-exclude-nic", opts(&[("-c", "not-istio-nic")]), false),
        (
            "loopback-outbound-iprange",
            opts(&[("-i", "127.1.2.3/32"), ("-g", "1,2"), ("-u", "3,4")]),
            false,
        ),
        (
            "ipv6-uid-gid",
            opts(&[
                ("-b", "4000,5000"),
                ("-d", "6000,7000"),
                ("-k", "eth0,eth1"),
                ("-g", "1,2"),
                ("-u", "3,4"),
                ("-x", "2001:db8::/32"),
                ("-i", "2001:db8::/32"),
            ]),
            true,
        ),
        ("ipv6-outbound-ports", opts(&[("-q", "32000,31000")]), true),
        // What a default injection passes: -b "*" -i "*" -d "15090,15021,15020".
        ("default-injection", CaptureOptions::default(), false),
        (
            "exclusions-dual-stack",
            CaptureOptions::default().with_annotations([
                ("traffic.sidecar.istio.io/excludeInboundPorts", "8081"),
                (
                    "traffic.sidecar.istio.io/excludeOutboundIPRanges",
                    "10.96.0.0/12,fd00:10:96::/112",
                ),
                ("traffic.sidecar.istio.io/excludeOutboundPorts", "5432,6379"),
            ]),
            true,
        ),
    ]
}

fn iptables_tool() -> Tool {
    Tool::Iptables(IptablesTools {
        restore: "iptables-restore".into(),
        save: "iptables-save".into(),
        restore6: None,
        save6: None,
    })
}

fn check_golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/capture/testdata")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(
        actual,
        expected,
        "{} differs (UPDATE_GOLDEN=1 rewrites it; review the diff)",
        path.display()
    );
}

#[test]
fn golden_rule_sets() {
    for (name, options, ipv6) in cases() {
        let spec = CaptureSpec::from_options(&options, ipv6).unwrap();
        let rules = build(&spec);
        check_golden(
            &format!("{name}.iptables"),
            &render(&rules, &iptables_tool()),
        );
        check_golden(
            &format!("{name}.nft"),
            &render(&rules, &Tool::Nft("nft".into())),
        );
    }
}

/// The rules that make capture safe hold in every case, whatever the golden files say.
#[test]
fn every_rule_set_keeps_the_proxy_and_loopback_out() {
    for (name, options, ipv6) in cases() {
        let spec = CaptureSpec::from_options(&options, ipv6).unwrap();
        let text = iptables::restore_input(&build(&spec), false, &Existing::default());
        let lines: Vec<&str> = text.lines().collect();
        let pos = |needle: &str| lines.iter().position(|l| l.contains(needle));
        for uid in &spec.proxy_uids {
            let own = pos(&format!(
                "-A ISTIO_OUTPUT -m owner --uid-owner {uid} -j RETURN"
            ))
            .unwrap_or_else(|| panic!("{name}: no RETURN for uid {uid}"));
            // Nothing before it may send the proxy's traffic to ISTIO_REDIRECT.
            assert!(
                lines[..own]
                    .iter()
                    .all(|l| !(l.contains("-j ISTIO_REDIRECT") && l.starts_with("-A ISTIO_OUTPUT"))),
                "{name}: a redirect precedes the proxy's own exclusion"
            );
        }
        let loopback = pos("-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN").expect("loopback");
        if let Some(redirect) = pos("-A ISTIO_OUTPUT -j ISTIO_REDIRECT") {
            assert!(loopback < redirect, "{name}");
        }
        assert!(pos("-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN").is_some());
    }
}

#[test]
fn excluded_inbound_ports_return_before_the_redirect() {
    let spec = CaptureSpec::from_options(&CaptureOptions::default(), false).unwrap();
    let text = iptables::restore_input(&build(&spec), false, &Existing::default());
    let redirect = text
        .find("-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT")
        .unwrap();
    for port in [15008, 15090, 15021, 15020] {
        let ret = text
            .find(&format!("-A ISTIO_INBOUND -p tcp --dport {port} -j RETURN"))
            .unwrap_or_else(|| panic!("{port} not excluded"));
        assert!(ret < redirect);
    }
}

const SAVED: &str = "# Generated by iptables-save v1.8.9 on Thu Dec  3 06:24:52 2026
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:ISTIO_INBOUND - [0:0]
:ISTIO_OUTPUT - [0:0]
:KUBE-SERVICES - [0:0]
-A PREROUTING -p tcp -m comment --comment trellis-init -j ISTIO_INBOUND
-A PREROUTING -j KUBE-SERVICES
-A OUTPUT -m comment --comment trellis-init -j ISTIO_OUTPUT
-A OUTPUT -m comment --comment \"someone else\" -j RETURN
-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
COMMIT
*filter
:OUTPUT ACCEPT [0:0]
-A OUTPUT -m comment --comment trellis-init -j ACCEPT
COMMIT
";

#[test]
fn an_earlier_run_is_found_in_iptables_save_output() {
    let found = existing(SAVED);
    assert_eq!(
        found.builtin_rules,
        vec![
            "-A PREROUTING -p tcp -m comment --comment trellis-init -j ISTIO_INBOUND",
            "-A OUTPUT -m comment --comment trellis-init -j ISTIO_OUTPUT",
        ]
    );
    assert_eq!(
        found.chains,
        vec![
            super::rules::Chain::Inbound,
            super::rules::Chain::IstioOutput
        ]
    );
}

#[test]
fn running_twice_replaces_instead_of_duplicating() {
    let spec = CaptureSpec::from_options(&CaptureOptions::default(), false).unwrap();
    let input = iptables::restore_input(&build(&spec), false, &existing(SAVED));
    // The old jumps are deleted in the same transaction the new ones are added in.
    assert!(input.contains("-D OUTPUT -m comment --comment trellis-init -j ISTIO_OUTPUT\n"));
    assert!(
        input.contains("-D PREROUTING -p tcp -m comment --comment trellis-init -j ISTIO_INBOUND\n")
    );
    assert!(input.contains("-A OUTPUT -m comment --comment trellis-init -j ISTIO_OUTPUT\n"));
    // Chains are (re)declared, which empties them under --noflush.
    assert!(input.starts_with("*nat\n:ISTIO_INBOUND - [0:0]\n"));
    assert!(!input.contains("KUBE-SERVICES"));
    assert!(!input.contains("someone else"));
}

#[test]
fn cleanup_removes_only_what_init_added() {
    let input = iptables::cleanup_input(&existing(SAVED)).unwrap();
    assert_eq!(
        input,
        "*nat\n\
         -D PREROUTING -p tcp -m comment --comment trellis-init -j ISTIO_INBOUND\n\
         -D OUTPUT -m comment --comment trellis-init -j ISTIO_OUTPUT\n\
         -F ISTIO_INBOUND\n-F ISTIO_OUTPUT\n-X ISTIO_INBOUND\n-X ISTIO_OUTPUT\nCOMMIT\n"
    );
    assert_eq!(iptables::cleanup_input(&Existing::default()), None);
}

#[test]
fn nft_replaces_its_own_table_atomically() {
    let spec = CaptureSpec::from_options(&CaptureOptions::default(), false).unwrap();
    let script = nft::script(&build(&spec));
    assert!(script.starts_with(
        "add table ip trellis-proxy-nat\ndelete table ip trellis-proxy-nat\n\
         add table inet trellis-proxy-nat\ndelete table inet trellis-proxy-nat\n\
         add table ip trellis-proxy-nat\n"
    ));
    assert_eq!(nft::family(true), "inet");
}
