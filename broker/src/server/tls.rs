//! TLS for listeners (rustls, ring provider): a reloadable acceptor built from a listener's
//! `tls = { cert, key, client_ca }`, and the client certificate's Common Name for
//! `use_identity_as_username`.
//!
//! Owns loading the PEM files into a `rustls::ServerConfig`, swapping it on reload (the old
//! one stays when the new files fail), and the TLS handshake over an accepted stream. Must
//! never install a process-wide crypto provider, never read MQTT bytes and never accept a
//! client without a certificate when `client_ca` is set.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;

use crate::config::TlsConfig;

/// Why a listener's TLS files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{}: {message}", path.display())]
    File {
        /// The file (`cert`, `key` or `client_ca`).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the combination (a key that does not match the certificate, ...).
    #[error("tls: {0}")]
    Config(String),
}

/// A listener's TLS acceptor; [`Tls::reload`] swaps in new files without touching open
/// connections.
#[derive(Debug)]
pub struct Tls {
    files: TlsConfig,
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    /// Loads the files; an error here stops the broker from starting.
    pub fn load(files: &TlsConfig) -> Result<Tls, TlsError> {
        Ok(Tls {
            files: files.clone(),
            current: RwLock::new(server_config(files)?),
        })
    }

    /// Re-reads the files (SIGHUP). On error the previous certificates stay in force.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.files)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = config;
        Ok(())
    }

    /// Runs the TLS handshake over `stream` (the caller bounds it with a timeout). Returns
    /// the TLS stream and the Common Name of the client's certificate, if it sent one.
    pub async fn accept<S>(&self, stream: S) -> std::io::Result<(TlsStream<S>, Option<String>)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let config = Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()));
        let tls = tokio_rustls::TlsAcceptor::from(config)
            .accept(stream)
            .await?;
        let cn = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| common_name(leaf));
        Ok((tls, cn))
    }
}

/// Builds the rustls server configuration: TLS 1.2 and 1.3 with the ring provider, the
/// chain and key from `files`, and client certificates required when `client_ca` is set.
pub fn server_config(files: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = read_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::File {
        path: files.key.clone(),
        message: format!("no usable private key: {e}"),
    })?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(read_certs(ca)?);
            if added == 0 {
                return Err(TlsError::File {
                    path: ca.clone(),
                    message: "no usable CA certificate".to_owned(),
                });
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("cert and key: {e}")))?;
    Ok(Arc::new(config))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::File {
            path: path.to_path_buf(),
            message: "no PEM certificate".to_owned(),
        });
    }
    Ok(certs)
}

/// The first Common Name of a DER certificate's subject, if it has one that is UTF-8.
pub fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

#[cfg(test)]
#[path = "tls_tests.rs"]
pub(crate) mod tests;
