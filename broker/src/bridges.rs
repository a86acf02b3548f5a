//! Embedded bridges (`[[bridge]]`): their configuration as the broker starts them.
//!
//! Owns the choice of each embedded bridge's data directory and of its in-process
//! identity: a bridge whose local side is one of this broker's own listeners logs in with
//! a token made for it at start-up (`auth::internal`), which is how the access seam knows
//! it is this broker's bridge — never by its client id. Must never hand a token to a
//! local side that points anywhere else.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use canopy_metabroker::BridgeConfig;

use crate::auth::Auth;
use crate::config::{Config, ListenerConfig};

/// The embedded bridges of `config`, ready to spawn once the listeners are bound at
/// `bound` (in the order of `config.listener`).
pub fn prepare(config: &Config, bound: &[SocketAddr], auth: &Auth) -> Vec<BridgeConfig> {
    config
        .bridge
        .iter()
        .cloned()
        .map(|mut b| {
            if b.queue.dir.is_none() {
                b.queue.dir = Some(config.data_dir.join(format!("bridge-{}", b.name)));
            }
            if serves_url(&config.listener, bound, &b.local.url) {
                let (user, token) = auth.bridge_tokens().issue(&b.name, &b.local_client_id());
                b.local.username = Some(user);
                b.local.password = Some(token);
            } else {
                tracing::warn!(
                    bridge = %b.name,
                    url = %b.local.url,
                    "the bridge's local side is not one of this broker's listeners: it logs in with its configured credentials, without an in-process identity"
                );
            }
            b
        })
        .collect()
}

/// Whether `url` (`mqtt://`, `mqtts://`, `ws://`, `wss://` with an IP address or
/// `localhost`) names one of the listeners bound at `bound`, with the same transport.
fn serves_url(listeners: &[ListenerConfig], bound: &[SocketAddr], url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    let (tls, websocket) = match scheme {
        "mqtt" | "tcp" => (false, false),
        "mqtts" | "ssl" => (true, false),
        "ws" => (false, true),
        "wss" => (true, true),
        _ => return false,
    };
    let authority = rest.split('/').next().unwrap_or("");
    let Some(target) = parse_authority(authority) else {
        return false;
    };
    listeners.iter().zip(bound).any(|(l, addr)| {
        l.tls.is_some() == tls
            && l.websocket == websocket
            && addr.port() == target.port()
            && (addr.ip() == target.ip()
                || (addr.ip().is_unspecified() && target.ip().is_loopback()))
    })
}

/// `host:port` with an IP literal (`[::1]:1883` for IPv6) or `localhost`.
fn parse_authority(authority: &str) -> Option<SocketAddr> {
    if let Ok(addr) = authority.parse::<SocketAddr>() {
        return Some(addr);
    }
    let (host, port) = authority.rsplit_once(':')?;
    let port = port.parse().ok()?;
    (host == "localhost").then_some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(bind: &str, tls: bool, websocket: bool) -> ListenerConfig {
        let mut l = ListenerConfig {
            bind: bind.parse().unwrap(),
            websocket,
            ..ListenerConfig::default()
        };
        if tls {
            l.tls = Some(crate::config::TlsConfig {
                cert: "c.pem".into(),
                key: "k.pem".into(),
                client_ca: None,
            });
        }
        l
    }

    #[test]
    fn a_token_goes_only_to_this_brokers_own_listener_with_its_transport() {
        let ls = vec![
            listener("127.0.0.1:0", false, false),
            listener("0.0.0.0:0", true, false),
            listener("127.0.0.1:0", false, true),
        ];
        let bound: Vec<SocketAddr> = ["127.0.0.1:1883", "0.0.0.0:8883", "127.0.0.1:8080"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let cases = [
            ("mqtt://127.0.0.1:1883", true),
            ("mqtt://localhost:1883", true),
            ("mqtt://127.0.0.1:1884", false),
            ("mqtt://10.0.0.1:1883", false),
            ("mqtt://example.org:1883", false),
            ("mqtts://127.0.0.1:8883", true),
            ("mqtt://127.0.0.1:8883", false),
            ("ws://127.0.0.1:8080/mqtt", true),
            ("wss://127.0.0.1:8080/mqtt", false),
            ("http://127.0.0.1:1883", false),
            ("127.0.0.1:1883", false),
        ];
        for (url, expected) in cases {
            assert_eq!(serves_url(&ls, &bound, url), expected, "{url}");
        }
    }
}
