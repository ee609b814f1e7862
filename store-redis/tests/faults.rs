//! Outages: a server killed mid-use and restarted on the same socket, a
//! server that never answers, and a script cache flushed under the store.
//! The tests that need a server run once on Redis (`redis::`) and once
//! on Valkey (`valkey::`). They spawn their own server (they must kill
//! it), so they need `redis-server` on `PATH` and a `valkey-server`
//! (`VALKEY_SERVER` or `PATH`), whatever `REDIS_URL` or `VALKEY_URL` say.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{RedisServer, Server};
use session_core::{Error, Record, SessionId, SessionStore, Timestamp};
use session_store_redis::{RedisStore, redis as client};

const HOUR: Duration = Duration::from_secs(3600);
const OPERATION_TIMEOUT: Duration = Duration::from_millis(1500);
/// Scheduling slack on a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(1000);

fn record(user: Option<&str>) -> Record {
    let now = Timestamp::now();
    let mut record = Record::new(
        SessionId::generate().unwrap().storage_key(),
        now,
        now.saturating_add(HOUR),
    );
    record.user = user.map(str::to_owned);
    record.data.insert("n".into(), serde_json::json!(42));
    record
}

fn own_server(kind: Server, dir: &std::path::Path) -> RedisServer {
    kind.spawn_unix(dir, &dir.join("server.sock"))
        .unwrap_or_else(|e| {
            panic!(
                "the fault tests spawn and kill their own {kind} (a server named by a URL \
             or run by Docker cannot be killed and restarted by the test): {e}"
            )
        })
}

async fn store_for(url: &str) -> RedisStore {
    RedisStore::builder(url)
        .prefix("fault:")
        .connect_timeout(Duration::from_millis(300))
        .response_timeout(Duration::from_millis(500))
        .operation_timeout(OPERATION_TIMEOUT)
        .connect()
        .await
        .unwrap()
}

/// Every kind of call, once, each checked to fail retryably and in time.
async fn every_call_fails_retryably(store: &RedisStore, live: &Record) {
    let mut fresh = record(Some("outage"));
    fresh
        .data
        .insert("during".into(), serde_json::json!("outage"));
    type Call<'a> = (
        &'static str,
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Error>> + Send + 'a>>,
    );
    let calls: Vec<Call<'_>> = vec![
        ("create", Box::pin(async { store.create(&fresh).await })),
        (
            "load",
            Box::pin(async { store.load(&live.key).await.map(drop) }),
        ),
        ("save", Box::pin(async { store.save(live).await.map(drop) })),
        (
            "touch",
            Box::pin(async {
                store
                    .touch(&live.key, Timestamp::now().saturating_add(HOUR))
                    .await
                    .map(drop)
            }),
        ),
        (
            "delete",
            Box::pin(async { store.delete(&fresh.key).await.map(drop) }),
        ),
        (
            "list_by_user",
            Box::pin(async { store.list_by_user("alice").await.map(drop) }),
        ),
        (
            "delete_by_user",
            Box::pin(async { store.delete_by_user("nobody").await.map(drop) }),
        ),
    ];
    for (name, call) in calls {
        let started = Instant::now();
        let result = call.await;
        let took = started.elapsed();
        match result {
            Err(e @ Error::Backend { .. }) => {
                assert!(
                    e.is_retryable(),
                    "{name} during the outage: not retryable: {e:?}"
                );
                assert!(e.to_string().contains("retry"), "{name}: {e}");
            }
            other => panic!(
                "{name} during the outage: expected a retryable Backend error, got {other:?}"
            ),
        }
        assert!(
            took <= OPERATION_TIMEOUT + SLACK,
            "{name} during the outage took {took:?} (operation timeout {OPERATION_TIMEOUT:?})"
        );
    }
}

async fn killed_server_gives_retryable_errors_and_restart_serves_again(kind: Server) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = own_server(kind, dir.path());
    let store = Arc::new(store_for(&server.url()).await);

    let mut live = record(Some("alice"));
    store.create(&live).await.unwrap();
    live.version = store.save(&live).await.unwrap();
    assert_eq!(store.load(&live.key).await.unwrap(), Some(live.clone()));

    // Operations in flight when the server dies: 16 tasks hammering it.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = Arc::clone(&store);
        let key = live.key;
        tasks.push(tokio::spawn(async move {
            loop {
                let started = Instant::now();
                let result = if i % 2 == 0 {
                    store.load(&key).await.map(drop)
                } else {
                    store.list_by_user("alice").await.map(drop)
                };
                if let Err(e) = result {
                    return (e, started.elapsed());
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.kill();
    for task in tasks {
        let (error, took) = tokio::time::timeout(OPERATION_TIMEOUT * 4, task)
            .await
            .expect("an in-flight operation hung after the server died")
            .expect("an in-flight operation panicked");
        assert!(
            matches!(error, Error::Backend { .. }),
            "in flight: {error:?}"
        );
        assert!(error.is_retryable(), "in flight: {error:?}");
        assert!(
            took <= OPERATION_TIMEOUT + SLACK,
            "in-flight operation took {took:?}"
        );
    }

    // Operations issued during the outage.
    every_call_fails_retryably(&store, &live).await;
    // And again, once the driver has given up reconnecting for a while.
    tokio::time::sleep(Duration::from_millis(700)).await;
    every_call_fails_retryably(&store, &live).await;

    // Restart on the same socket: the same store serves again. The new
    // server has no data (no persistence), so the old session is gone.
    let _server = own_server(kind, dir.path());
    let deadline = Instant::now() + Duration::from_secs(10);
    let loaded = loop {
        match store.load(&live.key).await {
            Ok(loaded) => break loaded,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the store did not recover after the restart: {e:?}"),
        }
    };
    assert_eq!(loaded, None, "a fresh server has no sessions");
    // Scripts were lost with the old process: they are reloaded on demand.
    let mut again = record(Some("alice"));
    store.create(&again).await.unwrap();
    again
        .data
        .insert("after".into(), serde_json::json!("restart"));
    again.version = store.save(&again).await.unwrap();
    assert!(
        store
            .touch(&again.key, again.expires_at.saturating_add(HOUR))
            .await
            .unwrap()
    );
    again.expires_at = again.expires_at.saturating_add(HOUR);
    assert_eq!(
        store.list_by_user("alice").await.unwrap().records,
        vec![again.clone()]
    );
    assert!(store.delete(&again.key).await.unwrap());
}

async fn script_flush_is_survived(kind: Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = own_server(kind, dir.path());
    let store = store_for(&server.url()).await;
    let mut raw = client::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut live = record(Some("bob"));
    store.create(&live).await.unwrap();
    live.version = store.save(&live).await.unwrap();
    let _: () = client::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut raw)
        .await
        .unwrap();
    live.data.insert("after".into(), serde_json::json!("flush"));
    live.version = store.save(&live).await.unwrap();
    assert_eq!(live.version, 2);
    let _: () = client::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(store.touch(&live.key, live.expires_at).await.unwrap());
    let _: () = client::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(store.load(&live.key).await.unwrap(), Some(live.clone()));
    // A bound create and a save to another user send the index update and
    // the script in one pipeline: after a flush, only the script is sent
    // again.
    let _: () = client::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut raw)
        .await
        .unwrap();
    let fresh = record(Some("bob"));
    store.create(&fresh).await.unwrap();
    let _: () = client::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut raw)
        .await
        .unwrap();
    let mut moved = live.clone();
    moved.user = Some("carol".into());
    moved.version = store.save(&moved).await.unwrap();
    assert_eq!(
        store.list_by_user("carol").await.unwrap().records,
        vec![moved]
    );
    assert_eq!(
        store.list_by_user("bob").await.unwrap().records,
        vec![fresh]
    );
    assert_eq!(store.delete_by_user("bob").await.unwrap(), 1);
}

/// A listener that accepts connections and never answers.
fn black_hole() -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let mut held = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            match listener.accept() {
                Ok((stream, _)) => held.push(stream),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    (addr, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_that_never_answers_times_out_without_hanging() {
    let (addr, _handle) = black_hole();
    let started = Instant::now();
    let result = RedisStore::builder(format!("redis://{addr}/"))
        .connect_timeout(Duration::from_millis(300))
        .response_timeout(Duration::from_millis(300))
        .operation_timeout(Duration::from_millis(800))
        .connect()
        .await;
    let took = started.elapsed();
    assert!(
        took <= Duration::from_millis(800) + SLACK,
        "connect took {took:?}"
    );
    match result {
        Err(e) => assert!(e.is_retryable(), "{e:?}"),
        // The driver may consider the connection made without a reply;
        // then the first call must time out.
        Ok(store) => {
            let started = Instant::now();
            let key = SessionId::generate().unwrap().storage_key();
            let err = store.load(&key).await.unwrap_err();
            assert!(err.is_retryable(), "{err:?}");
            assert!(started.elapsed() <= Duration::from_millis(800) + SLACK);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_url_is_not_retryable() {
    let err = RedisStore::connect("not a url").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Backend {
                operation: "connect",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_retryable(), "{err:?}");
}

/// A TCP proxy to a unix socket whose connections can be frozen: a frozen
/// connection stays open but carries nothing more, as when the peer is
/// gone behind a silent network. Connections accepted after a freeze
/// work.
struct FreezingProxy {
    addr: std::net::SocketAddr,
    /// Connections numbered below this are frozen.
    frozen_below: Arc<std::sync::atomic::AtomicU64>,
    accepted: Arc<std::sync::atomic::AtomicU64>,
}

impl FreezingProxy {
    async fn start(socket: std::path::PathBuf) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen_below = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicU64::new(0));
        let (frozen, count) = (frozen_below.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let number = count.fetch_add(1, Ordering::SeqCst);
                let server = tokio::net::UnixStream::connect(&socket).await.unwrap();
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                for (mut from, mut to) in [
                    (
                        Box::new(cr) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                        Box::new(sw) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
                    ),
                    (Box::new(sr), Box::new(cw)),
                ] {
                    let frozen = frozen.clone();
                    tokio::spawn(async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buf = vec![0u8; 16 * 1024];
                        let mut held = Vec::new();
                        loop {
                            let n = match from.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if number < frozen.load(Ordering::SeqCst) {
                                // Swallow everything, close nothing.
                                held.extend_from_slice(&buf[..n]);
                                continue;
                            }
                            if to.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        Self {
            addr,
            frozen_below,
            accepted,
        }
    }

    /// Freezes every connection accepted so far.
    fn freeze_existing(&self) {
        use std::sync::atomic::Ordering;
        let n = self.accepted.load(Ordering::SeqCst);
        self.frozen_below.store(n, Ordering::SeqCst);
    }
}

async fn a_connection_that_stops_answering_is_replaced_after_a_timeout(kind: Server) {
    let dir = tempfile::tempdir().unwrap();
    let _server = own_server(kind, dir.path());
    let proxy = FreezingProxy::start(dir.path().join("server.sock")).await;
    let store = store_for(&format!("redis://{}/", proxy.addr)).await;
    let live = record(Some("frozen"));
    store.create(&live).await.unwrap();

    proxy.freeze_existing();
    let started = Instant::now();
    let err = store.load(&live.key).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    let took = started.elapsed();
    assert!(took <= OPERATION_TIMEOUT + SLACK, "took {took:?}");

    // The timed-out call replaced the silent connection: the next call
    // goes over a fresh one.
    assert_eq!(store.load(&live.key).await.unwrap(), Some(live));
}

per_server!(
    killed_server_gives_retryable_errors_and_restart_serves_again,
    script_flush_is_survived,
    a_connection_that_stops_answering_is_replaced_after_a_timeout,
);
