//! What the two tries share: walking the `/`-separated levels of a topic or filter in
//! both directions without allocating, and the two roots that keep `$` topics apart from
//! first-level wildcards [MQTT-4.7.2-1].
//!
//! Owns no data; never allocates and never panics on any string.

pub(crate) mod children;
#[cfg(test)]
pub(crate) mod testing;

/// Slab index of the root for filters and topics not starting with `$`.
pub(crate) const ROOT: usize = 0;
/// Slab index of the root for filters and topics starting with `$` [MQTT-4.7.2-1].
pub(crate) const SYS_ROOT: usize = 1;

/// Which root a topic or filter hangs under: `$` ones are kept apart [MQTT-4.7.2-1].
pub(crate) fn root_for(s: &str) -> usize {
    if s.starts_with('$') { SYS_ROOT } else { ROOT }
}

/// A cursor over the `/`-separated levels of a topic or filter that can move both ways
/// without allocating.
pub(crate) struct Levels<'a> {
    s: &'a str,
    /// Byte offset where the current level starts; `s.len() + 1` once every level is consumed.
    start: usize,
}

impl<'a> Levels<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        Levels { s, start: 0 }
    }

    /// The current level, or `None` when every level has been consumed.
    pub(crate) fn current(&self) -> Option<&'a str> {
        let rest = self.s.get(self.start..)?;
        rest.split('/').next()
    }

    /// Moves to the next level.
    pub(crate) fn advance(&mut self) {
        match self.s.get(self.start..).and_then(|rest| rest.find('/')) {
            Some(i) => self.start += i + 1,
            None => self.start = self.s.len() + 1,
        }
    }

    /// Moves back to the previous level; at the first level it stays there.
    pub(crate) fn retreat(&mut self) {
        let end = self.start.saturating_sub(1);
        self.start = self
            .s
            .get(..end)
            .and_then(|head| head.rfind('/'))
            .map_or(0, |i| i + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_walk_forward_and_back_including_empty_levels() {
        let mut l = Levels::new("a//b");
        assert_eq!(l.current(), Some("a"));
        l.advance();
        assert_eq!(l.current(), Some(""));
        l.advance();
        assert_eq!(l.current(), Some("b"));
        l.advance();
        assert_eq!(l.current(), None);
        l.retreat();
        assert_eq!(l.current(), Some("b"));
        l.retreat();
        l.retreat();
        assert_eq!(l.current(), Some("a"));
        l.retreat();
        assert_eq!(l.current(), Some("a"));
    }

    #[test]
    fn dollar_topics_hang_under_their_own_root() {
        assert_eq!(root_for("$SYS/x"), SYS_ROOT);
        assert_eq!(root_for("a/$x"), ROOT);
        assert_eq!(root_for("+"), ROOT);
    }
}
