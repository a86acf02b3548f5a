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
use canopy_proto::{
    Connect, ConnectProperties, Packet, Protocol, Publish, QoS, ReasonCode, TopicName,
};
use cdp::Chromium;
use support::Client;

const USER: &str = "operator";
const PASSWORD: &str = "correct horse";
const DEVICE: &str = "dash-test-device";
/// The page's client id, set in the form's advanced section.
const CONSOLE: &str = "ops-console";
/// A `[auth] bridge_users` user, as a standalone metabroker logs in.
const BRIDGE_USER: &str = "site-7-bridge";

/// `target/dashboard-test/`: screenshots and DOM dumps.
fn output_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(&tmp).join("dashboard-test");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A broker with a user who is an admin (so the page may read every user's presence) and a
/// bridge user,
/// `$SYS` every second, one scarce resource and the dashboard on a free port.
async fn start_broker(dir: &std::path::Path) -> canopy_broker::BrokerHandle {
    let hash = canopy_model::password::hash_password(PASSWORD.as_bytes()).unwrap();
    let passwd = dir.join("passwd");
    std::fs::write(&passwd, format!("{USER}:{hash}\n{BRIDGE_USER}:{hash}\n")).unwrap();
    let extra = format!(
        "[config]\nadmins = [{USER:?}]\n\
         [auth]\nbridge_users = [{BRIDGE_USER:?}]\n\
         [[resource]]\nname = \"license\"\nmax_concurrent = 5\n"
    );
    let extra = Config::from_toml(&extra, "test").unwrap();
    let mut cfg = Config::ephemeral();
    cfg.auth.password_file = Some(passwd);
    cfg.auth.allow_anonymous = Some(false);
    cfg.sys_interval = Duration::from_secs(1);
    cfg.config_docs = extra.config_docs;
    cfg.auth.bridge_users = extra.auth.bridge_users;
    cfg.resource = extra.resource;
    cfg.dashboard.listen = Some("127.0.0.1:0".parse().unwrap());
    canopy_broker::start(cfg).await.unwrap()
}

/// An MQTT 5.0 client logged in as the test's user.
async fn client(addr: std::net::SocketAddr, id: &str) -> Client {
    client_as(addr, id, USER).await
}

/// An MQTT 5.0 client logged in as `user` (whose password is the test's).
async fn client_as(addr: std::net::SocketAddr, id: &str, user: &str) -> Client {
    Client::connect_with(
        addr,
        Connect {
            protocol: Some(Protocol::V5),
            clean_start: true,
            client_id: id.to_owned(),
            username: Some(user.to_owned()),
            password: Some(bytes::Bytes::from_static(PASSWORD.as_bytes())),
            properties: ConnectProperties::default(),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

/// Publishes `payload` at QoS 1 (retained when `retain`) and returns the PUBACK reason.
async fn publish(c: &mut Client, topic: &str, payload: &str, retain: bool) -> ReasonCode {
    let p = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain,
        topic: Some(TopicName::new(topic).unwrap()),
        pkid: Some(7),
        properties: Default::default(),
        payload: bytes::Bytes::copy_from_slice(payload.as_bytes()),
    };
    c.send(&Packet::Publish(p)).await.unwrap();
    loop {
        match c.recv_timeout(Duration::from_secs(5)).await.unwrap() {
            Some(Packet::PubAck(a)) => return a.reason,
            Some(_) => {}
            None => panic!("no PUBACK for {topic}"),
        }
    }
}

/// Fills the form and submits it, as a user would.
async fn sign_in(page: &mut Chromium, user: &str, password: &str, client_id: &str) {
    let script = format!(
        "document.getElementById('user').value = {user:?};\
         document.getElementById('password').value = {password:?};\
         document.getElementById('client-id').value = {client_id:?};\
         document.getElementById('login').requestSubmit(); true"
    );
    page.eval(&script).await;
}

/// A JavaScript test of the row of `id` in the table body `tbody`.
fn row_has(tbody: &str, id_cell: &str, text: &str) -> String {
    format!(
        "[...document.querySelectorAll('#{tbody} tr')].some(r => \
         r.cells[0] && r.cells[0].textContent === {id_cell:?} && r.textContent.includes({text:?}))"
    )
}

/// The steps of the test; an `Err` names the step that failed.
async fn scenario(page: &mut Chromium, broker: &canopy_broker::BrokerHandle) -> Result<(), String> {
    let url = format!("http://{}/", broker.dashboard_addr().unwrap());
    let mqtt = broker.mqtt_addr();
    let long = Duration::from_secs(15);
    page.navigate(&url).await;
    page.wait_for(
        "document.title === 'Canopy dashboard'",
        Duration::from_secs(5),
    )
    .await?;

    // A wrong password is refused and the form stays.
    sign_in(page, USER, "wrong", "").await;
    page.wait_for(
        "document.getElementById('login-error').textContent.includes('user name or password')",
        long,
    )
    .await?;

    sign_in(page, USER, PASSWORD, CONSOLE).await;
    page.wait_for(
        "!document.getElementById('dash-view').hidden && document.getElementById('conn-state').textContent.startsWith('live')",
        long,
    )
    .await?;
    page.wait_for(
        "document.getElementById('broker-version').textContent.startsWith('canopy')",
        Duration::from_secs(10),
    )
    .await?;
    let quiet = page
        .eval("Number(document.getElementById('rate-in').textContent.replace(/,/g, '')) || 0")
        .await;
    if quiet.as_f64().unwrap_or(0.0) >= 20.0 {
        return Err(format!(
            "the inbound rate is {quiet} before anything is published"
        ));
    }

    // A client connected during the test appears in the list, online.
    let mut dev = client(mqtt, DEVICE).await;
    page.wait_for(&row_has("clients", DEVICE, "online"), long)
        .await?;

    // Every other panel shows what its topics carry.
    // A standalone metabroker's local client (a bridge user) reports its link.
    let mut bridge = client_as(mqtt, "site-7-local", BRIDGE_USER).await;
    let state =
        r#"{"state":"connected","remote":"mqtts://hub.example:8883","since":1764650000000}"#;
    publish(&mut bridge, "$SYS/metabroker/site-7/state", state, true).await;
    publish(
        &mut bridge,
        "$SYS/metabroker/site-7/forwarded",
        "1234",
        true,
    )
    .await;
    page.wait_for(
        "[...document.querySelectorAll('#bridges li')].some(li => li.textContent.includes('site-7') && li.textContent.includes('connected') && li.textContent.includes('forwarded 1234'))",
        long,
    )
    .await?;
    let device = r#"{"availability":"available","activity":"active"}"#;
    publish(&mut dev, "$presence/operator/devices/laptop", device, true).await;
    page.wait_for(&row_has("presence", USER, "available"), long)
        .await?;
    publish(&mut dev, "$resource/license/acquire", "", false).await;
    page.wait_for(&row_has("resources", "license", "1 / 5"), long)
        .await?;
    let node = r#"{"advertise":"10.0.0.7:1883","connections":1234,"capacity":100000,"state":"up","at":1764650000000}"#;
    if publish(&mut dev, "$cluster/nodes/node-a", node, true).await == ReasonCode::SUCCESS {
        page.wait_for(&row_has("nodes", "node-a", "10.0.0.7:1883"), long)
            .await?;
    }

    // Large lists are paged: 24 more clients make two pages of 20.
    let mut sensors = Vec::new();
    for i in 0..24 {
        sensors.push(client(mqtt, &format!("sensor-{i:02}")).await);
    }
    page.wait_for(
        "document.querySelectorAll('#clients tr').length === 20 && !document.getElementById('next').disabled",
        long,
    )
    .await?;
    page.eval("document.getElementById('next').click(); true")
        .await;
    page.wait_for(
        "document.getElementById('page-no').textContent === 'page 2' && document.querySelectorAll('#clients tr').length >= 5",
        long,
    )
    .await?;
    page.eval("document.getElementById('prev').click(); true")
        .await;
    page.wait_for(&row_has("clients", DEVICE, "online"), long)
        .await?;
    for s in sensors.drain(..4) {
        s.disconnect().await;
    }

    // Publishing makes the inbound rate rise: about 100 messages a second for up to 8 s.
    let deadline = Instant::now() + Duration::from_secs(8);
    let rate = "Number(document.getElementById('rate-in').textContent.replace(/,/g, '')) >= 20";
    let mut sent = 0u32;
    let mut seen = false;
    while Instant::now() < deadline && sent < 3000 && !seen {
        for _ in 0..10 {
            dev.publish("dash/test", b"x", QoS::AtMostOnce, 0)
                .await
                .map_err(|e| e.to_string())?;
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = sent.is_multiple_of(100) && page.eval(rate).await == serde_json::json!(true);
    }
    if !seen {
        page.wait_for(rate, Duration::from_secs(3)).await?;
    }
    page.wait_for(
        "document.querySelectorAll('#rate-chart').length === 1",
        long,
    )
    .await?;

    // What the page looks like with everything on it (docs/dashboard.png is one of these).
    for _ in 0..30 {
        for _ in 0..5 {
            dev.publish("dash/test", b"x", QoS::AtMostOnce, 0)
                .await
                .map_err(|e| e.to_string())?;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shot = page.screenshot_scaled(0.75).await;
    std::fs::write(output_dir().join("dashboard.png"), shot).map_err(|e| e.to_string())?;

    // Its disconnection shows too.
    dev.disconnect().await;
    page.wait_for(&row_has("clients", DEVICE, "offline"), long)
        .await?;

    // Signing out and in again starts over with a fresh session.
    page.eval("document.getElementById('logout').click(); true")
        .await;
    page.wait_for("!document.getElementById('login-view').hidden", long)
        .await?;
    sign_in(page, USER, PASSWORD, "").await;
    page.wait_for(&row_has("clients", DEVICE, "offline"), long)
        .await?;
    page.wait_for(&row_has("presence", USER, "available"), long)
        .await?;
    drop(sensors);
    drop(bridge);
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
    match result {
        Ok(()) => {}
        Err(why) => {
            let shot = page.screenshot().await;
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
