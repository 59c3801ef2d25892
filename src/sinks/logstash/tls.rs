//! TLS for the Logstash connection, with rustls.
//!
//! Turned on by a `[logstash.tls]` section. The server's certificate is always verified: against
//! the certificate authorities of `ca_file` when it is set, else against the system's trusted
//! roots, and its name against `server_name` (default: the host of the address). A client
//! certificate is sent when `client_cert_file` and `client_key_file` are set (Logstash's tcp
//! input with `ssl_enabled => true` asks for one unless `ssl_client_authentication => none`).
//!
//! There is no plaintext fallback and no switch to turn verification off: a handshake that
//! fails is a failed connection attempt, logged with rustls' reason and retried with the usual
//! backoff.
//!
//! How it fails: files that cannot be read or hold no PEM certificate or key, a certificate
//! and key that do not belong together, or a server name that is not a DNS name or IP address
//! are a [`TlsError`] when `run` starts, naming the file and what to do.

use std::io::{self, Read};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rustls_platform_verifier::BuilderVerifierExt;
use serde::Deserialize;
use thiserror::Error;

/// The `[logstash.tls]` section: its presence turns TLS on.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the certificate authorities that may sign Logstash's certificate (its
    /// `ssl_certificate`). Unset: the system's trusted roots. Relative to the config file.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain to present to Logstash. Needs `client_key_file`. Relative to the
    /// config file.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `client_cert_file`. Relative to the config
    /// file.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// The name Logstash's certificate must carry. Unset: the host of the address.
    #[serde(default)]
    pub server_name: Option<String>,
}

impl TlsConfig {
    /// Makes the file paths absolute against `base` (the config file's directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        for p in [
            &mut self.ca_file,
            &mut self.client_cert_file,
            &mut self.client_key_file,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }
}

/// TLS settings that cannot work.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{}: cannot read the {what}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        what: &'static str,
        /// The cause.
        source: io::Error,
    },
    /// A file holds no usable PEM item.
    #[error("{}: no {what} in it: {problem}; expected a PEM file (-----BEGIN ...-----)", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        what: &'static str,
        /// What was wrong.
        problem: String,
    },
    /// A setting is missing or wrong.
    #[error("logstash.tls: {0}")]
    Setting(String),
}

/// What connections need: the rustls config and the name to verify.
#[derive(Clone, Debug)]
pub struct Tls {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

/// An encrypted connection to Logstash.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// How long to wait after the handshake for the server to refuse the client certificate
/// (with TLS 1.3 it does so after the handshake, in its first message).
const VERDICT_WAIT: Duration = Duration::from_millis(250);

impl Tls {
    /// Reads the certificate files and builds the client configuration for `address`
    /// (`HOST:PORT`).
    pub fn new(config: &TlsConfig, address: &str) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setting(e.to_string()))?;
        let builder = match &config.ca_file {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs(path, "certificate authorities")? {
                    roots.add(cert).map_err(|e| TlsError::Pem {
                        path: path.clone(),
                        what: "usable certificate authority",
                        problem: e.to_string(),
                    })?;
                }
                builder.with_root_certificates(roots)
            }
            None => builder.with_platform_verifier().map_err(|e| {
                TlsError::Setting(format!(
                    "the system's trusted roots are unusable ({e}); set ca_file"
                ))
            })?,
        };
        let client_config = match (&config.client_cert_file, &config.client_key_file) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert, "client certificate")?;
                let key_der = read_key(key)?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                    TlsError::Setting(format!(
                        "client_cert_file {} and client_key_file {} do not go together: {e}",
                        cert.display(),
                        key.display()
                    ))
                })?
            }
            _ => {
                return Err(TlsError::Setting(
                    "client_cert_file and client_key_file go together: set both or neither"
                        .to_owned(),
                ));
            }
        };
        let name = match &config.server_name {
            Some(n) => n.clone(),
            None => host_of(address),
        };
        let server_name = ServerName::try_from(name.clone()).map_err(|_| {
            TlsError::Setting(format!(
                "`{name}` is not a DNS name or IP address to verify the certificate against; set server_name"
            ))
        })?;
        Ok(Tls {
            config: Arc::new(client_config),
            server_name,
        })
    }

    /// Runs the handshake on a connected socket, each step within `timeout`, and waits
    /// briefly for a refusal of the client certificate.
    pub fn connect(&self, mut tcp: TcpStream, timeout: Duration) -> io::Result<TlsStream> {
        let mut conn = ClientConnection::new(self.config.clone(), self.server_name.clone())
            .map_err(io::Error::other)?;
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)?;
        }
        tcp.set_read_timeout(Some(VERDICT_WAIT))?;
        let mut stream = StreamOwned::new(conn, tcp);
        let mut scratch = [0u8; 512];
        match stream.read(&mut scratch) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "Logstash closed the connection after the TLS handshake",
                ));
            }
            // Logstash sends nothing on a tcp input; data would be ignored anyway.
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
        stream.sock.set_read_timeout(None)?;
        stream.sock.set_write_timeout(None)?;
        Ok(stream)
    }
}

/// `HOST` of `HOST:PORT`, without the brackets of an IPv6 address.
fn host_of(address: &str) -> String {
    crate::settings::HostPort::parse(address)
        .map_or_else(|_| address.to_owned(), |hp| hp.bare_host().to_owned())
}

fn read_file(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        what,
        source,
    })
}

fn read_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            what,
            problem: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            what,
            problem: "no CERTIFICATE block".to_owned(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_file(path, "client key")?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        what: "client key",
        problem: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_of_an_address() {
        assert_eq!(host_of("logstash.example:5044"), "logstash.example");
        assert_eq!(host_of("[::1]:5044"), "::1");
        assert_eq!(host_of("127.0.0.1:5044"), "127.0.0.1");
    }

    #[test]
    fn bad_settings_name_the_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("ca.pem");
        let err = Tls::new(
            &TlsConfig {
                ca_file: Some(missing.clone()),
                ..TlsConfig::default()
            },
            "logstash:5044",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(&*missing.to_string_lossy()) && err.contains("cannot read"),
            "{err}"
        );

        let not_pem = dir.path().join("not.pem");
        std::fs::write(&not_pem, "hello\n").unwrap();
        let err = Tls::new(
            &TlsConfig {
                ca_file: Some(not_pem),
                ..TlsConfig::default()
            },
            "logstash:5044",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("expected a PEM file"), "{err}");

        let err = Tls::new(
            &TlsConfig {
                client_cert_file: Some(dir.path().join("c.pem")),
                ..TlsConfig::default()
            },
            "logstash:5044",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("set both or neither"), "{err}");
    }
}
