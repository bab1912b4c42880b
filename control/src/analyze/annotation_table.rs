//! Istio's resource annotations (istio/api `annotation/annotations.yaml`, commit
//! b8f8791d9653b2edc77a071d48887e582cfe84bf, what `annotation.AllResourceAnnotations()` returns):
//! each name, whether it is deprecated, whether its feature is alpha, and the kinds it may be
//! applied to, in the file's order (the order istioctl prints them in IST0107). Generated from
//! that file; edit it, not this.

/// One annotation Istio defines.
pub struct AnnotationDef {
    pub name: &'static str,
    pub deprecated: bool,
    /// `featureStatus: Alpha`, or no `featureStatus` (Go's zero `FeatureStatus` is `Alpha`, as
    /// the generated `annotations.gen.go` shows): what `maturity.AlphaAnalyzer` reports.
    pub alpha: bool,
    /// `Any`, or the kinds (`Pod`, `Service` ...) it attaches to.
    pub resources: &'static [&'static str],
}

/// Every annotation, sorted by name.
pub const ANNOTATIONS: &[AnnotationDef] = &[
    AnnotationDef {
        name: "alpha.istio.io/canonical-serviceaccounts",
        deprecated: true,
        alpha: true,
        resources: &["Service"],
    },
    AnnotationDef {
        name: "alpha.istio.io/kubernetes-serviceaccounts",
        deprecated: true,
        alpha: true,
        resources: &["Service"],
    },
    AnnotationDef {
        name: "ambient.istio.io/bypass-inbound-capture",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "ambient.istio.io/dns-capture",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "ambient.istio.io/redirection",
        deprecated: false,
        alpha: false,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "ambient.istio.io/waypoint-inbound-binding",
        deprecated: false,
        alpha: true,
        resources: &["GatewayClass", "Gateway"],
    },
    AnnotationDef {
        name: "galley.istio.io/analyze-suppress",
        deprecated: false,
        alpha: true,
        resources: &["Any"],
    },
    AnnotationDef {
        name: "gateway.istio.io/controller-version",
        deprecated: false,
        alpha: true,
        resources: &["Any"],
    },
    AnnotationDef {
        name: "gateway.istio.io/name-override",
        deprecated: false,
        alpha: true,
        resources: &["Gateway"],
    },
    AnnotationDef {
        name: "gateway.istio.io/service-account",
        deprecated: false,
        alpha: true,
        resources: &["Gateway"],
    },
    AnnotationDef {
        name: "inject.istio.io/templates",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "istio.io/autoRegistrationGroup",
        deprecated: false,
        alpha: true,
        resources: &["WorkloadEntry"],
    },
    AnnotationDef {
        name: "istio.io/connectedAt",
        deprecated: false,
        alpha: true,
        resources: &["WorkloadEntry"],
    },
    AnnotationDef {
        name: "istio.io/disconnectedAt",
        deprecated: false,
        alpha: true,
        resources: &["WorkloadEntry"],
    },
    AnnotationDef {
        name: "istio.io/dry-run",
        deprecated: false,
        alpha: true,
        resources: &["AuthorizationPolicy"],
    },
    AnnotationDef {
        name: "istio.io/reroute-virtual-interfaces",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "istio.io/rev",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "istio.io/use-waypoint-canary-weight",
        deprecated: false,
        alpha: true,
        resources: &["Service", "ServiceEntry", "Namespace"],
    },
    AnnotationDef {
        name: "istio.io/workloadController",
        deprecated: false,
        alpha: true,
        resources: &["WorkloadEntry"],
    },
    AnnotationDef {
        name: "kubernetes.io/ingress.class",
        deprecated: false,
        alpha: false,
        resources: &["Ingress"],
    },
    AnnotationDef {
        name: "networking.istio.io/exportTo",
        deprecated: false,
        alpha: true,
        resources: &["Service"],
    },
    AnnotationDef {
        name: "networking.istio.io/service-type",
        deprecated: false,
        alpha: true,
        resources: &["Gateway"],
    },
    AnnotationDef {
        name: "networking.istio.io/traffic-distribution",
        deprecated: false,
        alpha: true,
        resources: &["Namespace", "Service", "ServiceEntry"],
    },
    AnnotationDef {
        name: "prometheus.istio.io/merge-metrics",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "proxy.istio.io/config",
        deprecated: false,
        alpha: false,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "proxy.istio.io/overrides",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "readiness.status.sidecar.istio.io/applicationPorts",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "readiness.status.sidecar.istio.io/failureThreshold",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "readiness.status.sidecar.istio.io/initialDelaySeconds",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "readiness.status.sidecar.istio.io/periodSeconds",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "sidecar.istio.io/agentLogLevel",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "sidecar.istio.io/bootstrapOverride",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "sidecar.istio.io/componentLogLevel",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "sidecar.istio.io/discoveryAddress",
        deprecated: true,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "sidecar.istio.io/extraStatTags",
        deprecated: true,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "sidecar.istio.io/inject",
        deprecated: true,
        alpha: false,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "sidecar.istio.io/interceptionMode",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "sidecar.istio.io/logLevel",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "sidecar.istio.io/nativeSidecar",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "sidecar.istio.io/proxyCPU",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "sidecar.istio.io/proxyCPULimit",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "sidecar.istio.io/proxyImage",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "sidecar.istio.io/proxyImageType",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "sidecar.istio.io/proxyMemory",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "sidecar.istio.io/proxyMemoryLimit",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "sidecar.istio.io/rewriteAppHTTPProbers",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "sidecar.istio.io/statsCompression",
        deprecated: true,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "sidecar.istio.io/statsEvictionInterval",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "sidecar.istio.io/statsFlushInterval",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "sidecar.istio.io/statsHistogramBins",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "sidecar.istio.io/statsHistogramBuckets",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "sidecar.istio.io/statsInclusionPrefixes",
        deprecated: true,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "sidecar.istio.io/statsInclusionRegexps",
        deprecated: true,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "sidecar.istio.io/statsInclusionSuffixes",
        deprecated: true,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "sidecar.istio.io/status",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "sidecar.istio.io/userVolume",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "sidecar.istio.io/userVolumeMount",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "status.sidecar.istio.io/port",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "topology.istio.io/controlPlaneClusters",
        deprecated: false,
        alpha: true,
        resources: &["Namespace"],
    },
    AnnotationDef {
        name: "traffic.istio.io/nodeSelector",
        deprecated: false,
        alpha: false,
        resources: &["Service"],
    },
    AnnotationDef {
        name: "traffic.sidecar.istio.io/excludeInboundPorts",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "traffic.sidecar.istio.io/excludeInterfaces",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "traffic.sidecar.istio.io/excludeOutboundIPRanges",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "traffic.sidecar.istio.io/excludeOutboundPorts",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "traffic.sidecar.istio.io/includeInboundPorts",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "traffic.sidecar.istio.io/includeOutboundIPRanges",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "traffic.sidecar.istio.io/includeOutboundPorts",
        deprecated: false,
        alpha: true,
        resources: &["Pod"],
    },
    AnnotationDef {
        name: "traffic.sidecar.istio.io/kubevirtInterfaces",
        deprecated: true,
        alpha: true,
        resources: &["Pod"],
    },
];

/// The definition of `name`, if Istio defines it.
pub fn lookup(name: &str) -> Option<&'static AnnotationDef> {
    ANNOTATIONS
        .binary_search_by(|a| a.name.cmp(name))
        .ok()
        .map(|i| &ANNOTATIONS[i])
}
