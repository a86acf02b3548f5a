//! canopy-broker library.
#![warn(missing_docs)]
