//! The password file shared by `canopy passwd` (which writes it) and the broker (which reads
//! it): `user:hash` lines where every hash is an argon2id PHC string
//! (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`), blank lines and `#` comment lines.
//!
//! Owns the line format, hashing with a fresh random salt and verification. Must never read or
//! write files (callers do) and never keep a password after a call returns.

use std::fmt;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2};

/// Why a password file or a user name was refused. `line` is 1-based; 0 when the error is
/// not about a line of a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct PasswordFileError {
    /// The 1-based line of the file, or 0 for a user name given on its own.
    pub line: usize,
    /// What is wrong, in words for the user.
    pub message: String,
}

/// Hashes `password` with argon2id (the crate's recommended parameters: 19 MiB, 2 passes,
/// 1 lane) and a fresh random 16-byte salt, as a PHC string.
pub fn hash_password(password: &[u8]) -> Result<String, PasswordFileError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordFileError {
            line: 0,
            message: format!("cannot hash the password: {e}"),
        })
}

/// Whether `password` (MQTT passwords are bytes) matches `phc`, an argon2id PHC string. The
/// comparison of the derived hash is constant-time; a string that is not a valid argon2id hash
/// never matches. Costs one full argon2id derivation (tens of milliseconds): call it off the
/// async runtime's worker threads.
pub fn verify_password(phc: &str, password: &[u8]) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) if hash.algorithm == Algorithm::Argon2id.ident() => {
            Argon2::default().verify_password(password, &hash).is_ok()
        }
        _ => false,
    }
}

/// Checks that `user` can be written to a password file: not empty, no `:`, no control
/// characters, not starting with `#` (a comment) or with white space.
pub fn check_user_name(user: &str) -> Result<(), PasswordFileError> {
    let problem = if user.is_empty() {
        Some("the user name is empty")
    } else if user.contains(':') {
        Some("a user name may not contain ':'")
    } else if user.chars().any(char::is_control) {
        Some("a user name may not contain control characters")
    } else if user.starts_with('#') {
        Some("a user name may not start with '#'")
    } else if user.starts_with(char::is_whitespace) || user.ends_with(char::is_whitespace) {
        Some("a user name may not start or end with white space")
    } else {
        None
    };
    match problem {
        Some(message) => Err(PasswordFileError {
            line: 0,
            message: message.to_owned(),
        }),
        None => Ok(()),
    }
}

/// One line of a password file, kept so that rewriting the file preserves comments.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    /// A blank or `#` line, verbatim.
    Other(String),
    /// `user:hash`.
    Entry { user: String, hash: String },
}

/// A parsed password file: every user appears once, every hash is an argon2id PHC string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PasswordFile {
    /// The lines in file order.
    lines: Vec<Line>,
}

impl PasswordFile {
    /// Parses the text of a password file; the error names the first bad line.
    pub fn parse(text: &str) -> Result<PasswordFile, PasswordFileError> {
        let mut file = PasswordFile::default();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            if raw.trim().is_empty() || raw.starts_with('#') {
                file.lines.push(Line::Other(raw.to_owned()));
                continue;
            }
            let err = |message: String| PasswordFileError { line, message };
            let Some((user, hash)) = raw.split_once(':') else {
                return Err(err("expected `user:hash`".to_owned()));
            };
            check_user_name(user).map_err(|e| err(e.message))?;
            let hash = hash.trim_end();
            match PasswordHash::new(hash) {
                Ok(h) if h.algorithm == Algorithm::Argon2id.ident() => {}
                Ok(h) => {
                    return Err(err(format!(
                        "the hash of user {user:?} uses {}; only argon2id is accepted \
                         (write it with `canopy passwd`)",
                        h.algorithm
                    )));
                }
                Err(e) => {
                    return Err(err(format!(
                        "the hash of user {user:?} is not an argon2id PHC string ({e}); \
                         write it with `canopy passwd`"
                    )));
                }
            }
            if file.hash_of(user).is_some() {
                return Err(err(format!("user {user:?} appears twice")));
            }
            file.lines.push(Line::Entry {
                user: user.to_owned(),
                hash: hash.to_owned(),
            });
        }
        Ok(file)
    }

    /// The stored hash of `user`, if the file names them.
    pub fn hash_of(&self, user: &str) -> Option<&str> {
        self.lines.iter().find_map(|l| match l {
            Line::Entry { user: u, hash } if u == user => Some(hash.as_str()),
            _ => None,
        })
    }

    /// The user names in file order.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().filter_map(|l| match l {
            Line::Entry { user, .. } => Some(user.as_str()),
            Line::Other(_) => None,
        })
    }

    /// Sets `user`'s hash, replacing the old one in place or appending a new line.
    pub fn set(&mut self, user: &str, hash: String) -> Result<(), PasswordFileError> {
        check_user_name(user)?;
        for line in &mut self.lines {
            if let Line::Entry { user: u, hash: h } = line
                && u == user
            {
                *h = hash;
                return Ok(());
            }
        }
        self.lines.push(Line::Entry {
            user: user.to_owned(),
            hash,
        });
        Ok(())
    }

    /// Removes `user`; false when the file did not name them.
    pub fn remove(&mut self, user: &str) -> bool {
        let before = self.lines.len();
        self.lines
            .retain(|l| !matches!(l, Line::Entry { user: u, .. } if u == user));
        self.lines.len() != before
    }
}

impl fmt::Display for PasswordFile {
    /// The file's text: one line each, `\n`-terminated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            match line {
                Line::Other(text) => writeln!(f, "{text}")?,
                Line::Entry { user, hash } => writeln!(f, "{user}:{hash}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_and_no_other() {
        let hash = hash_password(b"s3cret").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        assert!(verify_password(&hash, b"s3cret"));
        assert!(!verify_password(&hash, b"s3cret "));
        assert!(!verify_password(&hash, b""));
    }

    #[test]
    fn two_hashes_of_one_password_differ_by_salt() {
        assert_ne!(hash_password(b"x").unwrap(), hash_password(b"x").unwrap());
    }

    #[test]
    fn a_malformed_or_foreign_hash_never_verifies() {
        assert!(!verify_password("", b""));
        assert!(!verify_password("plain", b"plain"));
        assert!(!verify_password("$6$salt$hash", b"x"));
    }

    #[test]
    fn parse_keeps_comments_and_round_trips() {
        let h = hash_password(b"pw").unwrap();
        let text = format!("# users\nalice:{h}\n\nbob:{h}\n");
        let file = PasswordFile::parse(&text).unwrap();
        assert_eq!(file.users().collect::<Vec<_>>(), ["alice", "bob"]);
        assert_eq!(file.hash_of("bob"), Some(h.as_str()));
        assert_eq!(file.hash_of("carol"), None);
        assert_eq!(file.to_string(), text);
    }

    #[test]
    fn parse_errors_name_the_line() {
        let h = hash_password(b"pw").unwrap();
        let cases = [
            (format!("alice:{h}\nbob\n"), 2, "expected `user:hash`"),
            (format!("alice:{h}\nalice:{h}\n"), 2, "appears twice"),
            ("alice:$6$abc$def\n".to_owned(), 1, "not an argon2id PHC"),
            (
                "alice:$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo\n".to_owned(),
                1,
                "only argon2id",
            ),
            (format!(":{h}\n"), 1, "empty"),
        ];
        for (text, line, needle) in cases {
            let e = PasswordFile::parse(&text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.to_string().contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn set_replaces_in_place_and_remove_deletes() {
        let mut file = PasswordFile::parse("# c\n").unwrap();
        file.set("a", "h1".to_owned()).unwrap();
        file.set("b", "h2".to_owned()).unwrap();
        file.set("a", "h3".to_owned()).unwrap();
        assert_eq!(file.to_string(), "# c\na:h3\nb:h2\n");
        assert!(file.remove("a"));
        assert!(!file.remove("a"));
        assert_eq!(file.to_string(), "# c\nb:h2\n");
    }

    #[test]
    fn user_names_that_would_corrupt_the_file_are_refused() {
        for bad in ["", "a:b", "#a", "a\nb", " a", "a "] {
            assert!(check_user_name(bad).is_err(), "{bad:?}");
        }
        for good in ["alice", "a b", "ü", "bridge-1"] {
            assert!(check_user_name(good).is_ok(), "{good:?}");
        }
    }
}
