//! The dashboard in a real browser: an in-process broker with a password file and
//! `[dashboard] listen` on a free port, Debian's headless `chromium` driven over the DevTools
//! protocol. The test signs in through the page's form, connects an MQTT client and expects
//! its row (online) in the client list, publishes and expects the "messages in / s" figure to
//! rise, and signs in with a wrong password and expects a refusal. On failure a screenshot
//! and the DOM are written to `target/dashboard-test/`. Without Chromium the test fails with
//! the install command, unless `CANOPY_SKIP_EXTERNAL=1` (README, "Tests").

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "dashboard_support/cdp.rs"]
mod cdp;
mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use canopy_broker::config::Config;
use canopy_proto::{Connect, ConnectProperties, Protocol, QoS};
use cdp::Chromium;
use support::Client;

const USER: &str = "operator";
const PASSWORD: &str = "correct horse";
const DEVICE: &str = "dash-test-device";

/// `target/dashboard-test/`: screenshots and DOM dumps.
fn output_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(&tmp).join("dashboard-test");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A broker with one user, `$SYS` every second and the dashboard on a free port.
async fn start_broker(dir: &std::path::Path) -> canopy_broker::BrokerHandle {
    let hash = canopy_model::password::hash_password(PASSWORD.as_bytes()).unwrap();
    let passwd = dir.join("passwd");
    std::fs::write(&passwd, format!("{USER}:{hash}\n")).unwrap();
    let mut cfg = Config::ephemeral();
    cfg.auth.password_file = Some(passwd);
    cfg.auth.allow_anonymous = Some(false);
    cfg.sys_interval = Duration::from_secs(1);
    cfg.dashboard.listen = Some("127.0.0.1:0".parse().unwrap());
    canopy_broker::start(cfg).await.unwrap()
}

async fn device(addr: std::net::SocketAddr) -> Client {
    Client::connect_with(
        addr,
        Connect {
            protocol: Some(Protocol::V5),
            clean_start: true,
            client_id: DEVICE.to_owned(),
            username: Some(USER.to_owned()),
            password: Some(bytes::Bytes::from_static(PASSWORD.as_bytes())),
            properties: ConnectProperties::default(),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

/// Fills the form and submits it, as a user would.
async fn sign_in(page: &mut Chromium, user: &str, password: &str) {
    let script = format!(
        "document.getElementById('user').value = {user:?};\
         document.getElementById('password').value = {password:?};\
         document.getElementById('login').requestSubmit(); true"
    );
    page.eval(&script).await;
}

/// The steps of the test; an `Err` names the step that failed.
async fn scenario(page: &mut Chromium, broker: &canopy_broker::BrokerHandle) -> Result<(), String> {
    let url = format!("http://{}/", broker.dashboard_addr().unwrap());
    page.navigate(&url).await;
    page.wait_for(
        "document.title === 'Canopy dashboard'",
        Duration::from_secs(5),
    )
    .await?;

    // A wrong password is refused and the form stays.
    sign_in(page, USER, "wrong").await;
    page.wait_for(
        "document.getElementById('login-error').textContent.includes('user name or password')",
        Duration::from_secs(15),
    )
    .await?;

    sign_in(page, USER, PASSWORD).await;
    page.wait_for(
        "!document.getElementById('dash-view').hidden && document.getElementById('conn-state').textContent.startsWith('live')",
        Duration::from_secs(15),
    )
    .await?;
    page.wait_for(
        "document.getElementById('broker-version').textContent.startsWith('canopy')",
        Duration::from_secs(10),
    )
    .await?;

    // A client connected during the test appears in the list, online.
    let mut dev = device(broker.mqtt_addr()).await;
    let row = format!(
        "(() => {{ const r = document.querySelector('#clients tr[data-id=\"{DEVICE}\"]'); \
         return r && r.textContent.includes('online') }})()"
    );
    page.wait_for(&row, Duration::from_secs(15)).await?;

    // Publishing makes the inbound rate rise: about 100 messages a second for up to 8 s.
    let deadline = Instant::now() + Duration::from_secs(8);
    let rate = "Number(document.getElementById('rate-in').textContent.replace(/,/g, '')) >= 20";
    let mut seen = false;
    let mut sent = 0u32;
    while Instant::now() < deadline && sent < 2000 {
        for _ in 0..10 {
            dev.publish("dash/test", b"x", QoS::AtMostOnce, 0)
                .await
                .map_err(|e| e.to_string())?;
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if sent % 100 == 0 && page.eval(rate).await == serde_json::json!(true) {
            seen = true;
            break;
        }
    }
    if !seen {
        page.wait_for(rate, Duration::from_secs(3)).await?;
    }

    // Its disconnection shows too.
    dev.disconnect().await;
    let offline = format!(
        "(() => {{ const r = document.querySelector('#clients tr[data-id=\"{DEVICE}\"]'); \
         return r && r.textContent.includes('offline') }})()"
    );
    page.wait_for(&offline, Duration::from_secs(15)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_signs_in_lists_a_new_client_and_shows_the_message_rate() {
    let Some(binary) = cdp::chromium_binary() else {
        if std::env::var_os("CANOPY_SKIP_EXTERNAL").is_some_and(|v| v == "1") {
            eprintln!("SKIPPED (CANOPY_SKIP_EXTERNAL=1): chromium is not installed");
            return;
        }
        panic!(
            "chromium is not installed: {} (or set CANOPY_SKIP_EXTERNAL=1 to skip the browser test)",
            cdp::INSTALL
        );
    };
    let out = output_dir();
    let dir = support::temp_dir("dashboard");
    let broker = start_broker(&dir).await;
    let mut page = Chromium::start(&binary, &dir).await;
    let result = scenario(&mut page, &broker).await;
    let shot = page.screenshot().await;
    match result {
        Ok(()) => std::fs::write(out.join("dashboard.png"), shot).unwrap(),
        Err(why) => {
            std::fs::write(out.join("failure.png"), shot).unwrap();
            std::fs::write(out.join("failure.html"), page.dom().await).unwrap();
            panic!(
                "{why}\nscreenshot and DOM: {}",
                out.join("failure.png").display()
            );
        }
    }
    drop(page);
    broker.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
