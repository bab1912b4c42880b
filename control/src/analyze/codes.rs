//! The Istio message types added with the analyzers of issue 12, with the code, level and name
//! of `pkg/config/analysis/msg/messages.yaml` (the first seven live in [`super::message`]).
//! Never invent a code: each line here is one entry of that file.

use super::message::{Code, Level};

macro_rules! codes {
    ($($id:ident = $code:literal, $level:ident, $name:literal;)*) => {
        $(pub const $id: Code = Code { code: $code, level: Level::$level, name: $name };)*
    };
}

codes! {
    NAMESPACE_NOT_INJECTED = "IST0102", Info, "NamespaceNotInjected";
    POD_MISSING_PROXY = "IST0103", Warning, "PodMissingProxy";
    CONFLICTING_SIDECAR_WORKLOAD_SELECTORS = "IST0110", Error, "ConflictingSidecarWorkloadSelectors";
    MULTIPLE_SIDECARS_WITHOUT_WORKLOAD_SELECTORS = "IST0111", Error, "MultipleSidecarsWithoutWorkloadSelectors";
    PORT_NAME_IS_NOT_UNDER_NAMING_CONVENTION = "IST0118", Info, "PortNameIsNotUnderNamingConvention";
    NAMESPACE_MULTIPLE_INJECTION_LABELS = "IST0123", Warning, "NamespaceMultipleInjectionLabels";
    NO_SERVER_CERTIFICATE_VERIFICATION_DESTINATION_LEVEL = "IST0128", Warning, "NoServerCertificateVerificationDestinationLevel";
    NO_SERVER_CERTIFICATE_VERIFICATION_PORT_LEVEL = "IST0129", Warning, "NoServerCertificateVerificationPortLevel";
    VIRTUAL_SERVICE_HOST_NOT_FOUND_IN_GATEWAY = "IST0132", Warning, "VirtualServiceHostNotFoundInGateway";
    SERVICE_ENTRY_ADDRESSES_REQUIRED = "IST0134", Warning, "ServiceEntryAddressesRequired";
    GATEWAY_DUPLICATE_CERTIFICATE = "IST0138", Warning, "GatewayDuplicateCertificate";
    INGRESS_ROUTE_RULES_NOT_AFFECTED = "IST0140", Warning, "IngressRouteRulesNotAffected";
    CONFLICTING_GATEWAYS = "IST0145", Error, "ConflictingGateways";
    NAMESPACE_INJECTION_ENABLED_BY_DEFAULT = "IST0148", Info, "NamespaceInjectionEnabledByDefault";
    EXTERNAL_NAME_SERVICE_TYPE_INVALID_PORT_NAME = "IST0150", Warning, "ExternalNameServiceTypeInvalidPortName";
    CONFLICTING_TELEMETRY_WORKLOAD_SELECTORS = "IST0159", Error, "ConflictingTelemetryWorkloadSelectors";
    MULTIPLE_TELEMETRIES_WITHOUT_WORKLOAD_SELECTORS = "IST0160", Error, "MultipleTelemetriesWithoutWorkloadSelectors";
    GATEWAY_PORT_NOT_DEFINED_ON_SERVICE = "IST0162", Warning, "GatewayPortNotDefinedOnService";
    REFERENCED_INTERNAL_GATEWAY = "IST0165", Warning, "ReferencedInternalGateway";
    INEFFECTIVE_POLICY = "IST0167", Warning, "IneffectivePolicy";
    DESTINATION_RULE_SUBSET_NOT_SELECT_PODS = "IST0173", Error, "DestinationRuleSubsetNotSelectPods";
    UNKNOWN_DESTINATION_RULE_HOST = "IST0174", Warning, "UnknownDestinationRuleHost";
    CONFLICTING_SERVICE_ENTRY_PROTOCOL = "IST0177", Warning, "ConflictingServiceEntryProtocol";
}
