//! Broker integration tests, one binary for all areas (link once).
//!
//! Each area file checks wire behaviour byte-exactly through `RawClient`, for MQTT 3.1.1
//! and 5.0 where both apply, citing the specification's statement ids. Set
//! `CANOPY_TEST_EXTERNAL=host:port` to run the same cases against another broker; cases that
//! need Canopy settings or test Canopy policy print "skipped in external mode".

/// Expands `name(version)` into `name::v311` and `name::v5` test cases.
macro_rules! both_versions {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn v311() {
                super::$name(canopy_tests::wire::V311).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn v5() {
                super::$name(canopy_tests::wire::V5).await
            }
        }
    )*};
}

mod connect;
mod malformed;
mod properties;
mod publish;
mod real_clients;
mod retain;
mod session;
mod subscribe;
mod will;
