//! The annotations Istio's injector refuses to inject with when malformed
//! (`AnnotationValidation` in pkg/kube/inject/validate.go, checked by `RunTemplate`): port
//! lists, CIDR lists, the interception mode, probe timings, resource quantities and interface
//! names. Every bad annotation is reported, not just the first, as Istio's multierror does.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::LazyLock;

use super::InjectError;

type Check = fn(&str) -> Result<(), String>;

/// Annotation → its check (Istio's table, less the ones Trellis does not read).
const CHECKS: [(&str, Check); 17] = [
    ("sidecar.istio.io/interceptionMode", interception_mode),
    ("status.sidecar.istio.io/port", |v| port(v).map(|_| ())),
    (
        "readiness.status.sidecar.istio.io/initialDelaySeconds",
        uint32,
    ),
    ("readiness.status.sidecar.istio.io/periodSeconds", uint32),
    ("readiness.status.sidecar.istio.io/failureThreshold", uint32),
    ("traffic.sidecar.istio.io/includeOutboundIPRanges", |v| {
        if v == "*" {
            Ok(())
        } else {
            cidrs(v)
        }
    }),
    ("traffic.sidecar.istio.io/excludeOutboundIPRanges", cidrs),
    ("traffic.sidecar.istio.io/includeInboundPorts", |v| {
        if v == "*" {
            Ok(())
        } else {
            ports(v)
        }
    }),
    ("traffic.sidecar.istio.io/excludeInboundPorts", ports),
    ("traffic.sidecar.istio.io/excludeOutboundPorts", ports),
    ("traffic.sidecar.istio.io/excludeInterfaces", interfaces),
    ("traffic.sidecar.istio.io/kubevirtInterfaces", interfaces),
    ("istio.io/reroute-virtual-interfaces", interfaces),
    ("sidecar.istio.io/proxyCPU", quantity),
    ("sidecar.istio.io/proxyMemory", quantity),
    ("sidecar.istio.io/proxyCPULimit", quantity),
    ("sidecar.istio.io/proxyMemoryLimit", quantity),
];

/// Check every annotation Istio validates; all failures in one error.
pub fn validate_annotations(annotations: &BTreeMap<String, String>) -> Result<(), InjectError> {
    let failures: Vec<String> = CHECKS
        .iter()
        .filter_map(|(name, check)| {
            let value = annotations.get(*name)?;
            check(value)
                .err()
                .map(|why| format!("invalid value '{value}' for annotation '{name}': {why}"))
        })
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(InjectError::Invalid(failures.join("; ")))
    }
}

fn interception_mode(mode: &str) -> Result<(), String> {
    match mode {
        "REDIRECT" | "TPROXY" | "NONE" => Ok(()),
        _ => Err(format!(
            "interceptionMode invalid, use REDIRECT,TPROXY,NONE: {mode}"
        )),
    }
}

fn port(text: &str) -> Result<u16, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("failed parsing port '{text}'"))
}

/// `parsePorts`: empty, or comma-separated ports.
fn ports(list: &str) -> Result<(), String> {
    let list = list.trim();
    if list.is_empty() {
        return Ok(());
    }
    list.split(',').try_for_each(|p| port(p).map(|_| ()))
}

fn uint32(text: &str) -> Result<(), String> {
    text.parse::<u32>()
        .map(|_| ())
        .map_err(|_| format!("{text:?} is not an unsigned 32-bit number"))
}

/// `validateCIDRList`: empty, or comma-separated `address/bits` (Go's `netip.ParsePrefix`).
fn cidrs(list: &str) -> Result<(), String> {
    if list.is_empty() {
        return Ok(());
    }
    for cidr in list.split(',') {
        let bad = || format!("failed parsing cidr '{cidr}'");
        let (address, bits) = cidr.split_once('/').ok_or_else(bad)?;
        let address: IpAddr = address.parse().map_err(|_| bad())?;
        let bits: u8 = bits.parse().map_err(|_| bad())?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        if bits > max {
            return Err(bad());
        }
    }
    Ok(())
}

/// Comma-separated Linux interface names (at most 15 bytes, no `/` or whitespace).
fn interfaces(list: &str) -> Result<(), String> {
    for name in list.split(',').map(str::trim) {
        if name.is_empty()
            || name.len() > 15
            || name.contains('/')
            || name.contains(char::is_whitespace)
        {
            return Err(format!("interface name {name:?} is invalid"));
        }
    }
    Ok(())
}

/// A Kubernetes resource quantity (`resource.ParseQuantity`): a decimal number with an
/// optional binary (`Ki`...`Ei`), decimal (`n`, `u`, `m`, `k`, `M`...`E`) or exponent suffix.
fn quantity(text: &str) -> Result<(), String> {
    static QUANTITY: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$")
            .expect("the quantity pattern compiles")
    });
    if QUANTITY.is_match(text) {
        Ok(())
    } else {
        Err("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pairs: &[(&str, &str)]) -> Result<(), InjectError> {
        validate_annotations(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn istios_bad_traffic_annotations_are_refused() {
        // pkg/kube/inject/testdata/inject/traffic-annotations-bad-*.yaml
        for (name, value) in [
            ("traffic.sidecar.istio.io/excludeInboundPorts", "*"),
            ("traffic.sidecar.istio.io/excludeOutboundIPRanges", "*"),
            ("traffic.sidecar.istio.io/includeOutboundIPRanges", "bad"),
            ("traffic.sidecar.istio.io/includeInboundPorts", "bad"),
            ("traffic.sidecar.istio.io/excludeOutboundPorts", "65536"),
            ("sidecar.istio.io/proxyCPU", "lots"),
        ] {
            let err = check(&[(name, value)]).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains(value), "{err}");
        }
    }

    #[test]
    fn good_values_pass_and_every_failure_is_named() {
        check(&[
            (
                "traffic.sidecar.istio.io/includeOutboundIPRanges",
                "127.0.0.1/24,10.96.0.1/24",
            ),
            ("traffic.sidecar.istio.io/includeInboundPorts", "*"),
            ("traffic.sidecar.istio.io/excludeInboundPorts", "4, 5,6"),
            ("traffic.sidecar.istio.io/excludeOutboundIPRanges", ""),
            ("sidecar.istio.io/proxyCPU", "4000m"),
            ("sidecar.istio.io/proxyMemoryLimit", "1.5Gi"),
            ("traffic.sidecar.istio.io/excludeInterfaces", "eth1,net2"),
        ])
        .unwrap();
        let err = check(&[
            ("sidecar.istio.io/interceptionMode", "MAGIC"),
            ("readiness.status.sidecar.istio.io/periodSeconds", "-1"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("MAGIC") && err.contains("periodSeconds"),
            "{err}"
        );
    }
}
