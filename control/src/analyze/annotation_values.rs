//! The value checks the sidecar injector applies to its annotations (istio/istio
//! `pkg/kube/inject/validate.go`, `AnnotationValidation`), with Go's error texts, which
//! IST0125 InvalidAnnotation prints.
//!
//! Checked: interception mode, status port, the readiness probe numbers, the traffic
//! include/exclude CIDR and port lists, and `prometheus.istio.io/merge-metrics`. Not checked
//! (accepted as written): `proxy.istio.io/config` (a whole ProxyConfig), the proxy resource
//! quantities and the interface-name lists, whose Go validators (protobuf YAML,
//! `resource.ParseQuantity`, `netutil.ValidateInterfaceNames`) would need ports of their own.

use std::net::IpAddr;

use super::message::go_quote;

/// Go's `strconv.ParseUint(s, 10, bits)` error, if `s` is not such a number.
fn parse_uint(s: &str, bits: u32) -> Result<u64, String> {
    let err = |why: &str| format!("strconv.ParseUint: parsing {}: {why}", go_quote(s));
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err("invalid syntax"));
    }
    match s.parse::<u64>() {
        Ok(n) if bits >= 64 || n < (1u64 << bits) => Ok(n),
        _ => Err(err("value out of range")),
    }
}

/// `parsePort`: a 16-bit number, spaces around it allowed.
fn parse_port(s: &str) -> Result<u64, String> {
    parse_uint(s.trim(), 16).map_err(|e| format!("failed parsing port '{s}': {e}"))
}

/// `validatePortList`: comma-separated ports (empty is fine).
fn port_list(parameter: &str, ports: &str) -> Result<(), String> {
    let ports = ports.trim();
    if ports.is_empty() {
        return Ok(());
    }
    for p in ports.split(',') {
        parse_port(p)
            .map_err(|e| format!("{parameter} invalid: failed parsing port '{p}': {e}"))?;
    }
    Ok(())
}

/// `netip.ParsePrefix`'s verdict on one CIDR.
fn parse_prefix(cidr: &str) -> Result<(), String> {
    let err = |why: String| format!("netip.ParsePrefix({}): {why}", go_quote(cidr));
    let Some((addr, bits)) = cidr.rsplit_once('/') else {
        return Err(err("no '/'".to_string()));
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| err(format!("ParseAddr({}): unable to parse IP", go_quote(addr))))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let valid_bits = !bits.is_empty()
        && bits.bytes().all(|b| b.is_ascii_digit())
        && !(bits.len() > 1 && bits.starts_with('0'));
    if !valid_bits {
        return Err(err(format!("bad bits after slash: {}", go_quote(bits))));
    }
    match bits.parse::<u32>() {
        Ok(n) if n <= max => Ok(()),
        _ => Err(err("prefix length out of range".to_string())),
    }
}

/// `validateCIDRList`.
fn cidr_list(cidrs: &str) -> Result<(), String> {
    if cidrs.is_empty() {
        return Ok(());
    }
    for cidr in cidrs.split(',') {
        parse_prefix(cidr).map_err(|e| format!("failed parsing cidr '{cidr}': {e}"))?;
    }
    Ok(())
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Result<(), String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" | "0" | "f" | "F" | "FALSE" | "false"
        | "False" => Ok(()),
        _ => Err(format!(
            "strconv.ParseBool: parsing {}: invalid syntax",
            go_quote(s)
        )),
    }
}

/// The injector's verdict on `value` for annotation `name`: `Err(problem)` when it would
/// refuse it; `Ok` when it accepts it or does not check that annotation.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    match name {
        "sidecar.istio.io/interceptionMode" => match value {
            "REDIRECT" | "TPROXY" | "NONE" => Ok(()),
            _ => Err(format!(
                "interceptionMode invalid, use REDIRECT,TPROXY,NONE: {value}"
            )),
        },
        "status.sidecar.istio.io/port" => parse_port(value)
            .map(drop)
            .map_err(|e| format!("excludeInboundPorts invalid: {e}")),
        "readiness.status.sidecar.istio.io/initialDelaySeconds"
        | "readiness.status.sidecar.istio.io/periodSeconds"
        | "readiness.status.sidecar.istio.io/failureThreshold" => parse_uint(value, 32).map(drop),
        "traffic.sidecar.istio.io/includeOutboundIPRanges" if value == "*" => Ok(()),
        "traffic.sidecar.istio.io/includeOutboundIPRanges" => {
            cidr_list(value).map_err(|e| format!("includeIPRanges invalid: {e}"))
        }
        "traffic.sidecar.istio.io/excludeOutboundIPRanges" => {
            cidr_list(value).map_err(|e| format!("excludeIPRanges invalid: {e}"))
        }
        "traffic.sidecar.istio.io/includeInboundPorts" if value == "*" => Ok(()),
        "traffic.sidecar.istio.io/includeInboundPorts" => port_list("includeInboundPorts", value),
        "traffic.sidecar.istio.io/excludeInboundPorts" => port_list("excludeInboundPorts", value),
        "traffic.sidecar.istio.io/excludeOutboundPorts" => port_list("excludeOutboundPorts", value),
        "prometheus.istio.io/merge-metrics" => parse_bool(value),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn go_errors() {
        assert_eq!(
            validate(
                "readiness.status.sidecar.istio.io/initialDelaySeconds",
                "bar"
            ),
            Err(r#"strconv.ParseUint: parsing "bar": invalid syntax"#.to_string())
        );
        assert!(validate("readiness.status.sidecar.istio.io/periodSeconds", "10").is_ok());
        assert_eq!(
            validate("traffic.sidecar.istio.io/excludeInboundPorts", "15020,x"),
            Err(r#"excludeInboundPorts invalid: failed parsing port 'x': failed parsing port 'x': strconv.ParseUint: parsing "x": invalid syntax"#.to_string())
        );
        assert!(validate(
            "traffic.sidecar.istio.io/excludeInboundPorts",
            "15020, 15021"
        )
        .is_ok());
        assert!(validate("traffic.sidecar.istio.io/includeInboundPorts", "*").is_ok());
        assert!(validate("traffic.sidecar.istio.io/includeOutboundIPRanges", "*").is_ok());
        assert!(validate(
            "traffic.sidecar.istio.io/excludeOutboundIPRanges",
            "10.0.0.0/8,::1/128"
        )
        .is_ok());
        assert_eq!(
            validate("traffic.sidecar.istio.io/excludeOutboundIPRanges", "10.0.0.0"),
            Err(r#"excludeIPRanges invalid: failed parsing cidr '10.0.0.0': netip.ParsePrefix("10.0.0.0"): no '/'"#.to_string())
        );
        assert!(validate("status.sidecar.istio.io/port", "70000").is_err());
        assert!(validate("sidecar.istio.io/interceptionMode", "TPROXY").is_ok());
        assert!(validate("sidecar.istio.io/interceptionMode", "tproxy").is_err());
        assert!(validate("prometheus.istio.io/merge-metrics", "yes").is_err());
    }
}
