//! Operations that arrive together go out together (see `src/loads.rs`):
//! checked with a raw client that batches really happen, and that every
//! caller still gets exactly its own answer, errors included.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use futures_util::future::join_all;
use session_core::{Error, Record, SessionId, SessionStore, Timestamp};
use session_store_conformance::Namespace;
use session_store_redis::redis::aio::MultiplexedConnection;
use session_store_redis::{RedisStore, redis};

const HOUR: Duration = Duration::from_secs(3600);

async fn setup() -> (RedisStore, MultiplexedConnection) {
    let url = common::shared_url().unwrap_or_else(|e| panic!("{e}"));
    let ns = Namespace::random().unwrap();
    let store = RedisStore::builder(url.clone())
        .prefix(common::prefix(&ns))
        .connect()
        .await
        .unwrap();
    let raw = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    (store, raw)
}

fn record(i: usize) -> Record {
    let now = Timestamp::now();
    let mut record = Record::new(
        SessionId::generate().unwrap().storage_key(),
        now,
        now.saturating_add(HOUR),
    );
    record.data.insert("i".into(), i.into());
    record
}

/// How many `MGET`s the server has run so far.
async fn mgets(raw: &mut MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(raw)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("cmdstat_mget:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap())
}

/// What a load is expected to find.
enum Expect {
    Record(Record),
    Absent,
    Unreadable,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_loads_are_batched_and_each_gets_its_own_answer() {
    let (store, mut raw) = setup().await;
    let mut cases = Vec::new();
    for i in 0..6 {
        let record = record(i);
        store.create(&record).await.unwrap();
        cases.push((record.key, Expect::Record(record)));
    }
    // A key of another type: `MGET` answers nil for it, `GET` WRONGTYPE.
    let hash = record(10);
    let _: i64 = redis::cmd("HSET")
        .arg(store.session_key(&hash.key))
        .arg("f")
        .arg("v")
        .query_async(&mut raw)
        .await
        .unwrap();
    cases.push((hash.key, Expect::Unreadable));
    // A string that is not a session.
    let foreign = record(11);
    let _: () = redis::cmd("SET")
        .arg(store.session_key(&foreign.key))
        .arg("hello")
        .query_async(&mut raw)
        .await
        .unwrap();
    cases.push((foreign.key, Expect::Unreadable));
    for i in 12..14 {
        cases.push((record(i).key, Expect::Absent));
    }

    let before = mgets(&mut raw).await;
    for round in 0..20 {
        // Every key several times, all in flight at once.
        let loads = (0..4).flat_map(|_| cases.iter()).map(|(key, expect)| {
            let store = &store;
            async move { (store.load(key).await, expect) }
        });
        for (found, expect) in join_all(loads).await {
            match (found, expect) {
                (Ok(Some(found)), Expect::Record(record)) => assert_eq!(&found, record),
                (Ok(None), Expect::Absent) => {}
                (Err(Error::Decode { .. }), Expect::Unreadable) => {}
                (found, _) => panic!("round {round}: unexpected {found:?}"),
            }
        }
    }
    let batches = mgets(&mut raw).await - before;
    assert!(batches > 0, "no load went out in a batch");
}
