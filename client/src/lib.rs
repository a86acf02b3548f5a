//! canopy-client library.
#![warn(missing_docs)]
