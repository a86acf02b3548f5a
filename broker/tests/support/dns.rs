//! DNS questions for the tests of the broker's DNS listener: through `dig` (Debian's
//! `dnsutils`) when installed, else through hickory-proto over UDP when
//! `CANOPY_SKIP_EXTERNAL=1` allows it (README, "Tests").

#![allow(clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::net::UdpSocket;

/// Whether `dig` can be run. Missing, this fails with the install command unless
/// `CANOPY_SKIP_EXTERNAL=1` (README, "Tests") allows the hickory-proto fallback.
pub fn have_dig() -> bool {
    let found = std::process::Command::new("dig")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found && std::env::var_os("CANOPY_SKIP_EXTERNAL").is_none_or(|v| v != "1") {
        panic!(
            "dig is not installed: apt-get install dnsutils \
             (or set CANOPY_SKIP_EXTERNAL=1 to ask through hickory-proto instead)"
        );
    }
    found
}

/// `dig @127.0.0.1 -p PORT NAME TYPE +short`, one line per answer.
pub async fn dig(server: SocketAddr, name: &str, qtype: &str) -> Vec<String> {
    let args = [
        format!("@{}", server.ip()),
        "-p".to_owned(),
        server.port().to_string(),
        name.to_owned(),
        qtype.to_owned(),
        "+short".to_owned(),
        "+time=2".to_owned(),
        "+tries=1".to_owned(),
    ];
    let out =
        tokio::task::spawn_blocking(move || std::process::Command::new("dig").args(&args).output())
            .await
            .unwrap()
            .unwrap();
    assert!(out.status.success(), "dig failed: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The same question through hickory-proto over UDP: the response message.
pub async fn hickory(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut q = Message::new(0x4242, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    socket.send_to(&q.to_vec().unwrap(), server).await.unwrap();
    let mut buf = [0u8; 1500];
    let (len, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    Message::from_vec(&buf[..len]).unwrap()
}

/// The A answers for `name`, through `dig` when installed, else hickory-proto.
pub async fn lookup_a(server: SocketAddr, name: &str) -> Vec<String> {
    if have_dig() {
        return dig(server, name, "A").await;
    }
    let m = hickory(server, name, RecordType::A).await;
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

/// Asks until the A answer is `[want]`, for at most 10 s (status is published through the
/// router, so it lags the connection by a moment).
pub async fn wait_for_a(server: SocketAddr, name: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = lookup_a(server, name).await;
        if got == [want] {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: expected [{want}], still {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
