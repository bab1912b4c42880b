//! What to capture: istio-iptables' settings as `trellis init` receives them (flags, or a
//! pod's `traffic.sidecar.istio.io/*` annotations), validated into a [`CaptureSpec`].
//!
//! The raw form ([`CaptureOptions`]) keeps each setting as the string Istio's injection
//! template passes (`-b "*"`, `-d "15090,15021,15020"`, `-x ""` ...): `None` means "not given",
//! `Some("")` means "given empty", which for the include lists disables capture, exactly as
//! istio-iptables reads them (tools/istio-iptables/pkg/cmd/root.go, `bindCmdlineFlags`).
//! Flags win over annotations, annotations over the defaults of a default Istio install
//! (`includeInboundPorts: "*"`, `includeIPRanges: "*"`).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::CaptureError;

// Callers read the annotations file through this module, where the annotations are used.
pub use super::downward_api::parse_downward_api_annotations;

/// Envoy's outbound capture port (`-p`), 15001.
pub const DEFAULT_PROXY_PORT: u16 = 15001;
/// Envoy's inbound capture port (`-z`), 15006.
pub const DEFAULT_INBOUND_CAPTURE_PORT: u16 = 15006;
/// Istio's HBONE tunnel port (`-e`), 15008: never redirected inbound.
pub const DEFAULT_INBOUND_TUNNEL_PORT: u16 = 15008;
/// The proxy's user and group (`-u`, `-g`): Istio's 1337.
pub const DEFAULT_PROXY_ID: u32 = 1337;
/// The sidecar's own inbound ports, never captured: Prometheus stats (15090), the proxy's
/// health (15021) and pilot-agent's status port (15020). Istio's injection template always
/// puts them in istio-init's `-d` (`"15090,15021,{{ statusPort }}"`).
pub const PROXY_OWN_INBOUND_PORTS: [u16; 3] = [15090, 15021, 15020];

/// The pod annotations `trellis init` understands, and the flag each one stands for (the
/// pairing of Istio's injection template, manifests/.../files/injection-template.yaml).
pub const ANNOTATIONS: [(&str, Setting); 9] = [
    (
        "traffic.sidecar.istio.io/includeInboundPorts",
        Setting::InboundPorts,
    ),
    (
        "traffic.sidecar.istio.io/excludeInboundPorts",
        Setting::InboundExcludePorts,
    ),
    (
        "traffic.sidecar.istio.io/includeOutboundIPRanges",
        Setting::OutboundIncludeRanges,
    ),
    (
        "traffic.sidecar.istio.io/excludeOutboundIPRanges",
        Setting::OutboundExcludeRanges,
    ),
    (
        "traffic.sidecar.istio.io/includeOutboundPorts",
        Setting::OutboundIncludePorts,
    ),
    (
        "traffic.sidecar.istio.io/excludeOutboundPorts",
        Setting::OutboundExcludePorts,
    ),
    (
        "traffic.sidecar.istio.io/excludeInterfaces",
        Setting::ExcludeInterfaces,
    ),
    (
        "traffic.sidecar.istio.io/kubevirtInterfaces",
        Setting::RerouteInterfaces,
    ),
    (
        "sidecar.istio.io/interceptionMode",
        Setting::InterceptionMode,
    ),
];

/// One list-valued setting of istio-iptables, for annotations and error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    InboundPorts,
    InboundExcludePorts,
    OutboundIncludeRanges,
    OutboundExcludeRanges,
    OutboundIncludePorts,
    OutboundExcludePorts,
    ExcludeInterfaces,
    RerouteInterfaces,
    InterceptionMode,
}

impl Setting {
    /// The flag, as istio-iptables spells it.
    pub fn flag(self) -> &'static str {
        match self {
            Setting::InboundPorts => "-b/--istio-inbound-ports",
            Setting::InboundExcludePorts => "-d/--istio-local-exclude-ports",
            Setting::OutboundIncludeRanges => "-i/--istio-service-cidr",
            Setting::OutboundExcludeRanges => "-x/--istio-service-exclude-cidr",
            Setting::OutboundIncludePorts => "-q/--istio-outbound-ports",
            Setting::OutboundExcludePorts => "-o/--istio-local-outbound-ports-exclude",
            Setting::ExcludeInterfaces => "-c/--istio-exclude-interfaces",
            Setting::RerouteInterfaces => "-k/--kube-virt-interfaces",
            Setting::InterceptionMode => "-m/--istio-inbound-interception-mode",
        }
    }
}

/// The settings as given (strings, `None` when not given); see the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureOptions {
    pub proxy_port: Option<u16>,
    pub inbound_capture_port: Option<u16>,
    pub inbound_tunnel_port: Option<u16>,
    /// `-u`: comma-separated UIDs.
    pub proxy_uid: Option<String>,
    /// `-g`: comma-separated GIDs (default: the same as `-u`, as istio-iptables).
    pub proxy_gid: Option<String>,
    pub inbound_interception_mode: Option<String>,
    pub inbound_ports: Option<String>,
    pub inbound_exclude_ports: Option<String>,
    pub outbound_include_ranges: Option<String>,
    pub outbound_exclude_ranges: Option<String>,
    pub outbound_include_ports: Option<String>,
    pub outbound_exclude_ports: Option<String>,
    pub exclude_interfaces: Option<String>,
    pub reroute_interfaces: Option<String>,
}

impl CaptureOptions {
    /// Fill the settings not given on the command line from pod annotations (`key`, `value`
    /// pairs, e.g. from [`parse_downward_api_annotations`]). Unknown keys are ignored: a pod
    /// carries many annotations that are not ours.
    pub fn with_annotations<'a>(
        mut self,
        annotations: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> CaptureOptions {
        for (key, value) in annotations {
            let Some((_, setting)) = ANNOTATIONS.iter().find(|(k, _)| *k == key) else {
                continue;
            };
            let slot = match setting {
                Setting::InboundPorts => &mut self.inbound_ports,
                Setting::InboundExcludePorts => &mut self.inbound_exclude_ports,
                Setting::OutboundIncludeRanges => &mut self.outbound_include_ranges,
                Setting::OutboundExcludeRanges => &mut self.outbound_exclude_ranges,
                Setting::OutboundIncludePorts => &mut self.outbound_include_ports,
                Setting::OutboundExcludePorts => &mut self.outbound_exclude_ports,
                Setting::ExcludeInterfaces => &mut self.exclude_interfaces,
                Setting::RerouteInterfaces => &mut self.reroute_interfaces,
                Setting::InterceptionMode => &mut self.inbound_interception_mode,
            };
            if slot.is_none() {
                *slot = Some(value.to_string());
            }
        }
        self
    }
}

/// Inbound ports to capture (`-b`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InboundPorts {
    /// `*`: every port but the excluded ones.
    All,
    /// These ports only (empty: no inbound capture).
    Only(Vec<u16>),
}

/// Outbound destinations to capture (`-i`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutboundRanges {
    /// `*`: every destination but the excluded ones.
    All,
    /// These CIDRs only (empty: no outbound capture by address; `-q` ports still apply).
    Only(Vec<Cidr>),
}

impl OutboundRanges {
    /// Istio's `HasLoopBackIP`: an explicit loopback range means the application's own
    /// loopback traffic is meant to be captured too.
    fn has_loopback(&self, v6: bool) -> bool {
        match self {
            OutboundRanges::All => false,
            OutboundRanges::Only(cidrs) => cidrs
                .iter()
                .any(|c| c.is_ipv6() == v6 && c.addr.is_loopback()),
        }
    }
}

/// An IP prefix, `addr/len` (a bare address means the one host).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn is_ipv6(&self) -> bool {
        self.addr.is_ipv6()
    }

    /// The one-host prefix of `addr`.
    pub fn host(addr: IpAddr) -> Cidr {
        Cidr {
            addr,
            prefix: if addr.is_ipv6() { 128 } else { 32 },
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| format!("{ip:?} is not an IP address"))?;
        let max = if addr.is_ipv6() { 128 } else { 32 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("prefix length {p:?} is not 0..={max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

/// Validated capture settings: what the rule builder ([`super::rules`]) reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureSpec {
    pub proxy_port: u16,
    pub inbound_capture_port: u16,
    pub inbound_tunnel_port: u16,
    pub proxy_uids: Vec<u32>,
    pub proxy_gids: Vec<u32>,
    pub inbound_ports: InboundPorts,
    pub inbound_exclude_ports: Vec<u16>,
    pub outbound_include_ranges: OutboundRanges,
    pub outbound_exclude_ranges: Vec<Cidr>,
    pub outbound_include_ports: Vec<u16>,
    pub outbound_exclude_ports: Vec<u16>,
    pub exclude_interfaces: Vec<String>,
    pub reroute_interfaces: Vec<String>,
    /// Program the IPv6 rules too (ip6tables, or the `ip6` half of an `inet` table).
    pub ipv6: bool,
}

impl CaptureSpec {
    /// Validate `opts`; `ipv6` says whether IPv6 rules are wanted (see
    /// [`super::apply::host_has_ipv6`]).
    pub fn from_options(opts: &CaptureOptions, ipv6: bool) -> Result<CaptureSpec, CaptureError> {
        let mode = opts.inbound_interception_mode.as_deref().unwrap_or("");
        match mode {
            "" | "REDIRECT" => {}
            other => {
                return Err(invalid(
                    Setting::InterceptionMode,
                    other,
                    "only REDIRECT is supported (TPROXY needs policy routing and a \
                     transparent listener, which the Trellis sidecar does not do)"
                        .into(),
                ))
            }
        }
        let uids = ids(opts.proxy_uid.as_deref(), "-u/--proxy-uid")?;
        let gids = match opts.proxy_gid.as_deref() {
            Some(g) => ids(Some(g), "-g/--proxy-gid")?,
            None => uids.clone(),
        };
        let inbound_ports = match opts.inbound_ports.as_deref().unwrap_or("*").trim() {
            "*" => InboundPorts::All,
            list => InboundPorts::Only(ports(list, Setting::InboundPorts)?),
        };
        let mut inbound_exclude_ports = PROXY_OWN_INBOUND_PORTS.to_vec();
        for port in ports(
            opts.inbound_exclude_ports.as_deref().unwrap_or(""),
            Setting::InboundExcludePorts,
        )? {
            if !inbound_exclude_ports.contains(&port) {
                inbound_exclude_ports.push(port);
            }
        }
        let outbound_include_ranges = match opts
            .outbound_include_ranges
            .as_deref()
            .unwrap_or("*")
            .trim()
        {
            "*" => OutboundRanges::All,
            list => OutboundRanges::Only(cidrs(list, Setting::OutboundIncludeRanges)?),
        };
        let exclude = opts.outbound_exclude_ranges.as_deref().unwrap_or("");
        if exclude.trim() == "*" {
            // Istio: "invalid value for OUTBOUND_IP_RANGES_EXCLUDE".
            return Err(invalid(
                Setting::OutboundExcludeRanges,
                exclude,
                "`*` cannot be excluded; use `-i \"\"` to capture no outbound traffic".into(),
            ));
        }
        Ok(CaptureSpec {
            proxy_port: opts.proxy_port.unwrap_or(DEFAULT_PROXY_PORT),
            inbound_capture_port: opts
                .inbound_capture_port
                .unwrap_or(DEFAULT_INBOUND_CAPTURE_PORT),
            inbound_tunnel_port: opts
                .inbound_tunnel_port
                .unwrap_or(DEFAULT_INBOUND_TUNNEL_PORT),
            proxy_uids: uids,
            proxy_gids: gids,
            inbound_ports,
            inbound_exclude_ports,
            outbound_include_ranges,
            outbound_exclude_ranges: cidrs(exclude, Setting::OutboundExcludeRanges)?,
            outbound_include_ports: ports(
                opts.outbound_include_ports.as_deref().unwrap_or(""),
                Setting::OutboundIncludePorts,
            )?,
            outbound_exclude_ports: ports(
                opts.outbound_exclude_ports.as_deref().unwrap_or(""),
                Setting::OutboundExcludePorts,
            )?,
            exclude_interfaces: interfaces(
                opts.exclude_interfaces.as_deref().unwrap_or(""),
                Setting::ExcludeInterfaces,
            )?,
            reroute_interfaces: interfaces(
                opts.reroute_interfaces.as_deref().unwrap_or(""),
                Setting::RerouteInterfaces,
            )?,
            ipv6,
        })
    }

    /// Whether the outbound include list names a loopback range of this family.
    pub fn includes_loopback(&self) -> bool {
        self.outbound_include_ranges.has_loopback(false)
            || self.outbound_include_ranges.has_loopback(true)
    }
}

fn invalid(setting: Setting, value: &str, reason: String) -> CaptureError {
    CaptureError::Invalid {
        setting: setting.flag(),
        value: value.to_string(),
        reason,
    }
}

/// Istio's `config.Split`: comma-separated, blanks ignored (a trailing comma is fine).
fn split(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn ports(list: &str, setting: Setting) -> Result<Vec<u16>, CaptureError> {
    let mut out = Vec::new();
    for item in split(list) {
        let port = item
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| invalid(setting, list, format!("{item:?} is not a port (1-65535)")))?;
        if !out.contains(&port) {
            out.push(port);
        }
    }
    Ok(out)
}

fn cidrs(list: &str, setting: Setting) -> Result<Vec<Cidr>, CaptureError> {
    let mut out = Vec::new();
    for item in split(list) {
        if item == "*" {
            return Err(invalid(
                setting,
                list,
                "`*` must be the whole value, not one item of a list".into(),
            ));
        }
        let cidr = item
            .parse::<Cidr>()
            .map_err(|reason| invalid(setting, list, reason))?;
        if !out.contains(&cidr) {
            out.push(cidr);
        }
    }
    Ok(out)
}

fn ids(list: Option<&str>, flag: &'static str) -> Result<Vec<u32>, CaptureError> {
    let Some(list) = list else {
        return Ok(vec![DEFAULT_PROXY_ID]);
    };
    let mut out = Vec::new();
    for item in split(list) {
        let id = item.parse::<u32>().map_err(|_| CaptureError::Invalid {
            setting: flag,
            value: list.to_string(),
            reason: format!("{item:?} is not a numeric id"),
        })?;
        if !out.contains(&id) {
            out.push(id);
        }
    }
    if out.is_empty() {
        return Err(CaptureError::Invalid {
            setting: flag,
            value: list.to_string(),
            reason: "the proxy needs at least one id, or its own traffic would loop".into(),
        });
    }
    Ok(out)
}

/// Interface names go into rules verbatim: keep them to what Linux and both tools accept.
fn interfaces(list: &str, setting: Setting) -> Result<Vec<String>, CaptureError> {
    let mut out = Vec::new();
    for item in split(list) {
        let ok = item.len() <= 15
            && item
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
        if !ok {
            return Err(invalid(
                setting,
                list,
                format!("{item:?} is not an interface name (at most 15 of A-Z a-z 0-9 - _ . @)"),
            ));
        }
        if !out.iter().any(|i| i == item) {
            out.push(item.to_string());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(opts: CaptureOptions) -> CaptureSpec {
        CaptureSpec::from_options(&opts, false).unwrap()
    }

    #[test]
    fn defaults_are_a_default_istio_injection() {
        let s = spec(CaptureOptions::default());
        assert_eq!(s.proxy_port, 15001);
        assert_eq!(s.inbound_capture_port, 15006);
        assert_eq!(s.proxy_uids, vec![1337]);
        assert_eq!(s.proxy_gids, vec![1337]);
        assert_eq!(s.inbound_ports, InboundPorts::All);
        assert_eq!(s.outbound_include_ranges, OutboundRanges::All);
        assert_eq!(s.inbound_exclude_ports, vec![15090, 15021, 15020]);
    }

    #[test]
    fn given_empty_disables_and_gid_follows_uid() {
        let s = spec(CaptureOptions {
            inbound_ports: Some("".into()),
            outbound_include_ranges: Some("".into()),
            proxy_uid: Some("3,4".into()),
            inbound_exclude_ports: Some("15021, 8080,".into()),
            ..Default::default()
        });
        assert_eq!(s.inbound_ports, InboundPorts::Only(vec![]));
        assert_eq!(s.outbound_include_ranges, OutboundRanges::Only(vec![]));
        assert_eq!(s.proxy_gids, vec![3, 4]);
        assert_eq!(s.inbound_exclude_ports, vec![15090, 15021, 15020, 8080]);
    }

    #[test]
    fn flags_win_over_annotations() {
        let opts = CaptureOptions {
            inbound_ports: Some("9080".into()),
            ..Default::default()
        }
        .with_annotations([
            ("traffic.sidecar.istio.io/includeInboundPorts", "1,2"),
            ("traffic.sidecar.istio.io/excludeOutboundPorts", "5432"),
            ("kubectl.kubernetes.io/restartedAt", "whatever"),
        ]);
        let s = spec(opts);
        assert_eq!(s.inbound_ports, InboundPorts::Only(vec![9080]));
        assert_eq!(s.outbound_exclude_ports, vec![5432]);
    }

    #[test]
    fn bad_values_name_the_setting() {
        let cases = [
            (
                CaptureOptions {
                    inbound_ports: Some("80,http".into()),
                    ..Default::default()
                },
                "-b/--istio-inbound-ports",
                "\"http\" is not a port",
            ),
            (
                CaptureOptions {
                    outbound_exclude_ranges: Some("10.0.0.0/33".into()),
                    ..Default::default()
                },
                "-x/--istio-service-exclude-cidr",
                "prefix length",
            ),
            (
                CaptureOptions {
                    outbound_exclude_ranges: Some("*".into()),
                    ..Default::default()
                },
                "-x/--istio-service-exclude-cidr",
                "cannot be excluded",
            ),
            (
                CaptureOptions {
                    proxy_uid: Some("envoy".into()),
                    ..Default::default()
                },
                "-u/--proxy-uid",
                "not a numeric id",
            ),
            (
                CaptureOptions {
                    inbound_interception_mode: Some("TPROXY".into()),
                    ..Default::default()
                },
                "-m/--istio-inbound-interception-mode",
                "only REDIRECT",
            ),
            (
                CaptureOptions {
                    exclude_interfaces: Some("eth0;rm".into()),
                    ..Default::default()
                },
                "-c/--istio-exclude-interfaces",
                "not an interface name",
            ),
        ];
        for (opts, flag, reason) in cases {
            let err = CaptureSpec::from_options(&opts, false)
                .unwrap_err()
                .to_string();
            assert!(err.contains(flag), "{err}");
            assert!(err.contains(reason), "{err}");
        }
    }

    #[test]
    fn cidrs_parse_and_print() {
        assert_eq!(
            "10.0.0.0/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            "10.1.2.3".parse::<Cidr>().unwrap().to_string(),
            "10.1.2.3/32"
        );
        assert_eq!(
            "2001:db8::/32".parse::<Cidr>().unwrap().to_string(),
            "2001:db8::/32"
        );
        assert!("::1/129".parse::<Cidr>().is_err());
        assert!("ten/8".parse::<Cidr>().is_err());
        let s = spec(CaptureOptions {
            outbound_include_ranges: Some("127.1.2.3/32".into()),
            ..Default::default()
        });
        assert!(s.includes_loopback());
    }
}
