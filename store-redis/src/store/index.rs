//! The per-user index, and why it can never miss a live session.
//!
//! A session key and its user's index usually live in different cluster
//! slots, so no script may touch both. The index is therefore maintained
//! with separate commands, ordered so that a crash (or a lost connection)
//! between two steps can leave a *stale* index entry but never a live
//! session missing from its index:
//!
//! 1. A session enters a user's index **before** it is written bound to
//!    that user (`ZADD GT` with its expiry, so a score only rises): on
//!    `create` of a bound session, and on a `save` that binds it to
//!    another user. (`save` finds that out itself: when the stored user
//!    differs from the new one, the script writes nothing and answers
//!    "bind first"; the client adds the index entry and sends the save
//!    again. A save that keeps the user, the common case, does not touch
//!    the index.)
//! 2. Nothing removes a session from an index at the moment it leaves
//!    (a `save` to another user, `delete`, `delete_by_user`, a `touch`
//!    into the past): a removal sent after the session write could land
//!    after a concurrent `save` or `create` bound the same key to that
//!    user again (U→V racing V→U, a delete racing a re-create) and lose a
//!    live session from its index. The suite's randomized concurrent
//!    cases caught exactly that. Entries go only through the guarded
//!    prune of rule 4.
//! 3. A `touch` or `save` that moves the expiry later leaves the score
//!    alone, so a score may lag behind the session's real expiry. That is
//!    harmless: nothing relies on the score to *list* a session (rule 4
//!    reads the session itself), and a lagging score only makes an entry
//!    prunable, which rule 4 does only after seeing that the session is
//!    not a live session of that user. Such a session can only become one
//!    again through rule 1 (a save never resurrects a session, a touch
//!    never recreates one), which raises the score first.
//! 4. `list_by_user` and `delete_by_user` read the index, then each
//!    session it names, and return (or delete) only live sessions whose
//!    stored user really is the one asked for: a stale entry is never
//!    returned or counted. They prune an entry only when its session is
//!    not a live session of that user **and** (checked atomically on the
//!    index key) its score is not in the future; since step 1 raises the
//!    score before a session is written, an entry that is about to become
//!    valid is never pruned. `list_by_user` raises lagging scores it sees.
//!
//! An index thus holds its user's live sessions, plus entries of sessions
//! that since expired, were deleted or moved to another user, until the
//! first `list_by_user` / `delete_by_user` after their score has passed
//! prunes them (a user who never comes back keeps such entries, as
//! Redis keeps any key without an expiry). Leftovers of interrupted calls
//! are the same kind of stale entry. Index upkeep after a read is best
//! effort: if it fails, the call still succeeds and the failure is logged
//! with `tracing`.

use futures_util::future::join_all;
use redis::{Cmd, RedisError, Script, Value};
use session_core::{Error, StorageKey, Timestamp, UserSessions};

use super::RedisStore;
use crate::codec::CodecError;
use crate::connection::{Conn, backend};
use crate::scripts::is_no_script;

impl RedisStore {
    /// Adds `member` to `user`'s index with a score of at least `score`
    /// (`ZADD GT`: a score never moves down here), **then** sends `cmd`
    /// (a `SET`, or a call of `script`), which writes the session: the
    /// index entry exists before the session does (rule 1
    /// above).
    ///
    /// On a single server both commands go in one pipeline: one round
    /// trip, and one connection executes them in order. On `NOSCRIPT` only
    /// the script call is sent again, after loading the script (the
    /// `ZADD GT` already took effect, and is idempotent anyway). On a
    /// cluster the index and the session usually live on different nodes,
    /// so the two are sent one after the other.
    pub(super) async fn after_index(
        &self,
        operation: &'static str,
        user: &str,
        score: Timestamp,
        member: &str,
        script: Option<&Script>,
        cmd: Cmd,
    ) -> Result<Value, Error> {
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(self.user_index_key(user))
            .arg("GT")
            .arg(score.as_millis())
            .arg(member);
        let mut conn = self.conn();
        match &conn {
            Conn::Single(_) => {
                let mut pipe = redis::pipe();
                pipe.add_command(zadd).add_command(cmd).ignore_errors();
                let mut replies: Vec<Value> = pipe
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| backend(operation, e))?;
                let (Some(reply), Some(indexed), None) =
                    (replies.pop(), replies.pop(), replies.pop())
                else {
                    return Err(Error::backend(
                        crate::NAME,
                        operation,
                        false,
                        CodecError::Reply("a pipeline of two commands answered otherwise".into()),
                    ));
                };
                if let Value::ServerError(e) = indexed {
                    return Err(backend(operation, e.into()));
                }
                match reply {
                    Value::ServerError(e) => {
                        let e = RedisError::from(e);
                        let (Some(script), Some(cmd)) =
                            (script.filter(|_| is_no_script(&e)), pipe.cmd_iter().last())
                        else {
                            return Err(backend(operation, e));
                        };
                        script
                            .load_async(&mut conn)
                            .await
                            .map_err(|e| backend(operation, e))?;
                        cmd.query_async(&mut conn)
                            .await
                            .map_err(|e| backend(operation, e))
                    }
                    reply => Ok(reply),
                }
            }
            #[cfg(feature = "cluster")]
            Conn::Cluster(_) => {
                zadd.exec_async(&mut conn)
                    .await
                    .map_err(|e| backend(operation, e))?;
                match script {
                    Some(script) => self.eval(script, &cmd).await,
                    None => cmd.query_async(&mut conn).await,
                }
                .map_err(|e| backend(operation, e))
            }
        }
    }

    /// Removes `members`, which are not storage keys at all, from
    /// `user`'s index. A failure only leaves them for the next read: it is
    /// logged, not returned.
    async fn index_remove<M: redis::ToRedisArgs + Send + Sync>(
        &self,
        operation: &'static str,
        user: &str,
        members: M,
    ) {
        let mut conn = self.conn();
        let result: Result<i64, _> = redis::cmd("ZREM")
            .arg(self.user_index_key(user))
            .arg(members)
            .query_async(&mut conn)
            .await;
        if let Err(error) = result {
            tracing::warn!(operation, %error, "could not remove foreign entries from a user index; the next read retries");
        }
    }

    /// Reads `user`'s index: (member, score) pairs.
    async fn index_entries(
        &self,
        operation: &'static str,
        user: &str,
    ) -> Result<Vec<(String, f64)>, Error> {
        let mut conn = self.conn();
        redis::cmd("ZRANGE")
            .arg(self.user_index_key(user))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .map_err(|e| backend(operation, e))
    }

    /// Index upkeep after a read: prune `prune` (only if their score is
    /// still `<= now`), raise `raise`. Failures are logged.
    async fn index_upkeep(
        &self,
        operation: &'static str,
        user: &str,
        now: Timestamp,
        prune: &[String],
        raise: &[(Timestamp, String)],
    ) {
        if prune.is_empty() && raise.is_empty() {
            return;
        }
        let mut conn = self.conn();
        let mut invocation = self.scripts.index_upkeep.key(self.user_index_key(user));
        invocation.arg(now.as_millis()).arg(prune.len());
        for member in prune {
            invocation.arg(member);
        }
        for (score, member) in raise {
            invocation.arg(score.as_millis()).arg(member);
        }
        if let Err(error) = invocation.invoke_async::<i64>(&mut conn).await {
            tracing::warn!(operation, %error, "user index upkeep failed; it will be retried on the next read");
        }
    }

    pub(super) async fn do_list_by_user(&self, user: &str) -> Result<UserSessions, Error> {
        const OP: &str = "list_by_user";
        let now = Timestamp::now();
        let entries = self.index_entries(OP, user).await?;
        let mut keys = Vec::with_capacity(entries.len());
        let mut prune = Vec::new();
        for (member, score) in entries {
            match StorageKey::from_hex(&member) {
                Ok(key) => keys.push((key, member, score)),
                // Not ours: nothing can ever make it valid.
                Err(_) => prune.push(member),
            }
        }
        let fetched = join_all(keys.iter().map(|(key, _, _)| self.fetch(OP, *key))).await;
        let mut found = UserSessions::default();
        let mut raise = Vec::new();
        let mut first_error = None;
        for ((key, member, score), result) in keys.into_iter().zip(fetched) {
            match result {
                Ok(Some(record)) if record.user.as_deref() == Some(user) => {
                    if score < record.expires_at.as_millis() as f64 {
                        raise.push((record.expires_at, member));
                    }
                    found.records.push(record);
                }
                Ok(_) => prune.push(member),
                // Listed under this user and unreadable: reported, and
                // left in the index so "log out everywhere" removes it.
                Err(Error::Decode { .. }) => found.unreadable.push(key),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        self.index_upkeep(OP, user, now, &prune, &raise).await;
        match first_error {
            Some(e) => Err(e),
            None => Ok(found),
        }
    }

    pub(super) async fn do_delete_by_user(&self, user: &str) -> Result<u64, Error> {
        const OP: &str = "delete_by_user";
        let now = Timestamp::now();
        let entries = self.index_entries(OP, user).await?;
        let mut keys = Vec::with_capacity(entries.len());
        // Not storage keys: nothing can ever make them valid.
        let mut junk = Vec::new();
        for (member, _) in entries {
            match StorageKey::from_hex(&member) {
                Ok(key) => keys.push((key, member)),
                Err(_) => junk.push(member),
            }
        }
        let deletes = join_all(
            keys.iter()
                .map(|(key, _)| self.delete_script(OP, key, now, Some(user))),
        )
        .await;
        let mut count = 0u64;
        let mut prune = Vec::new();
        let mut first_error = None;
        for ((_, member), result) in keys.into_iter().zip(deletes) {
            // Deleted or not, the entry goes only through the guarded
            // prune (rule 4): removing it outright could race with a
            // create binding the same key to this user again.
            match result {
                Ok((deleted, _)) => {
                    count += u64::from(deleted);
                    prune.push(member);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if !junk.is_empty() {
            self.index_remove(OP, user, &junk).await;
        }
        self.index_upkeep(OP, user, now, &prune, &[]).await;
        match first_error {
            Some(e) => Err(e),
            None => Ok(count),
        }
    }
}
