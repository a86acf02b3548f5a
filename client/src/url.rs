//! Broker URLs of the form `mqtt://[user[:password]@]host[:port][/topic]`, as accepted by
//! mosquitto's `-L`.
//!
//! Owns parsing only; it must never resolve names or open sockets. Schemes that need TLS or
//! WebSockets are refused with a clear error rather than silently connecting in clear text.

use thiserror::Error;

/// Port used when a URL names none.
pub const DEFAULT_PORT: u16 = 1883;

/// Why a broker URL was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum UrlError {
    /// The text has no `scheme://` prefix.
    #[error("broker URL `{0}` must start with mqtt:// or tcp://")]
    MissingScheme(String),
    /// The scheme is known but not supported by this client.
    #[error("URL scheme `{0}` is not supported (use mqtt:// or tcp://)")]
    UnsupportedScheme(String),
    /// Nothing between `//` and the port or path.
    #[error("broker URL has no host")]
    MissingHost,
    /// The port is not a number in 1..=65535.
    #[error("invalid port `{0}` in broker URL")]
    InvalidPort(String),
    /// An IPv6 literal opened with `[` is not closed.
    #[error("unterminated IPv6 literal in broker URL")]
    UnterminatedIpv6,
}

/// A parsed broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or IP literal, without the brackets of an IPv6 literal.
    pub host: String,
    /// TCP port, [`DEFAULT_PORT`] when absent.
    pub port: u16,
    /// User name from the user-info part, if any.
    pub username: Option<String>,
    /// Password from the user-info part, if any.
    pub password: Option<String>,
    /// Path after the authority without its leading `/`, used as topic; `None` when empty.
    pub topic: Option<String>,
}

impl BrokerUrl {
    /// Parses `mqtt://[user[:password]@]host[:port][/topic]` (`tcp://` is accepted too).
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| UrlError::MissingScheme(text.to_owned()))?;
        match scheme.to_ascii_lowercase().as_str() {
            "mqtt" | "tcp" => {}
            other => return Err(UrlError::UnsupportedScheme(other.to_owned())),
        }
        let (authority, path) = match rest.split_once('/') {
            Some((authority, path)) => (authority, path),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(info) => match info.split_once(':') {
                Some((user, pass)) => (Some(user.to_owned()), Some(pass.to_owned())),
                None => (Some(info.to_owned()), None),
            },
        };
        let (host, port) = split_host_port(hostport)?;
        if host.is_empty() {
            return Err(UrlError::MissingHost);
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            username,
            password,
            topic: (!path.is_empty()).then(|| path.to_owned()),
        })
    }
}

fn split_host_port(hostport: &str) -> Result<(&str, u16), UrlError> {
    if let Some(inner) = hostport.strip_prefix('[') {
        let (host, after) = inner.split_once(']').ok_or(UrlError::UnterminatedIpv6)?;
        return match after {
            "" => Ok((host, DEFAULT_PORT)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, parse_port(port)?)),
                None => Err(UrlError::InvalidPort(after.to_owned())),
            },
        };
    }
    match hostport.rsplit_once(':') {
        Some((host, port)) => Ok((host, parse_port(port)?)),
        None => Ok((hostport, DEFAULT_PORT)),
    }
}

fn parse_port(port: &str) -> Result<u16, UrlError> {
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(UrlError::InvalidPort(port.to_owned())),
        Ok(port) => Ok(port),
    }
}

/// The host as rumqttc must receive it: it joins host and port with `:` before resolving, so
/// an IPv6 literal needs its brackets back (`[::1]` so that `[::1]:1883` parses).
pub fn host_for_connect(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_are_taken_from_the_authority() {
        let url = BrokerUrl::parse("mqtt://broker.example:1884").unwrap();
        assert_eq!(url.host, "broker.example");
        assert_eq!(url.port, 1884);
        assert_eq!(url.username, None);
        assert_eq!(url.topic, None);
    }

    #[test]
    fn missing_port_defaults_to_1883() {
        assert_eq!(BrokerUrl::parse("mqtt://h").unwrap().port, 1883);
        assert_eq!(BrokerUrl::parse("tcp://h/").unwrap().port, 1883);
    }

    #[test]
    fn user_info_and_topic_path_are_extracted() {
        let url = BrokerUrl::parse("mqtt://alice:s3:cr@et@h:1/a/b/#").unwrap();
        assert_eq!(url.username.as_deref(), Some("alice"));
        assert_eq!(url.password.as_deref(), Some("s3:cr@et"));
        assert_eq!(url.host, "h");
        assert_eq!(url.port, 1);
        assert_eq!(url.topic.as_deref(), Some("a/b/#"));
    }

    #[test]
    fn ipv6_literals_keep_their_colons() {
        let url = BrokerUrl::parse("mqtt://[::1]:2000").unwrap();
        assert_eq!(url.host, "::1");
        assert_eq!(url.port, 2000);
        assert_eq!(BrokerUrl::parse("mqtt://[fe80::1]").unwrap().port, 1883);
        assert_eq!(host_for_connect("::1"), "[::1]");
        assert_eq!(host_for_connect("localhost"), "localhost");
    }

    #[test]
    fn bad_urls_are_refused_with_the_reason() {
        assert!(matches!(
            BrokerUrl::parse("localhost:1883"),
            Err(UrlError::MissingScheme(_))
        ));
        assert_eq!(
            BrokerUrl::parse("mqtts://h"),
            Err(UrlError::UnsupportedScheme("mqtts".into()))
        );
        assert_eq!(BrokerUrl::parse("mqtt://:1883"), Err(UrlError::MissingHost));
        assert_eq!(
            BrokerUrl::parse("mqtt://h:0"),
            Err(UrlError::InvalidPort("0".into()))
        );
        assert_eq!(
            BrokerUrl::parse("mqtt://h:http"),
            Err(UrlError::InvalidPort("http".into()))
        );
        assert_eq!(
            BrokerUrl::parse("mqtt://[::1"),
            Err(UrlError::UnterminatedIpv6)
        );
    }
}
