//! How a link reaches its broker: URL parsing (`mqtt://`, `mqtts://`, `ws://`) and the
//! rustls client configuration for `mqtts://` (ring provider only; CA from `ca_file` or the
//! system roots; optional client certificate).
//!
//! Owns: the scheme/host/port/path of an endpoint and reading its PEM files. Must never open
//! a connection (rumqttc does) and never install a process-wide crypto provider (an embedding
//! application may have its own).

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Endpoint;

/// How bytes travel to a broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `mqtt://` (or `tcp://`): plain TCP, default port 1883.
    Tcp,
    /// `mqtts://` (or `ssl://`): TLS over TCP with rustls, default port 8883.
    Tls,
    /// `ws://`: MQTT over a WebSocket (subprotocol `mqtt`), default port 80, default path `/`.
    Ws,
}

/// A parsed broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Transport.
    pub scheme: Scheme,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// WebSocket path (`/` when absent); always `/` for the other schemes.
    pub path: String,
}

impl Target {
    /// The URL rumqttc connects a WebSocket to (`ws://host:port/path`).
    pub fn ws_url(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("ws://{host}:{}{}", self.port, self.path)
    }
}

/// Parses `mqtt://host[:port]`, `mqtts://host[:port]` or `ws://host[:port][/path]`.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not a URL (mqtt://host:port)"))?;
    let (scheme, default_port) = match scheme {
        "mqtt" | "tcp" => (Scheme::Tcp, 1883),
        "mqtts" | "ssl" => (Scheme::Tls, 8883),
        "ws" => (Scheme::Ws, 80),
        "wss" => {
            return Err("wss:// is not supported by this build; use mqtts:// or ws://".into());
        }
        other => {
            return Err(format!(
                "unknown scheme {other:?} (mqtt://, mqtts:// or ws://)"
            ));
        }
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if scheme != Scheme::Ws && !path.trim_end_matches('/').is_empty() {
        return Err(format!("{url:?}: expected host:port without a path"));
    }
    if authority.is_empty() || authority.contains(['@', '?', '#']) {
        return Err(format!("{url:?}: expected host:port"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, tail) = v6
            .split_once(']')
            .ok_or_else(|| format!("{url:?}: unclosed ["))?;
        match tail.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if tail.is_empty() => (host, None),
            None => return Err(format!("{url:?}: expected host:port")),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{url:?}: empty host"));
    }
    let port = match port {
        Some(p) => p.parse().map_err(|_| format!("{url:?}: bad port {p:?}"))?,
        None => default_port,
    };
    let path = if scheme == Scheme::Ws { path } else { "/" };
    Ok(Target {
        scheme,
        host: host.to_owned(),
        port,
        path: path.to_owned(),
    })
}

/// The rustls client configuration for a `mqtts://` endpoint: the ring provider, TLS 1.2 and
/// 1.3, roots from `ca_file` (PEM, every certificate in it) or else the system's trust store,
/// and a client certificate when `cert_file`/`key_file` are given.
pub fn tls_config(endpoint: &Endpoint) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match &endpoint.ca_file {
        Some(path) => {
            let certs = read_certs(path, "ca_file")?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "ca_file {}: no usable CA certificate",
                    path.display()
                ));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(format!(
                    "no system CA certificates found ({} errors); give ca_file",
                    found.errors.len()
                ));
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("tls: {e}"))?
    .with_root_certificates(roots);
    let config = match (&endpoint.cert_file, &endpoint.key_file) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert, "cert_file")?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("key_file {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("cert_file and key_file go together".into()),
    };
    Ok(Arc::new(config))
}

fn read_certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{key} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{key} {}: no PEM certificate", path.display()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(scheme: Scheme, host: &str, port: u16, path: &str) -> Target {
        Target {
            scheme,
            host: host.into(),
            port,
            path: path.into(),
        }
    }

    #[test]
    fn urls_parse_to_scheme_host_port_and_path() {
        let cases = [
            (
                "mqtt://127.0.0.1:1884",
                t(Scheme::Tcp, "127.0.0.1", 1884, "/"),
            ),
            (
                "mqtt://hub.example",
                t(Scheme::Tcp, "hub.example", 1883, "/"),
            ),
            (
                "mqtt://hub.example/",
                t(Scheme::Tcp, "hub.example", 1883, "/"),
            ),
            ("mqtts://hub:8884", t(Scheme::Tls, "hub", 8884, "/")),
            ("mqtts://hub", t(Scheme::Tls, "hub", 8883, "/")),
            ("ws://hub:9001/mqtt", t(Scheme::Ws, "hub", 9001, "/mqtt")),
            ("ws://hub", t(Scheme::Ws, "hub", 80, "/")),
            ("mqtt://[::1]:1885", t(Scheme::Tcp, "::1", 1885, "/")),
        ];
        for (url, want) in cases {
            assert_eq!(parse_url(url), Ok(want), "{url}");
        }
        assert_eq!(
            parse_url("ws://[::1]:9001/a/b").unwrap().ws_url(),
            "ws://[::1]:9001/a/b"
        );
    }

    #[test]
    fn unusable_urls_are_refused_with_the_reason() {
        assert!(parse_url("wss://hub").unwrap_err().contains("wss://"));
        assert!(
            parse_url("http://hub")
                .unwrap_err()
                .contains("unknown scheme")
        );
        assert!(parse_url("hub:1883").is_err());
        assert!(parse_url("mqtt://hub:x").unwrap_err().contains("bad port"));
        assert!(parse_url("mqtt://hub:1883/path").is_err());
        assert!(parse_url("mqtt://:1883").is_err());
        assert!(parse_url("mqtt://").is_err());
    }
}
