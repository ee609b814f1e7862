//! TLS to the server (feature `tls-rustls`): the builder's certificates,
//! the rustls crypto provider, and telling a refused handshake (not
//! retryable) from a lost connection (retryable).
//!
//! The `redis` crate does the TLS itself (rustls through `tokio-rustls`)
//! for every `rediss://` URL: it trusts Mozilla's root certificates
//! (`webpki-roots`, compiled in) unless it is given a CA of its own, and it
//! checks the server's name (or IP address) against its certificate. This
//! module hands it what the builder was told: a private CA, and a client
//! certificate for mutual TLS.

use std::sync::Arc;

use redis::{ClientTlsConfig, RedisError, TlsCertificates};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS to the server failed. Carried as the source of
/// [`session_core::Error::Backend`], which is then never retryable: the
/// same handshake with the same certificates fails the same way.
///
/// The `rustls` and `redis` errors inside are boxed, so that their major
/// versions are not part of this crate's API: downcast them
/// (`reason.downcast_ref::<rustls::Error>()`) for the details.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The TLS handshake failed: the server's certificate is not trusted
    /// (signed by another CA, expired, for another name), or the server
    /// refused this client (no client certificate, or one it does not
    /// trust). Its source is the driver's error.
    #[error(
        "the TLS handshake with the server failed: {reason} (check the CA given to \
         `tls_ca_pem` against the server's certificate, the name or address in the URL \
         against the certificate's, and for mutual TLS the client certificate)"
    )]
    Handshake {
        /// What rustls reported: a boxed `rustls::Error`.
        reason: session_core::BoxError,
        /// The driver's error: a boxed `redis::RedisError`.
        #[source]
        source: session_core::BoxError,
    },
    /// A PEM given to the builder does not hold what it should.
    #[error("the {what} given to the builder is not usable: {problem}")]
    Pem {
        /// Which PEM: `CA certificates (tls_ca_pem)`, `client certificate
        /// chain (tls_client_cert_pem)` or `client private key
        /// (tls_client_cert_pem)`.
        what: &'static str,
        /// What is wrong with it.
        #[source]
        problem: PemProblem,
    },
    /// TLS options were given for a URL that is not `rediss://`.
    #[error(
        "TLS options (tls_ca_pem, tls_client_cert_pem) were given, but the URL is not \
         `rediss://` (the connection would not use TLS)"
    )]
    NotTls,
}

/// What is wrong with a PEM given to the builder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PemProblem {
    /// It holds no item of the expected kind.
    #[error("it holds no PEM item of the expected kind")]
    Empty,
    /// It does not parse as PEM. The source is a boxed
    /// `rustls::pki_types::pem::Error`.
    #[error("it does not parse as PEM")]
    Malformed(#[source] session_core::BoxError),
    /// A certificate in it is not one rustls can use as a trust anchor.
    /// The source is a boxed `rustls::Error`.
    #[error("a certificate in it cannot be a trust anchor")]
    Anchor(#[source] session_core::BoxError),
}

const CA: &str = "CA certificates (tls_ca_pem)";
const CHAIN: &str = "client certificate chain (tls_client_cert_pem)";
const KEY: &str = "client private key (tls_client_cert_pem)";

/// What the builder was told about TLS. Never printed: the key is secret.
#[derive(Clone, Default)]
pub(crate) struct TlsOptions {
    /// CA certificates (PEM) to trust instead of Mozilla's roots.
    pub(crate) ca: Option<Vec<u8>>,
    /// A client certificate chain and its private key (PEM each).
    pub(crate) client: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsOptions {
    /// Whether anything was set.
    pub(crate) fn is_set(&self) -> bool {
        self.ca.is_some() || self.client.is_some()
    }

    /// For `Debug`: which options are set, never their contents.
    pub(crate) fn describe(&self) -> &'static str {
        match (self.ca.is_some(), self.client.is_some()) {
            (false, false) => "default roots",
            (true, false) => "private CA",
            (false, true) => "default roots, client certificate",
            (true, true) => "private CA, client certificate",
        }
    }

    /// The certificates for the driver, after checking each PEM here (the
    /// driver would take an empty CA bundle and fail every handshake
    /// later, with a less clear error). `None` when nothing was set.
    pub(crate) fn certificates(&self) -> Result<Option<TlsCertificates>, TlsError> {
        if !self.is_set() {
            return Ok(None);
        }
        if let Some(ca) = &self.ca {
            check_ca(ca)?;
        }
        if let Some((chain, key)) = &self.client {
            check_items(CHAIN, CertificateDer::pem_slice_iter(chain))?;
            PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::Pem {
                what: KEY,
                problem: match e {
                    rustls::pki_types::pem::Error::NoItemsFound => PemProblem::Empty,
                    other => PemProblem::Malformed(Box::new(other)),
                },
            })?;
        }
        Ok(Some(TlsCertificates {
            client_tls: self.client.as_ref().map(|(chain, key)| ClientTlsConfig {
                client_cert: chain.clone(),
                client_key: key.clone(),
            }),
            root_cert: self.ca.clone(),
        }))
    }
}

/// Every item parses, and there is at least one.
fn check_items<T>(
    what: &'static str,
    items: impl Iterator<Item = Result<T, rustls::pki_types::pem::Error>>,
) -> Result<Vec<T>, TlsError> {
    let items = items
        .collect::<Result<Vec<T>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            problem: PemProblem::Malformed(Box::new(e)),
        })?;
    if items.is_empty() {
        return Err(TlsError::Pem {
            what,
            problem: PemProblem::Empty,
        });
    }
    Ok(items)
}

/// The CA bundle parses, holds a certificate, and each one can be a trust
/// anchor (as the driver will use them).
fn check_ca(pem: &[u8]) -> Result<(), TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in check_items(CA, CertificateDer::pem_slice_iter(pem))? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            what: CA,
            problem: PemProblem::Anchor(Box::new(e)),
        })?;
    }
    Ok(())
}

/// Makes sure rustls has a process-wide crypto provider before the driver
/// builds its first TLS configuration: if none is installed, installs
/// ring's. (rustls picks one by itself only when exactly one provider is
/// compiled in; an application that also has rustls's default `aws-lc-rs`
/// would otherwise make the driver panic. An application that installs
/// its own provider first keeps it.)
pub(crate) fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Fails only when another thread installed one in between: then
        // that one is the default, which is all that is needed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Whether a connection to `info` uses TLS (a `rediss://` URL).
pub(crate) fn is_tls(info: &redis::ConnectionInfo) -> bool {
    matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. })
}

/// The rustls error inside a driver error, when the error is a failed TLS
/// handshake (or a TLS alert from the server).
///
/// The driver wraps the I/O error of `tokio-rustls` (whose inner error is
/// the `rustls::Error`) in an `Arc`, which is the driver error's source.
pub(crate) fn handshake_failure(err: &RedisError) -> Option<rustls::Error> {
    let source = std::error::Error::source(err)?;
    let inner: &(dyn std::error::Error + 'static) =
        match source.downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>() {
            Some(shared) => shared.as_ref(),
            None => source,
        };
    let io = inner.downcast_ref::<std::io::Error>()?;
    io.get_ref()?.downcast_ref::<rustls::Error>().cloned()
}
