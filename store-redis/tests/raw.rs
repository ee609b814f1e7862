//! What the store leaves in Redis, checked with a raw client: corrupted
//! records, the per-user index, key layout. Each test runs once on Redis
//! (`redis::`) and once on Valkey (`valkey::`), against the same servers
//! as the conformance suite (see `common`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use std::error::Error as _;
use std::time::Duration;

use client::aio::MultiplexedConnection;
use common::Server;
use session_core::{Error, Record, SessionId, SessionStore, StorageKey, Timestamp};
use session_store_conformance::Namespace;
use session_store_redis::{CodecError, RedisStore, redis as client};

const HOUR: Duration = Duration::from_secs(3600);

async fn setup(server: Server) -> (RedisStore, MultiplexedConnection) {
    let url = server.shared_url().unwrap_or_else(|e| panic!("{e}"));
    let ns = Namespace::random().unwrap();
    let store = RedisStore::builder(url.clone())
        .prefix(common::prefix(&ns))
        .connect()
        .await
        .unwrap();
    let raw = client::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    (store, raw)
}

fn record(user: Option<&str>) -> Record {
    let now = Timestamp::now();
    let mut record = Record::new(
        SessionId::generate().unwrap().storage_key(),
        now,
        now.saturating_add(HOUR),
    );
    record.user = user.map(str::to_owned);
    record
}

fn assert_decode(result: Result<impl std::fmt::Debug, Error>, key: StorageKey, what: &str) {
    match result {
        Err(e @ Error::Decode { .. }) => {
            let Error::Decode { key: named, .. } = &e else {
                unreachable!()
            };
            assert_eq!(*named, key, "{what}: the error names another key");
            assert!(e.to_string().contains(&key.to_hex()), "{what}: {e}");
            assert!(e.source().is_some(), "{what}: no source");
            assert!(!e.is_retryable());
        }
        other => panic!("{what}: expected Err(Decode), got {other:?}"),
    }
}

async fn cmd<T: client::FromRedisValue>(raw: &mut MultiplexedConnection, c: &client::Cmd) -> T {
    c.query_async(raw).await.unwrap()
}

async fn garbage_string_is_decode_error_and_stays(server: Server) {
    let (store, mut raw) = setup(server).await;
    let record = record(Some("gus"));
    let key = store.session_key(&record.key);
    let _: () = cmd(
        &mut raw,
        client::cmd("SET").arg(&key).arg(b"\x00\xffgarbage"),
    )
    .await;

    assert_decode(store.load(&record.key).await, record.key, "load");
    match store.load(&record.key).await {
        Err(Error::Decode { source, .. }) => {
            assert!(source.downcast_ref::<CodecError>().is_some(), "{source:?}")
        }
        other => panic!("{other:?}"),
    }
    assert_decode(store.save(&record).await, record.key, "save");
    assert_decode(
        store.touch(&record.key, Timestamp::now()).await,
        record.key,
        "touch",
    );
    assert_decode(store.delete(&record.key).await, record.key, "delete");
    assert!(matches!(store.create(&record).await, Err(Error::Exists)));

    let still: Vec<u8> = cmd(&mut raw, client::cmd("GET").arg(&key)).await;
    assert_eq!(
        still, b"\x00\xffgarbage",
        "the garbage must be left in place"
    );
}

/// The fields a stored value holds after its expiry and digest (created
/// 1 ms after the epoch, then the given version, user and data).
fn fields(version: &str, user: Option<&[u8]>, data: &[u8]) -> Vec<u8> {
    let mut v = format!("{:+020}{version}", 1).into_bytes();
    match user {
        Some(u) => v.extend_from_slice(format!("u{:010}", u.len()).as_bytes()),
        None => v.extend_from_slice(b"-0000000000"),
    }
    v.extend_from_slice(user.unwrap_or_default());
    v.extend_from_slice(data);
    v
}

/// The first 16 hex digits of the SHA-1 of `covered`, computed here apart
/// from the store (what the digest of a value holding `covered` must be).
fn digest_of(covered: &[u8]) -> String {
    use sha1::Digest as _;
    let sum = sha1::Sha1::digest(covered);
    sum.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// A value in the current format (`S2`): tag, expiry, the digest of
/// `covered`, then `covered` (see the crate docs for the layout).
fn sealed(expires: i64, covered: &[u8]) -> Vec<u8> {
    let mut v = format!("S2{expires:+020}{}", digest_of(covered)).into_bytes();
    v.extend_from_slice(covered);
    v
}

/// A well-formed stored value (see the crate docs for the layout), with
/// the given fields.
fn stored(expires: i64, version: &str, user: Option<&[u8]>, data: &[u8]) -> Vec<u8> {
    sealed(expires, &fields(version, user, data))
}

/// The same in the previous format (`S1`, no digest), still read.
fn stored_s1(expires: i64, version: &str, user: Option<&[u8]>, data: &[u8]) -> Vec<u8> {
    let mut v = format!("S1{expires:+020}").into_bytes();
    v.extend_from_slice(&fields(version, user, data));
    v
}

async fn layout_is_one_string_read_back_exactly(server: Server) {
    let (store, mut raw) = setup(server).await;
    let mut r = record(Some("ann"));
    r.data.insert("k".into(), serde_json::json!([1, "x"]));
    store.create(&r).await.unwrap();
    let key = store.session_key(&r.key);
    let kind: String = cmd(&mut raw, client::cmd("TYPE").arg(&key)).await;
    assert_eq!(kind, "string");
    let value: Vec<u8> = cmd(&mut raw, client::cmd("GET").arg(&key)).await;
    let mut covered =
        format!("{:+020}{:020}u{:010}ann", r.created_at.as_millis(), 0, 3).into_bytes();
    covered.extend_from_slice(br#"{"k":[1,"x"]}"#);
    let expected = sealed(r.expires_at.as_millis(), &covered);
    assert_eq!(
        String::from_utf8_lossy(&value),
        String::from_utf8_lossy(&expected)
    );
    // Written by hand, read by the store.
    let hand = SessionId::generate().unwrap().storage_key();
    let future = Timestamp::now().saturating_add(HOUR).as_millis();
    let bytes = stored(future, "00000000000000000007", None, br#"{"a":true}"#);
    let _: () = cmd(
        &mut raw,
        client::cmd("SET").arg(store.session_key(&hand)).arg(bytes),
    )
    .await;
    let loaded = store.load(&hand).await.unwrap().unwrap();
    assert_eq!(loaded.version, 7);
    assert_eq!(loaded.user, None);
    assert_eq!(loaded.expires_at.as_millis(), future);
    assert_eq!(loaded.data.get("a"), Some(&serde_json::json!(true)));
}

async fn malformed_values_are_decode_errors_and_stay(server: Server) {
    let (store, mut raw) = setup(server).await;
    let future = Timestamp::now().saturating_add(HOUR).as_millis();
    let v0 = "00000000000000000000";
    let mut long_user = fields(v0, Some(b"bob"), b"{}");
    long_user[41..51].copy_from_slice(b"0000000099");
    let long_user = sealed(future, &long_user);
    let mut damaged = stored(future, v0, Some(b"bob"), br#"{"a":1}"#);
    let at = damaged.len() - 2;
    damaged[at] = b'2';
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("short", b"S1+000".to_vec()),
        ("other format", stored(future, v0, None, b"{}").split_off(1)),
        (
            "bad version",
            stored(future, "0000000000000000000x", None, b"{}"),
        ),
        ("bad json", stored(future, v0, None, b"{not json")),
        ("data not an object", stored(future, v0, None, b"[1,2]")),
        ("missing data", stored(future, v0, None, b"")),
        ("user not utf-8", stored(future, v0, Some(b"\xff"), b"{}")),
        ("user past the end", long_user),
        ("data changed under the digest", damaged),
        ("bad json (S1)", stored_s1(future, v0, None, b"{not json")),
        (
            "user past the end (S1)",
            stored_s1(future, v0, Some(b"bob"), b"")[..74].to_vec(),
        ),
    ];
    for (what, bytes) in cases {
        let key = SessionId::generate().unwrap().storage_key();
        let name = store.session_key(&key);
        let _: () = cmd(
            &mut raw,
            client::cmd("SET").arg(&name).arg(bytes.as_slice()),
        )
        .await;
        assert_decode(store.load(&key).await, key, what);
        let after: Vec<u8> = cmd(&mut raw, client::cmd("GET").arg(&name)).await;
        assert_eq!(after, bytes, "{what}: the value must be left as it was");
    }

    // Another Redis type under a session key: every call reports it, and
    // it stays.
    let r = record(Some("hal"));
    let name = store.session_key(&r.key);
    let _: i64 = cmd(
        &mut raw,
        client::cmd("HSET").arg(&name).arg("e").arg(future),
    )
    .await;
    assert_decode(store.load(&r.key).await, r.key, "hash: load");
    assert_decode(store.save(&r).await, r.key, "hash: save");
    assert_decode(
        store.touch(&r.key, Timestamp::now()).await,
        r.key,
        "hash: touch",
    );
    assert_decode(store.delete(&r.key).await, r.key, "hash: delete");
    assert!(matches!(store.create(&r).await, Err(Error::Exists)));
    let kind: String = cmd(&mut raw, client::cmd("TYPE").arg(&name)).await;
    assert_eq!(kind, "hash", "the foreign value must be left in place");
}

async fn corrupted_session_in_an_index_is_a_decode_error_when_listed(server: Server) {
    let (store, mut raw) = setup(server).await;
    let good = record(Some("hal"));
    let bad = record(Some("hal"));
    store.create(&good).await.unwrap();
    store.create(&bad).await.unwrap();
    // Cut the JSON data short (the header and the user stay readable).
    let name = store.session_key(&bad.key);
    let mut value: Vec<u8> = cmd(&mut raw, client::cmd("GET").arg(&name)).await;
    value.truncate(value.len() - 1);
    let _: () = cmd(
        &mut raw,
        client::cmd("SET").arg(&name).arg(value).arg("KEEPTTL"),
    )
    .await;
    // Listed as unreadable; the readable one is still listed.
    let listed = store.list_by_user("hal").await.unwrap();
    assert_eq!(listed.unreadable, vec![bad.key]);
    assert_eq!(listed.records, vec![good.clone()]);
    // The list is untouched by the failed read.
    assert_eq!(store.load(&good.key).await.unwrap(), Some(good.clone()));
    let exists: i64 = cmd(&mut raw, client::cmd("EXISTS").arg(&name)).await;
    assert_eq!(exists, 1, "the unreadable record stays");
    // Deleting needs only the expiry and the user, which are readable: "log
    // out everywhere" still removes the session whose data is corrupt.
    assert_eq!(store.delete_by_user("hal").await.unwrap(), 2);
    assert_eq!(store.load(&good.key).await.unwrap(), None);
}

async fn score(raw: &mut MultiplexedConnection, index: &str, member: &StorageKey) -> Option<i64> {
    let s: Option<f64> = cmd(raw, client::cmd("ZSCORE").arg(index).arg(member.to_hex())).await;
    s.map(|s| s as i64)
}

async fn index_follows_create_touch_save_and_delete(server: Server) {
    let (store, mut raw) = setup(server).await;
    let (a, b) = ("ann", "p:at* {x} zoë");
    let ia = store.user_index_key(a);
    let ib = store.user_index_key(b);
    assert!(ib.ends_with("u:p%3Aat%2A%20%7Bx%7D%20zo%C3%AB"), "{ib}");

    let mut r = record(Some(a));
    store.create(&r).await.unwrap();
    assert_eq!(
        score(&mut raw, &ia, &r.key).await,
        Some(r.expires_at.as_millis())
    );
    let ttl: i64 = cmd(
        &mut raw,
        client::cmd("PEXPIRETIME").arg(store.session_key(&r.key)),
    )
    .await;
    assert_eq!(
        ttl,
        r.expires_at.as_millis(),
        "the key expires natively at expires_at"
    );

    // Touch and a save of the same user leave the index alone (one round
    // trip each): the score lags behind the real expiry, which reads
    // tolerate (they check the session itself) and repair.
    let created_score = r.expires_at.as_millis();
    let later = r.expires_at.saturating_add(Duration::from_millis(1234));
    assert!(store.touch(&r.key, later).await.unwrap());
    r.expires_at = later;
    assert_eq!(score(&mut raw, &ia, &r.key).await, Some(created_score));
    let ttl: i64 = cmd(
        &mut raw,
        client::cmd("PEXPIRETIME").arg(store.session_key(&r.key)),
    )
    .await;
    assert_eq!(ttl, later.as_millis());
    r.expires_at = later.saturating_add(Duration::from_millis(1000));
    r.data.insert("n".into(), serde_json::json!(1));
    r.version = store.save(&r).await.unwrap();
    assert_eq!(score(&mut raw, &ia, &r.key).await, Some(created_score));
    let ttl: i64 = cmd(
        &mut raw,
        client::cmd("PEXPIRETIME").arg(store.session_key(&r.key)),
    )
    .await;
    assert_eq!(ttl, r.expires_at.as_millis());
    assert_eq!(
        store.list_by_user(a).await.unwrap().records,
        vec![r.clone()]
    );
    assert_eq!(
        score(&mut raw, &ia, &r.key).await,
        Some(r.expires_at.as_millis()),
        "a read raises a lagging score"
    );

    // Leaving an index never removes the entry at once (a removal could
    // race with a move back): it stays, filtered out of every read, until
    // a read after its score has passed prunes it.
    r.user = Some(b.to_owned());
    r.version = store.save(&r).await.unwrap();
    assert_eq!(
        score(&mut raw, &ia, &r.key).await,
        Some(r.expires_at.as_millis()),
        "the old user's entry stays until pruned"
    );
    assert_eq!(store.list_by_user(a).await.unwrap().records, vec![]);
    assert_eq!(
        score(&mut raw, &ib, &r.key).await,
        Some(r.expires_at.as_millis())
    );
    assert_eq!(
        store.list_by_user(b).await.unwrap().records,
        vec![r.clone()]
    );

    assert!(store.delete(&r.key).await.unwrap());
    assert!(score(&mut raw, &ib, &r.key).await.is_some());
    assert_eq!(store.list_by_user(b).await.unwrap().records, vec![]);
    assert!(
        score(&mut raw, &ib, &r.key).await.is_some(),
        "an entry whose score is still ahead is not pruned"
    );

    let t = record(Some(a));
    store.create(&t).await.unwrap();
    assert!(
        store
            .touch(&t.key, Timestamp::now().saturating_sub(HOUR))
            .await
            .unwrap()
    );
    assert!(score(&mut raw, &ia, &t.key).await.is_some());
    assert_eq!(store.list_by_user(a).await.unwrap().records, vec![]);
    // Once its score has passed, the next read prunes it.
    let _: i64 = cmd(
        &mut raw,
        client::cmd("ZADD")
            .arg(&ia)
            .arg(Timestamp::now().saturating_sub(HOUR).as_millis())
            .arg(t.key.to_hex()),
    )
    .await;
    assert_eq!(store.list_by_user(a).await.unwrap().records, vec![]);
    assert_eq!(
        score(&mut raw, &ia, &t.key).await,
        None,
        "pruned by the read once its score passed"
    );
}

async fn stale_entries_are_filtered_and_pruned_and_lagging_scores_repaired(server: Server) {
    let (store, mut raw) = setup(server).await;
    let (owner, other) = ("olive", "oscar");
    let io = store.user_index_key(owner);
    let ix = store.user_index_key(other);
    let past = Timestamp::now().saturating_sub(HOUR).as_millis();
    let future = Timestamp::now().saturating_add(HOUR).as_millis();

    let live = record(Some(owner));
    store.create(&live).await.unwrap();
    let gone = SessionId::generate().unwrap().storage_key();
    let pending = SessionId::generate().unwrap().storage_key();
    // Stale entries: another user's live session and a missing session,
    // both with past scores (prunable), and a missing session with a
    // future score (as left by a create in flight: filtered, not pruned).
    let _: i64 = cmd(
        &mut raw,
        client::cmd("ZADD")
            .arg(&ix)
            .arg(past)
            .arg(live.key.to_hex())
            .arg(past)
            .arg(gone.to_hex())
            .arg(future)
            .arg(pending.to_hex())
            .arg(past)
            .arg("not-a-key"),
    )
    .await;
    assert_eq!(store.list_by_user(other).await.unwrap().records, vec![]);
    let left: Vec<String> = cmd(&mut raw, client::cmd("ZRANGE").arg(&ix).arg(0).arg(-1)).await;
    assert_eq!(left, vec![pending.to_hex()]);
    assert_eq!(store.delete_by_user(other).await.unwrap(), 0);
    assert_eq!(store.load(&live.key).await.unwrap(), Some(live.clone()));

    // A score left behind the real expiry (a touch interrupted between its
    // two steps): the session is still listed, and the score is repaired.
    let _: i64 = cmd(
        &mut raw,
        client::cmd("ZADD")
            .arg(&io)
            .arg(past)
            .arg(live.key.to_hex()),
    )
    .await;
    assert_eq!(
        store.list_by_user(owner).await.unwrap().records,
        vec![live.clone()]
    );
    assert_eq!(
        score(&mut raw, &io, &live.key).await,
        Some(live.expires_at.as_millis())
    );

    // A session that expired natively leaves an entry that the next read
    // prunes.
    let mut short = record(Some(owner));
    short.expires_at = Timestamp::now().saturating_add(Duration::from_millis(50));
    store.create(&short).await.unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(
        store.list_by_user(owner).await.unwrap().records,
        vec![live.clone()]
    );
    assert_eq!(score(&mut raw, &io, &short.key).await, None);
}

async fn failed_save_to_another_user_is_never_listed_there(server: Server) {
    let (store, _raw) = setup(server).await;
    let mut r = record(Some("pia"));
    store.create(&r).await.unwrap();
    let mut late = r.clone();
    r.version = store.save(&r).await.unwrap();
    late.user = Some("quentin".into());
    assert!(matches!(store.save(&late).await, Err(Error::Conflict)));
    assert_eq!(store.list_by_user("quentin").await.unwrap().records, vec![]);
    assert_eq!(store.delete_by_user("quentin").await.unwrap(), 0);
    assert_eq!(store.list_by_user("pia").await.unwrap().records, vec![r]);
}

async fn prefixes_isolate_stores_and_debug_shows_no_secrets(server: Server) {
    let (a, _) = setup(server).await;
    let (b, _) = setup(server).await;
    let r = record(Some("same"));
    a.create(&r).await.unwrap();
    assert_eq!(b.load(&r.key).await.unwrap(), None);
    assert_eq!(b.list_by_user("same").await.unwrap().records, vec![]);
    assert!(a.session_key(&r.key).starts_with(a.prefix()));
    let shown = format!("{a:?}");
    assert!(
        shown.contains("RedisStore") && shown.contains(a.prefix()),
        "{shown}"
    );
    assert_eq!(a.delete_expired().await.unwrap(), 0);
}

/// `create` writes with a plain `SET NX`; a taken key falls back to the
/// create script, which judges the stored value by the client's clock.
async fn create_over_a_taken_key_replaces_only_a_leftover_expired_by_our_clock(server: Server) {
    let (store, mut raw) = setup(server).await;
    let past = Timestamp::now().as_millis() - 1_000;
    let future = Timestamp::now().saturating_add(HOUR).as_millis();

    // Expired by its header, but still held by Redis (no TTL): replaced.
    let mut fresh = record(Some("cleo"));
    let key = store.session_key(&fresh.key);
    let leftover = stored(past, "00000000000000000003", Some(b"cleo"), b"{}");
    let _: () = cmd(&mut raw, client::cmd("SET").arg(&key).arg(&leftover)).await;
    fresh.data.insert("new".into(), serde_json::json!(1));
    store.create(&fresh).await.unwrap();
    assert_eq!(store.load(&fresh.key).await.unwrap(), Some(fresh.clone()));
    let index = store.user_index_key("cleo");
    assert!(score(&mut raw, &index, &fresh.key).await.is_some());

    // Live: `Exists`, and the value stays exactly as it was.
    let live = stored(future, "00000000000000000003", Some(b"cleo"), b"{}");
    let _: () = cmd(&mut raw, client::cmd("SET").arg(&key).arg(&live)).await;
    assert!(matches!(store.create(&fresh).await, Err(Error::Exists)));
    let still: Vec<u8> = cmd(&mut raw, client::cmd("GET").arg(&key)).await;
    assert_eq!(still, live);

    // Another Redis type under the key: `Exists`, untouched.
    let other = record(None);
    let other_key = store.session_key(&other.key);
    let _: () = cmd(&mut raw, client::cmd("RPUSH").arg(&other_key).arg("x")).await;
    assert!(matches!(store.create(&other).await, Err(Error::Exists)));
    let kind: String = cmd(&mut raw, client::cmd("TYPE").arg(&other_key)).await;
    assert_eq!(kind, "list");
}

/// `save` judges what it finds: the expected session is saved; one
/// expired by its header is `NotFound` and nothing is resurrected;
/// another version is `Conflict` and stays exactly as it was, expiry
/// included; one cut short inside the user, or another Redis type, is
/// `Decode` and stays. (Named from when the script's common path read
/// only part of the value and these cases took a second, full read; the
/// script now reads the value once and judges every case the same way.)
async fn save_judges_short_expired_and_foreign_values_like_the_full_read(server: Server) {
    let (store, mut raw) = setup(server).await;
    let past = Timestamp::now().as_millis() - 1_000;
    let future = Timestamp::now().saturating_add(HOUR).as_millis();
    let mut r = record(Some("dora"));
    r.version = 3;
    let key = store.session_key(&r.key);
    let writer = raw.clone();
    let put = |value: Vec<u8>| {
        let key = key.clone();
        let mut raw = writer.clone();
        async move {
            let _: () = cmd(&mut raw, client::cmd("SET").arg(&key).arg(value)).await;
        }
    };

    // The same version and user, live: saved.
    put(stored(future, "00000000000000000003", Some(b"dora"), b"{}")).await;
    assert_eq!(store.save(&r).await.unwrap(), 4);
    // The same version and user, but expired by its header: NotFound, and
    // nothing is resurrected (the leftover may be removed on the way).
    put(stored(past, "00000000000000000003", Some(b"dora"), b"{}")).await;
    assert!(matches!(store.save(&r).await, Err(Error::NotFound)));
    assert_eq!(store.load(&r.key).await.unwrap(), None);
    let left: Option<Vec<u8>> = cmd(&mut raw, client::cmd("GET").arg(&key)).await;
    assert!(
        left.as_ref().is_none_or(|v| v.starts_with(b"S2")),
        "{left:?}"
    );
    // Another version: Conflict, and the stored session is exactly as it
    // was, expiry included.
    let newer = stored(future, "00000000000000000009", Some(b"dora"), b"{}");
    put(newer.clone()).await;
    let _: () = cmd(&mut raw, client::cmd("PEXPIREAT").arg(&key).arg(future)).await;
    assert!(matches!(store.save(&r).await, Err(Error::Conflict)));
    let still: Vec<u8> = cmd(&mut raw, client::cmd("GET").arg(&key)).await;
    assert_eq!(still, newer);
    let expiry: i64 = cmd(&mut raw, client::cmd("PEXPIRETIME").arg(&key)).await;
    assert_eq!(expiry, future);
    // Cut short inside the user: unreadable, left in place.
    let mut short = stored(future, "00000000000000000003", Some(b"dora"), b"{}");
    short.truncate(short.len() - 4);
    put(short.clone()).await;
    assert_decode(store.save(&r).await, r.key, "save");
    let still: Vec<u8> = cmd(&mut raw, client::cmd("GET").arg(&key)).await;
    assert_eq!(still, short);
    // Another Redis type: unreadable, left in place.
    let _: () = cmd(&mut raw, client::cmd("DEL").arg(&key)).await;
    let _: () = cmd(&mut raw, client::cmd("SADD").arg(&key).arg("x")).await;
    assert_decode(store.save(&r).await, r.key, "save");
}

/// `delete_by_user` removes index entries that are not storage keys at
/// all (nothing can ever make them valid), whatever their score; entries
/// of real keys go only through the guarded prune. And the store reports
/// the prefix it was built with.
async fn delete_by_user_drops_foreign_index_entries(server: Server) {
    let (store, mut raw) = setup(server).await;
    assert!(store.prefix().ends_with(':'), "{}", store.prefix());
    assert!(store.user_index_key("fay").starts_with(store.prefix()));
    let index = store.user_index_key("fay");
    let live = record(Some("fay"));
    store.create(&live).await.unwrap();
    let future = Timestamp::now().saturating_add(HOUR).as_millis();
    let _: i64 = cmd(
        &mut raw,
        client::cmd("ZADD").arg(&index).arg(future).arg("not-a-key"),
    )
    .await;
    assert_eq!(store.delete_by_user("fay").await.unwrap(), 1);
    let left: Vec<String> = cmd(&mut raw, client::cmd("ZRANGE").arg(&index).arg(0).arg(-1)).await;
    assert_eq!(
        left,
        vec![live.key.to_hex()],
        "the foreign entry is gone; the deleted session's entry waits for its score to pass"
    );
}

/// What a raw client sees of a key: its value and its absolute expiry
/// (`PEXPIRETIME`: `-1` none, `-2` no key), exact to the millisecond
/// whatever the time between two looks.
async fn snapshot(raw: &mut MultiplexedConnection, key: &str) -> (Option<Vec<u8>>, i64) {
    let value: Option<Vec<u8>> = cmd(raw, client::cmd("GET").arg(key)).await;
    let expiry: i64 = cmd(raw, client::cmd("PEXPIRETIME").arg(key)).await;
    (value, expiry)
}

/// A `WATCH` on a key, on a connection of its own: an empty
/// `MULTI`/`EXEC` afterwards is aborted if anything wrote the key in
/// between, even a write of the same bytes with the same expiry (what a
/// replica, the AOF or a keyspace notification would see as a write).
struct Watch(MultiplexedConnection);

impl Watch {
    async fn start(server: Server, key: &str) -> Self {
        let url = server.shared_url().unwrap_or_else(|e| panic!("{e}"));
        let mut conn = client::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let _: () = cmd(&mut conn, client::cmd("WATCH").arg(key)).await;
        Self(conn)
    }

    async fn saw_a_write(mut self) -> bool {
        let _: () = cmd(&mut self.0, &client::cmd("MULTI")).await;
        let exec: client::Value = cmd(&mut self.0, &client::cmd("EXEC")).await;
        matches!(exec, client::Value::Nil)
    }
}

/// Saves `record` onto whatever its key holds now, checks the outcome
/// with `expected`, and asserts that the save wrote nothing: the same
/// bytes, the same absolute expiry, and no write at all under `WATCH`.
async fn assert_save_writes_nothing(
    server: Server,
    store: &RedisStore,
    raw: &mut MultiplexedConnection,
    record: &Record,
    what: &str,
    expected: impl FnOnce(Result<u64, Error>),
) {
    let key = store.session_key(&record.key);
    let before = snapshot(raw, &key).await;
    let watch = Watch::start(server, &key).await;
    expected(store.save(record).await);
    let after = snapshot(raw, &key).await;
    // Every difference, not just the first, so that a failure says all.
    let mut changed = Vec::new();
    if after.0 != before.0 {
        changed.push(format!(
            "the stored bytes ({:?} before, {:?} after)",
            before.0.as_deref().map(String::from_utf8_lossy),
            after.0.as_deref().map(String::from_utf8_lossy),
        ));
    }
    if after.1 != before.1 {
        changed.push(format!(
            "the key's expiry (PEXPIRETIME {} before, {} after)",
            before.1, after.1
        ));
    }
    if watch.saw_a_write().await {
        changed.push("a write of the key (a WATCH saw one)".to_owned());
    }
    assert!(
        changed.is_empty(),
        "{what}: a save that kept nothing changed {}",
        changed.join("; ")
    );
}

/// A save with a stale version loses, and writes nothing: not even a
/// write of the stored value back onto itself.
async fn a_stale_save_leaves_the_live_session_untouched(server: Server) {
    let (store, mut raw) = setup(server).await;
    let mut r = record(Some("sam"));
    r.data.insert("n".into(), serde_json::json!(1));
    store.create(&r).await.unwrap();
    let mut stale = r.clone();
    r.data.insert("n".into(), serde_json::json!(2));
    r.version = store.save(&r).await.unwrap();
    // The losing save would move the expiry, and the data: neither may
    // show.
    stale.data.insert("n".into(), serde_json::json!(3));
    stale.expires_at = r.expires_at.saturating_add(HOUR);
    assert_save_writes_nothing(
        server,
        &store,
        &mut raw,
        &stale,
        "stale version",
        |result| assert!(matches!(result, Err(Error::Conflict)), "{result:?}"),
    )
    .await;
    assert_eq!(store.load(&r.key).await.unwrap(), Some(r));
}

/// A save onto a key holding a string that is not a session at all is
/// `Decode`, and the string keeps its value and its own expiry.
async fn a_save_onto_a_foreign_string_leaves_it_and_its_expiry(server: Server) {
    let (store, mut raw) = setup(server).await;
    let r = record(Some("fred"));
    let key = store.session_key(&r.key);
    let _: () = cmd(
        &mut raw,
        client::cmd("SET")
            .arg(&key)
            .arg("hello")
            .arg("PX")
            .arg(600_000),
    )
    .await;
    assert_save_writes_nothing(server, &store, &mut raw, &r, "foreign string", |result| {
        assert_decode(result, r.key, "save onto a foreign string")
    })
    .await;
    let value: Vec<u8> = cmd(&mut raw, client::cmd("GET").arg(&key)).await;
    assert_eq!(value, b"hello");
}

/// A save onto a session whose data is damaged (its header, version and
/// user as the save expects) is `Decode` and writes nothing, whether the
/// key's own expiry is the header's or not: data cut short, and data that
/// is still a well-framed JSON object but not what the store wrote (a
/// number serde_json refuses, the digest left as the store computed it
/// for the real data), at the stored version and at others, also when
/// the damage came after a load of the same store found the session
/// sound (that save sends back the bytes the load saw).
async fn a_save_onto_a_session_with_broken_data_leaves_it_untouched(server: Server) {
    let (store, mut raw) = setup(server).await;
    let later = Some(Timestamp::now().saturating_add(2 * HOUR).as_millis());
    let cut = |mut value: Vec<u8>| {
        value.truncate(value.len() - 3);
        value
    };
    let huge = |mut value: Vec<u8>| {
        value.truncate(value.len() - br#"{"k":"v"}"#.len());
        value.extend_from_slice(br#"{"k":1e400}"#);
        value
    };
    type Damage = fn(Vec<u8>) -> Vec<u8>;
    let cases: [(&str, Damage, Option<i64>); 4] = [
        ("cut short, the key's expiry kept", cut, None),
        (
            "cut short, the key expiring later than its header says",
            cut,
            later,
        ),
        ("1e400 in the data, the key's expiry kept", huge, None),
        (
            "1e400 in the data, the key expiring later than its header says",
            huge,
            later,
        ),
    ];
    for (what, damage, key_expiry) in cases {
        let mut r = record(Some("bea"));
        r.data.insert("k".into(), serde_json::json!("v"));
        store.create(&r).await.unwrap();
        // Loaded while sound: the first save below sends back the bytes
        // this load found sound, which no longer match.
        assert_eq!(store.load(&r.key).await.unwrap().as_ref(), Some(&r));
        let key = store.session_key(&r.key);
        let value: Vec<u8> = cmd(&mut raw, client::cmd("GET").arg(&key)).await;
        let mut set = client::cmd("SET");
        set.arg(&key).arg(damage(value));
        match key_expiry {
            None => set.arg("KEEPTTL"),
            Some(at) => set.arg("PXAT").arg(at),
        };
        let _: () = cmd(&mut raw, &set).await;
        r.data.insert("k".into(), serde_json::json!("w"));
        for version in [0, 1, 2] {
            r.version = version;
            let what = format!("{what}, saved at version {version}");
            assert_save_writes_nothing(server, &store, &mut raw, &r, &what, |result| {
                assert_decode(result, r.key, &what)
            })
            .await;
        }
        assert_decode(store.load(&r.key).await, r.key, what);
    }
}

/// Sessions written in the previous format (`S1`, before the digest)
/// keep working: they load, list, touch (in place, still `S1`), conflict
/// and delete as before, and their next save writes them in the current
/// format, whose digest the store checks (and a raw SHA-1 confirms).
async fn s1_sessions_still_work_and_their_next_save_writes_s2(server: Server) {
    let (store, mut raw) = setup(server).await;
    let future = Timestamp::now().saturating_add(HOUR).as_millis();
    let mut plant = Vec::new();
    for _ in 0..3 {
        let r = record(Some("olga"));
        let key = store.session_key(&r.key);
        let value = stored_s1(future, "00000000000000000004", Some(b"olga"), br#"{"a":1}"#);
        let _: () = cmd(
            &mut raw,
            client::cmd("SET")
                .arg(&key)
                .arg(value)
                .arg("PXAT")
                .arg(future),
        )
        .await;
        let _: i64 = cmd(
            &mut raw,
            client::cmd("ZADD")
                .arg(store.user_index_key("olga"))
                .arg(future)
                .arg(r.key.to_hex()),
        )
        .await;
        plant.push((r.key, key));
    }
    let (saved, touched, deleted) = (&plant[0], &plant[1], &plant[2]);

    let loaded = store.load(&saved.0).await.unwrap().unwrap();
    assert_eq!(
        (
            loaded.version,
            loaded.user.as_deref(),
            loaded.created_at.as_millis()
        ),
        (4, Some("olga"), 1)
    );
    assert_eq!(loaded.expires_at.as_millis(), future);
    assert_eq!(loaded.data.get("a"), Some(&serde_json::json!(1)));
    assert_eq!(store.list_by_user("olga").await.unwrap().records.len(), 3);

    let later = Timestamp::from_millis(future + 60_000);
    assert!(store.touch(&touched.0, later).await.unwrap());
    let value: Vec<u8> = cmd(&mut raw, client::cmd("GET").arg(&touched.1)).await;
    assert!(
        value.starts_with(b"S1"),
        "{}",
        String::from_utf8_lossy(&value)
    );
    assert_eq!(
        store.load(&touched.0).await.unwrap().unwrap().expires_at,
        later
    );

    let mut stale = loaded.clone();
    stale.version = 3;
    assert!(matches!(store.save(&stale).await, Err(Error::Conflict)));
    let mut next = loaded.clone();
    next.data.insert("b".into(), serde_json::json!(2));
    next.version = store.save(&next).await.unwrap();
    assert_eq!(next.version, 5);
    let value: Vec<u8> = cmd(&mut raw, client::cmd("GET").arg(&saved.1)).await;
    assert!(
        value.starts_with(b"S2"),
        "{}",
        String::from_utf8_lossy(&value)
    );
    assert_eq!(
        std::str::from_utf8(&value[22..38]).unwrap(),
        digest_of(&value[38..])
    );
    assert_eq!(store.load(&saved.0).await.unwrap(), Some(next));

    assert!(store.delete(&deleted.0).await.unwrap());
    assert_eq!(store.load(&deleted.0).await.unwrap(), None);
    assert_eq!(store.delete_by_user("olga").await.unwrap(), 2);
}

/// A save sends back the bytes its load found sound, and the script
/// skips the digest only while the stored value is exactly those bytes:
/// after a touch (another expiry in the header) the digest is checked and
/// the save succeeds; after a save by another store instance, the save
/// conflicts; saving twice from one load, the second conflicts.
async fn a_save_after_a_touch_or_another_save_is_judged_on_what_is_stored(server: Server) {
    let (store, _raw) = setup(server).await;
    let other = RedisStore::builder(server.shared_url().unwrap())
        .prefix(store.prefix())
        .connect()
        .await
        .unwrap();
    let mut r = record(Some("tia"));
    r.data.insert("n".into(), serde_json::json!(1));
    store.create(&r).await.unwrap();

    let mut loaded = store.load(&r.key).await.unwrap().unwrap();
    let later = loaded.expires_at.saturating_add(HOUR);
    assert!(other.touch(&r.key, later).await.unwrap());
    loaded.data.insert("n".into(), serde_json::json!(2));
    loaded.version = store.save(&loaded).await.unwrap();
    assert_eq!(loaded.version, 1);
    // (The save sets the expiry its record carries.)
    assert_eq!(other.load(&r.key).await.unwrap().as_ref(), Some(&loaded));

    let mut stale = store.load(&r.key).await.unwrap().unwrap();
    let mut winner = other.load(&r.key).await.unwrap().unwrap();
    winner.data.insert("n".into(), serde_json::json!(3));
    winner.version = other.save(&winner).await.unwrap();
    stale.data.insert("n".into(), serde_json::json!(4));
    assert!(matches!(store.save(&stale).await, Err(Error::Conflict)));

    let mut twice = store.load(&r.key).await.unwrap().unwrap();
    twice.data.insert("n".into(), serde_json::json!(5));
    assert_eq!(store.save(&twice).await.unwrap(), 3);
    assert!(matches!(store.save(&twice).await, Err(Error::Conflict)));
    assert_eq!(
        store.load(&r.key).await.unwrap().unwrap().data.get("n"),
        Some(&serde_json::json!(5))
    );
}

/// A save onto a session expired by its header (still held by Redis: its
/// key expires later) or onto nothing is `NotFound`, and writes nothing:
/// the leftover stays for Redis to expire.
async fn a_save_onto_an_expired_or_absent_session_writes_nothing(server: Server) {
    let (store, mut raw) = setup(server).await;
    let mut r = record(Some("eve"));
    r.version = 3;
    let key = store.session_key(&r.key);
    let past = Timestamp::now().as_millis() - 1_000;
    let leftover = stored(past, "00000000000000000003", Some(b"eve"), b"{}");
    let _: () = cmd(
        &mut raw,
        client::cmd("SET")
            .arg(&key)
            .arg(leftover)
            .arg("PX")
            .arg(600_000),
    )
    .await;
    assert_save_writes_nothing(
        server,
        &store,
        &mut raw,
        &r,
        "expired by its header",
        |result| assert!(matches!(result, Err(Error::NotFound)), "{result:?}"),
    )
    .await;

    let absent = record(Some("eve"));
    assert_save_writes_nothing(server, &store, &mut raw, &absent, "absent", |result| {
        assert!(matches!(result, Err(Error::NotFound)), "{result:?}")
    })
    .await;
    let exists: i64 = cmd(
        &mut raw,
        client::cmd("EXISTS").arg(store.session_key(&absent.key)),
    )
    .await;
    assert_eq!(exists, 0, "a save never creates");
}

/// A TCP proxy in front of the shared server, to hold a client's commands
/// at a chosen point. It forwards each connection's commands in order
/// and the replies untouched; once a command matching `trigger` has gone
/// through, it holds every later command of every connection (recording
/// their names) until [`Proxy::release`].
struct Proxy {
    port: u16,
    upstream: String,
    gate: std::sync::Arc<Gate>,
}

/// Whether a command (its arguments) trips the proxy's gate.
type Trigger = Box<dyn Fn(&[Vec<u8>]) -> bool + Send + Sync>;

/// The server's side of a proxied connection: replies in, commands out.
type Upstream = (
    Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
);

struct Gate {
    trigger: Trigger,
    tripped: std::sync::atomic::AtomicBool,
    released: std::sync::atomic::AtomicBool,
    held: std::sync::Mutex<Vec<String>>,
}

/// One command from a client's stream (an array of bulk strings, as the
/// `redis` crate sends every command): its arguments and its length in
/// bytes, or `None` while incomplete.
fn parse_command(buf: &[u8]) -> Option<(Vec<Vec<u8>>, usize)> {
    fn line(buf: &[u8], at: usize, tag: u8) -> Option<(usize, usize)> {
        let end = at + buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
        assert_eq!(buf[at], tag, "not a command as the redis crate sends it");
        let n = std::str::from_utf8(&buf[at + 1..end])
            .unwrap()
            .parse()
            .unwrap();
        Some((n, end + 2))
    }
    let (count, mut at) = line(buf, 0, b'*')?;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        let (len, start) = line(buf, at, b'$')?;
        args.push(buf.get(start..start + len)?.to_vec());
        buf.get(start + len..start + len + 2)?;
        at = start + len + 2;
    }
    Some((args, at))
}

impl Proxy {
    async fn start(
        server: Server,
        trigger: impl Fn(&[Vec<u8>]) -> bool + Send + Sync + 'static,
    ) -> Self {
        let upstream = server.shared_url().unwrap_or_else(|e| panic!("{e}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let gate = std::sync::Arc::new(Gate {
            trigger: Box::new(trigger),
            tripped: false.into(),
            released: false.into(),
            held: Vec::new().into(),
        });
        let shared = gate.clone();
        let to = upstream.clone();
        tokio::spawn(async move {
            loop {
                let (client, _) = listener.accept().await.unwrap();
                tokio::spawn(Self::serve(client, to.clone(), shared.clone()));
            }
        });
        Self {
            port,
            upstream,
            gate,
        }
    }

    /// The URL of the shared server through the proxy (the same database).
    fn url(&self) -> String {
        let upstream = &self.upstream;
        let db = match upstream.strip_prefix("redis://") {
            Some(rest) => rest.split_once('/').map_or("", |(_, db)| db),
            None => upstream.split_once("?db=").map_or("", |(_, db)| db),
        };
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    async fn serve(client: tokio::net::TcpStream, upstream: String, gate: std::sync::Arc<Gate>) {
        let server: Upstream = if let Some(path) = upstream.strip_prefix("unix://") {
            let path = path.split('?').next().unwrap();
            let (r, w) = tokio::net::UnixStream::connect(path)
                .await
                .unwrap()
                .into_split();
            (Box::new(r), Box::new(w))
        } else if let Some(rest) = upstream.strip_prefix("redis://") {
            let host = rest.split('/').next().unwrap();
            assert!(
                !host.contains('@'),
                "the proxy test supports servers without a password: {upstream}"
            );
            let (r, w) = tokio::net::TcpStream::connect(host)
                .await
                .unwrap()
                .into_split();
            (Box::new(r), Box::new(w))
        } else {
            panic!("the proxy test needs a redis:// or unix:// server, not {upstream}");
        };
        Self::forward(client, server, gate).await;
    }

    async fn forward(
        client: tokio::net::TcpStream,
        (mut from_server, mut to_server): Upstream,
        gate: std::sync::Arc<Gate>,
    ) {
        use std::sync::atomic::Ordering::SeqCst;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut from_client, mut to_client) = client.into_split();
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
        });
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = match from_client.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            while let Some((args, len)) = parse_command(&buf) {
                if gate.tripped.load(SeqCst) {
                    let name = String::from_utf8_lossy(&args[0]).to_uppercase();
                    gate.held.lock().unwrap().push(name);
                    while !gate.released.load(SeqCst) {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                // Tripped before the command is sent: whatever the client
                // sends after its reply is held.
                if (gate.trigger)(&args) {
                    gate.tripped.store(true, SeqCst);
                }
                if to_server.write_all(&buf[..len]).await.is_err() {
                    return;
                }
                buf.drain(..len);
            }
        }
    }

    /// Whether a command matching the trigger went through.
    fn tripped(&self) -> bool {
        self.gate.tripped.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The names of the commands held so far.
    fn held(&self) -> Vec<String> {
        self.gate.held.lock().unwrap().clone()
    }

    /// Lets the held commands (and all later ones) through, in order.
    fn release(&self) {
        self.gate
            .released
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Issue 14, item 3: a session moved U→V and at once back V→U stays in
/// U's index, whatever the first save sends after its script ran. Save 1
/// (U→V) goes through a proxy that holds every command it sends after
/// the call that writes the session (the script call after "bind
/// first"); save 2 (V→U) then runs to completion on another connection;
/// only then are save 1's held commands let through. A store that removed
/// a session from its former user's index right after the write (as this
/// one did before rule 2 of `store/index.rs`) sends `ZREM` U there, which
/// lands after save 2 re-bound the session to U and drops a live session
/// from U's index.
async fn a_move_back_is_not_undone_by_the_first_moves_late_commands(server: Server) {
    let (direct, mut raw) = setup(server).await;
    let (u, v) = ("ulla", "vera");
    let mut r = record(Some(u));
    r.data.insert("step".into(), serde_json::json!(0));
    direct.create(&r).await.unwrap();

    // Save 1's write of the session is the script call whose last
    // argument says the new user's index entry is already there.
    let proxy = Proxy::start(server, |args| {
        args[0].eq_ignore_ascii_case(b"EVALSHA") && args.last().is_some_and(|a| a == b"1")
    })
    .await;
    let proxied = RedisStore::builder(proxy.url())
        .prefix(direct.prefix())
        // Save 1 waits for its held commands while save 2 runs.
        .operation_timeout(Duration::from_secs(30))
        .connect()
        .await
        .unwrap();
    let mut to_v = r.clone();
    to_v.user = Some(v.to_owned());
    to_v.data.insert("step".into(), serde_json::json!(1));
    let save_1 = tokio::spawn({
        let to_v = to_v.clone();
        async move { proxied.save(&to_v).await }
    });

    // Save 1's script has run once the session is V's.
    let key = direct.session_key(&r.key);
    let mut waited = Duration::ZERO;
    loop {
        let value: Vec<u8> = cmd(&mut raw, client::cmd("GET").arg(&key)).await;
        if value.get(58..78) == Some(b"00000000000000000001") {
            assert_eq!(
                direct.load(&r.key).await.unwrap().unwrap().user.as_deref(),
                Some(v)
            );
            break;
        }
        assert!(
            waited < Duration::from_secs(20),
            "save 1 never wrote the session"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        waited += Duration::from_millis(5);
    }

    assert!(proxy.tripped(), "save 1 wrote without the expected call");

    // Save 2, V→U, from start to end while save 1's later commands wait.
    let mut back = to_v.clone();
    back.version = 1;
    back.user = Some(u.to_owned());
    back.data.insert("step".into(), serde_json::json!(2));
    back.version = direct.save(&back).await.unwrap();
    assert_eq!(back.version, 2);

    let held = proxy.held();
    proxy.release();
    assert_eq!(save_1.await.unwrap().unwrap(), 1);

    assert_eq!(
        direct.list_by_user(u).await.unwrap().records,
        vec![back.clone()],
        "U's index lost the session; save 1 sent {held:?} after its script"
    );
    assert_eq!(direct.list_by_user(v).await.unwrap().records, vec![]);
    assert_eq!(direct.load(&r.key).await.unwrap(), Some(back));
    assert_eq!(direct.delete_by_user(u).await.unwrap(), 1, "held: {held:?}");
}

per_server!(
    garbage_string_is_decode_error_and_stays,
    layout_is_one_string_read_back_exactly,
    malformed_values_are_decode_errors_and_stay,
    corrupted_session_in_an_index_is_a_decode_error_when_listed,
    index_follows_create_touch_save_and_delete,
    stale_entries_are_filtered_and_pruned_and_lagging_scores_repaired,
    failed_save_to_another_user_is_never_listed_there,
    prefixes_isolate_stores_and_debug_shows_no_secrets,
    create_over_a_taken_key_replaces_only_a_leftover_expired_by_our_clock,
    save_judges_short_expired_and_foreign_values_like_the_full_read,
    delete_by_user_drops_foreign_index_entries,
    a_stale_save_leaves_the_live_session_untouched,
    a_save_onto_a_foreign_string_leaves_it_and_its_expiry,
    a_save_onto_a_session_with_broken_data_leaves_it_untouched,
    a_save_onto_an_expired_or_absent_session_writes_nothing,
    s1_sessions_still_work_and_their_next_save_writes_s2,
    a_save_after_a_touch_or_another_save_is_judged_on_what_is_stored,
    a_move_back_is_not_undone_by_the_first_moves_late_commands,
);
