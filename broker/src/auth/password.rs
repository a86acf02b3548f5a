//! The broker's view of the password file (`[auth] password_file`, written by
//! `canopy passwd`; format in `canopy_model::password`).
//!
//! Owns the user → hash table and the yes/no answer for a user name and password. Must never
//! log or keep a password, and never answer faster for an unknown user than for a wrong
//! password (an unknown user is verified against a dummy hash).

use std::collections::HashMap;
use std::sync::OnceLock;

use canopy_model::password::{PasswordFile, hash_password, verify_password};

/// Users and their argon2id hashes, read from a password file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Passwords {
    /// User name → argon2id PHC string.
    hashes: HashMap<String, String>,
}

impl Passwords {
    /// Parses the text of a password file; the error names the first bad line.
    pub fn parse(text: &str) -> Result<Passwords, canopy_model::password::PasswordFileError> {
        let file = PasswordFile::parse(text)?;
        let hashes = file
            .users()
            .filter_map(|u| Some((u.to_owned(), file.hash_of(u)?.to_owned())))
            .collect();
        Ok(Passwords { hashes })
    }

    /// Whether `user` is in the file.
    pub fn contains(&self, user: &str) -> bool {
        self.hashes.contains_key(user)
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether the file names no user.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Whether `password` is `user`'s password. Blocking and expensive (one argon2id
    /// derivation, whether or not the user exists): call it from `spawn_blocking`.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.hashes.get(user) {
            Some(hash) => verify_password(hash, password),
            None => {
                // Same work as for a known user, so timing does not reveal who exists.
                verify_password(dummy_hash(), password);
                false
            }
        }
    }
}

/// A hash of a random password, computed once, to spend the same time on unknown users.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let nonce = format!("{:?}", std::time::SystemTime::now());
        hash_password(nonce.as_bytes()).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Passwords {
        let a = hash_password(b"apple").unwrap();
        let b = hash_password(b"").unwrap();
        Passwords::parse(&format!("alice:{a}\n# c\nbob:{b}\n")).unwrap()
    }

    #[test]
    fn verify_table() {
        let p = file();
        let cases: &[(&str, &[u8], bool)] = &[
            ("alice", b"apple", true),
            ("alice", b"Apple", false),
            ("alice", b"", false),
            ("bob", b"", true),
            ("bob", b"apple", false),
            ("carol", b"apple", false),
            ("", b"", false),
        ];
        for &(user, pw, ok) in cases {
            assert_eq!(p.verify(user, pw), ok, "{user} {pw:?}");
        }
        assert_eq!(p.len(), 2);
        assert!(p.contains("bob") && !p.contains("carol"));
    }

    #[test]
    fn an_unknown_user_costs_a_full_verification() {
        let p = file();
        // Warm the dummy hash so its one-off creation is not measured.
        p.verify("nobody", b"x");
        let t = std::time::Instant::now();
        p.verify("alice", b"wrong");
        let known = t.elapsed();
        let t = std::time::Instant::now();
        p.verify("nobody", b"wrong");
        let unknown = t.elapsed();
        assert!(unknown * 4 > known, "known {known:?} unknown {unknown:?}");
    }
}
