//! Istio / protobuf duration strings (`"1s"`, `"0.5s"`, `"100ms"`, `"1m"`, `"1h"`).
//!
//! The protobuf JSON mapping only defines seconds with a fraction (`"1.5s"`), but Istio's
//! validation and Kubernetes users write Go-style units too (`"100ms"`, `"1m"`, `"1h30m"`), and
//! istiod accepts them. We accept both: a sequence of `<decimal><unit>` terms with units `h`,
//! `m`, `s`, `ms`, `us`/`µs`, `ns`. Negative durations and bare numbers are rejected.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A parsed Istio duration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct IstioDuration(pub Duration);

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (expected e.g. \"1s\", \"0.5s\", \"100ms\", \"1m\")")]
pub struct DurationError {
    pub input: String,
    pub reason: &'static str,
}

/// Parse an Istio duration string.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: input.to_string(),
        reason,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    if s.starts_with('-') {
        return Err(err("negative"));
    }
    let mut total_nanos: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| err("missing unit"))?;
        if num_len == 0 {
            return Err(err("expected a number"));
        }
        let (num, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "h" => 3_600_000_000_000,
            "m" => 60_000_000_000,
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            "us" | "µs" => 1_000,
            "ns" => 1,
            _ => return Err(err("unknown unit")),
        };
        total_nanos = total_nanos
            .checked_add(decimal_times(num, unit_nanos).ok_or_else(|| err("bad number"))?)
            .ok_or_else(|| err("too large"))?;
        rest = next;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| err("too large"))?;
    let nanos = u32::try_from(total_nanos % 1_000_000_000).map_err(|_| err("too large"))?;
    Ok(Duration::new(secs, nanos))
}

/// `num` (a decimal like `0.25`) times `unit` nanoseconds, exactly (fraction truncated to ns).
fn decimal_times(num: &str, unit: u128) -> Option<u128> {
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if frac.contains('.') {
        return None;
    }
    let int_val: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut value = int_val.checked_mul(unit)?;
    let mut scale = unit;
    for digit in frac.chars() {
        let d = u128::from(digit.to_digit(10)?);
        scale /= 10;
        value = value.checked_add(d.checked_mul(scale)?)?;
    }
    Some(value)
}

/// In a CRD schema a duration is what protobuf's JSON mapping writes: a string such as `1.5s`.
impl schemars::JsonSchema for IstioDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string"})
    }
}

impl<'de> Deserialize<'de> for IstioDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = IstioDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"1s\" or \"100ms\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<IstioDuration, E> {
                parse_duration(v).map(IstioDuration).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(V)
    }
}

impl fmt::Display for IstioDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck_macros::quickcheck;

    #[test]
    fn accepts_istio_forms() {
        assert_eq!(parse_duration("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_duration("0.5s").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration(".25s").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("7s").unwrap(), Duration::from_secs(7));
        assert_eq!(parse_duration("1.000000001s").unwrap(), Duration::new(1, 1));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "1", "s", "-1s", "1x", "1..2s", "abc", "1 s", "."] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn deserializes_from_yaml_with_error() {
        let d: IstioDuration = serde_yaml::from_str("\"250ms\"").unwrap();
        assert_eq!(d.0, Duration::from_millis(250));
        let e = serde_yaml::from_str::<IstioDuration>("\"5 parsecs\"").unwrap_err();
        assert!(e.to_string().contains("invalid duration"), "{e}");
    }

    #[quickcheck]
    fn millis_round_trip(ms: u32) -> bool {
        parse_duration(&format!("{ms}ms")) == Ok(Duration::from_millis(u64::from(ms)))
    }

    #[quickcheck]
    fn fractional_seconds_match_millis(ms: u16) -> bool {
        let s = format!("{}.{:03}s", ms / 1000, ms % 1000);
        parse_duration(&s) == Ok(Duration::from_millis(u64::from(ms)))
    }
}
