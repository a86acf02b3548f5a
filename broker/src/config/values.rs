//! Value syntax shared by the configuration keys: byte sizes, durations, bounded integers,
//! socket and IPv4 addresses, topic filters, DNS zones and the few constrained strings.
//!
//! Owns the `deserialize_with` helpers that `mod.rs` names on each field, so that every key's
//! accepted range is written once, beside the field. A well-formed value outside its range is
//! reported through [`invalid`] (tagged, so `error.rs` turns it into
//! [`ConfigError::Invalid`](super::ConfigError::Invalid)); a value of the wrong shape is an
//! ordinary serde error. Must never panic on any input.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use canopy_proto::TopicFilter;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// One kibibyte (1024 bytes).
pub(super) const KIB: u64 = 1024;
/// One mebibyte.
pub(super) const MIB: u64 = 1024 * KIB;
/// One gibibyte.
pub(super) const GIB: u64 = 1024 * MIB;
/// No upper bound for unsigned sizes and counts.
pub(super) const UNBOUNDED: u64 = u64::MAX;
/// No upper bound for integers (TOML integers are `i64`).
pub(super) const UNBOUNDED_INT: i64 = i64::MAX;

use canopy_model::config_error::invalid;

/// Units accepted after a size's number, lower-cased, with their multipliers.
const SIZE_UNITS: [(&str, u64); 7] = [
    ("b", 1),
    ("kb", 1000),
    ("kib", KIB),
    ("mb", 1000 * 1000),
    ("mib", MIB),
    ("gb", 1000 * 1000 * 1000),
    ("gib", GIB),
];

/// Parses a byte size: digits, optional spaces, an optional case-insensitive unit among B, KB,
/// KiB, MB, MiB, GB, GiB (KB = 1000 bytes, KiB = 1024 bytes). `"1MiB"` is 1048576.
pub(super) fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let syntax = || {
        format!(
            "invalid size {text:?}: expected a whole number of bytes with an optional unit \
             (B, KB, KiB, MB, MiB, GB, GiB), such as \"64KiB\" or \"1048576\""
        )
    };
    if number.is_empty() {
        return Err(syntax());
    }
    let unit = unit.trim().to_ascii_lowercase();
    let multiplier = if unit.is_empty() {
        1
    } else {
        SIZE_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, multiplier)| *multiplier)
            .ok_or_else(syntax)?
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("invalid size {text:?}: too large"))
}

/// Renders a byte count the way the docs write limits: `16 bytes`, `256 KiB`, `1 MiB`.
pub(super) fn format_size(bytes: u64) -> String {
    match bytes {
        0 => "0 bytes".to_owned(),
        b if b % GIB == 0 => format!("{} GiB", b / GIB),
        b if b % MIB == 0 => format!("{} MiB", b / MIB),
        b if b % KIB == 0 => format!("{} KiB", b / KIB),
        b => format!("{b} bytes"),
    }
}

/// Parses a duration with humantime: `"500ms"`, `"10s"`, `"2m"`, `"1h 30m"`.
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

/// A TOML value for a size: the parsed byte count (`None` when negative) and how it was
/// written, for the "got ..." part of range errors.
struct SizeInput {
    bytes: Option<u64>,
    written: String,
}

struct SizeVisitor;

impl Visitor<'_> for SizeVisitor {
    type Value = SizeInput;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size such as \"1MiB\", \"64KB\" or a number of bytes")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<SizeInput, E> {
        Ok(SizeInput {
            bytes: u64::try_from(v).ok(),
            written: v.to_string(),
        })
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<SizeInput, E> {
        Ok(SizeInput {
            bytes: Some(v),
            written: v.to_string(),
        })
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<SizeInput, E> {
        Ok(SizeInput {
            bytes: Some(parse_size(v).map_err(E::custom)?),
            written: format!("{v:?}"),
        })
    }
}

/// A byte size in `MIN..=MAX`, given as an integer or a string with a unit.
pub(super) fn size<'de, D, T, const MIN: u64, const MAX: u64>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    let input = d.deserialize_any(SizeVisitor)?;
    input
        .bytes
        .filter(|b| (MIN..=MAX).contains(b))
        .and_then(|b| T::try_from(b).ok())
        .ok_or_else(|| {
            let range = if MAX == UNBOUNDED {
                format!("must be at least {}", format_size(MIN))
            } else {
                format!(
                    "must be between {} and {}",
                    format_size(MIN),
                    format_size(MAX)
                )
            };
            invalid(format_args!("{range}, got {}", input.written))
        })
}

/// Any TOML integer, with a plain-words "expected" message.
struct IntVisitor;

impl Visitor<'_> for IntVisitor {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| invalid(format_args!("{v} is too large")))
    }
}

/// An integer in `MIN..=MAX`.
pub(super) fn int<'de, D, T, const MIN: i64, const MAX: i64>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    let value = d.deserialize_i64(IntVisitor)?;
    if (MIN..=MAX).contains(&value)
        && let Ok(v) = T::try_from(value)
    {
        return Ok(v);
    }
    if MAX == UNBOUNDED_INT {
        Err(invalid(format_args!("must be at least {MIN}, got {value}")))
    } else {
        Err(invalid(format_args!(
            "must be between {MIN} and {MAX}, got {value}"
        )))
    }
}

/// A duration string between `MIN_MS` and `MAX_MS` milliseconds.
pub(super) fn duration<'de, D, const MIN_MS: u64, const MAX_MS: u64>(
    d: D,
) -> Result<Duration, D::Error>
where
    D: Deserializer<'de>,
{
    let text = DurationText::deserialize(d)?.0;
    let value = parse_duration(&text).map_err(de::Error::custom)?;
    let (min, max) = (Duration::from_millis(MIN_MS), Duration::from_millis(MAX_MS));
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(invalid(format_args!(
            "must be between {} and {}, got {text:?}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        )))
    }
}

/// A string that must be a duration; exists for its "expected" message on wrong types.
struct DurationText(String);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurationText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"500ms\", \"10s\" or \"2m\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationText, E> {
                Ok(DurationText(v.to_owned()))
            }
        }
        d.deserialize_str(V)
    }
}

/// Parses `"ip:port"` with a message that says what is expected (host names are not resolved).
fn parse_socket_addr<E: de::Error>(text: &str) -> Result<SocketAddr, E> {
    text.trim().parse().map_err(|_| {
        E::custom(format_args!(
            "invalid socket address {text:?}: expected an IP address and a port such as \
             \"127.0.0.1:1883\" or \"[::1]:1883\" (host names are not resolved)"
        ))
    })
}

/// A socket address written as `"ip:port"`.
pub(super) fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    parse_socket_addr(&String::deserialize(d)?)
}

/// An optional socket address written as `"ip:port"` (the key's absence means `None`).
pub(super) fn opt_socket_addr<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    socket_addr(d).map(Some)
}

/// A path that must not be empty.
pub(super) fn non_empty_path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim().is_empty() {
        return Err(invalid("must not be empty"));
    }
    Ok(PathBuf::from(text))
}

/// An optional path that must not be empty when given.
pub(super) fn opt_non_empty_path<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<PathBuf>, D::Error> {
    non_empty_path(d).map(Some)
}

/// A `tracing` EnvFilter directive; only checked for being non-empty here.
pub(super) fn log_directive<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim().is_empty() {
        return Err(invalid(
            "must not be empty (write a directive such as \"info\" or \"canopy_broker=debug\")",
        ));
    }
    Ok(Some(text))
}

/// Longest accepted `node_id`, in characters.
pub(super) const NODE_ID_MAX_CHARS: usize = 64;

/// Why a node id is unusable, if it is: it appears in topics and in other brokers' views, so it
/// must be 1 to 64 characters without whitespace, control characters, `/`, `+` or `#`.
pub(super) fn node_id_problem(id: &str) -> Option<String> {
    if id.is_empty() {
        return Some("must not be empty".to_owned());
    }
    if id.chars().count() > NODE_ID_MAX_CHARS {
        return Some(format!(
            "must be at most {NODE_ID_MAX_CHARS} characters, got {id:?}"
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '+' | '#'))
    {
        return Some(format!(
            "must not contain whitespace, control characters, '/', '+' or '#' \
             (found {c:?} in {id:?})"
        ));
    }
    None
}

/// A node id (see [`node_id_problem`]).
pub(super) fn node_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let id = String::deserialize(d)?;
    match node_id_problem(&id) {
        Some(problem) => Err(invalid(problem)),
        None => Ok(id),
    }
}

/// An IPv4 address written as a string (`"127.0.0.1"`).
pub(super) fn ipv4<'de, D: Deserializer<'de>>(d: D) -> Result<Ipv4Addr, D::Error> {
    let text = String::deserialize(d)?;
    text.trim().parse().map_err(|_| {
        de::Error::custom(format_args!(
            "invalid IPv4 address {text:?}: expected four decimal numbers such as \"127.0.0.1\""
        ))
    })
}

/// Longest accepted DNS zone, in characters, leaving room in a 253-character name for the
/// `status` label and a client's label.
pub(super) const DNS_ZONE_MAX_CHARS: usize = 200;

/// Why `zone` is not a usable DNS zone name, if it is not: labels of ASCII letters, digits,
/// `-` and `_`, 1 to 63 characters each, not starting or ending with `-`, at most
/// [`DNS_ZONE_MAX_CHARS`] in all. A single trailing dot is allowed.
pub(super) fn dns_zone_problem(zone: &str) -> Option<String> {
    let bare = zone.strip_suffix('.').unwrap_or(zone);
    if bare.is_empty() {
        return Some("must not be empty".to_owned());
    }
    if bare.len() > DNS_ZONE_MAX_CHARS {
        return Some(format!(
            "must be at most {DNS_ZONE_MAX_CHARS} characters, got {zone:?}"
        ));
    }
    let bad_label = bare.split('.').find(|label| {
        label.is_empty()
            || label.len() > 63
            || label.starts_with('-')
            || label.ends_with('-')
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    bad_label.map(|label| {
        format!(
            "must be a DNS name of dot-separated labels (letters, digits, '-' and '_', 1 to 63 \
             characters, no '-' at either end), got {zone:?} (bad label {label:?})"
        )
    })
}

/// A DNS zone name (see [`dns_zone_problem`]), returned lower-case without a trailing dot.
pub(super) fn dns_zone<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let zone = String::deserialize(d)?;
    match dns_zone_problem(&zone) {
        Some(problem) => Err(invalid(problem)),
        None => Ok(zone.strip_suffix('.').unwrap_or(&zone).to_ascii_lowercase()),
    }
}

/// A list of admin client ids: each non-empty, none repeated.
pub(super) fn admin_ids<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let ids = Vec::<String>::deserialize(d)?;
    if ids.iter().any(String::is_empty) {
        return Err(invalid("client ids must not be empty"));
    }
    if let Some((i, id)) = ids
        .iter()
        .enumerate()
        .find(|(i, id)| ids.iter().take(*i).any(|earlier| earlier == *id))
    {
        return Err(invalid(format_args!("{id:?} is listed twice (entry {i})")));
    }
    Ok(ids)
}

/// A topic filter (MQTT rules for `+` and `#`), not a shared subscription.
pub(super) fn topic_filter<'de, D: Deserializer<'de>>(d: D) -> Result<TopicFilter, D::Error> {
    let text = String::deserialize(d)?;
    if text.starts_with("$share/") {
        return Err(invalid(format_args!(
            "must not be a shared subscription, got {text:?}"
        )));
    }
    TopicFilter::new(&text).map_err(|e| invalid(format_args!("{e}, got {text:?}")))
}
