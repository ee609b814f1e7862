//! A walk through the store contract on the in-memory store:
//! create → load → login (bind a user) → save → list the user's sessions →
//! logout, printing what happens at each step.
//!
//! Run it with `cargo run -p examples --example quickstart`.

use std::time::Duration;

use session_core::{Error, ExpiryPolicy, Record, SessionId, SessionStore, Timestamp};
use session_store_memory::MemoryStore;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let store = MemoryStore::new(64 * 1024 * 1024);
    let policy = ExpiryPolicy::new(Duration::from_secs(30 * 60), Duration::from_secs(12 * 3600));

    // 1. A browser arrives: mint an id. Only its hash reaches the store.
    let id = SessionId::generate()?;
    let cookie = id.to_cookie_value();
    let key = id.storage_key();
    println!("1. new session");
    println!(
        "   cookie value (browser only): {}… ({} chars)",
        &cookie[..6],
        cookie.len()
    );
    println!("   storage key  (store only):   {key}");

    let now = Timestamp::now();
    let mut record = Record::new(key, now, policy.expires_at(now, now));
    record.data.insert("theme".into(), "dark".into());
    store.create(&record).await?;
    println!(
        "   created, version {}, expires in {:?}",
        record.version,
        policy.idle()
    );

    // 2. The next request sends the cookie back: parse strictly, load.
    //    A malformed value is simply "no session": no store call at all.
    let loaded = match SessionId::parse(&cookie) {
        Ok(parsed) => store.load(&parsed.storage_key()).await?,
        Err(_) => None,
    };
    println!(
        "2. load by cookie -> {:?}",
        loaded.as_ref().map(|r| &r.data)
    );
    println!(
        "   a forged cookie never reaches the store: parse(\"forged\") = {:?}",
        SessionId::parse("forged")
    );

    // 3. Login: bind the user, and save with compare-and-set.
    record.user = Some("alice".into());
    record
        .data
        .insert("signed_in_at".into(), now.as_millis().into());
    record.version = store.save(&record).await?;
    println!("3. login as alice: saved, now version {}", record.version);

    // A second request that read version 0 loses the race, visibly.
    let mut stale = record.clone();
    stale.version = 0;
    println!(
        "   a stale save (version 0) -> {:?}",
        store.save(&stale).await.err()
    );

    // 4. The same user signs in from a second browser.
    let phone = SessionId::generate()?.storage_key();
    let mut second = Record::new(phone, now, policy.expires_at(now, now));
    second.user = Some("alice".into());
    store.create(&second).await?;

    // 5. The "active sessions" page.
    let sessions = store.list_by_user("alice").await?;
    println!("4. alice has {} active sessions:", sessions.records.len());
    for s in &sessions.records {
        println!(
            "   - {} (version {}, expires at {})",
            s.key, s.version, s.expires_at
        );
    }

    // 6. Logout: delete the server record (the web layer also overwrites
    //    the cookie with an empty value and Max-Age=0).
    println!("5. logout -> deleted: {}", store.delete(&key).await?);
    println!("   load after logout -> {:?}", store.load(&key).await?);
    println!(
        "   a late save from a request still in flight -> {:?} (never resurrected)",
        store.save(&record).await.err()
    );

    // 7. Log out everywhere.
    println!(
        "6. log out everywhere -> {} session(s) deleted",
        store.delete_by_user("alice").await?
    );
    println!(
        "   alice now has {} active sessions",
        store.list_by_user("alice").await?.records.len()
    );
    Ok(())
}
