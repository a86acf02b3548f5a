//! Authentication and the ACL file: who may connect, and what they may read and write.
//!
//! Owns the password and ACL files (loading, reloading on SIGHUP with the old rules kept when
//! a file fails to parse), the login decision with its failure delays and counter, and the
//! per-topic ACL answers. Must never know about the broker's reserved prefixes, admins or
//! bridges (the access seam applies those before asking the ACL) and never log a password.

pub mod acl;
pub mod internal;
pub mod password;
pub mod throttle;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

pub use acl::{Access, Acl};
pub use password::Passwords;
pub use throttle::{LoginThrottle, ThrottlePolicy};

use crate::config::AuthConfig;

/// Why the password or ACL file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A line of the file is wrong.
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// One consistent set of rules; replaced whole on reload, so a check never sees half a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    /// The password file's users; `None` when `password_file` is unset.
    pub passwords: Option<Passwords>,
    /// The ACL; `None` when `acl_file` is unset (then every accepted client may do anything
    /// the broker's own rules allow).
    pub acl: Option<Acl>,
}

impl Rules {
    /// The ACL's answer for a topic name, `true` without an ACL file.
    pub fn check(&self, user: Option<&str>, client_id: &str, access: Access, topic: &str) -> bool {
        self.acl
            .as_ref()
            .is_none_or(|a| a.check(user, client_id, access, topic))
    }

    /// The ACL's answer for a SUBSCRIBE filter, `true` without an ACL file.
    pub fn check_subscribe(&self, user: Option<&str>, client_id: &str, filter: &str) -> bool {
        self.acl
            .as_ref()
            .is_none_or(|a| a.check_subscribe(user, client_id, filter))
    }
}

/// The outcome of a login.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Login {
    /// Connect. `authenticated`: the user name was proved by a password (or a certificate);
    /// false for anonymous clients and for user names taken on trust without a password file.
    Accepted {
        /// Whether the user name was proved.
        authenticated: bool,
    },
    /// Unknown user or wrong (or missing) password: CONNACK 0x86 (5.0) / 4 (3.1.1).
    BadCredentials,
    /// No user name where anonymous clients are refused: CONNACK 0x87 (5.0) / 5 (3.1.1).
    NotAuthorized,
    /// This broker's own embedded bridge, proved by its in-process token
    /// ([`internal::BridgeTokens`]); the user name is `canopy-bridge:<name>`.
    Bridge,
}

impl Login {
    /// The CONNACK reason code for an MQTT 5.0 client (0x00, 0x86 or 0x87).
    pub fn reason_v5(self) -> u8 {
        match self {
            Login::Accepted { .. } | Login::Bridge => 0x00,
            Login::BadCredentials => 0x86,
            Login::NotAuthorized => 0x87,
        }
    }

    /// The CONNACK return code for an MQTT 3.1/3.1.1 client (0, 4 or 5).
    pub fn return_code_v3(self) -> u8 {
        match self {
            Login::Accepted { .. } | Login::Bridge => 0,
            Login::BadCredentials => 4,
            Login::NotAuthorized => 5,
        }
    }
}

/// The broker's reloadable authentication state, shared by every connection.
#[derive(Debug)]
pub struct Auth {
    password_file: Option<PathBuf>,
    acl_file: Option<PathBuf>,
    /// Swapped whole by [`Auth::reload`]; readers clone the `Arc` and never hold the lock.
    rules: RwLock<Arc<Rules>>,
    throttle: Mutex<LoginThrottle>,
    failed_logins: AtomicU64,
    /// Password verifications running at once: each takes ~19 MiB and a core for tens of
    /// milliseconds, so a flood of CONNECTs queues here instead of exhausting memory.
    verify_slots: tokio::sync::Semaphore,
    /// The embedded bridges' in-process credentials.
    bridges: internal::BridgeTokens,
}

impl Auth {
    /// Loads the files named by `config`; any error is fatal at start-up (a broker that was
    /// told to check passwords must not start without them).
    pub fn load(config: &AuthConfig) -> Result<Auth, AuthError> {
        Auth::with_files(
            config.password_file.clone(),
            config.acl_file.clone(),
            ThrottlePolicy::default(),
        )
    }

    /// Loads the given files with a throttle policy (tests shorten the delays).
    pub fn with_files(
        password_file: Option<PathBuf>,
        acl_file: Option<PathBuf>,
        policy: ThrottlePolicy,
    ) -> Result<Auth, AuthError> {
        let rules = Rules {
            passwords: password_file.as_deref().map(load_passwords).transpose()?,
            acl: acl_file.as_deref().map(load_acl).transpose()?,
        };
        Ok(Auth {
            password_file,
            acl_file,
            rules: RwLock::new(Arc::new(rules)),
            throttle: Mutex::new(LoginThrottle::new(policy)),
            failed_logins: AtomicU64::new(0),
            verify_slots: tokio::sync::Semaphore::new(verify_slots()),
            bridges: internal::BridgeTokens::default(),
        })
    }

    /// Re-reads both files (SIGHUP). A file that fails keeps its old rules and its error is
    /// returned (and should be logged); the other file is still reloaded. Connections are not
    /// touched: their next check sees the new rules.
    pub fn reload(&self) -> Vec<AuthError> {
        let mut errors = Vec::new();
        let mut next = (*self.rules()).clone();
        if let Some(path) = &self.password_file {
            match load_passwords(path) {
                Ok(p) => next.passwords = Some(p),
                Err(e) => errors.push(e),
            }
        }
        if let Some(path) = &self.acl_file {
            match load_acl(path) {
                Ok(a) => next.acl = Some(a),
                Err(e) => errors.push(e),
            }
        }
        let mut guard = self.rules.write().unwrap_or_else(|p| p.into_inner());
        *guard = Arc::new(next);
        errors
    }

    /// The current rules.
    pub fn rules(&self) -> Arc<Rules> {
        Arc::clone(&self.rules.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The embedded bridges' in-process credentials (issued at start-up).
    pub fn bridge_tokens(&self) -> &internal::BridgeTokens {
        &self.bridges
    }

    /// Decides a CONNECT from `peer`. Waits first if `peer` has failed repeatedly (see
    /// [`ThrottlePolicy`]); verifies the password on a blocking thread; counts and logs a
    /// failure with the peer and user name (never the password).
    ///
    /// A client without a user name is accepted when `anonymous_allowed`; a client with one
    /// is checked against the password file whenever one is set, even where anonymous
    /// clients are allowed. Without a password file a user name is taken on trust only where
    /// anonymous clients are allowed (it proves nothing), and refused elsewhere.
    pub async fn login(
        &self,
        peer: IpAddr,
        user: Option<&str>,
        password: Option<&[u8]>,
        anonymous_allowed: bool,
    ) -> Login {
        let delay = self.lock_throttle().delay(peer, Instant::now());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let rules = self.rules();
        let bridge = user.map_or(internal::BridgeLogin::NotBridge, |u| {
            self.bridges.check(u, password)
        });
        let outcome = match (user, &rules.passwords) {
            _ if bridge == internal::BridgeLogin::Bridge => Login::Bridge,
            _ if bridge == internal::BridgeLogin::Refused => Login::BadCredentials,
            (None, _) if anonymous_allowed => Login::Accepted {
                authenticated: false,
            },
            (None, _) => Login::NotAuthorized,
            // Without a password file a user name proves nothing: it is as good as anonymous.
            (Some(_), None) if anonymous_allowed => Login::Accepted {
                authenticated: false,
            },
            (Some(_), None) => Login::BadCredentials,
            (Some(user), Some(_)) => {
                let (u, pw) = (user.to_owned(), password.map(<[u8]>::to_vec));
                let rules = Arc::clone(&rules);
                // The semaphore is never closed, so a permit always comes.
                let _slot = self.verify_slots.acquire().await;
                let ok = tokio::task::spawn_blocking(move || {
                    pw.is_some_and(|pw| rules.passwords.as_ref().is_some_and(|p| p.verify(&u, &pw)))
                })
                .await
                .unwrap_or(false);
                if ok {
                    Login::Accepted {
                        authenticated: true,
                    }
                } else {
                    Login::BadCredentials
                }
            }
        };
        if !matches!(outcome, Login::Accepted { .. } | Login::Bridge) {
            self.failed_logins.fetch_add(1, Ordering::Relaxed);
            self.lock_throttle().failed(peer, Instant::now());
            tracing::warn!(%peer, user = user.unwrap_or(""), outcome = ?outcome, "login refused");
        }
        outcome
    }

    /// Logins refused since start-up (for metrics).
    pub fn failed_logins(&self) -> u64 {
        self.failed_logins.load(Ordering::Relaxed)
    }

    fn lock_throttle(&self) -> std::sync::MutexGuard<'_, LoginThrottle> {
        self.throttle.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl crate::access::Acl for Auth {
    /// The ACL file's answer: PUBLISH and wills need `write`, deliveries (retained ones
    /// included) `read`, SUBSCRIBE a read rule that could match (see
    /// [`Acl::check_subscribe`]). Reads the current rules, so reloads apply at once.
    fn allows(&self, who: &crate::access::Who<'_>, req: &crate::access::Request<'_>) -> bool {
        use crate::access::Request;
        let rules = self.rules();
        let (user, id) = (who.user, who.client_id);
        match *req {
            Request::Publish { topic, .. } | Request::Will { topic } => {
                rules.check(user, id, Access::Write, topic)
            }
            Request::Subscribe { filter } => rules.check_subscribe(user, id, filter),
            Request::Deliver { topic } => rules.check(user, id, Access::Read, topic),
        }
    }
}

/// Concurrent password verifications: the number of cores, between 1 and 8.
fn verify_slots() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 8))
}

fn read(path: &Path) -> Result<String, AuthError> {
    std::fs::read_to_string(path).map_err(|source| AuthError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn load_passwords(path: &Path) -> Result<Passwords, AuthError> {
    Passwords::parse(&read(path)?).map_err(|e| AuthError::Parse {
        path: path.to_path_buf(),
        line: e.line,
        message: e.message,
    })
}

fn load_acl(path: &Path) -> Result<Acl, AuthError> {
    Acl::parse(&read(path)?).map_err(|e| AuthError::Parse {
        path: path.to_path_buf(),
        line: e.line,
        message: e.message,
    })
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
