//! In-process identities: the credentials the broker hands its own embedded `[[bridge]]`s.
//!
//! Owns the per-bridge random tokens and their check. A token is made at start-up, lives
//! only in this process's memory (never written to disk, a log or a topic) and is given
//! only to an embedded bridge whose local side is one of this broker's own listeners. The
//! user names are `canopy-bridge:<name>`: a `:` cannot occur in a password file's user
//! names, and a certificate's Common Name of that form is refused, so no outside login
//! can take one. Must never grant anything by itself: the access seam decides what a
//! bridge may do.

use std::collections::HashMap;
use std::sync::RwLock;

/// The user-name prefix of an embedded bridge's in-process login.
pub const BRIDGE_USER_PREFIX: &str = "canopy-bridge:";

/// Tokens of the embedded bridges, by bridge name, with the local client id each uses.
#[derive(Debug, Default)]
pub struct BridgeTokens {
    tokens: RwLock<HashMap<String, Issued>>,
}

#[derive(Debug)]
struct Issued {
    token: String,
    client_id: String,
}

/// What a login with a `canopy-bridge:` user name proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeLogin {
    /// The user name is not an in-process bridge's: the normal login applies.
    NotBridge,
    /// The token matches: this connection is the embedded bridge of that name.
    Bridge,
    /// A bridge user name with a wrong or missing token.
    Refused,
}

impl BridgeTokens {
    /// Makes (or replaces) the token of bridge `name`, which connects with `client_id`,
    /// and returns its user name and token.
    pub fn issue(&self, name: &str, client_id: &str) -> (String, String) {
        let bytes: [u8; 32] = rand::random();
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut map = self.tokens.write().unwrap_or_else(|p| p.into_inner());
        let issued = Issued {
            token: token.clone(),
            client_id: client_id.to_owned(),
        };
        map.insert(name.to_owned(), issued);
        (format!("{BRIDGE_USER_PREFIX}{name}"), token)
    }

    /// Whether `client_id` is an embedded bridge's: only that bridge may connect with it,
    /// so nobody takes its session over.
    pub fn reserves(&self, client_id: &str) -> bool {
        let map = self.tokens.read().unwrap_or_else(|p| p.into_inner());
        map.values().any(|i| i.client_id == client_id)
    }

    /// Checks a login's user name and password.
    pub fn check(&self, user: &str, password: Option<&[u8]>) -> BridgeLogin {
        let Some(name) = user.strip_prefix(BRIDGE_USER_PREFIX) else {
            return BridgeLogin::NotBridge;
        };
        let map = self.tokens.read().unwrap_or_else(|p| p.into_inner());
        match (map.get(name), password) {
            (Some(issued), Some(pw)) if constant_time_eq(issued.token.as_bytes(), pw) => {
                BridgeLogin::Bridge
            }
            _ => BridgeLogin::Refused,
        }
    }
}

/// Whether `name` is reserved for in-process bridges (refused as a certificate's user).
pub fn is_reserved_user(name: &str) -> bool {
    name.starts_with(BRIDGE_USER_PREFIX)
}

/// Compares without an early exit, so timing does not tell how much of a token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_issued_token_proves_a_bridge() {
        let t = BridgeTokens::default();
        let (user, token) = t.issue("site", "site-local");
        assert_eq!(user, "canopy-bridge:site");
        assert_eq!(token.len(), 64);
        assert_eq!(t.check(&user, Some(token.as_bytes())), BridgeLogin::Bridge);
        assert_eq!(t.check(&user, Some(b"guess")), BridgeLogin::Refused);
        assert_eq!(t.check(&user, None), BridgeLogin::Refused);
        assert_eq!(
            t.check("canopy-bridge:other", Some(token.as_bytes())),
            BridgeLogin::Refused
        );
        assert_eq!(t.check("alice", Some(b"x")), BridgeLogin::NotBridge);
        assert!(t.reserves("site-local"));
        assert!(!t.reserves("site"));
    }

    #[test]
    fn tokens_differ_between_bridges_and_issues() {
        let t = BridgeTokens::default();
        let (_, a) = t.issue("a", "a-local");
        let (_, b) = t.issue("b", "b-local");
        let (_, a2) = t.issue("a", "a-local");
        assert_ne!(a, b);
        assert_ne!(a, a2);
        assert_eq!(
            t.check("canopy-bridge:a", Some(a.as_bytes())),
            BridgeLogin::Refused
        );
    }
}
