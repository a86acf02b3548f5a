//! The broker's configuration errors: the shared [`canopy_model::config_error`] machinery
//! (file, line and dotted key for every mistake), re-exported under the broker's names so
//! the metabroker's files and the broker's are reported the same way.
//!
//! Owns nothing of its own; must never grow a second span-to-key translation.

pub use canopy_model::config_error::{ConfigError, Violation};
