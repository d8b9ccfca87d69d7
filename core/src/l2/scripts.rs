//! The Lua scripts of the Redis layer, in two sets: one for a single server (a write, its tag
//! markers, the clock and its announcement in one atomic step) and one for a cluster, where a
//! script touches one slot only (see [`super::sharded`]).

/// First line of a script that stores values: declared (Redis >= 7), so that Redis refuses it
/// up front when memory is full (`OOM` under `noeviction`), instead of only at its first
/// command that needs memory, after it extended tag markers.
pub(super) const WRITES: &str = "#!lua\n";

/// First line of a script Redis must run even when memory is full (`maxmemory` reached under
/// `noeviction`): deletes, tag markers, locks. Redis >= 7.
pub(super) const ALLOW_OOM: &str = "#!lua flags=allow-oom\n";

/// Advances the invalidation clock and returns it as a string: one more than before, and at
/// least the caller's wall-clock time in microseconds, so markers made after a restart that
/// lost the clock still outrank every birth handed out before it (this holds while the
/// processes' clocks differ by less than Redis was down). The time comes from the caller, not
/// from Redis' `TIME`, so the least-privilege ACL line stays short.
/// Numbers are formatted by hand: Redis may print large Lua numbers in exponent notation.
///
/// The clock lives 7 days after the last invalidation, so a prefix no longer in use leaves
/// nothing behind. Losing it is safe: the next invalidation starts it again at the wall clock.
pub(super) const ADVANCE_CLOCK: &str = r"
local CLOCK_TTL_MS = 604800000
local function advance_clock(clock_key, now_us)
  local now = tonumber(now_us)
  local clock = redis.call('INCR', clock_key)
  if clock < now then
    clock = string.format('%.0f', now)
    redis.call('SET', clock_key, clock, 'PX', CLOCK_TTL_MS)
    return clock
  end
  redis.call('PEXPIRE', clock_key, CLOCK_TTL_MS)
  return string.format('%.0f', clock)
end
";

/// Marks a key's stampede lock (`!<owner token>`, same TTL): the load in progress read its
/// source before this write or delete, so its value must not be stored. The owner still
/// extends and releases it; nobody else can take it meanwhile.
pub(super) const MARK_LOCK: &str = r"
local function mark_lock(lock_key)
  local owner = redis.call('GET', lock_key)
  if owner and string.sub(owner, 1, 1) ~= '!' then
    redis.call('SET', lock_key, '!' .. owner, 'KEEPTTL')
  end
end
";

/// Stores an entry's envelope (`head`, the birth, `tail`; `head` alone when `tail` is '') for
/// `ttl` ms, then releases the key's lock (a loader's write) or marks it (a caller's write: a
/// load in progress read its source before this value). Needs `MARK_LOCK`.
pub(super) const STORE_ENTRY: &str = r"
local function store_entry(entry_key, lock_key, head, tail, born, ttl, load)
  if tail == '' then
    redis.call('SET', entry_key, head, 'PX', ttl)
  else
    redis.call('SET', entry_key, head .. born .. tail, 'PX', ttl)
  end
  if load then
    redis.call('DEL', lock_key)
  else
    mark_lock(lock_key)
  end
end
";

/// Records how a tag was invalidated in its deletion marker (same slot as the marker): a
/// delete (`mode` 'd') raises it to the invalidation's clock, so no entry born before is ever
/// served again; an expire ('x') leaves it, creating it at 0 if missing (an entry the marker
/// made stale stays the fail-safe copy only while the deletion marker exists and is not newer
/// than its birth: a deletion marker lost to eviction or expiry means dead, never stale). A
/// marker that had no TTL gets `ttl`.
pub(super) const MARK_DELETION: &str = r"
local function mark_deletion(key, clock, mode, ttl)
  if mode == 'd' then
    local d = redis.call('GET', key)
    if not d or tonumber(d) < tonumber(clock) then
      redis.call('SET', key, clock, 'KEEPTTL')
    end
  elseif not redis.call('GET', key) then
    redis.call('SET', key, '0')
  end
  if redis.call('PTTL', key) < 0 then
    redis.call('PEXPIRE', key, ttl)
  end
end
";

/// Invalidates a tag: advances the clock and sets the tag's marker to it (O(1), whatever the
/// number of entries carrying it), records the mode in its deletion marker (`MARK_DELETION`),
/// then announces it. Replies how many subscribers received the announcement. The marker
/// keeps its TTL (entries carrying the tag keep it alive); a marker that had none gets
/// `ARGV[4]`.
/// KEYS: clock, marker, deletion marker; ARGV: now µs, channel, message, marker TTL ms, mode.
pub(super) const INVALIDATE_TAG: &str = r"
local clock = advance_clock(KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], clock, 'KEEPTTL')
if redis.call('PTTL', KEYS[2]) < 0 then
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
mark_deletion(KEYS[3], clock, ARGV[5], ARGV[4])
return redis.call('PUBLISH', ARGV[2], ARGV[3])
";

/// Drops an entry: deletes it, or with `expire_at` (Unix ms; '' to delete) and an entry that
/// has a grace (`"g"`, third in the envelope), marks it stale instead: its fresh expiry `"e"`
/// (second) becomes `expire_at` if later, and it stays, with its TTL, as the fail-safe copy.
pub(super) const DROP_ENTRY: &str = r#"
local function drop_entry(entry_key, expire_at)
  if expire_at ~= '' then
    local v = redis.call('GET', entry_key)
    if v then
      local e = string.match(string.sub(v, 1, 80), '^{"v":%d+,"e":(%d+),"g":[1-9]')
      if e then
        if tonumber(e) > tonumber(expire_at) then
          local stale = string.gsub(v, '^({"v":%d+,"e":)%d+', '%1' .. expire_at, 1)
          redis.call('SET', entry_key, stale, 'KEEPTTL')
        end
        return
      end
    end
  end
  redis.call('UNLINK', entry_key)
end
"#;

/// Deletes (or expires, see `DROP_ENTRY`) an entry, marks a load in progress of the key stale,
/// and announces it. Replies how many subscribers received the announcement.
/// KEYS: entry, lock; ARGV: channel, message, expire at ms or ''.
pub(super) const DELETE: &str = r"
drop_entry(KEYS[1], ARGV[3])
mark_lock(KEYS[2])
return redis.call('PUBLISH', ARGV[1], ARGV[2])
";

/// Takes a key's stampede lock for a refresh of an entry the caller read (stale, or due for an
/// eager refresh), if that entry is still the one it read (its write marker `ARGV[4]`) or is
/// gone: replies {2, clock} (taken by us) or {3, clock} (someone else holds it), the clock
/// started (at the wall clock) if missing, as in `READ_OR_LOCK_MANY`; {1, value} when another
/// write replaced the entry meanwhile (a refresh that just finished: no second load).
/// KEYS: lock, clock, entry; ARGV: token, lock ttl ms, now µs, write marker.
pub(super) const TAKE_LOCK: &str = r"
local v = redis.call('GET', KEYS[3])
if v and not string.find(string.sub(v, 1, 200), ARGV[4], 1, true) then return {1, v} end
local clock = redis.call('GET', KEYS[2]) or advance_clock(KEYS[2], ARGV[3])
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2, tonumber(clock)} end
return {3, tonumber(clock)}
";

/// `TAKE_LOCK` without the clock (the caller knows the birth), for a cluster: replies
/// {1, value}, {2, 0} or {3, 0}. KEYS: lock, entry; ARGV: token, lock ttl ms, write marker.
pub(super) const TAKE_LOCK_SLOT: &str = r"
local v = redis.call('GET', KEYS[2])
if v and not string.find(string.sub(v, 1, 200), ARGV[3], 1, true) then return {1, v} end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2, 0} end
return {3, 0}
";

/// The entry under `entry_key`, unless the caller found it unusable (`dead`: the write marker
/// of an entry a tag invalidated, or `*` for an unreadable one): such an entry is deleted and
/// read as absent (nil).
pub(super) const READ_LIVE: &str = r"
local function read_live(entry_key, dead)
  local v = redis.call('GET', entry_key)
  if v then
    if dead == '*' or (dead ~= '' and string.find(string.sub(v, 1, 200), dead, 1, true) ~= nil) then
      redis.call('UNLINK', entry_key)
      return nil
    end
  end
  return v
end
";

/// One round trip for the cache-aside misses of several keys (see `lock_batch`), one reply per
/// key: the value if there is one, else the stampede lock if it is free, with the invalidation
/// clock (the load's birth). Replies {1, value}, {2, clock} (lock taken by us) or {3, clock}
/// (someone else holds it). With a dead write marker (the marker of an entry the caller found
/// invalidated by a tag, or `*` for an unreadable one), that entry is deleted and treated as
/// absent; any other value is returned. A missing clock is started (at the wall clock): a load
/// born at 0 could never create a missing tag marker (see `SET_ENTRY`).
/// KEYS: clock, then each key's entry and lock; ARGV: now µs, then each key's token, lock ttl
/// ms and dead write marker ('*' or '').
pub(super) const READ_OR_LOCK_MANY: &str = r"
local out = {}
local clock = nil
for i = 1, (#KEYS - 1) / 2 do
  local entry, lock = KEYS[2 * i], KEYS[2 * i + 1]
  local v = read_live(entry, ARGV[3 * i + 1])
  if v then
    out[i] = {1, v}
  else
    if not clock then clock = redis.call('GET', KEYS[1]) or advance_clock(KEYS[1], ARGV[1]) end
    if redis.call('SET', lock, ARGV[3 * i - 1], 'NX', 'PX', ARGV[3 * i]) then
      out[i] = {2, tonumber(clock)}
    else
      out[i] = {3, tonumber(clock)}
    end
  end
end
return out
";

/// Stores an entry and announces it on the bus, in one step with its tags' markers.
///
/// A caller's write (`ARGV[6]` = '') is born at the clock now and marks a load in progress of
/// the key stale. A loader's write (`ARGV[6]` = the clock its lookup saw) is stored only while
/// the loader still holds the key's lock unchanged (`ARGV[7]`) and no tag was invalidated since
/// the lookup; storing it releases the lock. A missing marker is created at the clock; each
/// marker lives at least as long as the entry. Replies {1, receivers} when stored, {0, 0} when
/// refused.
/// KEYS: entry, lock, clock, then one marker per tag;
/// ARGV: envelope head, envelope tail ('' for an entry without tags: the head is the whole
/// envelope), ttl ms, channel, message, load birth or '', lock token or '', now µs.
pub(super) const SET_ENTRY: &str = r"
local ttl = tonumber(ARGV[3])
local load = ARGV[6] ~= ''
if load and redis.call('GET', KEYS[2]) ~= ARGV[7] then return {0, 0} end
local born = '0'
if #KEYS > 3 then
  local clock = redis.call('GET', KEYS[3])
  if load then
    born = ARGV[6]
  else
    if not clock then clock = advance_clock(KEYS[3], ARGV[8]) end
    born = clock
  end
  for i = 4, #KEYS do
    local m = redis.call('GET', KEYS[i])
    if not m then
      if not clock then clock = advance_clock(KEYS[3], ARGV[8]) end
      m = clock
      redis.call('SET', KEYS[i], m, 'PX', ttl)
    elseif redis.call('PTTL', KEYS[i]) < ttl then
      redis.call('PEXPIRE', KEYS[i], ttl)
    end
    if tonumber(m) > tonumber(born) then
      if load then return {0, 0} end
      -- a marker ahead of the clock (a clock lost and restarted lower): the clock moves up
      redis.call('SET', KEYS[3], m, 'PX', CLOCK_TTL_MS)
      born = m
    end
  end
end
store_entry(KEYS[1], KEYS[2], ARGV[1], ARGV[2], born, ttl, load)
return {1, redis.call('PUBLISH', ARGV[4], ARGV[5])}
";

/// Stores the values of several loaders, each only while its loader still holds the key's lock
/// unchanged (which storing releases), and announces each (see `batches`): for entries without
/// tags (born 0; the envelope is whole). Replies one {1, receivers} (stored) or {0, 0}
/// (refused) per key. KEYS: each key's entry and lock; ARGV: channel, then each key's envelope,
/// ttl ms, lock token and message.
pub(super) const STORE_LOADED_MANY: &str = r"
local out = {}
for i = 1, #KEYS / 2 do
  local entry, lock = KEYS[2 * i - 1], KEYS[2 * i]
  if redis.call('GET', lock) ~= ARGV[4 * i] then
    out[i] = {0, 0}
  else
    store_entry(entry, lock, ARGV[4 * i - 2], '', '0', ARGV[4 * i - 1], true)
    out[i] = {1, redis.call('PUBLISH', ARGV[1], ARGV[4 * i + 1])}
  end
end
return out
";

/// Extends a lock only if we still own it (marked or not). KEYS: lock; ARGV: token, ttl ms.
pub(super) const EXTEND_LOCK: &str = r"
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] or owner == '!' .. ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Releases a lock only if we still own it, marked or not (compare-and-delete); optionally
/// announces it. KEYS: lock; ARGV: token, channel, message ('' for none).
pub(super) const RELEASE_LOCK: &str = r"
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] or owner == '!' .. ARGV[1] then
  redis.call('DEL', KEYS[1])
  if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
  return 1
end
return 0
";

// ---- Cluster: each script touches the keys of one slot only (see `super::sharded`) ----

/// The invalidation clock now, started (at the wall clock) if missing: the birth of a lookup,
/// and the value a missing tag marker is created at. KEYS: clock; ARGV: now µs.
pub(super) const CLOCK_NOW: &str = r"
return redis.call('GET', KEYS[1]) or advance_clock(KEYS[1], ARGV[1])
";

/// Advances the invalidation clock (see `ADVANCE_CLOCK`). KEYS: clock; ARGV: now µs.
pub(super) const CLOCK_ADVANCE: &str = r"
return advance_clock(KEYS[1], ARGV[1])
";

/// Raises a tag's marker to an invalidation's clock value: never lowers it (two invalidations
/// may reach the marker's shard in the other order than they advanced the clock), and records
/// the mode in its deletion marker (`MARK_DELETION`). The marker keeps its TTL; one that had
/// none gets `ARGV[2]`. KEYS: marker, deletion marker; ARGV: clock, marker TTL ms, mode.
pub(super) const RAISE_MARKER: &str = r"
local m = redis.call('GET', KEYS[1])
if not m or tonumber(m) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
end
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
mark_deletion(KEYS[2], ARGV[1], ARGV[3], ARGV[2])
return 1
";

/// A tag's marker for a write: its value, its TTL extended to at least the entry's. A missing
/// marker is created at `ARGV[2]` (the clock, read just before), or reported missing (nil)
/// when `ARGV[2]` is ''. KEYS: marker; ARGV: entry TTL ms, value to create it at or ''.
pub(super) const ENSURE_MARKER: &str = r"
local ttl = tonumber(ARGV[1])
local m = redis.call('GET', KEYS[1])
if not m then
  if ARGV[2] == '' then return false end
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
  return ARGV[2]
end
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return m
";

/// The lookup of `READ_OR_LOCK_MANY` for one key, without the clock (the caller knows the birth): replies
/// {1, value}, {2, 0} (lock taken by us) or {3, 0} (someone else holds it).
/// KEYS: entry, lock; ARGV: token, lock ttl ms, dead write marker, '*' or ''.
pub(super) const READ_OR_LOCK_SLOT: &str = r"
local v = read_live(KEYS[1], ARGV[3])
if v then return {1, v} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2, 0} end
return {3, 0}
";

/// Stores an entry whose birth the caller computed from its tags' markers (see
/// `super::sharded`). A loader's write (`ARGV[5]` = its lock token) is stored only while the
/// loader still holds the key's lock unchanged, and releases it; a caller's write (`ARGV[5]`
/// = '') marks a load in progress of the key stale. Replies 1 when stored, 0 when refused.
/// KEYS: entry, lock; ARGV: envelope head, tail ('' when the head is the whole envelope),
/// ttl ms, birth, lock token or ''.
pub(super) const SET_ENTRY_SLOT: &str = r"
local load = ARGV[5] ~= ''
if load and redis.call('GET', KEYS[2]) ~= ARGV[5] then return 0 end
store_entry(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[4], ARGV[3], load)
return 1
";

/// Deletes (or expires, see `DROP_ENTRY`) an entry and marks a load in progress of the key
/// stale (the announcement follows on the bus's shard). KEYS: entry, lock; ARGV: expire at ms
/// or ''.
pub(super) const DELETE_SLOT: &str = r"
drop_entry(KEYS[1], ARGV[1])
mark_lock(KEYS[2])
return 1
";
