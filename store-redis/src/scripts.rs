//! The Lua scripts. Each one-key script touches exactly one key
//! (`KEYS[1]`), so it runs unchanged on a single server and on a cluster.
//! Its many-key form (`*_MANY`, single server only, for
//! [batches](crate::batched)) runs the same Lua function over each of its
//! keys in turn: the function's text is shared (the `*_fn!` macros), so
//! the two forms cannot drift apart. Scripts are sent as `EVALSHA`; on
//! `NOSCRIPT` (after a `SCRIPT FLUSH`, a restart or a failover) the store
//! loads the script and sends the call again.
//!
//! A session is one string (see `codec` for the layout): a fixed-width
//! header, the user, the JSON data. The scripts read it with
//! `string.sub` only: the tag at 1-2, the expiry at 3-22 (`tonumber`),
//! then, in format `S2`, the digest at 23-38 (of bytes 39 onwards), and
//! the version as text at 59-78, the user marker (`u`/`-`) at 79, the
//! user's length at 80-89, the user at 90 onwards. The previous format,
//! `S1`, has no digest and the same fields 16 bytes earlier: the scripts
//! read both, with `h` (16 or 0) added to every offset past the expiry.
//! The key's own expiry is set to the record's (`PXAT`). Every script
//! also receives the caller's clock (`now`, ms) and treats `expires <=
//! now` as absent, so "live" means exactly `now < expires_at` even in the
//! millisecond Redis has not expired the key yet.
//!
//! A key holding another Redis type makes `GET` fail with `WRONGTYPE`;
//! the scripts call it through `redis.pcall` and report such a value, like
//! any value not in the session format, as unreadable (left untouched).
//!
//! Replies are a status, or `{status, user}` naming the user a session
//! was bound to (see each script): `0` absent, `1` done / conflict (per
//! script), `2` saved, `3` the stored value is not a readable session
//! (left untouched), `4` bind first, `5` the stored session does not
//! match its digest (left untouched).

use redis::{Cmd, ErrorKind, RedisError, Script, ServerErrorKind, Value};

use crate::connection::Connector;

/// Declares the locals every script written as a Lua function starts
/// with, before the function: `sub`, and the caller's clock `now`.
macro_rules! function_prologue {
    () => {
        r"
local sub = string.sub
local sha1hex = redis.sha1hex
local now = tonumber(ARGV[1])
"
    };
}

/// Reads the stored value of `k` into `old`, its expiry into `oe` and
/// the shift of its fields past the expiry into `h` (16 for `S2`, 0 for
/// `S1`); returns `0` when absent and `3` when unreadable.
macro_rules! read_session {
    () => {
        r"
local old = redis.pcall('GET', k)
if not old then return 0 end
if type(old) ~= 'string' then return 3 end
local h
local tag = sub(old, 1, 2)
if tag == 'S2' then h = 16 elseif tag == 'S1' then h = 0 else return 3 end
local oe = tonumber(sub(old, 3, 22))
if oe == nil then return 3 end
"
    };
}

/// Reads the user's length of `old` into `n`, and returns `3` when it is
/// malformed.
macro_rules! read_user {
    () => {
        r"
local n = tonumber(sub(old, 64 + h, 73 + h))
if n == nil or #old < 73 + h + n then return 3 end
"
    };
}

/// `create`: insert if absent.
///
/// `KEYS[1]` session key. `ARGV`: now, expires (ms), value. Returns `1`
/// when written (or when the record is born expired and so is absent at
/// once), `0` when a live or unreadable value holds the key. The common
/// case is a single `SET NX PXAT`.
const CREATE: &str = r"
local k = KEYS[1]
local now = tonumber(ARGV[1])
local e = tonumber(ARGV[2])
if e > now and redis.call('SET', k, ARGV[3], 'NX', 'PXAT', ARGV[2]) then return 1 end
local old = redis.pcall('GET', k)
if not old then return 1 end
if type(old) ~= 'string' then return 0 end
local tag = string.sub(old, 1, 2)
if tag ~= 'S2' and tag ~= 'S1' then return 0 end
local oe = tonumber(string.sub(old, 3, 22))
if oe == nil or oe > now then return 0 end
if e <= now then
  redis.call('DEL', k)
else
  redis.call('SET', k, ARGV[3], 'PXAT', ARGV[2])
end
return 1
";

/// The compare-and-set of one session, as the Lua function `save(k, want,
/// e, v, indexed, seen)` (the arguments of [`SAVE`] after `now`), after
/// the locals `sub`, `sha1hex` and `now`; [`SAVE`] calls it once,
/// [`SAVE_MANY`] once per key.
macro_rules! save_fn {
    () => {
        concat!(
            function_prologue!(),
            "local function save(k, want, e, v, indexed, seen)\n",
            read_session!(),
            r"
if oe <= now then return 0 end
if h == 16 and old ~= seen and sub(old, 23, 38) ~= sub(sha1hex(sub(old, 39)), 1, 16) then
  return 5
end
local live = tonumber(e) > now
local at = 43 + h
if live and sub(old, at, at - 1 + #want) == want
  and sub(old, at + #want, at + #want) == '{' and sub(old, -1) == '}' then
  redis.call('SET', k, v, 'PXAT', e)
  return 2
end
",
            read_user!(),
            r"
if sub(old, 74 + h + n, 74 + h + n) ~= '{' or sub(old, -1) ~= '}' then return 3 end
if sub(old, at, at + 19) ~= sub(want, 1, 20) then return 1 end
if not live then
  redis.call('DEL', k)
elseif sub(want, 21, 21) == 'u' and indexed ~= '1' then
  return 4
else
  redis.call('SET', k, v, 'PXAT', e)
end
if sub(old, 63 + h, 63 + h) == 'u' then return {2, sub(old, 74 + h, 73 + h + n)} end
return 2
end
"
        )
    };
}

/// `save`: compare-and-set on the version.
///
/// `KEYS[1]` session key. `ARGV`: now, the expectation (the version read,
/// 20 digits as stored, then the new record's user marker, length and
/// name, as stored), new expires (ms), new value, the stored value as a
/// load of this client last found it sound (or an empty string: see
/// `seen` below), and `1` when the client has already added the session
/// to its new user's index (else `0`).
///
/// A stored value that is not what this store wrote is unreadable, and a
/// save never overwrites it, at any version: in format `S2`, one whose
/// digest (`redis.sha1hex` of everything after it, cut to 16 hex digits)
/// does not match, wherever the damage is (even damage that keeps the
/// data a well-framed JSON object); in both formats, one whose data is
/// not framed as a JSON object (`{` … `}`). The digest is checked first,
/// as a load checks it, so a save and a load call the same values
/// unreadable. (Only a value of the previous format, `S1`, without a
/// digest, is judged by its framing alone, until its first save rewrites
/// it as `S2`.) Hashing the value is the dearest part of the script, so
/// it is skipped when the stored value is byte for byte `seen`: the value
/// a load of this client found sound (digest and data) and kept for this
/// save (see `verified`); Lua strings are interned, so that comparison is
/// one pointer comparison. Any other value (a touch, a save or damage
/// since that load, or no `seen`) has its digest checked.
///
/// Check first, write only what stays. The script reads the stored value
/// (`GET`) and judges it (format `S2` or `S1`, live by the caller's
/// clock, the digest, the expected version and user, the data's
/// framing) before it writes anything; then it writes once, and only a
/// write it keeps: the new
/// value (`SET … PXAT`) when the save succeeds, or a `DEL` when the
/// saved record's expiry is already past. Whenever the save does not
/// happen (absent, expired, another version, unreadable, not a session
/// at all, or "bind first"), the key is left exactly as it was, its
/// value and its expiry. (Writing first, `SET … XX GET`, and putting the
/// old value back when the check failed would look the same to clients,
/// the script being atomic, but not to replicas, the AOF and keyspace
/// notifications, which would see both writes; and a value not in the
/// session format could not get its own expiry back, the script not
/// knowing it.)
///
/// Returns `0` absent or expired, `1` version conflict, `3` unreadable,
/// `5` the digest does not match (unreadable too), `4` "bind first": the
/// session would be bound to another user, whose index the client must
/// update before the session is written (call
/// again with the last argument `1`), and `2` saved, or `{2, old user}`
/// when the session left that user (bound to another one, or deleted by
/// an expiry in the past). The client leaves that user's index entry to
/// the guarded prune of a later read (rule 2 in `store/index.rs`).
const SAVE: &str = concat!(
    save_fn!(),
    "return save(KEYS[1], ARGV[2], ARGV[3], ARGV[4], ARGV[6], ARGV[5])\n"
);

/// `save` of many sessions at once (on a single server): [`SAVE`] for
/// each key in turn, in one script call, so that many waiting saves share
/// the cost of one command.
///
/// `KEYS` the session keys. `ARGV`: now, then for each key in order the
/// expectation, expires, value and `seen` that [`SAVE`] takes (never
/// "already indexed": that is a second call, sent alone). Returns one reply per key,
/// in order, each what [`SAVE`] would have returned for it. The same key
/// may appear more than once: its saves run in order, as they would one
/// after the other.
const SAVE_MANY: &str = concat!(
    save_fn!(),
    r"
local replies = {}
for i = 1, #KEYS do
  local a = 4 * i - 2
  replies[i] = save(KEYS[i], ARGV[a], ARGV[a + 1], ARGV[a + 2], '0', ARGV[a + 3])
end
return replies
"
);

/// The body of [`TOUCH`], as the Lua function `touch(k, e, etext)`.
macro_rules! touch_fn {
    () => {
        concat!(
            function_prologue!(),
            "local function touch(k, e, etext)\n",
            read_session!(),
            r"
if oe <= now then return 0 end
if tonumber(e) > now then
  redis.call('SETRANGE', k, 2, etext)
  redis.call('PEXPIREAT', k, e)
  return 1
end
",
            read_user!(),
            r"
redis.call('DEL', k)
if sub(old, 63 + h, 63 + h) == 'u' then return {1, sub(old, 74 + h, 73 + h + n)} end
return 1
end
"
        )
    };
}

/// `touch`: move the expiry of a live record; never recreates.
///
/// `KEYS[1]` session key. `ARGV`: now, expires (ms), expires as written in
/// the header (20 characters). Returns `0` absent or expired, `1`
/// touched, `{1, user}` deleted (an expiry in the past) and bound to that
/// user, `3` unreadable.
const TOUCH: &str = concat!(touch_fn!(), "return touch(KEYS[1], ARGV[2], ARGV[3])\n");

/// `touch` of many sessions at once (on a single server): [`TOUCH`] for
/// each key in turn, in one script call. `KEYS` the session keys; `ARGV`:
/// now, then the two arguments [`TOUCH`] takes after `now`, per key.
/// Returns one reply per key, in order.
const TOUCH_MANY: &str = concat!(
    touch_fn!(),
    r"
local replies = {}
for i = 1, #KEYS do
  replies[i] = touch(KEYS[i], ARGV[2 * i], ARGV[2 * i + 1])
end
return replies
"
);

/// The body of [`DELETE`], as the Lua function `delete(k, only)`.
macro_rules! delete_fn {
    () => {
        concat!(
            function_prologue!(),
            "local function delete(k, only)\n",
            read_session!(),
            read_user!(),
            r"
local u = false
if sub(old, 63 + h, 63 + h) == 'u' then u = sub(old, 74 + h, 73 + h + n) end
if only and u ~= only then return 0 end
redis.call('DEL', k)
local status = 1
if oe <= now then status = 0 end
if u then return {status, u} end
return status
end
"
        )
    };
}

/// `delete`, and one step of `delete_by_user`.
///
/// `KEYS[1]` session key. `ARGV`: now, and optionally the user the record
/// must be bound to. Returns `1` or `{1, user}` when a live record was
/// deleted, `0` or `{0, user}` when nothing live (of that user) was there
/// (an expired leftover is removed on the way), `3` unreadable. Only the
/// header and the user are read, so a session whose data is corrupt can
/// still be deleted.
const DELETE: &str = concat!(delete_fn!(), "return delete(KEYS[1], ARGV[2])\n");

/// `delete` of many sessions at once (on a single server): [`DELETE`] for
/// each key in turn, in one script call. `KEYS` the session keys; `ARGV`:
/// now, then per key `1` and the user the record must be bound to, or `0`
/// and an empty string. Returns one reply per key, in order.
const DELETE_MANY: &str = concat!(
    delete_fn!(),
    r"
local replies = {}
for i = 1, #KEYS do
  local only = nil
  if ARGV[2 * i] == '1' then only = ARGV[2 * i + 1] end
  replies[i] = delete(KEYS[i], only)
end
return replies
"
);

/// Index upkeep after a read of the sessions it points to.
///
/// `KEYS[1]` index key. `ARGV`: now, n, then n members to prune, then
/// pairs (score, member) to raise. A member is pruned only if its score
/// is still `<= now`: a concurrent create or rebinding save raises the
/// score of the entry *before* writing the session, so an entry that is
/// about to become valid is never removed. Returns the number of members
/// removed.
const INDEX_UPKEEP: &str = r"
local k = KEYS[1]
local now = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local removed = 0
for i = 3, 2 + n do
  local s = redis.call('ZSCORE', k, ARGV[i])
  if s and tonumber(s) <= now then
    removed = removed + redis.call('ZREM', k, ARGV[i])
  end
end
for i = 3 + n, #ARGV, 2 do
  redis.call('ZADD', k, 'GT', ARGV[i], ARGV[i + 1])
end
return removed
";

/// The compiled scripts (their SHA-1 digests are computed once).
pub(crate) struct Scripts {
    pub(crate) create: Script,
    pub(crate) save: Script,
    pub(crate) save_many: Script,
    pub(crate) touch: Script,
    pub(crate) touch_many: Script,
    pub(crate) delete: Script,
    pub(crate) delete_many: Script,
    pub(crate) index_upkeep: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            create: Script::new(CREATE),
            save: Script::new(SAVE),
            save_many: Script::new(SAVE_MANY),
            touch: Script::new(TOUCH),
            touch_many: Script::new(TOUCH_MANY),
            delete: Script::new(DELETE),
            delete_many: Script::new(DELETE_MANY),
            index_upkeep: Script::new(INDEX_UPKEEP),
        }
    }
}

/// Status: nothing (live) under the key.
pub(crate) const ABSENT: i64 = 0;
/// Status: `touch`/`delete` succeeded; `save` found another version.
pub(crate) const DONE_OR_CONFLICT: i64 = 1;
/// Status: `save` succeeded.
pub(crate) const SAVED: i64 = 2;
/// Status: the stored value is not a readable session.
pub(crate) const UNREADABLE: i64 = 3;
/// Status: `save` would bind the session to another user; add it to that
/// user's index first, then call again.
pub(crate) const BIND_FIRST: i64 = 4;
/// Status: the stored session does not match its digest (unreadable).
pub(crate) const DAMAGED: i64 = 5;

/// Whether `err` is `NOSCRIPT`: the server does not have the script.
pub(crate) fn is_no_script(err: &RedisError) -> bool {
    err.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

/// `EVALSHA <script> 1 <key>`, ready for the script's arguments, with
/// room for `args` more arguments of `bytes` bytes in all (the command
/// is then written without growing its buffer).
pub(crate) fn evalsha(script: &Script, key: &str, args: usize, bytes: usize) -> Cmd {
    let mut cmd = Cmd::with_capacity(4 + args, 64 + key.len() + bytes);
    cmd.arg("EVALSHA").arg(script.get_hash()).arg(1).arg(key);
    cmd
}

/// Sends a script call on `connector`'s connection; on `NOSCRIPT` loads
/// the script and sends the call again.
pub(crate) async fn eval(
    connector: &Connector,
    script: &Script,
    cmd: &Cmd,
) -> Result<Value, RedisError> {
    let mut conn = connector.conn();
    match cmd.query_async(&mut conn).await {
        Err(e) if is_no_script(&e) => {
            script.load_async(&mut conn).await?;
            cmd.query_async(&mut conn).await
        }
        other => other,
    }
}
