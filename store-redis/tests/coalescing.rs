//! Operations that arrive together go out together (see `src/loads.rs`):
//! checked with a raw client that batches really happen, and that every
//! caller still gets exactly its own answer, errors included.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use std::time::Duration;

use common::{RedisServer, Server};
use futures_util::future::join_all;
use session_core::{Error, Record, SessionId, SessionStore, Timestamp};
use session_store_redis::redis::aio::MultiplexedConnection;
use session_store_redis::{RedisStore, redis as client};

const HOUR: Duration = Duration::from_secs(3600);

/// Keeps a test's own server (and its directory) alive while held.
struct OwnServer(RedisServer, #[allow(dead_code)] tempfile::TempDir);

/// A store and a raw connection on a server of the test's own, so that
/// the server's command counts are this test's alone; hold the third
/// value until the test ends.
async fn setup(kind: Server) -> (RedisStore, MultiplexedConnection, OwnServer) {
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::spawn_unix_of(kind, dir.path(), &dir.path().join("redis.sock"))
        .unwrap_or_else(|e| panic!("{e}"));
    let store = RedisStore::connect(server.url()).await.unwrap();
    let raw = client::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    (store, raw, OwnServer(server, dir))
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

/// Stores a string that is not a session under `record`'s key.
async fn plant_foreign(store: &RedisStore, raw: &mut MultiplexedConnection, record: &Record) {
    let _: () = client::cmd("SET")
        .arg(store.session_key(&record.key))
        .arg("hello")
        .query_async(raw)
        .await
        .unwrap();
}

/// How many times the server has run `command` so far.
async fn calls(raw: &mut MultiplexedConnection, command: &str) -> u64 {
    let info: String = client::cmd("INFO")
        .arg("commandstats")
        .query_async(raw)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap())
}

// One thread: every call of a `join_all` queues before a sender task
// runs, so the batches (and the command counts) do not depend on timing.
per_server!(
    one_thread:
    concurrent_loads_are_batched_and_each_gets_its_own_answer,
    concurrent_saves_are_batched_and_each_gets_its_own_outcome,
    concurrent_creates_touches_and_deletes_each_get_their_own_outcome,
    batched_saves_never_overwrite_damaged_data,
    a_save_after_a_load_is_one_set_ifeq_where_the_server_has_it,
);

/// What a load is expected to find.
enum Expect {
    Record(Record),
    Absent,
    Unreadable,
}

async fn concurrent_loads_are_batched_and_each_gets_its_own_answer(kind: Server) {
    let (store, mut raw, _server) = setup(kind).await;
    let mut cases = Vec::new();
    for i in 0..6 {
        let record = record(i);
        store.create(&record).await.unwrap();
        cases.push((record.key, Expect::Record(record)));
    }
    // A key of another type: `MGET` answers nil for it, `GET` WRONGTYPE.
    let hash = record(10);
    let _: i64 = client::cmd("HSET")
        .arg(store.session_key(&hash.key))
        .arg("f")
        .arg("v")
        .query_async(&mut raw)
        .await
        .unwrap();
    cases.push((hash.key, Expect::Unreadable));
    // A string that is not a session.
    let foreign = record(11);
    plant_foreign(&store, &mut raw, &foreign).await;
    cases.push((foreign.key, Expect::Unreadable));
    for i in 12..14 {
        cases.push((record(i).key, Expect::Absent));
    }

    let before = calls(&mut raw, "mget").await;
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
    let batches = calls(&mut raw, "mget").await - before;
    assert!(batches > 0, "no load went out in a batch");
}

async fn concurrent_saves_are_batched_and_each_gets_its_own_outcome(kind: Server) {
    let (store, mut raw, _server) = setup(kind).await;
    let mut sessions = Vec::new();
    for i in 0..12 {
        let mut record = record(i);
        record.user = (i % 2 == 0).then(|| "u".to_owned());
        store.create(&record).await.unwrap();
        sessions.push(record);
    }
    // Moves to another user: "bind first", answered in the batch, then a
    // second call of its own.
    let mut moved = sessions[0].clone();
    moved.user = Some("v".into());
    let absent = record(20);
    let foreign = record(21);
    plant_foreign(&store, &mut raw, &foreign).await;

    let before = calls(&mut raw, "evalsha").await;
    // Two saves of each session from the same version (the first of each
    // pair to run wins, the other conflicts), then the odd ones out.
    let mut saves: Vec<&Record> = sessions[1..].iter().chain(&sessions[1..]).collect();
    saves.extend([&moved, &absent, &foreign]);
    let issued = saves.len() as u64;
    let results = join_all(saves.iter().map(|record| store.save(record))).await;
    let evalshas = calls(&mut raw, "evalsha").await - before;

    let (first, rest) = results.split_at(sessions.len() - 1);
    let (second, odd) = rest.split_at(sessions.len() - 1);
    for ((a, b), record) in first.iter().zip(second).zip(&sessions[1..]) {
        let wins = [a, b].iter().filter(|r| matches!(r, Ok(1))).count();
        let conflicts = [a, b]
            .iter()
            .filter(|r| matches!(r, Err(Error::Conflict)))
            .count();
        assert_eq!((wins, conflicts), (1, 1), "{a:?} {b:?}");
        assert_eq!(store.load(&record.key).await.unwrap().unwrap().version, 1);
    }
    assert!(matches!(odd[0], Ok(1)), "the move: {:?}", odd[0]);
    assert!(
        matches!(odd[1], Err(Error::NotFound)),
        "absent: {:?}",
        odd[1]
    );
    assert!(
        matches!(&odd[2], Err(Error::Decode { key, .. }) if *key == foreign.key),
        "foreign: {:?}",
        odd[2]
    );
    let v = store.list_by_user("v").await.unwrap();
    assert_eq!(v.records.len(), 1);
    assert_eq!(v.records[0].key, moved.key);
    let u = store.list_by_user("u").await.unwrap();
    assert!(u.records.iter().all(|r| r.key != moved.key));
    // One script call per save would be `issued` (plus the move's second
    // call); batches make it fewer.
    assert!(
        evalshas < issued,
        "{evalshas} script calls for {issued} saves: no batch"
    );
}

async fn concurrent_creates_touches_and_deletes_each_get_their_own_outcome(kind: Server) {
    let (store, mut raw, _server) = setup(kind).await;
    // Creates: new sessions (half of them bound), one over a live session,
    // one whose user's index key holds a string (its ZADD fails).
    let taken = record(30);
    store.create(&taken).await.unwrap();
    let mut fresh = Vec::new();
    for i in 0..10 {
        let mut record = record(40 + i);
        record.user = (i % 2 == 0).then(|| "w".to_owned());
        fresh.push(record);
    }
    let mut bad_index = record(60);
    bad_index.user = Some("bad".into());
    let _: () = client::cmd("SET")
        .arg(store.user_index_key("bad"))
        .arg("not a sorted set")
        .query_async(&mut raw)
        .await
        .unwrap();
    let mut creates: Vec<&Record> = fresh.iter().collect();
    creates.insert(3, &taken);
    creates.insert(6, &bad_index);
    let results = join_all(creates.iter().map(|record| store.create(record))).await;
    for (record, result) in creates.iter().zip(&results) {
        if record.key == taken.key {
            assert!(matches!(result, Err(Error::Exists)), "{result:?}");
        } else if record.key == bad_index.key {
            assert!(matches!(result, Err(Error::Backend { .. })), "{result:?}");
        } else {
            assert!(result.is_ok(), "{result:?}");
            assert_eq!(
                store.load(&record.key).await.unwrap().as_ref(),
                Some(*record)
            );
        }
    }
    let w = store.list_by_user("w").await.unwrap();
    assert_eq!(w.records.len(), 5);
    // (Creates are not batched: each sends its own native commands.)

    // Touches: each live session moved, one absent, one not a session.
    let later = Timestamp::now().saturating_add(HOUR + HOUR);
    let absent = record(70);
    let foreign = record(71);
    plant_foreign(&store, &mut raw, &foreign).await;
    let before = calls(&mut raw, "evalsha").await;
    let mut touched: Vec<&Record> = fresh.iter().collect();
    touched.extend([&absent, &foreign]);
    let results = join_all(touched.iter().map(|r| store.touch(&r.key, later))).await;
    let (live, odd) = results.split_at(fresh.len());
    assert!(live.iter().all(|r| matches!(r, Ok(true))), "{live:?}");
    assert!(matches!(odd[0], Ok(false)), "{:?}", odd[0]);
    assert!(matches!(odd[1], Err(Error::Decode { .. })), "{:?}", odd[1]);
    for record in &fresh {
        let found = store.load(&record.key).await.unwrap().unwrap();
        assert_eq!(found.expires_at, later);
    }

    // Deletes: every session twice (one removes it, the other finds
    // nothing), and one absent.
    let mut deleted: Vec<&Record> = fresh.iter().chain(&fresh).collect();
    deleted.push(&absent);
    let results = join_all(deleted.iter().map(|r| store.delete(&r.key))).await;
    let evalshas = calls(&mut raw, "evalsha").await - before;
    for (i, record) in fresh.iter().enumerate() {
        let pair = (&results[i], &results[i + fresh.len()]);
        assert!(
            matches!(pair, (Ok(true), Ok(false)) | (Ok(false), Ok(true))),
            "{pair:?}"
        );
        assert_eq!(store.load(&record.key).await.unwrap(), None);
    }
    assert!(matches!(results.last(), Some(Ok(false))));
    assert!(store.list_by_user("w").await.unwrap().records.is_empty());
    let issued = (touched.len() + deleted.len()) as u64;
    assert!(
        evalshas < issued,
        "{evalshas} script calls for {issued} touches and deletes: no batch"
    );
}

/// The batched save (`SAVE_MANY`) judges damage as the lone one does:
/// saves over sessions whose data was changed under the digest (still a
/// well-framed JSON object, the digest as the store computed it for the
/// real data) since a load found them sound are each `Decode` naming
/// their key, at the stored version and at others, and leave the value as
/// it was; the intact sessions in the same batches are saved.
async fn batched_saves_never_overwrite_damaged_data(kind: Server) {
    let (store, mut raw, _server) = setup(kind).await;
    let mut intact = Vec::new();
    let mut damaged = Vec::new();
    for i in 0..12 {
        let mut record = record(i);
        record.user = Some("dd".into());
        store.create(&record).await.unwrap();
        // Loaded while sound: the first save of each sends back the bytes
        // this load found sound.
        assert_eq!(
            store.load(&record.key).await.unwrap().as_ref(),
            Some(&record)
        );
        if i % 2 == 0 {
            intact.push(record);
        } else {
            let key = store.session_key(&record.key);
            common::damage(
                &mut raw,
                &key,
                &record,
                session_store_conformance::Damage::Data,
            )
            .await
            .unwrap();
            let value: Vec<u8> = client::cmd("GET")
                .arg(&key)
                .query_async(&mut raw)
                .await
                .unwrap();
            damaged.push((record, value));
        }
    }
    // An intact save first: it goes alone, and every later one queues
    // behind it into batches.
    let mut saves: Vec<Record> = intact.clone();
    for (record, _) in &damaged {
        for version in [0, 1, 2] {
            let mut attempt = record.clone();
            attempt.version = version;
            attempt.data.insert("overwrite".into(), true.into());
            saves.push(attempt);
        }
    }
    let before = calls(&mut raw, "evalsha").await;
    let results = join_all(saves.iter().map(|record| store.save(record))).await;
    let evalshas = calls(&mut raw, "evalsha").await - before;
    for (record, result) in saves.iter().zip(&results) {
        if intact.iter().any(|r| r.key == record.key) {
            assert!(matches!(result, Ok(1)), "intact: {result:?}");
        } else {
            assert!(
                matches!(result, Err(Error::Decode { key, .. }) if *key == record.key),
                "damaged, at version {}: {result:?}",
                record.version
            );
        }
    }
    for (record, value) in &damaged {
        let key = store.session_key(&record.key);
        let now: Vec<u8> = client::cmd("GET")
            .arg(&key)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert_eq!(&now, value, "a damaged session was written over");
        assert!(matches!(
            store.load(&record.key).await,
            Err(Error::Decode { .. })
        ));
    }
    let issued = saves.len() as u64;
    assert!(
        evalshas < issued,
        "{evalshas} script calls for {issued} saves: no batch"
    );
}

/// Whether the server takes `SET … IFEQ`, asked directly.
async fn server_has_ifeq(raw: &mut MultiplexedConnection) -> bool {
    let reply: Result<client::Value, _> = client::cmd("SET")
        .arg("ifeq-probe")
        .arg("x")
        .arg("IFEQ")
        .arg("y")
        .query_async(raw)
        .await;
    match reply {
        Ok(client::Value::Nil) => true,
        Err(e) if e.code() == Some("ERR") => false,
        other => panic!("SET … IFEQ on an absent key answered {other:?}"),
    }
}

/// Where the server has `IFEQ` (Valkey 8.1), a save right after a load
/// is one `SET … IFEQ` and no script; a save after a touch by another
/// client (the stored bytes are no longer the ones loaded) falls back to
/// the script, which saves it. Where the server has no `IFEQ` (Redis 7),
/// every save is the script, and the store tries `IFEQ` once only.
async fn a_save_after_a_load_is_one_set_ifeq_where_the_server_has_it(kind: Server) {
    let (store, mut raw, server) = setup(kind).await;
    let has_ifeq = server_has_ifeq(&mut raw).await;
    // Valkey has it since 8.1 (the tests' Valkey), Redis since 8.4: the
    // fast path is tested on Valkey at least.
    assert!(has_ifeq || kind != Server::Valkey, "a Valkey without IFEQ");
    let other = RedisStore::connect(server.0.url()).await.unwrap();
    let mut r = record(1);
    r.user = Some("ifeq".into());
    store.create(&r).await.unwrap();
    // A save with no load before it is the script (nothing kept to
    // compare with); it also loads the script into the server.
    assert_eq!(store.save(&r).await.unwrap(), 1);
    let mut counts = Vec::new();
    for round in 0..3 {
        let mut loaded = store.load(&r.key).await.unwrap().unwrap();
        if round == 2 {
            // Another client moves the expiry: the value loaded is gone.
            let later = loaded.expires_at.saturating_add(HOUR);
            assert!(other.touch(&r.key, later).await.unwrap());
        }
        loaded.data.insert("round".into(), round.into());
        let (sets, scripts) = (
            calls(&mut raw, "set").await,
            calls(&mut raw, "evalsha").await,
        );
        assert_eq!(store.save(&loaded).await.unwrap(), round + 2);
        counts.push((
            calls(&mut raw, "set").await - sets,
            calls(&mut raw, "evalsha").await - scripts,
        ));
        let stored = store.load(&r.key).await.unwrap().unwrap();
        assert_eq!(stored.data.get("round"), Some(&round.into()));
    }
    // (`set` counts the script's own `SET` too.)
    if has_ifeq {
        // Two `SET … IFEQ` that saved; then one that found the touched
        // value, and the script that saved over it.
        assert_eq!(counts, [(1, 0), (1, 0), (2, 1)]);
    } else {
        // The first save's `IFEQ` was refused; then only scripts.
        assert_eq!(counts, [(2, 1), (1, 1), (1, 1)]);
    }
}
