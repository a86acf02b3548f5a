//! [`ConfigError`]: configuration-file errors that name the file, the line and the dotted key
//! path (`limits.max_packet_size`, `listener[1].bind`, `route[2].remote`), shared by the
//! broker's and the metabroker's TOML files.
//!
//! Owns the span bookkeeping: byte offsets become 1-based lines and columns, and spans become
//! key paths by walking the span-preserving [`DeTable`] of the same text. [`from_toml`] runs
//! the three stages (syntax, deserialisation, cross-field check) and locates each failure.
//! Must never panic on any input (offsets are looked up with checked slicing) and never read
//! a file: callers read the text and build [`ConfigError::Io`] themselves.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

/// Why a configuration could not be loaded. `Display` gives one line that starts with
/// `file:line:` (and `column:` for syntax and type errors) and names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("cannot read config file {}: {source}", path.display())]
    Io {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The text is not valid TOML, has an unknown key, or a value of the wrong type or syntax.
    #[error("{origin}:{line}:{column}: {message}")]
    Parse {
        /// The file name (or other origin) given to [`from_toml`].
        origin: String,
        /// 1-based line of the offending key or value.
        line: usize,
        /// 1-based column (in characters) of the offending key or value.
        column: usize,
        /// Dotted path of the key concerned, when there is one (`limits.max_packet_size`).
        key: Option<String>,
        /// The complete description, which already names the key.
        message: String,
    },
    /// A well-formed value that is out of range or inconsistent with the rest of the file.
    #[error("{origin}{}: {key}: {message}", LineSuffix(*line))]
    Invalid {
        /// The file name (or other origin).
        origin: String,
        /// 1-based line of the key, when the key appears in the text.
        line: Option<usize>,
        /// Dotted path of the key concerned.
        key: String,
        /// What is wrong, without the key.
        message: String,
    },
}

impl ConfigError {
    /// The 1-based line the error points at, if any.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::Parse { line, .. } => Some(*line),
            ConfigError::Invalid { line, .. } => *line,
        }
    }

    /// The dotted key path the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::Parse { key, .. } => key.as_deref(),
            ConfigError::Invalid { key, .. } => Some(key),
        }
    }
}

/// Renders `:line` or nothing.
struct LineSuffix(Option<usize>);

impl fmt::Display for LineSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(line) => write!(f, ":{line}"),
            None => Ok(()),
        }
    }
}

/// A failed cross-field check, before it is located in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Dotted key path, with array elements as `[i]` (`listener[1].bind`).
    pub key: String,
    /// What is wrong, without the key.
    pub message: String,
}

/// Prefix marking a serde error message as "well-formed but out of range" (see [`invalid`]);
/// stripped when the error is located. Contains NUL characters so that no TOML text or serde
/// message can produce it.
pub const INVALID_TAG: &str = "\u{0}invalid\u{0}";

/// A serde error meaning "the value is well-formed but not acceptable here": reported as
/// [`ConfigError::Invalid`] naming the key, with `message` as its description.
pub fn invalid<E: serde::de::Error>(message: impl fmt::Display) -> E {
    E::custom(format_args!("{INVALID_TAG}{message}"))
}

/// Parses `text` as a `T`, then runs `check` on it; every failure is located in the text.
/// `origin` (usually the file name) starts each message.
pub fn from_toml<T: DeserializeOwned>(
    text: &str,
    origin: &str,
    check: impl FnOnce(&T) -> Result<(), Violation>,
) -> Result<T, ConfigError> {
    let root = DeTable::parse(text).map_err(|e| syntax(&e, text, origin))?;
    let value = T::deserialize(toml::de::Deserializer::from(root.clone()))
        .map_err(|e| deserialize(&e, text, origin, root.get_ref()))?;
    check(&value).map_err(|v| located(v, text, origin, root.get_ref()))?;
    Ok(value)
}

/// 1-based line and column (in characters) of byte offset `pos` in `text`.
fn line_column(text: &str, pos: usize) -> (usize, usize) {
    let before = text.get(..pos).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Renders one key segment: bare when TOML would accept it bare, quoted otherwise.
fn render_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

/// Called with `(path, key_span, value_span)` for each entry of a document.
type EntryVisitor<'a> = dyn FnMut(&str, Option<Range<usize>>, Range<usize>) + 'a;

/// Calls `f(path, key_span, value_span)` for every key and array element under `table`, depth
/// first. Array elements have no key span.
fn each_entry(table: &DeTable<'_>, prefix: &str, f: &mut EntryVisitor<'_>) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            render_key(key.get_ref())
        } else {
            format!("{prefix}.{}", render_key(key.get_ref()))
        };
        f(&path, Some(key.span()), value.span());
        each_value(value.get_ref(), &path, f);
    }
}

fn each_value(value: &DeValue<'_>, path: &str, f: &mut EntryVisitor<'_>) {
    match value {
        DeValue::Table(table) => each_entry(table, path, f),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                f(&item_path, None, item.span());
                each_value(item.get_ref(), &item_path, f);
            }
        }
        _ => {}
    }
}

/// The key path whose key contains `pos`, or else whose value is the smallest one containing
/// `pos`; with the span of that key.
fn key_at(root: &DeTable<'_>, pos: usize) -> Option<(String, Range<usize>)> {
    let mut best: Option<(usize, String, Range<usize>)> = None;
    each_entry(root, "", &mut |path, key, value| {
        let score = if key.as_ref().is_some_and(|k| k.contains(&pos)) {
            0
        } else if value.contains(&pos) {
            value.len().max(1)
        } else {
            return;
        };
        if best.as_ref().is_none_or(|(s, _, _)| score <= *s) {
            best = Some((score, path.to_owned(), key.unwrap_or(value)));
        }
    });
    best.map(|(_, path, anchor)| (path, anchor))
}

/// The span of the key (or array element) at `path`, if it is written in the text.
fn span_of(root: &DeTable<'_>, path: &str) -> Option<Range<usize>> {
    let mut found = None;
    each_entry(root, "", &mut |p, key, value| {
        if found.is_none() && p == path {
            found = Some(key.unwrap_or(value));
        }
    });
    found
}

/// The span of `path`, or of its closest written parent (`listener[1]` for an unwritten
/// `listener[1].bind`).
fn nearest_span(root: &DeTable<'_>, path: &str) -> Option<Range<usize>> {
    let mut path = path;
    loop {
        if let Some(span) = span_of(root, path) {
            return Some(span);
        }
        path = path.get(..path.rfind(['.', '['])?)?;
    }
}

/// A TOML syntax error (the text could not be parsed at all). The key is read from the
/// offending line when it has the `key = value` shape, so `durability = fast` names
/// `durability`.
fn syntax(err: &toml::de::Error, text: &str, origin: &str) -> ConfigError {
    let span = err.span().unwrap_or(0..0);
    let (line, column) = line_column(text, span.start);
    let mut message = err.message().trim().to_owned();
    if message == "duplicate key"
        && let Some(key) = text
            .get(span.clone())
            .filter(|k| !k.is_empty() && !k.contains('\n'))
    {
        message = format!("duplicate key `{}`", key.trim());
    }
    let key = key_on_line(text, span.start);
    if let Some(word) = bare_word_value(text, span.start).filter(|_| !message.contains("quoted")) {
        message = format!("{message} (text values need quotes: \"{word}\")");
    }
    if let Some(key) = &key
        && !message.contains(key.as_str())
    {
        message = format!("{key}: {message}");
    }
    ConfigError::Parse {
        origin: origin.to_owned(),
        line,
        column,
        key,
        message,
    }
}

/// The value of a `key = word` line holding byte `pos` when it is a bare word that TOML
/// does not accept unquoted (`durability = fast`), so the message can show the fix.
fn bare_word_value(text: &str, pos: usize) -> Option<String> {
    let start = text.get(..pos)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(start..)?.lines().next()?;
    let (_, value) = line.split_once('=')?;
    let value = value.split('#').next()?.trim();
    let word = !value.is_empty()
        && value.starts_with(|c: char| c.is_ascii_alphabetic())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !matches!(value, "true" | "false" | "inf" | "nan");
    word.then(|| value.to_owned())
}

/// The dotted key written on the line holding byte `pos` (`limits.max_packet_size` for a
/// `max_packet_size = ...` line under `[limits]`), found textually because the text did not
/// parse. `None` when the line is not a bare `key = value`.
fn key_on_line(text: &str, pos: usize) -> Option<String> {
    let before = text.get(..pos)?;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(start..)?.lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    let bare = |k: &str| {
        !k.is_empty()
            && k.split('.').all(|seg| {
                !seg.is_empty()
                    && seg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            })
    };
    if !bare(key) {
        return None;
    }
    let above = text.get(..start)?;
    let header = above
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['));
    let table = match header {
        Some(h) if h.starts_with("[[") => {
            let name = h.trim_start_matches('[').split(']').next()?.trim();
            let pattern = format!("[[{name}]]");
            let index = above
                .lines()
                .filter(|l| l.trim().replace(' ', "") == pattern)
                .count()
                .saturating_sub(1);
            format!("{name}[{index}].")
        }
        Some(h) => format!("{}.", h.trim_start_matches('[').split(']').next()?.trim()),
        None => String::new(),
    };
    Some(format!("{table}{key}"))
}

/// A deserialisation error (unknown key, wrong type, bad value) located in `root`.
fn deserialize(err: &toml::de::Error, text: &str, origin: &str, root: &DeTable<'_>) -> ConfigError {
    let pos = err.span().map_or(0, |s| s.start);
    let located = err.span().and_then(|_| key_at(root, pos));
    let message = err.message().trim();
    if let Some(reason) = message.strip_prefix(INVALID_TAG) {
        let anchor = located.as_ref().map_or(pos, |(_, span)| span.start);
        return ConfigError::Invalid {
            origin: origin.to_owned(),
            line: Some(line_column(text, anchor).0),
            key: located.map_or_else(|| "(document)".to_owned(), |(path, _)| path),
            message: reason.to_owned(),
        };
    }
    let (line, column) = line_column(text, pos);
    let key = located.map(|(path, _)| path);
    let message = match (&key, unknown_field_hint(message)) {
        (Some(path), Some(hint)) => format!("unknown key `{path}`{hint}"),
        (Some(path), None) => format!("{path}: {message}"),
        (None, _) => message.to_owned(),
    };
    ConfigError::Parse {
        origin: origin.to_owned(),
        line,
        column,
        key,
        message,
    }
}

/// For serde's "unknown field `x`, expected one of `a`, `b`" messages, the part to show after
/// the key: ` (expected one of `a`, `b`)`. `None` for any other message.
fn unknown_field_hint(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (_, after) = rest.split_once('`')?;
    let after = after.trim_start_matches(',').trim();
    Some(match after {
        "" => String::new(),
        "there are no fields" => " (this table takes no keys)".to_owned(),
        hint => format!(" ({hint})"),
    })
}

/// A violation found after parsing (a file named by a key that cannot be read, say),
/// located by its key path when the key is written in `text`.
pub fn locate(violation: Violation, text: &str, origin: &str) -> ConfigError {
    match DeTable::parse(text) {
        Ok(root) => located(violation, text, origin, root.get_ref()),
        Err(_) => ConfigError::Invalid {
            origin: origin.to_owned(),
            line: None,
            key: violation.key,
            message: violation.message,
        },
    }
}

/// A violation located in the already parsed `root` of `text`.
fn located(violation: Violation, text: &str, origin: &str, root: &DeTable<'_>) -> ConfigError {
    ConfigError::Invalid {
        origin: origin.to_owned(),
        line: nearest_span(root, &violation.key).map(|s| line_column(text, s.start).0),
        key: violation.key,
        message: violation.message,
    }
}

#[cfg(test)]
mod tests;
