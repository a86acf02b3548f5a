//! The ACL file in Mosquitto's format, and the decisions it makes.
//!
//! ```text
//! # comment
//! topic read $SYS/#              <- before any `user` line: anonymous clients
//! user alice
//! topic readwrite home/alice/#   <- alice only
//! topic deny home/alice/secret   <- deny beats any grant
//! pattern write devices/%c/out   <- every client, %c = client id, %u = user name
//! ```
//!
//! Access words: `read`, `write`, `readwrite` (the default when omitted) and `deny`
//! (Mosquitto 2.1's explicit denial, checked before any grant). `%c` and `%u` must each be a
//! whole topic level. As in Mosquitto, a client whose user name or client id contains `+`,
//! `#` or `/` gets nothing while pattern rules exist (it could otherwise widen a pattern), and
//! a `%u` pattern never applies to an anonymous client.
//!
//! Owns parsing and the per-topic / per-filter decisions. Must never know about the broker's
//! reserved prefixes, admins or bridges (the access seam applies those first) and never do IO.

use std::collections::HashMap;

use canopy_proto::TopicFilter;
use canopy_proto::topic::{matches, matches_levels};

/// What a client wants to do with a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Receive messages published to the topic (delivery, retained messages included).
    Read,
    /// Publish to the topic (PUBLISH and will messages).
    Write,
}

/// A parse error: the 1-based line and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct AclError {
    /// The 1-based line of the file.
    pub line: usize,
    /// What is wrong, in words for the user.
    pub message: String,
}

/// What a rule grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Grant {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Grant {
    fn allows(self, access: Access) -> bool {
        matches!(
            (self, access),
            (Grant::ReadWrite, _) | (Grant::Read, Access::Read) | (Grant::Write, Access::Write)
        )
    }
}

/// One level of a `pattern` rule.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Level {
    Literal(String),
    /// `%c`: the client id.
    ClientId,
    /// `%u`: the user name.
    User,
}

/// A `pattern` rule before substitution.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pattern {
    grant: Grant,
    levels: Vec<Level>,
    uses_user: bool,
}

impl Pattern {
    /// Whether the rule, substituted for this client, matches `topic`; never for a `%u`
    /// rule and an anonymous client. Allocates nothing (it runs for every delivery).
    fn matches(&self, user: Option<&str>, client_id: &str, topic: &str) -> bool {
        if self.uses_user && user.is_none() {
            return false;
        }
        let f = self.levels.iter().map(|l| match l {
            Level::Literal(s) => s.as_str(),
            Level::ClientId => client_id,
            Level::User => user.unwrap_or_default(),
        });
        let first_wild = self
            .levels
            .first()
            .is_some_and(|l| matches!(l, Level::Literal(s) if s == "+" || s == "#"));
        if first_wild && topic.starts_with('$') {
            return false;
        }
        matches_levels(f, topic)
    }

    /// The filter for this client, or `None` when the rule does not apply to it (a `%u` rule
    /// and an anonymous client).
    fn substitute(&self, user: Option<&str>, client_id: &str) -> Option<String> {
        if self.uses_user && user.is_none() {
            return None;
        }
        let mut out = String::new();
        for (i, level) in self.levels.iter().enumerate() {
            if i > 0 {
                out.push('/');
            }
            match level {
                Level::Literal(s) => out.push_str(s),
                Level::ClientId => out.push_str(client_id),
                Level::User => out.push_str(user.unwrap_or_default()),
            }
        }
        Some(out)
    }
}

/// A parsed ACL file. Without rules for a client (no section for its user, no patterns) it
/// grants nothing, as in Mosquitto.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Acl {
    /// `topic` rules before any `user` line: for clients without a user name.
    anonymous: Vec<(Grant, String)>,
    /// `topic` rules after `user NAME`, by name; sections of one name accumulate.
    users: HashMap<String, Vec<(Grant, String)>>,
    /// `pattern` rules, wherever they appear: for every client.
    patterns: Vec<Pattern>,
}

impl Acl {
    /// Parses the text of an ACL file; the error names the first bad line.
    pub fn parse(text: &str) -> Result<Acl, AclError> {
        let mut acl = Acl::default();
        let mut section: Option<String> = None;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let err = |message: String| AclError { line, message };
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (keyword, rest) = trimmed
                .split_once(char::is_whitespace)
                .map_or((trimmed, ""), |(k, r)| (k, r.trim()));
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err(err("`user` needs a user name".to_owned()));
                    }
                    section = Some(rest.to_owned());
                }
                "topic" | "pattern" => {
                    let (grant, filter) = split_grant(rest);
                    if filter.is_empty() {
                        return Err(err(format!("`{keyword}` needs a topic filter")));
                    }
                    if keyword == "topic" {
                        TopicFilter::validate(filter)
                            .map_err(|e| err(format!("{filter:?}: {e}")))?;
                        let rules = match &section {
                            Some(user) => acl.users.entry(user.clone()).or_default(),
                            None => &mut acl.anonymous,
                        };
                        rules.push((grant, filter.to_owned()));
                    } else {
                        acl.patterns
                            .push(parse_pattern(grant, filter).map_err(err)?);
                    }
                }
                other => {
                    return Err(err(format!(
                        "unknown keyword {other:?} (expected `user`, `topic` or `pattern`)"
                    )));
                }
            }
        }
        Ok(acl)
    }

    /// Whether the client may `access` the topic name `topic` (PUBLISH and wills: `Write`;
    /// each delivery, retained messages included: `Read`). Deny rules are checked first.
    pub fn check(&self, user: Option<&str>, client_id: &str, access: Access, topic: &str) -> bool {
        if self.refuses_names(user, client_id) {
            return false;
        }
        let fixed = self.fixed_rules(user);
        let hit = |want: &dyn Fn(Grant) -> bool| {
            fixed.iter().any(|(g, f)| want(*g) && matches(f, topic))
                || self
                    .patterns
                    .iter()
                    .any(|p| want(p.grant) && p.matches(user, client_id, topic))
        };
        !hit(&|g| g == Grant::Deny) && hit(&|g| g.allows(access))
    }

    /// Whether the client may subscribe to `filter` (a `$share/<group>/` prefix is looked
    /// through). Like a per-message `Read` check for a filter: refused when a deny rule covers
    /// every topic the filter can match, allowed when some read grant could match a topic the
    /// filter matches. Each message is then still checked with [`Acl::check`] on delivery, so
    /// `#` granted by `topic read a/#` delivers only `a/...`.
    pub fn check_subscribe(&self, user: Option<&str>, client_id: &str, filter: &str) -> bool {
        let filter = shared_inner(filter);
        let Some(rules) = self.rules_for(user, client_id) else {
            return false;
        };
        if rules
            .iter()
            .any(|(g, f)| *g == Grant::Deny && covers(f, filter))
        {
            return false;
        }
        rules
            .iter()
            .any(|(g, f)| g.allows(Access::Read) && intersects(f, filter))
    }

    /// The rules that apply to this client, patterns substituted; `None` when the client
    /// gets nothing at all (a dangerous name while patterns exist).
    fn rules_for(&self, user: Option<&str>, client_id: &str) -> Option<Vec<(Grant, String)>> {
        if self.refuses_names(user, client_id) {
            return None;
        }
        let mut rules = self.fixed_rules(user).to_vec();
        rules.extend(
            self.patterns
                .iter()
                .filter_map(|p| Some((p.grant, p.substitute(user, client_id)?))),
        );
        Some(rules)
    }

    /// While pattern rules exist, a user name or client id containing `+`, `#` or `/` could
    /// widen a pattern: such a client gets nothing, as in Mosquitto.
    fn refuses_names(&self, user: Option<&str>, client_id: &str) -> bool {
        let dangerous = |s: &str| s.contains(['+', '#', '/']);
        !self.patterns.is_empty() && (dangerous(client_id) || user.is_some_and(dangerous))
    }

    /// The `topic` rules of the user's section, or the anonymous ones.
    fn fixed_rules(&self, user: Option<&str>) -> &[(Grant, String)] {
        match user {
            Some(u) => self.users.get(u).map_or(&[][..], Vec::as_slice),
            None => &self.anonymous,
        }
    }
}

/// Splits `[read|write|readwrite|deny] FILTER`; the access word is optional (then
/// `readwrite`), and a lone word is the filter, as in Mosquitto.
fn split_grant(rest: &str) -> (Grant, &str) {
    let Some((word, filter)) = rest.split_once(char::is_whitespace) else {
        return (Grant::ReadWrite, rest);
    };
    let grant = match word {
        "read" => Grant::Read,
        "write" => Grant::Write,
        "readwrite" => Grant::ReadWrite,
        "deny" => Grant::Deny,
        _ => return (Grant::ReadWrite, rest),
    };
    (grant, filter.trim_start())
}

fn parse_pattern(grant: Grant, filter: &str) -> Result<Pattern, String> {
    let mut levels = Vec::new();
    let mut uses_user = false;
    for level in filter.split('/') {
        levels.push(match level {
            "%c" => Level::ClientId,
            "%u" => {
                uses_user = true;
                Level::User
            }
            l if l.contains("%c") || l.contains("%u") => {
                return Err(format!(
                    "{filter:?}: %c and %u must each be a whole topic level"
                ));
            }
            l => Level::Literal(l.to_owned()),
        });
    }
    // Validate the shape with a stand-in for the substitutions.
    let probe = filter.replace("%c", "x").replace("%u", "x");
    TopicFilter::validate(&probe).map_err(|e| format!("{filter:?}: {e}"))?;
    Ok(Pattern {
        grant,
        levels,
        uses_user,
    })
}

/// The filter inside `$share/<group>/<filter>`, or `filter` itself.
fn shared_inner(filter: &str) -> &str {
    filter
        .strip_prefix("$share/")
        .and_then(|rest| rest.split_once('/'))
        .map_or(filter, |(_, inner)| inner)
}

/// Whether the first level of a filter may match `$` topics (only a literal can).
fn first_level_wild(filter: &str) -> bool {
    filter.starts_with('+') || filter.starts_with('#')
}

/// Whether some topic name is matched by both filters.
fn intersects(a: &str, b: &str) -> bool {
    if (first_level_wild(a) && b.starts_with('$')) || (first_level_wild(b) && a.starts_with('$')) {
        return false;
    }
    let mut x = a.split('/');
    let mut y = b.split('/');
    loop {
        match (x.next(), y.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            // `a/#` also matches `a` itself: the arm above caught that case.
            (None, None) => return true,
            (Some("+"), Some(_)) | (Some(_), Some("+")) => {}
            (Some(l), Some(r)) if l == r => {}
            _ => return false,
        }
    }
}

/// Whether every topic matched by `inner` is also matched by `outer`.
fn covers(outer: &str, inner: &str) -> bool {
    if first_level_wild(outer) && !first_level_wild(inner) && inner.starts_with('$') {
        return false;
    }
    let mut o = outer.split('/');
    let mut i = inner.split('/');
    loop {
        match (o.next(), i.next()) {
            (Some("#"), _) => return true,
            (None, None) => return true,
            (Some("+"), Some(l)) if l != "#" => {}
            (Some(l), Some(r)) if l == r && r != "+" && r != "#" => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
#[path = "acl_tests.rs"]
mod tests;
