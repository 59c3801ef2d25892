//! The Logstash sink over TLS: the real `factorio-isr run` against a TLS Logstash
//! (`support::tls`) with certificates made for each test. The server is always verified, a
//! client certificate is sent when configured, and nothing is ever sent in plaintext when TLS
//! is configured.

mod support;

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use support::tls::{Pki, TlsLogstash};
use support::{Env, EnvBuilder, Isr, SeqWriter, wait_until};

const ARRIVE: Duration = Duration::from_secs(30);

/// `[logstash.tls]` lines: `ca_file` and, when `client`, the client certificate.
fn tls_section(ca: &Path, client: Option<&Pki>) -> String {
    let mut s = format!("[logstash.tls]\nca_file = {:?}\n", ca.display().to_string());
    if let Some(p) = client {
        s += &format!(
            "client_cert_file = {:?}\nclient_key_file = {:?}\n",
            p.client_cert.display().to_string(),
            p.client_key.display().to_string()
        );
    }
    s
}

/// Starts `factorio-isr run` in `env` sending to `addr` with the `[logstash.tls]` section
/// `tls`, and writes `lines` chat lines.
fn start(
    env: EnvBuilder,
    addr: std::net::SocketAddr,
    tls: &str,
    lines: usize,
) -> (Env, Isr, SeqWriter) {
    let env = env.logstash(tls).start_at_beginning().build();
    let isr = env.isr().logstash(addr).spawn();
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    w.write_lines(lines);
    (env, isr, w)
}

#[test]
fn events_arrive_over_tls_with_a_verified_server_and_a_client_certificate() {
    let env = Env::builder();
    let pki = Pki::create(env.root());
    let fake = TlsLogstash::start(&pki, true);
    let (_env, mut isr, w) = start(env, fake.addr(), &tls_section(&pki.ca, Some(&pki)), 500);
    assert!(
        wait_until(|| fake.events().len() >= 500, ARRIVE),
        "{} of 500 events arrived; handshake failures {:?}\n{}",
        fake.events().len(),
        fake.handshake_failures(),
        isr.stderr()
    );
    let seqs = support::seqs_in(&fake.events(), "w");
    assert_eq!(seqs, w.written());
    assert_eq!(fake.parse_failures(), 0);
    assert!(fake.handshake_failures().is_empty());
    assert!(isr.stderr().contains("tls=true"), "{}", isr.stderr());
    isr.sigterm();
    let code = isr.wait_exit(Duration::from_secs(15)).map(|s| s.code());
    assert_eq!(code, Some(Some(0)), "{}", isr.stderr());
}

#[test]
fn a_server_signed_by_another_authority_is_refused_and_retried() {
    let env = Env::builder();
    let pki = Pki::create(env.root());
    let fake = TlsLogstash::start(&pki, false);
    // Trust only the unrelated authority.
    let (_env, mut isr, _w) = start(env, fake.addr(), &tls_section(&pki.other_ca, None), 10);
    assert!(
        isr.wait_for_stderr_count("TLS handshake failed", 3, ARRIVE),
        "no retried handshake failure logged:\n{}",
        isr.stderr()
    );
    assert!(isr.stderr().contains("UnknownIssuer"), "{}", isr.stderr());
    assert!(fake.events().is_empty() && fake.parse_failures() == 0);
    assert!(
        fake.connections() >= 3,
        "{} connections",
        fake.connections()
    );
    // /ready says why.
    let (status, body) = isr.admin_get("/ready");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("TLS handshake failed"), "{body}");
    let (status, _) = isr.admin_get("/healthz");
    assert_eq!(status, 200);
    isr.sigterm();
    assert!(isr.wait_exit(Duration::from_secs(15)).is_some());
}

#[test]
fn a_missing_client_certificate_is_refused_by_logstash_and_nothing_is_delivered() {
    let env = Env::builder();
    let pki = Pki::create(env.root());
    let fake = TlsLogstash::start(&pki, true);
    let (_env, mut isr, _w) = start(env, fake.addr(), &tls_section(&pki.ca, None), 10);
    assert!(
        wait_until(|| fake.handshake_failures().len() >= 2, ARRIVE),
        "Logstash saw no refused client: {:?}\n{}",
        fake.handshake_failures(),
        isr.stderr()
    );
    assert!(
        isr.wait_for_stderr_count("TLS handshake failed", 2, ARRIVE),
        "factorio-isr did not notice the refusal:\n{}",
        isr.stderr()
    );
    assert!(fake.events().is_empty(), "{:?}", fake.events());
    isr.sigterm();
    assert!(isr.wait_exit(Duration::from_secs(15)).is_some());
}

#[test]
fn tls_never_falls_back_to_plaintext() {
    let env = Env::builder();
    let pki = Pki::create(env.root());
    // A plain TCP listener where a TLS Logstash is expected: what arrives must be a TLS
    // handshake record, never a JSON line.
    let plain = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = plain.local_addr().unwrap();
    let (_env, mut isr, _w) = start(env, addr, &tls_section(&pki.ca, Some(&pki)), 10);
    let mut firsts = Vec::new();
    for _ in 0..3 {
        let (mut conn, _) = plain.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 5, "read {n} bytes");
        // 0x16: a TLS handshake record; 0x03: TLS major version.
        assert_eq!(
            &buf[..2],
            &[0x16, 0x03],
            "not a TLS record: {:?}",
            &buf[..n.min(40)]
        );
        assert!(!String::from_utf8_lossy(&buf[..n]).contains("seq="));
        firsts.push(buf[0]);
        // Answer garbage: the handshake fails and factorio-isr must retry with TLS again.
        use std::io::Write;
        let _ = conn.write_all(b"{\"not\": \"tls\"}\n");
    }
    assert_eq!(firsts.len(), 3);
    isr.sigterm();
    assert!(isr.wait_exit(Duration::from_secs(15)).is_some());
}
