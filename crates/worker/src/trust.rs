//! Which server certificates coldsend trusts: the public web roots plus any extra CA
//! certificates from config (a private mail server). Never "accept anything".

use std::path::Path;
use std::sync::Arc;

use lettre::transport::smtp::client::{Certificate, TlsParameters};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("CA file {path}: {message}")]
    CaFile { path: String, message: String },
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// Trusted roots, shared by the SMTP and IMAP clients.
#[derive(Clone)]
pub struct TrustStore {
    extra: Vec<CertificateDer<'static>>,
    rustls: Arc<rustls::ClientConfig>,
}

impl TrustStore {
    pub fn load(extra_ca_files: &[impl AsRef<Path>]) -> Result<Self, TrustError> {
        let mut extra = Vec::new();
        for path in extra_ca_files {
            let path = path.as_ref();
            let fail = |message: String| TrustError::CaFile { path: path.display().to_string(), message };
            let certs: Vec<_> = CertificateDer::pem_file_iter(path)
                .map_err(|e| fail(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| fail(e.to_string()))?;
            if certs.is_empty() {
                return Err(fail("no PEM certificate found".into()));
            }
            extra.extend(certs);
        }
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for cert in &extra {
            roots.add(cert.clone()).map_err(|e| TrustError::Setup(e.to_string()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TrustError::Setup(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self { extra, rustls: Arc::new(config) })
    }

    /// rustls client config for IMAP (TLS 1.2 and 1.3 only).
    pub fn rustls_config(&self) -> Arc<rustls::ClientConfig> {
        self.rustls.clone()
    }

    /// lettre TLS parameters for SMTP to `domain` (TLS 1.2 minimum, same roots).
    pub fn smtp_tls(&self, domain: &str) -> Result<TlsParameters, lettre::transport::smtp::Error> {
        let mut builder = TlsParameters::builder(domain.to_owned());
        for cert in &self.extra {
            builder = builder.add_root_certificate(Certificate::from_der(cert.to_vec())?);
        }
        builder.build_rustls()
    }
}
