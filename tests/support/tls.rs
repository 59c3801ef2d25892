//! Certificates and a TLS Logstash for the TLS tests.
//!
//! [`Pki::create`] makes a certificate authority, a server certificate for `localhost` and
//! `127.0.0.1` signed by it, a client certificate signed by it, and a second, unrelated
//! authority, all as PEM files. [`TlsLogstash`] is a `tcp` input with `ssl_enabled => true`:
//! it runs the rustls server handshake (requiring a client certificate signed by the authority,
//! as Logstash's `ssl_client_authentication => required` default does, or not), then reads
//! newline-delimited JSON as the `json_lines` codec does. Failed handshakes are recorded with
//! rustls' reason.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection, StreamOwned};
use serde_json::Value;

use super::{Acceptor, lock};

/// PEM files of a small PKI.
pub struct Pki {
    /// The authority that signed the server and client certificates.
    pub ca: PathBuf,
    /// An authority that signed nothing here.
    pub other_ca: PathBuf,
    /// The server's certificate (localhost, 127.0.0.1) and key.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A client certificate and key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn ca(name: &str) -> (Issuer<'static, KeyPair>, String) {
    let key = KeyPair::generate().expect("a key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("a CA certificate");
    (Issuer::new(params, key), cert.pem())
}

fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let key = KeyPair::generate().expect("a key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, "factorio-isr test");
    params.extended_key_usages = vec![usage];
    let cert = params
        .signed_by(&key, issuer)
        .expect("a signed certificate");
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    /// Writes the files into `dir`.
    pub fn create(dir: &Path) -> Pki {
        let (issuer, ca_pem) = ca("factorio-isr test CA");
        let (_, other_pem) = ca("another CA");
        let (server_cert, server_key) = leaf(
            &issuer,
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = leaf(
            &issuer,
            &["factorio-isr"],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).expect("writing a PEM file");
            p
        };
        Pki {
            ca: write("ca.pem", &ca_pem),
            other_ca: write("other-ca.pem", &other_pem),
            server_cert: write("server.pem", &server_cert),
            server_key: write("server-key.pem", &server_key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client-key.pem", &client_key),
        }
    }

    /// The server side of the TLS tests: `server_cert`, asking for a client certificate signed
    /// by `ca` when `require_client_cert`.
    pub fn server_config(&self, require_client_cert: bool) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.server_cert)
            .expect("server.pem")
            .collect::<Result<_, _>>()
            .expect("server.pem");
        let key = PrivateKeyDer::from_pem_file(&self.server_key).expect("server-key.pem");
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("TLS versions");
        let builder = if require_client_cert {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(&self.ca).expect("ca.pem") {
                roots.add(c.expect("ca.pem")).expect("a root");
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("a client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        Arc::new(
            builder
                .with_single_cert(chain, key)
                .expect("the server certificate"),
        )
    }
}

#[derive(Default)]
struct Seen {
    events: Vec<Value>,
    parse_failures: usize,
    handshake_failures: Vec<String>,
    connections: usize,
}

/// A Logstash tcp input with TLS. Stops when dropped.
pub struct TlsLogstash {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    _acceptor: Acceptor,
}

impl TlsLogstash {
    /// Listens on 127.0.0.1 with `pki`'s server certificate.
    pub fn start(pki: &Pki, require_client_cert: bool) -> TlsLogstash {
        let config = pki.server_config(require_client_cert);
        let listener = TcpListener::bind("127.0.0.1:0").expect("a listener");
        let addr = listener.local_addr().expect("an address");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let acceptor = {
            let seen = seen.clone();
            Acceptor::spawn(listener, move |tcp| {
                lock(&seen).connections += 1;
                let (config, seen) = (config.clone(), seen.clone());
                thread::spawn(move || serve(config, tcp, &seen));
            })
        };
        TlsLogstash {
            addr,
            seen,
            _acceptor: acceptor,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Events received over TLS.
    pub fn events(&self) -> Vec<Value> {
        lock(&self.seen).events.clone()
    }

    /// Lines that were not JSON.
    pub fn parse_failures(&self) -> usize {
        lock(&self.seen).parse_failures
    }

    /// Why handshakes failed, as rustls says.
    pub fn handshake_failures(&self) -> Vec<String> {
        lock(&self.seen).handshake_failures.clone()
    }

    /// Connections accepted.
    pub fn connections(&self) -> usize {
        lock(&self.seen).connections
    }
}

fn serve(config: Arc<ServerConfig>, mut tcp: std::net::TcpStream, seen: &Mutex<Seen>) {
    let mut conn = ServerConnection::new(config).expect("a server connection");
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut tcp) {
            lock(seen).handshake_failures.push(e.to_string());
            return;
        }
    }
    let reader = BufReader::new(StreamOwned::new(conn, tcp));
    for line in reader.split(b'\n') {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                // A client certificate refused after the handshake shows up here.
                lock(seen).handshake_failures.push(e.to_string());
                return;
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let mut seen = lock(seen);
        match serde_json::from_slice(&line) {
            Ok(v) => seen.events.push(v),
            Err(_) => seen.parse_failures += 1,
        }
    }
}
