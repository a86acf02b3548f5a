use std::net::SocketAddr;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

const STEP: Duration = Duration::from_secs(10);

/// A throw-away PKI written under a fresh temporary directory (removed on drop).
pub(crate) struct Pki {
    pub dir: PathBuf,
    pub ca_pem: String,
    pub files: TlsConfig,
    /// (certificate PEM, key PEM) of a client whose CN is `alice`.
    pub client: (String, String),
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) fn pki(tag: &str, client_ca: bool) -> Pki {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("canopy-tls-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("canopy test CA {tag}"));
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |names: Vec<String>, cn: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (cert, key) = leaf(vec!["localhost".into(), "127.0.0.1".into()], "localhost");
    let client = leaf(Vec::new(), "alice");
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let files = TlsConfig {
        cert: write("server.pem", &cert),
        key: write("server.key", &key),
        client_ca: client_ca.then(|| write("ca.pem", &ca.pem())),
    };
    Pki {
        ca_pem: ca.pem(),
        dir,
        files,
        client,
    }
}

fn connector(ca_pem: &str, client: Option<&(String, String)>) -> tokio_rustls::TlsConnector {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Accepts one connection with `tls`, echoes one line's worth of bytes back and reports the
/// client's CN (or the handshake error).
async fn echo_server(
    tls: Arc<Tls>,
) -> (
    SocketAddr,
    tokio::task::JoinHandle<Result<Option<String>, String>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (mut s, cn) = tokio::time::timeout(STEP, tls.accept(tcp))
            .await
            .map_err(|_| "handshake timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        s.write_all(&buf).await.map_err(|e| e.to_string())?;
        s.flush().await.map_err(|e| e.to_string())?;
        Ok(cn)
    });
    (addr, task)
}

async fn client_round_trip(
    addr: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
) -> std::io::Result<[u8; 5]> {
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut s = connector.connect(name, tcp).await?;
    s.write_all(b"hello").await?;
    s.flush().await?;
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

#[tokio::test]
async fn a_tls_client_talks_through_the_acceptor_without_a_certificate() {
    let pki = pki("plain", false);
    let tls = Arc::new(Tls::load(&pki.files).unwrap());
    let (addr, server) = echo_server(tls).await;
    let got = client_round_trip(addr, &connector(&pki.ca_pem, None))
        .await
        .unwrap();
    assert_eq!(&got, b"hello");
    assert_eq!(server.await.unwrap(), Ok(None));
}

#[tokio::test]
async fn a_client_certificate_yields_its_common_name() {
    let pki = pki("cn", true);
    let tls = Arc::new(Tls::load(&pki.files).unwrap());
    let (addr, server) = echo_server(tls).await;
    let c = connector(&pki.ca_pem, Some(&pki.client));
    assert_eq!(&client_round_trip(addr, &c).await.unwrap(), b"hello");
    assert_eq!(server.await.unwrap(), Ok(Some("alice".to_owned())));
}

#[tokio::test]
async fn without_a_client_certificate_the_handshake_fails_when_one_is_required() {
    let pki = pki("nocert", true);
    let tls = Arc::new(Tls::load(&pki.files).unwrap());
    let (addr, server) = echo_server(tls).await;
    let _ = client_round_trip(addr, &connector(&pki.ca_pem, None)).await;
    let err = server.await.unwrap().unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let pki = pki("ca1", true);
    let other = pki_other_client();
    let tls = Arc::new(Tls::load(&pki.files).unwrap());
    let (addr, server) = echo_server(tls).await;
    let _ = client_round_trip(addr, &connector(&pki.ca_pem, Some(&other.client))).await;
    assert!(server.await.unwrap().is_err());
}

fn pki_other_client() -> Pki {
    pki("other", false)
}

#[tokio::test]
async fn plaintext_mqtt_on_a_tls_listener_is_refused() {
    let pki = pki("plaintext", false);
    let tls = Arc::new(Tls::load(&pki.files).unwrap());
    let (addr, server) = echo_server(tls).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    // CONNECT 3.1.1, client id "t".
    let connect = [
        0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 0, 0, 1, b't',
    ];
    tcp.write_all(&connect).await.unwrap();
    let err = tokio::time::timeout(STEP, server)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(!err.is_empty());
    // The server closed (after a TLS alert at most): no CONNACK ever comes back.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(STEP, tcp.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(!rest.starts_with(&[0x20]), "{rest:?}");
}

#[tokio::test]
async fn reload_swaps_certificates_and_keeps_the_old_ones_on_error() {
    let first = pki("reload1", false);
    let tls = Arc::new(Tls::load(&first.files).unwrap());

    // Broken files: reload fails, the old certificate still serves.
    std::fs::write(&first.files.cert, "not a certificate").unwrap();
    assert!(matches!(tls.reload(), Err(TlsError::File { .. })));
    let (addr, server) = echo_server(Arc::clone(&tls)).await;
    assert!(
        client_round_trip(addr, &connector(&first.ca_pem, None))
            .await
            .is_ok()
    );
    server.await.unwrap().unwrap();

    // New files under the same names: reload succeeds and the new CA is needed.
    let second = pki("reload2", false);
    std::fs::copy(&second.files.cert, &first.files.cert).unwrap();
    std::fs::copy(&second.files.key, &first.files.key).unwrap();
    tls.reload().unwrap();
    let (addr, server) = echo_server(Arc::clone(&tls)).await;
    assert!(
        client_round_trip(addr, &connector(&first.ca_pem, None))
            .await
            .is_err()
    );
    let _ = server.await;
    let (addr, server) = echo_server(tls).await;
    assert!(
        client_round_trip(addr, &connector(&second.ca_pem, None))
            .await
            .is_ok()
    );
    server.await.unwrap().unwrap();
}

#[test]
fn load_errors_name_the_file() {
    let pki = pki("errors", true);
    let missing = TlsConfig {
        cert: pki.dir.join("nope.pem"),
        ..pki.files.clone()
    };
    let e = Tls::load(&missing).unwrap_err();
    assert!(e.to_string().contains("nope.pem"), "{e}");

    let other = pki_other_client();
    let mismatched = TlsConfig {
        key: other.files.key.clone(),
        ..pki.files.clone()
    };
    let e = Tls::load(&mismatched).unwrap_err();
    assert!(matches!(e, TlsError::Config(_)), "{e}");

    let empty_ca = pki.dir.join("empty.pem");
    std::fs::write(&empty_ca, "").unwrap();
    let e = Tls::load(&TlsConfig {
        client_ca: Some(empty_ca),
        ..pki.files.clone()
    })
    .unwrap_err();
    assert!(e.to_string().contains("empty.pem"), "{e}");
}

#[test]
fn common_name_is_read_from_the_subject() {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "sensor-7");
    let cert = params.self_signed(&key).unwrap();
    assert_eq!(common_name(cert.der()), Some("sensor-7".to_owned()));
    let bare = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut bare = bare;
    bare.distinguished_name = rcgen::DistinguishedName::new();
    let cert = bare.self_signed(&key).unwrap();
    assert_eq!(common_name(cert.der()), None);
    assert_eq!(common_name(&CertificateDer::from(vec![1, 2, 3])), None);
}
