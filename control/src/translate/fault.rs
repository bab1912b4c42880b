//! VirtualService `fault` → the engine's [`FaultPolicy`]: a fixed delay and an abort (HTTP
//! status or gRPC status), each for a percentage of requests, as pilot's `translateFault`
//! (pilot/pkg/networking/core/route/route.go) writes Envoy's fault filter config.

use trellis_engine::config::{FaultAbort, FaultDelay, FaultPolicy};

use crate::diag::Diagnostic;
use crate::istio::virtual_service::HttpFaultInjection;

fn percent_of(
    value: Option<f64>,
    legacy: Option<u32>,
    at: &str,
    diags: &mut Vec<Diagnostic>,
) -> f64 {
    let p = match (value, legacy) {
        (Some(v), _) => v,
        (None, Some(l)) => f64::from(l),
        (None, None) => {
            diags.push(
                Diagnostic::warning(
                    "no percentage given: Istio injects this fault into no request",
                )
                .field(at.to_string()),
            );
            0.0
        }
    };
    if !(0.0..=100.0).contains(&p) {
        diags.push(
            Diagnostic::error(format!("percentage {p} outside 0..=100; clamped"))
                .field(at.to_string()),
        );
    }
    p.clamp(0.0, 100.0)
}

pub fn fault(
    spec: &HttpFaultInjection,
    at: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<FaultPolicy> {
    let delay = spec.delay.as_ref().and_then(|d| {
        let here = format!("{at}.fault.delay");
        if d.exponential_delay.is_some() {
            diags.push(
                Diagnostic::warning("exponentialDelay is not supported by Trellis; ignored")
                    .field(format!("{here}.exponentialDelay")),
            );
        }
        let Some(fixed) = d.fixed_delay else {
            diags
                .push(Diagnostic::error("delay without fixedDelay; no delay injected").field(here));
            return None;
        };
        Some(FaultDelay {
            fixed: fixed.0,
            percent: percent_of(
                d.percentage.map(|p| p.value),
                d.percent,
                &format!("{here}.percentage"),
                diags,
            ),
        })
    });
    let abort = spec.abort.as_ref().and_then(|a| {
        let here = format!("{at}.fault.abort");
        let kinds = usize::from(a.http_status.is_some())
            + usize::from(a.grpc_status.is_some())
            + usize::from(a.http2_error.is_some());
        if kinds > 1 {
            diags.push(
                Diagnostic::error(
                    "only one of httpStatus, grpcStatus, http2Error may be set; no abort injected",
                )
                .field(here),
            );
            return None;
        }
        if a.http2_error.is_some() {
            // translateFault: "Only HTTP and gRPC type abort faults are supported".
            diags.push(
                Diagnostic::warning("http2Error aborts are not supported by Istio; ignored")
                    .field(format!("{here}.http2Error")),
            );
            return None;
        }
        let grpc_status = match a.grpc_status.as_deref() {
            None => None,
            Some(name) => match grpc_status_code(name) {
                Some(code) => Some(code),
                None => {
                    diags.push(
                        Diagnostic::error(format!(
                            "grpcStatus {name:?} is not a gRPC status name; no abort injected"
                        ))
                        .field(format!("{here}.grpcStatus")),
                    );
                    return None;
                }
            },
        };
        let status = match (a.http_status.map(u16::try_from), grpc_status) {
            (Some(Ok(s)), _) if (200..=599).contains(&s) => s,
            (Some(_), _) => {
                diags.push(
                    Diagnostic::error("httpStatus must be in 200..=599; no abort injected")
                        .field(format!("{here}.httpStatus")),
                );
                return None;
            }
            // FaultFilter::abortStatus: a gRPC abort answers HTTP 200.
            (None, Some(_)) => 200,
            (None, None) => return None,
        };
        Some(FaultAbort {
            status,
            grpc_status,
            percent: percent_of(
                a.percentage.map(|p| p.value),
                None,
                &format!("{here}.percentage"),
                diags,
            ),
        })
    });
    if delay.is_none() && abort.is_none() {
        return None;
    }
    Some(FaultPolicy { delay, abort })
}

/// The numeric code of a gRPC status name, as pilot maps `grpcStatus` (SupportedGRPCStatus in
/// pkg/util/grpc/codes.go; the codes are gRPC's, google.golang.org/grpc/codes).
fn grpc_status_code(name: &str) -> Option<u32> {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES
        .iter()
        .position(|n| *n == name)
        .and_then(|i| u32::try_from(i).ok())
}
