//! How the proxy edits a request's head: the client certificate it forwards (or strips)
//! before routing, and the upstream head it makes of the client's (hop-by-hop fields out,
//! header edits in, `x-request-id`, `x-forwarded-proto` and `via` added).

use crate::config::{ForwardClientCert, Listener, Route, WeightedCluster};
use bytes::Bytes;

use crate::http1::{self, names, RequestHead};
use crate::route;

use super::ids::DownstreamId;
use super::Engine;

impl Engine {
    /// `x-forwarded-client-cert` as Envoy's connection manager leaves it before routing
    /// (`ConnectionManagerUtility::mutateXfccRequestHeader`): on a gateway, as its
    /// [`ForwardClientCert`] says (pilot's default SANITIZE_SET); on a sidecar's inbound
    /// listener an mTLS client's certificate is appended (Istio's APPEND_FORWARD); every other
    /// request loses the header, so no client can claim an identity it did not prove
    /// (SANITIZE, Envoy's default, which Istio keeps on outbound listeners).
    pub(super) fn forward_client_cert(
        &self,
        down: DownstreamId,
        listener: Option<&Listener>,
        headers: &mut http1::Fields,
    ) {
        let mode = match listener {
            Some(l) => match l.edge {
                Some(edge) => edge.forward_client_cert,
                None if l.direction == crate::config::Direction::Inbound => {
                    ForwardClientCert::AppendForward
                }
                None => ForwardClientCert::Sanitize,
            },
            None => ForwardClientCert::Sanitize,
        };
        let details = self
            .conns
            .get(down.conn())
            .and_then(|c| c.transport.client_cert_details());
        match (mode, details) {
            (ForwardClientCert::AlwaysForwardOnly, _) => {}
            (ForwardClientCert::Sanitize, _) | (_, None) => {
                headers.remove(&names::X_FORWARDED_CLIENT_CERT);
            }
            (ForwardClientCert::ForwardOnly, Some(_)) => {}
            (ForwardClientCert::AppendForward, Some(details)) => {
                let mut value = String::new();
                for v in headers.get_all(&names::X_FORWARDED_CLIENT_CERT) {
                    if let Some(v) = http1::value_str(v) {
                        value.push_str(v);
                        value.push(',');
                    }
                }
                value.push_str(details);
                set_or_remove(headers, value);
            }
            (ForwardClientCert::SanitizeSet, Some(details)) => {
                set_or_remove(headers, details.to_string());
            }
        }
    }
}

/// `x-forwarded-client-cert: value`, or no such field if the value is not a valid one.
fn set_or_remove(headers: &mut http1::Fields, value: String) {
    if http1::valid_value(value.as_bytes()) {
        headers.insert(names::X_FORWARDED_CLIENT_CERT, value.into());
    } else {
        headers.remove(&names::X_FORWARDED_CLIENT_CERT);
    }
}

/// Turns the client's head into the upstream head: hop-by-hop fields go, route and destination
/// header edits apply, the authority may be rewritten, and the proxy adds its own fields.
pub(super) fn prepare_upstream_head(
    head: &mut RequestHead,
    route: Option<&Route>,
    dest: Option<&WeightedCluster>,
    rng: &mut crate::rng::EngineRng,
) {
    // Expect is answered here (100-continue) and never forwarded: it goes in the same pass.
    let expect = names::EXPECT;
    http1::strip_hop_by_hop_and(&mut head.headers, |name| {
        name.len() == expect.as_bytes().len() && name.eq_ignore_ascii_case(expect.as_bytes())
    });
    // The destination's edits, then the route's, as Envoy's WeightedClusterEntry
    // (`finalizeRequestHeaders`: its own parser, then the route's).
    let ops = [
        dest.map(|d| &d.request_headers),
        route.map(|r| &r.request_headers),
    ];
    #[cfg(feature = "mutants")]
    let ops = if crate::mutants::route().destination_edits_after_route {
        [ops[1], ops[0]]
    } else {
        ops
    };
    for ops in ops.into_iter().flatten() {
        route::apply_header_ops(ops, &mut head.headers);
    }
    // One scan for both names the proxy adds when missing.
    let (has_id, has_proto) = head.headers.contains_each(
        names::X_REQUEST_ID.as_bytes(),
        names::X_FORWARDED_PROTO.as_bytes(),
    );
    // Static names and values: nothing is allocated for them.
    if !has_id {
        head.headers.append(names::X_REQUEST_ID, request_id(rng));
    }
    if !has_proto {
        head.headers
            .append(names::X_FORWARDED_PROTO, Bytes::from_static(b"http"));
    }
    // RFC 9110 §7.6.3: a proxy MUST add itself to Via.
    head.headers
        .append(names::VIA, Bytes::from_static(b"1.1 trellis"));
    head.keep_alive = true;
}

/// A UUIDv4-shaped request id from the engine RNG (deterministic under a seed).
fn request_id(rng: &mut crate::rng::EngineRng) -> Bytes {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bits = u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64());
    // Version 4, variant 10xx, as RFC 9562 lays them out.
    bits = (bits & !(0xf << 76)) | (0x4 << 76);
    bits = (bits & !(0x3 << 62)) | (0x2 << 62);
    // Two hex digits per byte, most significant first, with the dashes of the 8-4-4-4-12 form
    // after bytes 4, 6, 8 and 10 (a byte at a time: this runs for every request without one).
    let mut out = [0u8; 36];
    let mut at = 0;
    for (i, byte) in bits.to_be_bytes().into_iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            if let Some(dash) = out.get_mut(at) {
                *dash = b'-';
            }
            at += 1;
        }
        if let Some(pair) = out.get_mut(at..at + 2) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0xf)];
        }
        at += 2;
    }
    Bytes::copy_from_slice(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_uuid_v4_shaped_and_seeded() {
        let mut a = crate::rng::EngineRng::with_seed(5);
        let mut b = crate::rng::EngineRng::with_seed(5);
        let id = request_id(&mut a);
        assert_eq!(id, request_id(&mut b));
        let s = std::str::from_utf8(&id).unwrap();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4", "{s}");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"), "{s}");
        assert_eq!(s.matches('-').count(), 4);
        // The layout as the nibble-at-a-time version wrote it, for a known value.
        let mut c = crate::rng::EngineRng::with_seed(5);
        let bits = u128::from(c.next_u64()) << 64 | u128::from(c.next_u64());
        let bits = (bits & !(0xf << 76)) | (0x4 << 76);
        let bits = (bits & !(0x3 << 62)) | (0x2 << 62);
        let hex = format!("{bits:032x}");
        let expected = format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        );
        assert_eq!(s, expected);
    }
}
