//! Validated topic names and topic filters (MQTT 5.0 section 4.7).
//!
//! A [`TopicName`] or [`TopicFilter`] is checked once, where it enters the system;
//! everything downstream relies on the invariants and never re-validates. Both hold an
//! `Arc<str>` so a message fanned out to many subscribers shares one allocation.

use std::fmt;
use std::sync::Arc;

/// The longest topic a peer may send: a UTF-8 string field holds at most 65,535 bytes.
pub const MAX_TOPIC_LEN: usize = 65_535;

/// Why a topic name or filter was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Not a valid topic name.
    #[error("invalid topic name: {0}")]
    InvalidName(&'static str),
    /// Not a valid topic filter.
    #[error("invalid topic filter: {0}")]
    InvalidFilter(&'static str),
}

/// A topic name as carried by PUBLISH: non-empty, no wildcards, no U+0000
/// [MQTT-4.7.3-1], [MQTT-3.3.2-2], at most 65,535 bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(Arc<str>);

impl TopicName {
    /// Validates `s` as a topic name.
    pub fn new(s: &str) -> Result<Self, TopicError> {
        Self::validate(s)?;
        Ok(TopicName(Arc::from(s)))
    }

    /// Checks the rules without allocating.
    pub fn validate(s: &str) -> Result<(), TopicError> {
        if s.is_empty() {
            return Err(TopicError::InvalidName("empty"));
        }
        if s.len() > MAX_TOPIC_LEN {
            return Err(TopicError::InvalidName("longer than 65535 bytes"));
        }
        if s.bytes().any(|b| b == b'+' || b == b'#') {
            return Err(TopicError::InvalidName("contains a wildcard"));
        }
        if s.contains('\0') {
            return Err(TopicError::InvalidName("contains U+0000"));
        }
        Ok(())
    }

    /// The topic as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shared string, for cheap clones into other structures.
    pub fn as_arc(&self) -> &Arc<str> {
        &self.0
    }

    /// Topics beginning with `$` are not matched by filters starting with a wildcard
    /// [MQTT-4.7.2-1].
    pub fn is_system(&self) -> bool {
        self.0.starts_with('$')
    }

    /// Iterates over the levels separated by `/`.
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }

    /// Number of levels.
    pub fn depth(&self) -> usize {
        self.0.bytes().filter(|&b| b == b'/').count() + 1
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for TopicName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for TopicName {
    type Error = TopicError;
    fn try_from(s: &str) -> Result<Self, TopicError> {
        TopicName::new(s)
    }
}

/// A topic filter as carried by SUBSCRIBE and UNSUBSCRIBE: non-empty; `#` only as the
/// whole last level [MQTT-4.7.1-1]; `+` only as a whole level [MQTT-4.7.1-2]; no U+0000.
/// A shared subscription (`$share/<group>/<filter>`) is kept whole here; use
/// [`SharedFilter::parse`] to split it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter(Arc<str>);

impl TopicFilter {
    /// Validates `s` as a topic filter.
    pub fn new(s: &str) -> Result<Self, TopicError> {
        Self::validate(s)?;
        Ok(TopicFilter(Arc::from(s)))
    }

    /// Checks the rules without allocating.
    pub fn validate(s: &str) -> Result<(), TopicError> {
        if s.is_empty() {
            return Err(TopicError::InvalidFilter("empty"));
        }
        if s.len() > MAX_TOPIC_LEN {
            return Err(TopicError::InvalidFilter("longer than 65535 bytes"));
        }
        if s.contains('\0') {
            return Err(TopicError::InvalidFilter("contains U+0000"));
        }
        let mut levels = s.split('/').peekable();
        while let Some(level) = levels.next() {
            let last = levels.peek().is_none();
            if level.contains('#') && (level != "#" || !last) {
                return Err(TopicError::InvalidFilter(
                    "'#' must be the whole last level",
                ));
            }
            if level.contains('+') && level != "+" {
                return Err(TopicError::InvalidFilter("'+' must be a whole level"));
            }
        }
        Ok(())
    }

    /// The filter as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the filter contains `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        self.0.bytes().any(|b| b == b'+' || b == b'#')
    }

    /// Iterates over the levels separated by `/`.
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }

    /// Number of levels.
    pub fn depth(&self) -> usize {
        self.0.bytes().filter(|&b| b == b'/').count() + 1
    }

    /// Whether this filter matches `topic`, by direct comparison of levels. This is the
    /// reference definition that the broker's tries are tested against.
    pub fn matches(&self, topic: &TopicName) -> bool {
        matches(self.as_str(), topic.as_str())
    }
}

/// Reference matcher on plain strings: `filter` must be a valid filter and `topic` a
/// valid name. Filters starting with a wildcard never match `$` topics [MQTT-4.7.2-1];
/// `a/#` matches `a` itself [MQTT-4.7.1-1 note].
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    matches_levels(filter.split('/'), topic)
}

/// Whether the filter given level by level matches `topic`, without the `$` rule (the
/// caller applies [MQTT-4.7.2-1] itself): for filters built on the fly, such as ACL
/// patterns with substitutions, without allocating.
pub fn matches_levels<'a>(mut f: impl Iterator<Item = &'a str>, topic: &str) -> bool {
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for TopicFilter {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for TopicFilter {
    type Error = TopicError;
    fn try_from(s: &str) -> Result<Self, TopicError> {
        TopicFilter::new(s)
    }
}

/// A shared subscription `$share/<group>/<filter>` split into its parts
/// (MQTT 5.0 section 4.8.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedFilter {
    /// The share name; no `/`, `+` or `#` [MQTT-4.8.2-2].
    pub group: Arc<str>,
    /// The filter that messages are matched against.
    pub filter: TopicFilter,
}

impl SharedFilter {
    /// Returns `Ok(None)` when `filter` is not a shared subscription, `Ok(Some(..))` when
    /// it is a well-formed one and an error when it starts with `$share/` but is invalid
    /// [MQTT-4.8.2-1], [MQTT-4.8.2-2].
    pub fn parse(filter: &TopicFilter) -> Result<Option<SharedFilter>, TopicError> {
        let Some(rest) = filter.as_str().strip_prefix("$share/") else {
            if filter.as_str() == "$share" {
                return Err(TopicError::InvalidFilter(
                    "'$share' needs a group and a filter",
                ));
            }
            return Ok(None);
        };
        let Some((group, inner)) = rest.split_once('/') else {
            return Err(TopicError::InvalidFilter("'$share/<group>' needs a filter"));
        };
        if group.is_empty() || group.contains(['+', '#']) {
            return Err(TopicError::InvalidFilter("invalid share name"));
        }
        let filter = TopicFilter::new(inner)?;
        Ok(Some(SharedFilter {
            group: Arc::from(group),
            filter,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(f: &str, t: &str) -> bool {
        TopicFilter::new(f)
            .unwrap()
            .matches(&TopicName::new(t).unwrap())
    }

    #[test]
    fn hash_matches_parent_level() {
        assert!(m("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(m("sport/tennis/player1/#", "sport/tennis/player1/ranking"));
        assert!(m("sport/#", "sport"));
        assert!(m("#", "a/b/c"));
    }

    #[test]
    fn plus_matches_exactly_one_level() {
        assert!(m("sport/tennis/+", "sport/tennis/player1"));
        assert!(!m("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(!m("sport/+", "sport"));
        assert!(m("sport/+", "sport/"));
        assert!(m("+/+", "/finance"));
        assert!(m("/+", "/finance"));
        assert!(!m("+", "/finance"));
    }

    #[test]
    fn wildcards_at_root_do_not_match_dollar_topics() {
        // [MQTT-4.7.2-1]
        assert!(!m("#", "$SYS/broker/uptime"));
        assert!(!m("+/broker/uptime", "$SYS/broker/uptime"));
        assert!(m("$SYS/#", "$SYS/broker/uptime"));
        assert!(m("$SYS/+/uptime", "$SYS/broker/uptime"));
    }

    #[test]
    fn filter_validation_follows_4_7_1() {
        for ok in [
            "#",
            "+",
            "a/+/b",
            "a/#",
            "+/+/#",
            "/",
            "a//b",
            "$share/g/a/#",
        ] {
            assert!(TopicFilter::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a#", "a/#/b", "a/b+", "+a", "a\0b", "sport/tennis#"] {
            assert!(TopicFilter::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn topic_name_rejects_wildcards_and_empty() {
        // [MQTT-3.3.2-2], [MQTT-4.7.3-1]
        assert!(TopicName::new("a/+").is_err());
        assert!(TopicName::new("a/#").is_err());
        assert!(TopicName::new("").is_err());
        assert!(TopicName::new("a\0").is_err());
        assert!(TopicName::new("/").is_ok());
    }

    #[test]
    fn shared_filter_parses_group_and_filter() {
        let f = TopicFilter::new("$share/g1/a/+").unwrap();
        let s = SharedFilter::parse(&f).unwrap().unwrap();
        assert_eq!(&*s.group, "g1");
        assert_eq!(s.filter.as_str(), "a/+");
        assert!(
            SharedFilter::parse(&TopicFilter::new("a/b").unwrap())
                .unwrap()
                .is_none()
        );
        assert!(SharedFilter::parse(&TopicFilter::new("$share/g1").unwrap()).is_err());
        assert!(SharedFilter::parse(&TopicFilter::new("$share/+/a").unwrap()).is_err());
    }
}
