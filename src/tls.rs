//! Optional TLS on the internal gRPC hops (gateway → pay-svc → order-svc), with rustls.
//!
//! Servers serve TLS when given a certificate chain and its key (`GRPC_TLS_CERT_FILE`,
//! `GRPC_TLS_KEY_FILE`, both PEM); clients use TLS for every `https://` address and trust the
//! CA certificates of `GRPC_TLS_CA_FILE`, or the system's trust store when it is not set. TLS
//! only encrypts the hop and proves the server's identity: callers still authenticate with
//! the bearer token ([`crate::auth`]).
//!
//! The files are read and checked once at start, so a missing, unreadable or malformed one
//! stops the service with one line naming the setting. No error ever quotes a file's content.

use std::path::Path;

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// The server's certificate chain (PEM, the leaf first).
pub const CERT_FILE: &str = "GRPC_TLS_CERT_FILE";
/// The private key of [`CERT_FILE`]'s leaf certificate (PEM: PKCS#8, PKCS#1 or SEC1).
pub const KEY_FILE: &str = "GRPC_TLS_KEY_FILE";
/// The CA certificates a client trusts for `https://` addresses (PEM bundle).
pub const CA_FILE: &str = "GRPC_TLS_CA_FILE";

/// A TLS setting the service cannot start with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{setting}: {problem}")]
pub struct TlsError {
    /// The environment variable's name.
    pub setting: &'static str,
    pub problem: String,
}

fn invalid(setting: &'static str, problem: impl Into<String>) -> TlsError {
    TlsError {
        setting,
        problem: problem.into(),
    }
}

/// The server side: `None` (plaintext) when neither file is set, TLS with the certificate and
/// key when both are, an error naming the missing one when only one is.
pub fn server_config(
    cert_file: Option<&Path>,
    key_file: Option<&Path>,
) -> Result<Option<ServerTlsConfig>, TlsError> {
    let (cert_file, key_file) = match (cert_file, key_file) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        (Some(_), None) => {
            return Err(invalid(
                KEY_FILE,
                format!(
                    "required when {CERT_FILE} is set (TLS needs both, or neither for plaintext)"
                ),
            ));
        }
        (None, Some(_)) => {
            return Err(invalid(
                CERT_FILE,
                format!(
                    "required when {KEY_FILE} is set (TLS needs both, or neither for plaintext)"
                ),
            ));
        }
    };
    let cert_pem = read(CERT_FILE, cert_file)?;
    certificates(CERT_FILE, cert_file, &cert_pem)?;
    let key_pem = read(KEY_FILE, key_file)?;
    PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|error| invalid(KEY_FILE, pem_problem(key_file, &error, "private key")))?;
    let config = ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem));
    // rustls checks here that the key belongs to the certificate and is of a usable kind.
    tonic::transport::Server::builder()
        .tls_config(config.clone())
        .map_err(|error| {
            invalid(
                KEY_FILE,
                format!(
                    "`{}` and {CERT_FILE} `{}` do not make a usable identity: {}",
                    key_file.display(),
                    cert_file.display(),
                    crate::error_chain(&error)
                ),
            )
        })?;
    Ok(Some(config))
}

/// The client side: what `https://` addresses are checked against. Plain `http://` addresses
/// ignore it.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    /// `None`: the system's trust store.
    ca: Option<Certificate>,
}

impl ClientTls {
    /// Trusts the CA certificates in `ca_file`, or the system's trust store when `None`.
    pub fn load(ca_file: Option<&Path>) -> Result<ClientTls, TlsError> {
        let Some(path) = ca_file else {
            return Ok(ClientTls::default());
        };
        let pem = read(CA_FILE, path)?;
        certificates(CA_FILE, path, &pem)?;
        Ok(ClientTls {
            ca: Some(Certificate::from_pem(pem)),
        })
    }

    /// The tonic configuration for one `https://` endpoint (the URL's host is the name the
    /// server's certificate must carry).
    pub fn config(&self) -> ClientTlsConfig {
        match &self.ca {
            Some(ca) => ClientTlsConfig::new().ca_certificate(ca.clone()),
            None => ClientTlsConfig::new().with_native_roots(),
        }
    }
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| {
        invalid(
            setting,
            format!("cannot read `{}`: {error}", path.display()),
        )
    })
}

/// Checks that `pem` holds at least one certificate and nothing malformed.
fn certificates(setting: &'static str, path: &Path, pem: &[u8]) -> Result<(), TlsError> {
    let mut count = 0;
    for certificate in CertificateDer::pem_slice_iter(pem) {
        certificate.map_err(|error| invalid(setting, pem_problem(path, &error, "certificate")))?;
        count += 1;
    }
    if count == 0 {
        return Err(invalid(
            setting,
            pem_problem(
                path,
                &rustls_pki_types::pem::Error::NoItemsFound,
                "certificate",
            ),
        ));
    }
    Ok(())
}

/// What is wrong with a PEM file, in words that never quote its content (a key file's lines
/// are the key).
fn pem_problem(path: &Path, error: &rustls_pki_types::pem::Error, wanted: &str) -> String {
    use rustls_pki_types::pem::Error;
    let what = match error {
        Error::NoItemsFound => format!("holds no PEM {wanted} (-----BEGIN ...----- block)"),
        Error::MissingSectionEnd { .. } => "has a PEM block without its END line".to_owned(),
        Error::IllegalSectionStart { .. } => "has a malformed PEM BEGIN line".to_owned(),
        Error::Base64Decode(_) => "has a PEM block that is not valid base64".to_owned(),
        Error::SectionTooLarge => "has a PEM block that is too large".to_owned(),
        _ => format!("is not a valid PEM {wanted}"),
    };
    format!("`{}` {what}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neither_file_is_plaintext_and_half_a_pair_names_the_missing_one() {
        let unused = Path::new("/nonexistent/unused.pem");
        assert!(matches!(server_config(None, None), Ok(None)));
        let error = server_config(Some(unused), None).unwrap_err();
        assert_eq!(error.setting, KEY_FILE);
        let error = server_config(None, Some(unused)).unwrap_err();
        assert_eq!(error.setting, CERT_FILE);
        let error = server_config(Some(unused), Some(unused)).unwrap_err();
        assert_eq!(error.setting, CERT_FILE);
        assert!(error.problem.contains("cannot read"), "{error}");
    }

    #[test]
    fn a_client_without_a_ca_file_uses_the_system_store() {
        assert!(ClientTls::load(None).unwrap().ca.is_none());
        let error = ClientTls::load(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert_eq!(error.setting, CA_FILE);
    }
}
