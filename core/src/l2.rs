//! L2: the shared Redis layer.
//!
//! One multiplexed connection (redis-rs `ConnectionManager`: reconnects by itself) carries every
//! command of a cache. Every call is bounded by `redis.commandTimeout` (plus
//! `redis.connectTimeout` while a connection is being made), so no caller ever waits on Redis
//! without a limit. Failures come back as [`L2Error`]; the cache decides what they mean (always:
//! slower, never broken).
//!
//! Tags are sorted sets (see [`crate::keys`]); every write that touches one runs as a Lua script,
//! so an entry and its tag index change together or not at all.
//!
//! ## Behavior when Redis fails
//! - Every command is bounded by `redis.commandTimeout` (plus `redis.connectTimeout` while a
//!   connection is made); the connection manager reconnects by itself.
//! - A [circuit breaker](crate::breaker) opens after `redis.breakerThreshold` consecutive
//!   failures: for `redis.breakerCooldown` no command is sent at all ([`L2Error::Skipped`]),
//!   then one probe decides whether to close it.
//! - A write or invalidation that could not reach Redis is kept (up to [`MAX_REPLAYS`]) and
//!   replayed *as an invalidation* once the breaker closes: a failed `set` or `del` deletes the
//!   key, a failed `invalidateTag` invalidates the tag, each announced on the bus. Redis may
//!   have kept the old value (a frozen or partitioned server); the replay removes it rather
//!   than risk writing over a newer value. One replay waits per key or tag
//!   ([`crate::replay`]), however often it failed.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};
use tokio::sync::Notify;

use crate::breaker::{Breaker, BreakerState, Permit};
use crate::config::L2Config;
use crate::keys::Keyspace;
pub use crate::replay::Replay;
use crate::replay::{Pushed, ReplayQueue};

/// Advances the invalidation clock and returns it as a string: one more than before, and at
/// least the caller's wall-clock time in microseconds, so tombstones made after a restart that
/// lost the clock still outrank every token handed out before it (a token is a clock value;
/// this holds while the processes' clocks differ by less than Redis was down). The time comes
/// from the caller, not from Redis' `TIME`, so the least-privilege ACL line stays as it was.
/// Numbers are formatted by hand: Redis may print large Lua numbers in exponent notation.
///
/// The clock lives 7 days after the last invalidation, so a prefix no longer in use (a
/// renamed namespace, a demo run) leaves nothing behind. Losing it is safe: a lookup that finds
/// no clock gets token 0, which every tombstone refuses, and the next invalidation starts it
/// again at the wall clock, above every token handed out before.
const ADVANCE_CLOCK: &str = r"
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

/// Deletes every live entry that still carries a tag, then the tag's index, leaves a tombstone
/// (the advanced invalidation clock) and announces it on the bus. Replies how many subscribers
/// received the announcement. An index member whose entry
/// was re-written without the tag (or deleted) is skipped: the check reads only the envelope's
/// head, where `"t":[...]` sits before the value.
/// KEYS: tag index, clock, tag tombstone; ARGV: now ms, channel, message, the tag as a JSON
/// string, tombstone TTL ms, now µs.
const INVALIDATE_TAG: &str = r#"
local clock = advance_clock(KEYS[2], ARGV[6])
redis.call('SET', KEYS[3], clock, 'PX', ARGV[5])
local needle = ARGV[4]
local function tags_of(key, limit)
  local head = redis.call('GETRANGE', key, 0, limit)
  local s = string.find(head, ',"t":[', 1, true)
  if not s then return nil end
  local e = string.find(head, '],"d":', s, true)
  if not e then return nil end
  return string.sub(head, s + 5, e)
end
local function carries(key)
  local list = tags_of(key, 4095) or tags_of(key, 524287)
  if not list then return false end
  return string.find(list, '[' .. needle .. ',', 1, true) ~= nil
    or string.find(list, ',' .. needle .. ',', 1, true) ~= nil
    or string.find(list, '[' .. needle .. ']', 1, true) ~= nil
    or string.find(list, ',' .. needle .. ']', 1, true) ~= nil
end
local members = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf')
local doomed = {}
for _, key in ipairs(members) do
  if carries(key) then doomed[#doomed + 1] = key end
end
for i = 1, #doomed, 1000 do
  redis.call('UNLINK', unpack(doomed, i, math.min(i + 999, #doomed)))
end
redis.call('UNLINK', KEYS[1])
return redis.call('PUBLISH', ARGV[2], ARGV[3])
"#;

/// Deletes an entry, leaves a tombstone (the advanced invalidation clock) and announces it.
/// Replies how many subscribers received the announcement.
/// KEYS: entry, clock, key tombstone; ARGV: channel, message, tombstone TTL ms, now µs.
const DELETE: &str = r"
local clock = advance_clock(KEYS[2], ARGV[4])
redis.call('SET', KEYS[3], clock, 'PX', ARGV[3])
redis.call('UNLINK', KEYS[1])
return redis.call('PUBLISH', ARGV[1], ARGV[2])
";

/// One round trip for a cache-aside miss: the value if there is one, else the stampede lock if
/// it is free, with the invalidation clock (the load's token). Replies {1, value},
/// {2, clock} (lock taken by us) or {3, clock} (someone else holds it).
/// KEYS: entry, lock, clock; ARGV: token, lock ttl ms.
const READ_OR_LOCK: &str = r"
local v = redis.call('GET', KEYS[1])
if v then return {1, v} end
local clock = tonumber(redis.call('GET', KEYS[3]) or '0')
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2, clock} end
return {3, clock}
";

/// Stores an entry, adds it to its tags' indexes (pruning expired members and keeping each
/// index alive as long as its longest-lived entry) and announces it on the bus. With a load
/// token >= 0 (the invalidation clock a lookup saw before a loader call), it first refuses the
/// value if the key or one of its tags has a newer tombstone: the value may predate that
/// invalidation, and writing it would undo it. Replies {1, receivers of the announcement} when
/// stored, {0, 0} when refused.
/// When it stores the value it also releases the loader's stampede lock, if it still owns it
/// (one round trip for the whole end of a load).
/// KEYS: entry, key tombstone, stampede lock, then per tag: index, tombstone;
/// ARGV: envelope, ttl ms, now ms, expires-at ms, channel, message, token (-1: unconditional),
/// lock token ('' for none).
const SET_ENTRY: &str = r"
local token = tonumber(ARGV[7])
if token >= 0 then
  if tonumber(redis.call('GET', KEYS[2]) or '0') > token then return {0, 0} end
  for i = 4, #KEYS, 2 do
    if tonumber(redis.call('GET', KEYS[i + 1]) or '0') > token then return {0, 0} end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if ARGV[8] ~= '' and redis.call('GET', KEYS[3]) == ARGV[8] then
  redis.call('DEL', KEYS[3])
end
local ttl = tonumber(ARGV[2])
for i = 4, #KEYS, 2 do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[3])
  redis.call('ZADD', KEYS[i], ARGV[4], KEYS[1])
  if redis.call('PTTL', KEYS[i]) < ttl then
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
return {1, redis.call('PUBLISH', ARGV[5], ARGV[6])}
";

/// Extends a lock only if we still own it. KEYS: lock; ARGV: token, ttl ms.
const EXTEND_LOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Releases a lock only if we still own it (compare-and-delete); optionally announces it.
/// KEYS: lock; ARGV: token, channel, message ('' for none).
const RELEASE_LOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
  return 1
end
return 0
";

/// The answer of [`L2::read_or_lock`].
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOrLock {
    /// The entry exists: its raw envelope.
    Value(Vec<u8>),
    /// The entry is absent and we now hold the lock; the invalidation clock (the load's token).
    Acquired(u64),
    /// The entry is absent and another owner holds the lock; the invalidation clock.
    Busy(u64),
}

/// Why a Redis call did not give an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L2Error {
    /// No answer within the bound.
    Timeout,
    /// No connection (refused, dropped, not yet made).
    Unavailable(String),
    /// Redis answered with an error (script, permission, ...).
    Redis(String),
    /// Not sent: the circuit breaker is open.
    Skipped,
}

impl L2Error {
    /// Whether a write that failed this way should be replayed (as an invalidation) once Redis
    /// is back: true unless Redis itself refused it.
    pub fn is_availability(&self) -> bool {
        !matches!(self, L2Error::Redis(_))
    }
}

impl std::fmt::Display for L2Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            L2Error::Timeout => write!(f, "Redis did not answer in time"),
            L2Error::Unavailable(e) => write!(f, "Redis unavailable: {e}"),
            L2Error::Redis(e) => write!(f, "Redis error: {e}"),
            L2Error::Skipped => write!(f, "Redis skipped: circuit breaker open"),
        }
    }
}

/// What [`L2::on_replayed`] calls.
pub type ReplayHook = Box<dyn Fn(&Replay) + Send + Sync>;

/// Keys and tags whose failed invalidations are kept for replay; beyond this the oldest are
/// dropped (and counted).
pub const MAX_REPLAYS: usize = 10_000;

/// Counters of the Redis layer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct L2Counters {
    /// Commands not sent because the breaker was open.
    pub skipped: u64,
    /// Times the breaker opened.
    pub breaker_opened: u64,
    /// Invalidations replayed after Redis came back.
    pub replayed: u64,
    /// Invalidations dropped because the replay queue was full.
    pub replays_dropped: u64,
    /// Invalidations waiting for Redis, counting one being replayed until Redis answers it.
    pub replays_pending: u64,
}

/// Builds a client for `config`, with its TLS material when it has some.
pub fn client(config: &L2Config) -> redis::RedisResult<Client> {
    match &config.tls {
        None => Client::open(config.url.as_str()),
        Some(tls) => Client::build_with_tls(
            config.url.as_str(),
            redis::TlsCertificates {
                client_tls: tls
                    .client
                    .as_ref()
                    .map(|(cert, key)| redis::ClientTlsConfig {
                        client_cert: cert.clone(),
                        client_key: key.clone(),
                    }),
                root_cert: tls.ca.clone(),
            },
        ),
    }
}

/// The Redis layer of one cache.
pub struct L2 {
    conn: ConnectionManager,
    keys: Keyspace,
    bound: Duration,
    channel: String,
    breaker: Breaker,
    replays: Mutex<ReplayQueue>,
    /// `replays.len()`, readable without the lock
    replays_waiting: AtomicUsize,
    /// Replays taken off the queue and not yet answered (0 or 1: one task replays); counted
    /// as pending, so `replays_pending` reaches 0 only once Redis has answered the last one.
    replays_in_flight: AtomicUsize,
    recovered: Arc<Notify>,
    /// told of every replay Redis applied (the cache settles it in its own L1 again: a read
    /// between Redis coming back and the replay may have copied the old value there)
    on_replayed: Mutex<Option<ReplayHook>>,
    /// told what Redis said when a command fails (see [`crate::problems`])
    problems: std::sync::OnceLock<Arc<crate::problems::Problems>>,
    skipped: AtomicU64,
    replayed: AtomicU64,
    replays_dropped: AtomicU64,
    invalidate_tag: Script,
    read_or_lock: Script,
    set_entry: Script,
    delete: Script,
    tombstone_ttl: Duration,
    extend_lock: Script,
    release_lock: Script,
}

impl Drop for L2 {
    fn drop(&mut self) {
        // ends the replay task
        self.recovered.notify_one();
    }
}

/// Reports the outcome of one permitted command to the breaker, even when the command is
/// cancelled half-way (then the probe, if it was one, is abandoned).
struct Report<'a> {
    breaker: &'a Breaker,
    permit: Permit,
    done: bool,
}

impl Drop for Report<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.breaker.abandon(self.permit);
        }
    }
}

impl L2 {
    /// Prepares the connection; it is made in the background and awaited by the first command
    /// (within `connect_timeout`). Must be called inside a tokio runtime, which also runs the
    /// replay of failed invalidations whenever the breaker closes again.
    pub fn new(config: &L2Config, keys: Keyspace) -> Result<Arc<L2>, L2Error> {
        let client = client(config).map_err(|e| L2Error::Redis(e.to_string()))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|e| L2Error::Redis(e.to_string()))?;
        let l2 = Arc::new(L2 {
            conn,
            bound: config.connect_timeout + config.command_timeout,
            channel: keys.bus_channel(crate::bus::WIRE_VERSION),
            keys,
            breaker: Breaker::new(config.breaker_threshold, config.breaker_cooldown),
            replays: Mutex::new(ReplayQueue::new(MAX_REPLAYS)),
            replays_waiting: AtomicUsize::new(0),
            replays_in_flight: AtomicUsize::new(0),
            recovered: Arc::new(Notify::new()),
            on_replayed: Mutex::new(None),
            problems: std::sync::OnceLock::new(),
            skipped: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            replays_dropped: AtomicU64::new(0),
            invalidate_tag: Script::new(&format!("{ADVANCE_CLOCK}{INVALIDATE_TAG}")),
            read_or_lock: Script::new(READ_OR_LOCK),
            set_entry: Script::new(SET_ENTRY),
            delete: Script::new(&format!("{ADVANCE_CLOCK}{DELETE}")),
            tombstone_ttl: config.tombstone_ttl,
            extend_lock: Script::new(EXTEND_LOCK),
            release_lock: Script::new(RELEASE_LOCK),
        });
        tokio::spawn(replay_when_recovered(
            Arc::downgrade(&l2),
            l2.recovered.clone(),
        ));
        Ok(l2)
    }

    /// The longest a single call can take (connect plus command timeout).
    pub fn bound(&self) -> Duration {
        self.bound
    }

    /// The key layout in use.
    pub fn keys(&self) -> &Keyspace {
        &self.keys
    }

    /// The circuit breaker's state.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// Counters of this layer.
    pub fn counters(&self) -> L2Counters {
        L2Counters {
            skipped: self.skipped.load(Ordering::Relaxed),
            breaker_opened: self.breaker.times_opened(),
            replayed: self.replayed.load(Ordering::Relaxed),
            replays_dropped: self.replays_dropped.load(Ordering::Relaxed),
            replays_pending: {
                let q = self.replays.lock();
                (q.len() + self.replays_in_flight.load(Ordering::Relaxed)) as u64
            },
        }
    }

    /// Sets what is told of every replay Redis applied.
    pub fn on_replayed(&self, hook: ReplayHook) {
        *self.on_replayed.lock() = Some(hook);
    }

    /// Sets where the outcome of every command is reported (see [`crate::problems`]).
    pub fn report_problems_to(&self, problems: Arc<crate::problems::Problems>) {
        let _ = self.problems.set(problems);
    }

    /// Keeps an invalidation that could not reach Redis, to replay it when Redis is back.
    pub fn queue_replay(&self, replay: Replay) {
        let mut q = self.replays.lock();
        if q.push(replay) == Pushed::DroppedOldest {
            self.replays_dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.replays_waiting.store(q.len(), Ordering::Relaxed);
        drop(q);
        // an idle process must replay too: the replay task probes Redis until it answers
        self.recovered.notify_one();
    }

    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, L2Error> {
        let permit = self.breaker.permit();
        if permit == Permit::Denied {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return Err(L2Error::Skipped);
        }
        let mut report = Report {
            breaker: &self.breaker,
            permit,
            done: false,
        };
        let outcome = tokio::time::timeout(self.bound, fut).await;
        if let Some(p) = self.problems.get() {
            crate::problems::observe(p, outcome.as_ref().map(|r| r.as_ref().err()), "command");
        }
        let result = match outcome {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if e.is_timeout() => Err(L2Error::Timeout),
            Ok(Err(e))
                if e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_unrecoverable_error() =>
            {
                Err(L2Error::Unavailable(e.to_string()))
            }
            Ok(Err(e)) => Err(L2Error::Redis(e.to_string())),
            Err(_) => Err(L2Error::Timeout),
        };
        report.done = true;
        match &result {
            Err(e) if e.is_availability() => self.breaker.failure(permit),
            _ => {
                let closed_again = self.breaker.success(permit);
                if closed_again || self.replays_waiting.load(Ordering::Relaxed) > 0 {
                    self.recovered.notify_one();
                }
            }
        }
        result
    }

    /// Sends an invalidation (with its bus announcement) to Redis. Returns how many
    /// subscribers received the announcement.
    pub async fn apply(&self, inv: &Replay) -> Result<u64, L2Error> {
        match inv {
            Replay::Del { key, notice } => self.del(key, notice).await,
            Replay::Tag { tag, notice } => {
                self.invalidate_tag(tag, crate::cache::now_ms(), notice)
                    .await
            }
        }
    }

    /// Takes the oldest replay off the queue; it counts as pending until [`L2::replay_done`]
    /// or [`L2::unpop_replay`].
    fn pop_replay(&self) -> Option<Replay> {
        let mut q = self.replays.lock();
        let next = q.pop();
        if next.is_some() {
            self.replays_in_flight.fetch_add(1, Ordering::Relaxed);
        }
        self.replays_waiting.store(q.len(), Ordering::Relaxed);
        next
    }

    /// A replay taken off the queue was answered (applied or refused).
    fn replay_done(&self, applied: bool) {
        let _q = self.replays.lock();
        if applied {
            self.replayed.fetch_add(1, Ordering::Relaxed);
        }
        self.replays_in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Puts a replay Redis could not take back at the front of the queue.
    fn unpop_replay(&self, replay: Replay) {
        let mut q = self.replays.lock();
        q.unpop(replay);
        self.replays_in_flight.fetch_sub(1, Ordering::Relaxed);
        self.replays_waiting.store(q.len(), Ordering::Relaxed);
    }

    /// Replays queued invalidations (oldest first) until the queue is empty or Redis fails.
    async fn replay(&self) {
        // bounded: at most the queue's length when the replay started
        let n = self.replays.lock().len();
        for _ in 0..n {
            let Some(next) = self.pop_replay() else {
                return;
            };
            match self.apply(&next).await {
                Ok(_) => {
                    if let Some(hook) = &*self.on_replayed.lock() {
                        hook(&next);
                    }
                    self.replay_done(true);
                }
                Err(e) if e.is_availability() => {
                    self.unpop_replay(next);
                    return;
                }
                Err(_) => self.replay_done(false), // Redis refused it: replaying again cannot help
            }
        }
    }

    /// Redis' own hit counters (`keyspace_hits`, `keyspace_misses` of `INFO stats`).
    pub async fn keyspace_stats(&self) -> Result<(u64, u64), L2Error> {
        let mut c = self.conn.clone();
        let info: String = self
            .bounded(redis::cmd("INFO").arg("stats").query_async(&mut c))
            .await?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok((field("keyspace_hits"), field("keyspace_misses")))
    }

    /// Makes sure a connection exists (a `PING`).
    pub async fn ping(&self) -> Result<(), L2Error> {
        let mut c = self.conn.clone();
        self.bounded(redis::cmd("PING").query_async::<()>(&mut c))
            .await
    }

    /// The raw envelopes of several keys in one round trip (`MGET`; every key of a prefix is in
    /// one cluster slot).
    pub async fn mget(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, L2Error> {
        let mut c = self.conn.clone();
        let mut cmd = redis::cmd("MGET");
        for key in keys {
            cmd.arg(self.keys.entry(key));
        }
        self.bounded(cmd.query_async::<Vec<Option<Vec<u8>>>>(&mut c))
            .await
    }

    /// Stores an envelope for `ttl`, indexed under `tags` (expiring at `expires_at_ms`), and
    /// publishes `notice` on the bus in the same round trip. With a load `token` (the clock of
    /// the lookup that led to a loader call), the value is stored only if neither the key nor a
    /// tag was invalidated since; with `lock_token`, storing it also releases the loader's
    /// stampede lock. Returns how many subscribers received `notice` when it was stored, `None`
    /// when it was refused.
    #[allow(clippy::too_many_arguments)]
    pub async fn set(
        &self,
        key: &str,
        envelope: &str,
        ttl: Duration,
        tags: &[String],
        now_ms: u64,
        expires_at_ms: u64,
        notice: &str,
        token: Option<u64>,
        lock_token: Option<&str>,
    ) -> Result<Option<u64>, L2Error> {
        let mut c = self.conn.clone();
        let k = self.keys.entry(key);
        let ttl_ms = ttl.as_millis() as u64;
        if token.is_none() && lock_token.is_none() && tags.is_empty() {
            // the common plain write: no script needed
            let mut pipe = redis::pipe();
            pipe.cmd("SET")
                .arg(&k)
                .arg(envelope)
                .arg("PX")
                .arg(ttl_ms)
                .ignore();
            pipe.cmd("PUBLISH").arg(&self.channel).arg(notice);
            return self
                .bounded(pipe.query_async::<(u64,)>(&mut c))
                .await
                .map(|(receivers,)| Some(receivers));
        }
        let mut inv = self.set_entry.key(&k);
        inv.key(self.keys.key_tombstone(key))
            .key(self.keys.lock(key));
        for tag in tags {
            inv.key(self.keys.tag(tag))
                .key(self.keys.tag_tombstone(tag));
        }
        inv.arg(envelope).arg(ttl_ms).arg(now_ms).arg(expires_at_ms);
        inv.arg(&self.channel).arg(notice);
        inv.arg(token.map_or(-1, |t| t as i64));
        inv.arg(lock_token.unwrap_or(""));
        self.bounded(inv.invoke_async::<(u64, u64)>(&mut c))
            .await
            .map(|(stored, receivers)| (stored == 1).then_some(receivers))
    }

    /// Deletes `key`, leaves its tombstone and publishes `notice` on the bus. Returns how many
    /// subscribers received `notice`.
    pub async fn del(&self, key: &str, notice: &str) -> Result<u64, L2Error> {
        let mut c = self.conn.clone();
        let mut inv = self.delete.key(self.keys.entry(key));
        inv.key(self.keys.clock()).key(self.keys.key_tombstone(key));
        inv.arg(&self.channel)
            .arg(notice)
            .arg(self.tombstone_ttl.as_millis() as u64)
            .arg(now_us());
        self.bounded(inv.invoke_async::<u64>(&mut c)).await
    }

    /// The value of `key` if present, else tries to take its lock with `token` for `ttl`.
    pub async fn read_or_lock(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<ReadOrLock, L2Error> {
        let mut c = self.conn.clone();
        let mut inv = self.read_or_lock.key(self.keys.entry(key));
        inv.key(self.keys.lock(key)).key(self.keys.clock());
        inv.arg(token).arg(ttl.as_millis() as u64);
        let reply: Vec<redis::Value> = self.bounded(inv.invoke_async(&mut c)).await?;
        match reply.as_slice() {
            [redis::Value::Int(1), redis::Value::BulkString(v)] => Ok(ReadOrLock::Value(v.clone())),
            [redis::Value::Int(2), redis::Value::Int(c)] => Ok(ReadOrLock::Acquired(*c as u64)),
            [redis::Value::Int(3), redis::Value::Int(c)] => Ok(ReadOrLock::Busy(*c as u64)),
            other => Err(L2Error::Redis(format!(
                "unexpected reply to read-or-lock: {other:?}"
            ))),
        }
    }

    /// Extends our lock on `key` to `ttl`. Returns false when we no longer own it.
    pub async fn extend_lock(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, L2Error> {
        let mut c = self.conn.clone();
        let mut inv = self.extend_lock.key(self.keys.lock(key));
        inv.arg(token).arg(ttl.as_millis() as u64);
        self.bounded(inv.invoke_async::<u64>(&mut c))
            .await
            .map(|n| n == 1)
    }

    /// Releases our lock on `key` (only if we still own it), publishing `notice` if non-empty.
    pub async fn release_lock(
        &self,
        key: &str,
        token: &str,
        notice: &str,
    ) -> Result<bool, L2Error> {
        let mut c = self.conn.clone();
        let mut inv = self.release_lock.key(self.keys.lock(key));
        inv.arg(token).arg(&self.channel).arg(notice);
        self.bounded(inv.invoke_async::<u64>(&mut c))
            .await
            .map(|n| n == 1)
    }

    /// Whether `key` exists.
    pub async fn exists(&self, key: &str) -> Result<bool, L2Error> {
        let mut c = self.conn.clone();
        let k = self.keys.entry(key);
        self.bounded(redis::cmd("EXISTS").arg(&k).query_async::<u64>(&mut c))
            .await
            .map(|n| n > 0)
    }

    /// Deletes every entry tagged `tag` and publishes `notice`. Returns how many subscribers
    /// received `notice`.
    pub async fn invalidate_tag(
        &self,
        tag: &str,
        now_ms: u64,
        notice: &str,
    ) -> Result<u64, L2Error> {
        let mut c = self.conn.clone();
        let mut inv = self.invalidate_tag.key(self.keys.tag(tag));
        inv.key(self.keys.clock()).key(self.keys.tag_tombstone(tag));
        let needle = serde_json::to_string(tag).expect("strings always serialize");
        inv.arg(now_ms).arg(&self.channel).arg(notice).arg(needle);
        inv.arg(self.tombstone_ttl.as_millis() as u64).arg(now_us());
        self.bounded(inv.invoke_async::<u64>(&mut c)).await
    }

    /// Acknowledges message `seq` of `instance` on its acknowledgement channel.
    pub async fn ack(&self, instance: &str, seq: u64) -> Result<(), L2Error> {
        let mut c = self.conn.clone();
        let channel = crate::bus::ack_channel(&self.channel, instance);
        self.bounded(
            redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(seq)
                .query_async::<u64>(&mut c),
        )
        .await
        .map(|_| ())
    }
}

/// Replays failed invalidations once Redis answers again; ends with the L2. While some wait,
/// it retries every [`REPLAY_RETRY`] on its own (through the breaker), so a process that makes
/// no further call still repairs Redis when it comes back.
async fn replay_when_recovered(l2: Weak<L2>, recovered: Arc<Notify>) {
    loop {
        let waiting = match l2.upgrade() {
            Some(l2) => l2.replays_waiting.load(Ordering::Relaxed) > 0,
            None => return,
        };
        let nap = if waiting {
            REPLAY_RETRY
        } else {
            Duration::from_secs(3600)
        };
        let _ = tokio::time::timeout(nap, recovered.notified()).await;
        let Some(l2) = l2.upgrade() else { return };
        if l2.replays_waiting.load(Ordering::Relaxed) > 0 {
            l2.replay().await;
        }
    }
}

/// Wall-clock microseconds since the Unix epoch (the floor of the invalidation clock).
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// How often waiting replays are retried when nothing else reaches Redis.
pub const REPLAY_RETRY: Duration = Duration::from_millis(250);
