//! TLS for the HTTPS listener: a configured certificate and key, or a
//! self-signed pair generated (with rcgen) into the data directory on
//! first start.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// File names of the generated pair in the data directory.
pub const GENERATED_CERT: &str = "cim-tls-cert.pem";
pub const GENERATED_KEY: &str = "cim-tls-key.pem";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0}: no certificate found in PEM file")]
    NoCert(PathBuf),
    #[error("{0}: no private key found in PEM file")]
    NoKey(PathBuf),
    #[error("generating a self-signed certificate: {0}")]
    Generate(String),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The certificate and key files to use: the configured ones, or the
/// generated pair in `data_dir` (created when absent). Returns
/// `(cert, key, generated_now)`.
pub fn ensure_cert(
    configured: Option<(&Path, &Path)>,
    data_dir: &Path,
    names: &[String],
) -> Result<(PathBuf, PathBuf, bool), TlsError> {
    if let Some((c, k)) = configured {
        return Ok((c.to_path_buf(), k.to_path_buf(), false));
    }
    let cert = data_dir.join(GENERATED_CERT);
    let key = data_dir.join(GENERATED_KEY);
    if cert.exists() && key.exists() {
        return Ok((cert, key, false));
    }
    fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
    let ck = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let _ = fs::remove_file(&key);
    let mut kf = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key)
        .map_err(io_err(&key))?;
    kf.write_all(ck.signing_key.serialize_pem().as_bytes())
        .map_err(io_err(&key))?;
    fs::write(&cert, ck.cert.pem()).map_err(io_err(&cert))?;
    Ok((cert, key, true))
}

/// Builds the rustls server configuration (ring provider, TLS 1.2 and 1.3).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cert_pem = fs::read(cert).map_err(io_err(cert))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(io_err(cert))?;
    if certs.is_empty() {
        return Err(TlsError::NoCert(cert.to_path_buf()));
    }
    let key_pem = fs::read(key).map_err(io_err(key))?;
    let key_der: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(io_err(key))?
        .ok_or_else(|| TlsError::NoKey(key.to_path_buf()))?;
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key_der)?;
    Ok(Arc::new(cfg))
}
