//! Per-connection session state (placeholder; filled in with the broker core).
