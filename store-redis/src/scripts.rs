//! The Lua scripts. Each one touches exactly one key (`KEYS[1]`), so each
//! runs unchanged on a single server and on a cluster. They are invoked
//! through [`redis::Script`], which sends `EVALSHA` and falls back to
//! loading the script when the server answers `NOSCRIPT` (after a
//! `SCRIPT FLUSH`, a restart or a failover).
//!
//! A session is a hash with the fields `v` (version, decimal), `d` (data,
//! JSON object), `c` (created, ms), `e` (expires, ms) and, only when the
//! session is bound to a user, `u` (the user). The key's own expiry is set
//! with `PEXPIREAT` to `e`. Every script also receives the caller's clock
//! (`now`, ms) and treats `e <= now` as absent, so "live" means exactly
//! `now < expires_at` even in the millisecond Redis has not expired the key
//! yet.
//!
//! Status codes returned in the first element of a reply:
//! `0` absent, `1` done / conflict (per script), `2` saved, `3` the stored
//! value is not a readable session (left untouched).

use redis::Script;

/// `create`: insert if absent.
///
/// `KEYS[1]` session key. `ARGV`: now, v, d, c, e, has_user (`1`/`0`), user.
/// Returns `1` when written (or when the record is born expired and so is
/// absent at once), `0` when a live or unreadable value holds the key.
const CREATE: &str = r"
local k = KEYS[1]
local now = tonumber(ARGV[1])
local t = redis.call('TYPE', k)['ok']
if t ~= 'none' then
  if t ~= 'hash' then return 0 end
  local old = tonumber(redis.call('HGET', k, 'e'))
  if old == nil or old > now then return 0 end
  redis.call('DEL', k)
end
if tonumber(ARGV[5]) <= now then return 1 end
if ARGV[6] == '1' then
  redis.call('HSET', k, 'v', ARGV[2], 'd', ARGV[3], 'c', ARGV[4], 'e', ARGV[5], 'u', ARGV[7])
else
  redis.call('HSET', k, 'v', ARGV[2], 'd', ARGV[3], 'c', ARGV[4], 'e', ARGV[5])
end
redis.call('PEXPIREAT', k, ARGV[5])
return 1
";

/// `save`: compare-and-set on the version.
///
/// `KEYS[1]` session key. `ARGV`: now, expected v, new v, d, c, e,
/// has_user, user. Returns `{0}` absent or expired, `{1}` version
/// conflict, `{2}` or `{2, old_user}` saved, `{3}` unreadable.
const SAVE: &str = r"
local k = KEYS[1]
local now = tonumber(ARGV[1])
local t = redis.call('TYPE', k)['ok']
if t == 'none' then return {0} end
if t ~= 'hash' then return {3} end
local f = redis.call('HMGET', k, 'v', 'e', 'u')
local e = tonumber(f[2])
if not f[1] or e == nil then return {3} end
if e <= now then return {0} end
if f[1] ~= ARGV[2] then return {1} end
if tonumber(ARGV[6]) <= now then
  redis.call('DEL', k)
else
  redis.call('HSET', k, 'v', ARGV[3], 'd', ARGV[4], 'c', ARGV[5], 'e', ARGV[6])
  if ARGV[7] == '1' then
    redis.call('HSET', k, 'u', ARGV[8])
  else
    redis.call('HDEL', k, 'u')
  end
  redis.call('PEXPIREAT', k, ARGV[6])
end
if f[3] then return {2, f[3]} end
return {2}
";

/// `touch`: move the expiry of a live record; never recreates.
///
/// `KEYS[1]` session key. `ARGV`: now, e. Returns `{0}` absent or expired,
/// `{1}` or `{1, user}` touched (an `e` in the past deletes the record),
/// `{3}` unreadable.
const TOUCH: &str = r"
local k = KEYS[1]
local now = tonumber(ARGV[1])
local t = redis.call('TYPE', k)['ok']
if t == 'none' then return {0} end
if t ~= 'hash' then return {3} end
local f = redis.call('HMGET', k, 'e', 'u')
local e = tonumber(f[1])
if e == nil then return {3} end
if e <= now then return {0} end
if tonumber(ARGV[2]) <= now then
  redis.call('DEL', k)
else
  redis.call('HSET', k, 'e', ARGV[2])
  redis.call('PEXPIREAT', k, ARGV[2])
end
if f[2] then return {1, f[2]} end
return {1}
";

/// `delete`, and one step of `delete_by_user`.
///
/// `KEYS[1]` session key. `ARGV`: now, and optionally the user the record
/// must be bound to. Returns `{1[, user]}` when a live record was deleted,
/// `{0[, user]}` when nothing live (of that user) was there (an expired
/// leftover is removed on the way), `{3}` unreadable.
const DELETE: &str = r"
local k = KEYS[1]
local now = tonumber(ARGV[1])
local t = redis.call('TYPE', k)['ok']
if t == 'none' then return {0} end
if t ~= 'hash' then return {3} end
local f = redis.call('HMGET', k, 'e', 'u')
local e = tonumber(f[1])
if e == nil then return {3} end
if ARGV[2] and f[2] ~= ARGV[2] then return {0} end
redis.call('DEL', k)
local status = 1
if e <= now then status = 0 end
if f[2] then return {status, f[2]} end
return {status}
";

/// Adds a member to a user index, or raises its score (`ZADD GT`: a score
/// is an upper bound of the session's expiry and never moves down here).
///
/// `KEYS[1]` index key. `ARGV`: score, member.
const INDEX_ADD: &str = r"
redis.call('ZADD', KEYS[1], 'GT', ARGV[1], ARGV[2])
return 1
";

/// Index upkeep after a read of the sessions it points to.
///
/// `KEYS[1]` index key. `ARGV`: now, n, then n members to prune, then
/// pairs (score, member) to raise. A member is pruned only if its score
/// is still `<= now`: a concurrent create or save raises the score of the
/// entry *before* writing the session, so an entry that is about to become
/// valid is never removed. Returns the number of members removed.
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
    pub(crate) touch: Script,
    pub(crate) delete: Script,
    pub(crate) index_add: Script,
    pub(crate) index_upkeep: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            create: Script::new(CREATE),
            save: Script::new(SAVE),
            touch: Script::new(TOUCH),
            delete: Script::new(DELETE),
            index_add: Script::new(INDEX_ADD),
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
