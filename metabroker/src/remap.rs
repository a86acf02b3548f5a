//! Topic remapping between the local and the remote namespace, as pure functions.
//!
//! Owns: matching a topic against a route's filter while capturing what each wildcard matched,
//! rendering a template with `{1}`, `{2}`… placeholders, and deriving the reverse mapping used
//! by `in` routes. Must never do IO or hold state; everything here is table-tested.

/// A compiled mapping from topics matching `filter` to topics built from `template`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remap {
    /// Filter levels (`+` and `#` allowed, `#` last).
    filter: Vec<String>,
    /// Template text with `{n}` placeholders (1-based, in filter wildcard order).
    template: String,
}

/// Why a remap rule is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemapError {
    /// The filter is empty or has `#` before its last level, or a wildcard inside a level.
    #[error("invalid filter {0:?}")]
    Filter(String),
    /// The template names a placeholder the filter has no wildcard for.
    #[error("template {template:?} names {{{index}}} but the filter has {wildcards} wildcard(s)")]
    Placeholder {
        /// The template.
        template: String,
        /// The placeholder number.
        index: usize,
        /// How many wildcards the filter has.
        wildcards: usize,
    },
    /// A two-way rule must use every wildcard exactly once, in order, one per level.
    #[error(
        "template {0:?} cannot be reversed: use each placeholder once, in order, as a whole level"
    )]
    NotReversible(String),
}

fn split_filter(filter: &str) -> Result<Vec<String>, RemapError> {
    if filter.is_empty() {
        return Err(RemapError::Filter(filter.to_owned()));
    }
    let levels: Vec<String> = filter.split('/').map(str::to_owned).collect();
    for (i, level) in levels.iter().enumerate() {
        let wild = level.contains('+') || level.contains('#');
        if wild && level != "+" && level != "#" {
            return Err(RemapError::Filter(filter.to_owned()));
        }
        if level == "#" && i + 1 != levels.len() {
            return Err(RemapError::Filter(filter.to_owned()));
        }
    }
    Ok(levels)
}

/// Placeholder numbers used in a template, in order of appearance.
fn placeholders(template: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end) => {
                if let Ok(n) = after[..end].parse::<usize>() {
                    out.push(n);
                }
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    out
}

impl Remap {
    /// Compiles `filter -> template`, checking every placeholder refers to a wildcard.
    pub fn new(filter: &str, template: &str) -> Result<Remap, RemapError> {
        let levels = split_filter(filter)?;
        let wildcards = levels.iter().filter(|l| *l == "+" || *l == "#").count();
        for index in placeholders(template) {
            if index == 0 || index > wildcards {
                return Err(RemapError::Placeholder {
                    template: template.to_owned(),
                    index,
                    wildcards,
                });
            }
        }
        Ok(Remap {
            filter: levels,
            template: template.to_owned(),
        })
    }

    /// The prefix rule: `local` filter, topics get `prefix` in front on the other side.
    pub fn prefix(filter: &str, prefix: &str) -> Result<Remap, RemapError> {
        let levels = split_filter(filter)?;
        Remap::new(filter, &format!("{prefix}{}", numbered(&levels)))
    }

    /// The filter topics are matched against.
    pub fn filter(&self) -> String {
        self.filter.join("/")
    }

    /// The filter's wildcards (`+` or `#`) in order: what `{1}`, `{2}`, … capture.
    fn wildcards(&self) -> Vec<&str> {
        self.filter
            .iter()
            .filter(|l| *l == "+" || *l == "#")
            .map(String::as_str)
            .collect()
    }

    /// The reverse mapping (other side's topics back to this side), for `in` and `both`.
    pub fn reverse(&self) -> Result<Remap, RemapError> {
        let kinds = self.wildcards();
        let not = || RemapError::NotReversible(self.template.clone());
        let mut next = 1;
        let mut rev_filter = Vec::new();
        for level in self.template.split('/') {
            if level.starts_with('{') && level.ends_with('}') {
                let n: usize = level[1..level.len() - 1].parse().map_err(|_| not())?;
                if n != next {
                    return Err(not());
                }
                next += 1;
                rev_filter.push(kinds.get(n - 1).ok_or_else(not)?.to_string());
            } else if level.contains(['{', '}', '+', '#']) {
                return Err(not());
            } else {
                rev_filter.push(level.to_owned());
            }
        }
        if next != kinds.len() + 1 {
            return Err(not());
        }
        Remap::new(&rev_filter.join("/"), &numbered(&self.filter))
    }

    /// The image of a filter that this rule's filter covers (a wildcard captured as a level
    /// renders as itself: `a/+/b/#` -> `x/{1}/{2}` maps `a/k/b/#` to `x/k/#`); for any other
    /// filter, the image of the rule's whole filter.
    pub fn filter_image(&self, filter: &str) -> String {
        self.apply(filter)
            .or_else(|| self.apply(&self.filter()))
            .unwrap_or_else(|| self.template.clone())
    }

    /// Maps `topic`, or `None` when it does not match the filter. `$`-topics match a
    /// wildcard first level only if the filter names the `$` level itself [MQTT-4.7.2-1].
    pub fn apply(&self, topic: &str) -> Option<String> {
        let captures = capture(&self.filter, topic)?;
        Some(render(&self.template, &captures))
    }
}

/// The template that copies `levels` and fills each wildcard with what it captured:
/// `a/+/b/#` gives `a/{1}/b/{2}`.
fn numbered(levels: &[String]) -> String {
    let mut n = 0;
    let body: Vec<String> = levels
        .iter()
        .map(|l| {
            if l == "+" || l == "#" {
                n += 1;
                format!("{{{n}}}")
            } else {
                l.clone()
            }
        })
        .collect();
    body.join("/")
}

impl Remap {
    /// A filter every topic this mapping can produce matches (wildcards where placeholders
    /// are; a `#` capture anywhere turns the rest into `#`), and whether its first level
    /// came from a capture (so it may start with `$`, which a wildcard would not match).
    fn image(&self) -> (Vec<String>, bool) {
        let kinds = self.wildcards();
        let mut out = Vec::new();
        let mut first_captured = false;
        for (i, level) in self.template.split('/').enumerate() {
            let used = placeholders(level);
            if used.is_empty() {
                out.push(level.to_owned());
                continue;
            }
            if i == 0 {
                first_captured = true;
            }
            let multi = used
                .iter()
                .any(|n| n.checked_sub(1).and_then(|k| kinds.get(k)) != Some(&"+"));
            if multi {
                out.push("#".to_owned());
                break;
            }
            out.push("+".to_owned());
        }
        (out, first_captured)
    }

    /// Whether a topic produced by this mapping can match `filter`: used to refuse route
    /// sets that would send a message back where it came from (3.1.1 peers have no no-local).
    pub fn image_overlaps(&self, filter: &str) -> bool {
        let (image, first_captured) = self.image();
        let other: Vec<&str> = filter.split('/').collect();
        let image: Vec<&str> = image.iter().map(String::as_str).collect();
        overlap(&image, &other, !first_captured)
    }
}

/// Whether some topic matches both filters [MQTT-4.7.1-2] (`#` also matches its parent
/// level; a wildcard first level never matches a `$` topic [MQTT-4.7.2-1]).
pub fn filters_overlap(a: &str, b: &str) -> bool {
    let a: Vec<&str> = a.split('/').collect();
    let b: Vec<&str> = b.split('/').collect();
    overlap(&a, &b, true)
}

fn overlap(a: &[&str], b: &[&str], dollar_rule: bool) -> bool {
    let wild = |l: &str| l == "+" || l == "#";
    if dollar_rule
        && let (Some(x), Some(y)) = (a.first(), b.first())
        && ((wild(x) && y.starts_with('$')) || (wild(y) && x.starts_with('$')))
    {
        return false;
    }
    let mut i = 0;
    loop {
        match (a.get(i), b.get(i)) {
            (Some(&"#"), _) | (_, Some(&"#")) => return true,
            (None, None) => return true,
            (None, Some(_)) => return b.get(i..) == Some(&["#"][..]),
            (Some(_), None) => return a.get(i..) == Some(&["#"][..]),
            (Some(x), Some(y)) => {
                if !(wild(x) || wild(y) || x == y) {
                    return false;
                }
            }
        }
        i += 1;
    }
}

/// What each wildcard of `filter` matched in `topic` (`#` captures the rest, maybe empty).
pub fn capture(filter: &[String], topic: &str) -> Option<Vec<String>> {
    let levels: Vec<&str> = topic.split('/').collect();
    if topic.starts_with('$') && filter.first().is_some_and(|f| f == "+" || f == "#") {
        return None;
    }
    let mut out = Vec::new();
    for (i, f) in filter.iter().enumerate() {
        if f == "#" {
            out.push(
                levels
                    .get(i..)
                    .map(|rest| rest.join("/"))
                    .unwrap_or_default(),
            );
            return Some(out);
        }
        let level = levels.get(i)?;
        if f == "+" {
            out.push((*level).to_owned());
        } else if f != level {
            return None;
        }
    }
    (levels.len() == filter.len()).then_some(out)
}

/// Fills `{n}` placeholders; an empty capture at the end drops the `/` before it, so
/// `site7/#` matching `site7` renders `sites/site7`, not `sites/site7/`.
pub fn render(template: &str, captures: &[String]) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else { break };
        out.push_str(&rest[..start]);
        let value = after[..end]
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| captures.get(i));
        match value {
            Some(v) if v.is_empty() && after[end + 1..].is_empty() && out.ends_with('/') => {
                out.pop();
            }
            Some(v) => out.push_str(v),
            None => out.push_str(&rest[start..start + end + 2]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_and_prefix_rules_map_topics_as_the_table_says() {
        let cases: &[(&str, &str, &str, Option<&str>)] = &[
            ("a/+/b/#", "x/{1}/{2}", "a/k/b/c/d", Some("x/k/c/d")),
            ("a/+/b/#", "x/{1}/{2}", "a/k/b", Some("x/k")),
            ("a/+/b/#", "x/{1}/{2}", "a/k/c/d", None),
            ("a/+/b/#", "x/{2}/{1}", "a/k/b/z", Some("x/z/k")),
            ("a/+", "{1}", "a/q", Some("q")),
            ("a/+", "y/{1}", "a/q/r", None),
            ("#", "up/{1}", "t/1", Some("up/t/1")),
            ("#", "up/{1}", "$SYS/x", None),
            ("$status/#", "s7/{1}", "$status/dev", Some("s7/dev")),
            ("fixed/topic", "other", "fixed/topic", Some("other")),
            ("fixed/topic", "other", "fixed/topics", None),
        ];
        for (filter, template, topic, want) in cases {
            let r = Remap::new(filter, template).unwrap();
            assert_eq!(
                r.apply(topic).as_deref(),
                *want,
                "{filter} -> {template} on {topic}"
            );
        }
    }

    #[test]
    fn prefix_rule_adds_prefix_out_and_strips_it_in() {
        let out = Remap::prefix("site7/#", "sites/").unwrap();
        assert_eq!(out.apply("site7/a").as_deref(), Some("sites/site7/a"));
        assert_eq!(out.apply("site7").as_deref(), Some("sites/site7"));
        let back = out.reverse().unwrap();
        assert_eq!(back.filter(), "sites/site7/#");
        assert_eq!(back.apply("sites/site7/a/b").as_deref(), Some("site7/a/b"));
        assert_eq!(back.apply("sites/site8/a"), None);
    }

    #[test]
    fn placeholder_rule_reverses_to_a_filter_and_back() {
        let r = Remap::new("a/+/b/#", "x/{1}/{2}").unwrap();
        let back = r.reverse().unwrap();
        assert_eq!(back.filter(), "x/+/#");
        assert_eq!(back.apply("x/k/c/d").as_deref(), Some("a/k/b/c/d"));
        assert_eq!(
            r.apply("a/k/b/c/d").and_then(|t| back.apply(&t)).as_deref(),
            Some("a/k/b/c/d")
        );
    }

    #[test]
    fn rules_that_cannot_be_reversed_are_refused() {
        for (f, t) in [
            ("a/+/+", "x/{2}/{1}"),
            ("a/+", "x/{1}{1}"),
            ("a/+", "x/y"),
            ("a/+", "x/p{1}"),
        ] {
            assert!(Remap::new(f, t).unwrap().reverse().is_err(), "{f} -> {t}");
        }
    }

    #[test]
    fn bad_filters_and_placeholders_are_refused() {
        assert!(Remap::new("a/#/b", "x").is_err());
        assert!(Remap::new("a/b+", "x").is_err());
        assert!(Remap::new("", "x").is_err());
        assert!(matches!(
            Remap::new("a/+", "{2}"),
            Err(RemapError::Placeholder { index: 2, .. })
        ));
        assert!(matches!(
            Remap::new("a/+", "{0}"),
            Err(RemapError::Placeholder { index: 0, .. })
        ));
    }

    #[test]
    fn filter_overlap_follows_the_matching_rules() {
        let cases = [
            ("a/#", "a", true),
            ("a/+", "a/b", true),
            ("a/+", "a", false),
            ("a/b", "a/c", false),
            ("+/b", "a/+", true),
            ("#", "$SYS/x", false),
            ("+/x", "$s/x", false),
            ("$s/#", "$s/x", true),
            ("a/b/c", "a/#", true),
            ("a/b", "a/b/c", false),
        ];
        for (a, b, want) in cases {
            assert_eq!(filters_overlap(a, b), want, "{a} vs {b}");
            assert_eq!(filters_overlap(b, a), want, "{b} vs {a}");
        }
    }

    #[test]
    fn image_of_a_mapping_covers_every_topic_it_renders() {
        let cases = [
            ("site7/#", "sites/site7/{1}", "sites/site7", true),
            ("site7/#", "sites/site7/{1}", "sites/other", false),
            ("a/+/b/#", "x/{2}/{1}", "x/p/q/r/k", true),
            ("a/+", "y-{1}/z", "y-k/z", true),
            ("a/+", "y-{1}/z", "y-k/w", false),
            ("a/#", "{1}", "$x/y", true),
            ("#", "{1}", "b/c", true),
            ("fixed", "other/t", "other/+", true),
            ("fixed", "other/t", "other", false),
        ];
        for (filter, template, other, want) in cases {
            let m = Remap::new(filter, template).unwrap();
            assert_eq!(
                m.image_overlaps(other),
                want,
                "{filter} -> {template} vs {other}"
            );
        }
    }
}
