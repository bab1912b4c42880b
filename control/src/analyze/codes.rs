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
    GATEWAY_API_CRD_VERSION_BELOW_MINIMUM = "IST0176", Warning, "GatewayAPICRDVersionBelowMinimum";
    INEFFECTIVE_SELECTOR = "IST0166", Warning, "IneffectiveSelector";
    INVALID_EXTERNAL_CONTROL_PLANE_CONFIG = "IST0163", Warning, "InvalidExternalControlPlaneConfig";
    EXTERNAL_CONTROL_PLANE_ADDRESS_IS_NOT_A_HOSTNAME = "IST0164", Info, "ExternalControlPlaneAddressIsNotAHostname";
    INVALID_GATEWAY_CREDENTIAL = "IST0161", Error, "InvalidGatewayCredential";
    PODS_ISTIO_PROXY_IMAGE_MISMATCH_IN_NAMESPACE = "IST0158", Warning, "PodsIstioProxyImageMismatchInNamespace";
    INVALID_WEBHOOK = "IST0139", Error, "InvalidWebhook";
    IMAGE_AUTO_WITHOUT_INJECTION_WARNING = "IST0146", Warning, "ImageAutoWithoutInjectionWarning";
    IMAGE_AUTO_WITHOUT_INJECTION_ERROR = "IST0147", Error, "ImageAutoWithoutInjectionError";
    DEPRECATED = "IST0002", Warning, "Deprecated";
    MISPLACED_ANNOTATION = "IST0107", Warning, "MisplacedAnnotation";
    UNKNOWN_ANNOTATION = "IST0108", Warning, "UnknownAnnotation";
    DEPLOYMENT_ASSOCIATED_TO_MULTIPLE_SERVICES = "IST0116", Warning, "DeploymentAssociatedToMultipleServices";
    INVALID_ANNOTATION = "IST0125", Warning, "InvalidAnnotation";
    DEPRECATED_ANNOTATION = "IST0135", Info, "DeprecatedAnnotation";
    DEPLOYMENT_CONFLICTING_PORTS = "IST0137", Warning, "DeploymentConflictingPorts";
    INVALID_APPLICATION_UID = "IST0144", Warning, "InvalidApplicationUID";
    JWT_CLAIM_BASED_ROUTING_WITHOUT_REQUEST_AUTHN = "IST0149", Error, "JwtClaimBasedRoutingWithoutRequestAuthN";
    NEGATIVE_CONDITION_STATUS = "IST0171", Warning, "NegativeConditionStatus";
    JWKS_URI_FETCH_UNRESTRICTED = "IST0175", Warning, "JwksUriFetchUnrestricted";
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
    UNKNOWN_MESH_NETWORKS_SERVICE_REGISTRY = "IST0126", Error, "UnknownMeshNetworksServiceRegistry";
    ALPHA_ANNOTATION = "IST0136", Info, "AlphaAnnotation";
    ENVOY_FILTER_USES_RELATIVE_OPERATION = "IST0151", Warning, "EnvoyFilterUsesRelativeOperation";
    ENVOY_FILTER_USES_REPLACE_OPERATION_INCORRECTLY = "IST0152", Error, "EnvoyFilterUsesReplaceOperationIncorrectly";
    ENVOY_FILTER_USES_ADD_OPERATION_INCORRECTLY = "IST0153", Error, "EnvoyFilterUsesAddOperationIncorrectly";
    ENVOY_FILTER_USES_REMOVE_OPERATION_INCORRECTLY = "IST0154", Error, "EnvoyFilterUsesRemoveOperationIncorrectly";
    ENVOY_FILTER_USES_RELATIVE_OPERATION_WITH_PROXY_VERSION = "IST0155", Warning, "EnvoyFilterUsesRelativeOperationWithProxyVersion";
    INVALID_TELEMETRY_PROVIDER = "IST0157", Warning, "InvalidTelemetryProvider";
}
