//! Test harness for Canopy integration tests.
