//! `mqtts://` links: a Canopy broker bridged to a Debian `mosquitto` over TLS, with a CA and
//! server certificate generated here (rcgen), with and without a client certificate, and
//! refused when the CA is not trusted. Skips with a message when `mosquitto` is not installed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::mosq::{self, Pki, addr, assert_both_ways, routes};
use common::*;

const T: Duration = Duration::from_secs(15);

/// Mosquitto with a plain listener (ports[0]), a TLS listener (ports[1]) and a TLS listener
/// that requires a client certificate signed by the test CA (ports[2]).
async fn tls_mosquitto(bin: &std::path::Path, pki: &Pki) -> mosq::Mosquitto {
    mosq::start(bin, 3, |p, _| {
        format!(
            "per_listener_settings false\nallow_anonymous true\npersistence false\n\
             listener {} 127.0.0.1\n\
             listener {} 127.0.0.1\ncertfile {}\nkeyfile {}\n\
             listener {} 127.0.0.1\ncertfile {}\nkeyfile {}\ncafile {}\nrequire_certificate true\n",
            p[0],
            p[1],
            pki.server_cert.display(),
            pki.server_key.display(),
            p[2],
            pki.server_cert.display(),
            pki.server_key.display(),
            pki.ca.display(),
        )
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_link_with_a_private_ca_forwards_both_ways_and_an_untrusted_one_never_connects() {
    let Some(bin) = mosq::require_mosquitto() else {
        return;
    };
    init_log();
    let dir = temp_dir("tls-pki");
    std::fs::create_dir_all(&dir).unwrap();
    let pki = mosq::pki(&dir);
    let m = tls_mosquitto(&bin, &pki).await;
    let canopy = broker().await;

    let mut config = bridge(
        "tls1",
        &url(canopy.mqtt_addr()),
        &format!("mqtts://localhost:{}", m.ports[1]),
        routes(),
    );
    config.remote.ca_file = Some(pki.ca.clone());
    let h = canopy_metabroker::Bridge::new(config).start().unwrap();
    wait_until(T, "TLS bridge connected", || connected(&h)).await;
    assert_both_ways(canopy.mqtt_addr(), addr(m.ports[0]), "tls1").await;
    h.shutdown().await;

    // The same listener without ca_file: the system roots do not know the test CA, so the
    // handshake fails and the bridge stays disconnected.
    let untrusted = canopy_metabroker::Bridge::new(bridge(
        "tls2",
        &url(canopy.mqtt_addr()),
        &format!("mqtts://127.0.0.1:{}", m.ports[1]),
        routes(),
    ));
    match untrusted.start() {
        Err(e) => assert!(e.to_string().contains("system CA"), "{e}"),
        Ok(h) => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert!(
                !connected(&h),
                "connected to a server signed by an unknown CA"
            );
            assert!(
                h.stats()
                    .reconnects_remote
                    .load(std::sync::atomic::Ordering::Relaxed)
                    == 0
            );
            h.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_link_presents_its_client_certificate_when_the_broker_requires_one() {
    let Some(bin) = mosq::require_mosquitto() else {
        return;
    };
    init_log();
    let dir = temp_dir("tls-pki-client");
    std::fs::create_dir_all(&dir).unwrap();
    let pki = mosq::pki(&dir);
    let m = tls_mosquitto(&bin, &pki).await;
    let canopy = broker().await;

    // Without a client certificate the broker refuses the handshake.
    let mut anonymous = bridge(
        "tls3",
        &url(canopy.mqtt_addr()),
        &format!("mqtts://127.0.0.1:{}", m.ports[2]),
        routes(),
    );
    anonymous.remote.ca_file = Some(pki.ca.clone());
    let h = canopy_metabroker::Bridge::new(anonymous).start().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !connected(&h),
        "connected without the required client certificate"
    );
    h.shutdown().await;

    let mut config = bridge(
        "tls4",
        &url(canopy.mqtt_addr()),
        &format!("mqtts://127.0.0.1:{}", m.ports[2]),
        routes(),
    );
    config.remote.ca_file = Some(pki.ca.clone());
    config.remote.cert_file = Some(pki.client_cert.clone());
    config.remote.key_file = Some(pki.client_key.clone());
    let h = canopy_metabroker::Bridge::new(config).start().unwrap();
    wait_until(T, "TLS bridge with client certificate connected", || {
        connected(&h)
    })
    .await;
    assert_both_ways(canopy.mqtt_addr(), addr(m.ports[0]), "tls4").await;
    h.shutdown().await;
}
