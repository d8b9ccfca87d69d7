//! L2: the shared Redis layer.
//!
//! One multiplexed connection (redis-rs `ConnectionManager`: reconnects by itself) carries every
//! command of a cache. Every call is bounded by `redis.commandTimeout` (plus
//! `redis.connectTimeout` while a connection is being made), so no caller ever waits on Redis
//! without a limit. Failures come back as [`L2Error`]; the cache decides what they mean (always:
//! slower, never broken; an invalidation Redis refused is retried or rejected, never dropped).
//!
//! ## Tags: markers checked on read
//! `invalidateTag` costs Redis O(1) whatever the tag's size: it advances the prefix's
//! invalidation clock and sets the tag's marker to it. Nothing is scanned or deleted. Every
//! entry with tags carries its birth on that clock (see [`crate::codec`]); a reader accepts it
//! only while each of its tags has a marker not newer than the birth. So:
//! - an entry written before an invalidation of one of its tags is dead (a miss), in every
//!   process, from the moment Redis applied the invalidation;
//! - a lost marker (evicted under any `maxmemory-policy`, expired, or a restart without
//!   persistence) makes every entry carrying the tag a miss, never a stale read: a write that
//!   finds a marker missing re-creates it at the clock's current value, newer than the birth
//!   of every entry written before;
//! - a loader's value is born at the clock its lookup saw, before the loader ran: if a tag was
//!   invalidated while it loaded, the marker is newer and the value is refused (or dead on
//!   arrival). A marker missing at that point is re-created at the clock, and the value is
//!   accepted only if the clock has not moved since the lookup (nothing was invalidated
//!   meanwhile, so nothing can have been lost with the marker).
//!
//! Readers keep the markers they fetched (see [`crate::tag_versions`]), kept fresh by the bus.
//! Invalidated entries stay in Redis as dead bytes until their TTL, or until a lookup finds
//! one dead and deletes it.
//!
//! ## Keys: the stampede lock guards a load's write
//! A loader's value reaches Redis only while its loader still holds the key's stampede lock
//! unchanged. A caller's `set` or `del` of the key marks the lock (`!<token>`): the load in
//! progress read its source before that change, so its value is refused; the lock stays held
//! until the loader ends, so one loader still runs per key. A lock lost to eviction or expiry
//! refuses the value too: no metadata loss can let an older value in.
//!
//! ## Out of memory
//! The invalidation scripts and the lookup carry `#!lua flags=allow-oom`: under
//! `maxmemory-policy noeviction` with memory full, Redis still applies deletes and tag
//! invalidations (they free memory or add a few bytes). Writes of values are refused there
//! (`OOM`); the cache then deletes the key instead, so no process reads the older value.
//!
//! ## Behavior when Redis fails
//! - Every command is bounded by `redis.commandTimeout` (plus `redis.connectTimeout` while a
//!   connection is made); the connection manager reconnects by itself.
//! - A [circuit breaker](crate::breaker) opens after `redis.breakerThreshold` consecutive
//!   failures to get an answer (an error reply such as `BUSY` comes at once and does not count):
//!   for `redis.breakerCooldown` no command is sent at all ([`L2Error::Skipped`]), then one probe decides whether to close it.
//! - An invalidation that could not reach Redis is kept and replayed *as an invalidation* once
//!   the breaker closes: a failed `set` or `del` deletes the key, a failed `invalidateTag`
//!   invalidates the tag, each announced on the bus. One replay waits per key or tag
//!   ([`crate::replay`]); past [`MAX_REPLAYS`] they collapse into one invalidation of the whole
//!   prefix, never dropped.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};
use tokio::sync::watch;
use tokio::sync::Notify;

use crate::breaker::{Breaker, BreakerState, Permit};
use crate::clock::now_us;
use crate::codec::Encoded;
use crate::config::L2Config;
use crate::connection::Connector;
use crate::keys::Keyspace;
pub use crate::replay::Replay;
use crate::replay::{Pushed, ReplayQueue};

mod batches;
mod data_conn;
mod error;
#[cfg(test)]
mod script_tests;
mod scripts;
mod sharded;

use data_conn::DataConn;

pub use error::L2Error;
use scripts::*;

/// An entry a lookup found unusable, to be deleted by the next lookup (if it is still there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discard {
    /// The entry stored by this write was found invalidated by one of its tags.
    Write(u64),
    /// The value under the key is not a readable envelope (corrupt, or of another version).
    Unreadable,
}

impl Discard {
    /// How the lookup scripts take it (`ARGV[3]`): the write's marker, `*`, or '' for none.
    fn script_arg(discard: Option<Discard>) -> String {
        match discard {
            None => String::new(),
            Some(Discard::Write(id)) => crate::codec::write_marker(id),
            Some(Discard::Unreadable) => "*".to_string(),
        }
    }
}

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

/// What [`L2::on_replayed`] calls.
pub type ReplayHook = Box<dyn Fn(&Replay) + Send + Sync>;

/// Distinct keys and tags whose failed invalidations are kept for replay; beyond this they
/// collapse into one invalidation of the whole prefix ([`Replay::All`]).
pub const MAX_REPLAYS: usize = 10_000;

/// Counters of the Redis layer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct L2Counters {
    /// Commands not sent because the breaker was open.
    pub skipped: u64,
    /// Commands that failed: no answer in time, no connection, an error reply, an unusable
    /// reply (skipped ones not counted). Every command of the cache goes through one bound, so
    /// this counts them all: lookups, writes, replays, acknowledgements, lock upkeep.
    pub errors: u64,
    /// Of those, error replies (`OOM`, `BUSY`, `NOPERM`, ...).
    pub refused: u64,
    /// Invalidations that `WAIT`ed for `redis.waitReplicas` replicas in vain.
    pub replica_wait_timeouts: u64,
    /// Times the breaker opened.
    pub breaker_opened: u64,
    /// Invalidations replayed after Redis came back.
    pub replayed: u64,
    /// Times the replay queue overflowed and became one invalidation of the whole prefix.
    pub replays_collapsed: u64,
    /// Invalidations waiting for Redis, counting one being replayed until Redis answers it.
    pub replays_pending: u64,
}

/// The Redis layer of one cache.
pub struct L2 {
    /// the data connection (`None` until the sentinels named the master); replaced when the
    /// master moves (see [`crate::connection`])
    conn: RwLock<Option<DataConn>>,
    /// with `redis.waitReplicas`: the connection invalidations go through, then `WAIT` (it
    /// waits for this client's writes; on a connection of its own it holds up nothing else)
    inval: RwLock<Option<DataConn>>,
    /// a Redis Cluster: the split scripts of [`sharded`], connections made in the background
    cluster: bool,
    command_timeout: Duration,
    /// (cluster) true once the connections exist
    cluster_ready: watch::Sender<bool>,
    /// (cluster) the highest invalidation clock value this process knows was handed out: from
    /// its own invalidations, the bus announcements of the others' (trusted while the bus is
    /// subscribed), or read from Redis; the birth of a lookup (see [`sharded`])
    clock_known: AtomicU64,
    wait_replicas: u32,
    wait_timeout: Duration,
    /// how `conn` and `inval` are made (for a master named later, or a new one)
    manager_config: ConnectionManagerConfig,
    inval_config: Option<ConnectionManagerConfig>,
    replica_wait_timeouts: AtomicU64,
    connector: Connector,
    keys: Keyspace,
    bound: Duration,
    /// the bus channels (one; on a cluster, shard channels: see [`crate::keys::channel_for`])
    channels: Vec<String>,
    breaker: Breaker,
    replays: Mutex<ReplayQueue>,
    /// the announcement of [`Replay::All`], what the queue becomes when it overflows
    all_notice: String,
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
    errors: AtomicU64,
    refused: AtomicU64,
    replayed: AtomicU64,
    replays_collapsed: AtomicU64,
    invalidate_tag: Script,
    read_or_lock_many: Script,
    store_loaded_many: Script,
    /// the lookups and loaded values of concurrent misses, batched (one server)
    lookups: batches::Batcher<batches::Lookup>,
    stores: batches::Batcher<batches::Store>,
    /// this L2, for the batch senders
    me: std::sync::OnceLock<std::sync::Weak<L2>>,
    set_entry: Script,
    delete: Script,
    take_lock: Script,
    take_lock_slot: Script,
    /// TTL of a tag marker created by an invalidation (the default entry TTL)
    marker_ttl: Duration,
    extend_lock: Script,
    release_lock: Script,
    clock_now: Script,
    clock_advance: Script,
    raise_marker: Script,
    ensure_marker: Script,
    read_or_lock_slot: Script,
    set_entry_slot: Script,
    delete_slot: Script,
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

/// How a loader's value is written: the lookup's clock (its birth) and the stampede lock's
/// token, which must still be held unchanged.
#[derive(Debug, Clone, Copy)]
pub struct LoadedWrite<'a> {
    /// The invalidation clock the lookup saw before the loader ran.
    pub born: u64,
    /// The token of the stampede lock the loader holds.
    pub lock_token: &'a str,
}

/// The most `SCAN` rounds of one invalidation of the whole prefix (1 000 keys a round).
const MAX_PURGE_ROUNDS: usize = 1_000_000;

impl L2 {
    /// Prepares the connection; it is made in the background and awaited by the first command
    /// (within `connect_timeout`). Must be called inside a tokio runtime, which also runs the
    /// replay of failed invalidations whenever the breaker closes again. `all_notice` is the
    /// bus announcement of an invalidation of the whole prefix.
    pub fn new(
        config: &L2Config,
        connector: Connector,
        keys: Keyspace,
        all_notice: String,
    ) -> Result<Arc<L2>, L2Error> {
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        // WAIT can take waitTimeout: the invalidation connection's response bound covers it
        let inval_config = (config.wait_replicas > 0).then(|| {
            manager_config
                .clone()
                .set_response_timeout(Some(config.command_timeout + config.wait_timeout))
        });
        let (conn, inval) = if connector.is_sentinel() || connector.is_cluster() {
            (None, None)
        } else {
            let (conn, inval) = connector
                .client()
                .and_then(|client| managers(client, &manager_config, inval_config.as_ref()))
                .map_err(|e| L2Error::Invalid(e.to_string()))?;
            (Some(conn), inval)
        };
        let cluster = connector.is_cluster();
        let changes = connector.changes();
        let l2 = Arc::new(L2 {
            conn: RwLock::new(conn),
            inval: RwLock::new(inval),
            cluster,
            command_timeout: config.command_timeout,
            cluster_ready: watch::channel(false).0,
            clock_known: AtomicU64::new(0),
            wait_replicas: config.wait_replicas,
            wait_timeout: config.wait_timeout,
            manager_config: manager_config.clone(),
            inval_config: inval_config.clone(),
            replica_wait_timeouts: AtomicU64::new(0),
            connector,
            bound: config.connect_timeout + config.command_timeout,
            channels: keys.bus_channels(cluster),
            keys,
            breaker: Breaker::new(config.breaker_threshold, config.breaker_cooldown),
            replays: Mutex::new(ReplayQueue::new(MAX_REPLAYS)),
            all_notice,
            replays_waiting: AtomicUsize::new(0),
            replays_in_flight: AtomicUsize::new(0),
            recovered: Arc::new(Notify::new()),
            on_replayed: Mutex::new(None),
            problems: std::sync::OnceLock::new(),
            skipped: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            replays_collapsed: AtomicU64::new(0),
            invalidate_tag: Script::new(&format!(
                "{ALLOW_OOM}{ADVANCE_CLOCK}{MARK_DELETION}{INVALIDATE_TAG}"
            )),
            read_or_lock_many: Script::new(&format!(
                "{ALLOW_OOM}{ADVANCE_CLOCK}{READ_LIVE}{READ_OR_LOCK_MANY}"
            )),
            store_loaded_many: Script::new(&format!(
                "{WRITES}{MARK_LOCK}{STORE_ENTRY}{STORE_LOADED_MANY}"
            )),
            lookups: batches::Batcher::default(),
            stores: batches::Batcher::default(),
            me: std::sync::OnceLock::new(),
            set_entry: Script::new(&format!(
                "{WRITES}{ADVANCE_CLOCK}{MARK_LOCK}{STORE_ENTRY}{SET_ENTRY}"
            )),
            delete: Script::new(&format!("{ALLOW_OOM}{MARK_LOCK}{DROP_ENTRY}{DELETE}")),
            take_lock: Script::new(&format!("{ALLOW_OOM}{ADVANCE_CLOCK}{TAKE_LOCK}")),
            take_lock_slot: Script::new(&format!("{ALLOW_OOM}{TAKE_LOCK_SLOT}")),
            marker_ttl: config.ttl,
            extend_lock: Script::new(&format!("{ALLOW_OOM}{EXTEND_LOCK}")),
            release_lock: Script::new(&format!("{ALLOW_OOM}{RELEASE_LOCK}")),
            clock_now: Script::new(&format!("{ALLOW_OOM}{ADVANCE_CLOCK}{CLOCK_NOW}")),
            clock_advance: Script::new(&format!("{ALLOW_OOM}{ADVANCE_CLOCK}{CLOCK_ADVANCE}")),
            raise_marker: Script::new(&format!("{ALLOW_OOM}{MARK_DELETION}{RAISE_MARKER}")),
            ensure_marker: Script::new(&format!("{WRITES}{ENSURE_MARKER}")),
            read_or_lock_slot: Script::new(&format!("{ALLOW_OOM}{READ_LIVE}{READ_OR_LOCK_SLOT}")),
            set_entry_slot: Script::new(&format!(
                "{WRITES}{MARK_LOCK}{STORE_ENTRY}{SET_ENTRY_SLOT}"
            )),
            delete_slot: Script::new(&format!("{ALLOW_OOM}{MARK_LOCK}{DROP_ENTRY}{DELETE_SLOT}")),
        });
        let _ = l2.me.set(Arc::downgrade(&l2));
        if cluster {
            tokio::spawn(sharded::connect(Arc::downgrade(&l2)));
        }
        tokio::spawn(replay_when_recovered(
            Arc::downgrade(&l2),
            l2.recovered.clone(),
        ));
        if l2.connector.is_sentinel() {
            tokio::spawn(follow_master(Arc::downgrade(&l2), changes));
        }
        Ok(l2)
    }

    /// The connection invalidations go through (see `inval`).
    async fn inval_conn(&self) -> Result<DataConn, L2Error> {
        if self.wait_replicas == 0 {
            return self.conn().await;
        }
        if let Some(c) = self.inval.read().clone() {
            return Ok(c);
        }
        self.connect_now().await?;
        self.inval.read().clone().ok_or_else(not_named)
    }

    /// Makes the connections if none exists yet: to the master the sentinels named (a command
    /// may come before the follower task saw the first answer), or waits (within the connect
    /// timeout) for the cluster connection being made in the background.
    async fn connect_now(&self) -> Result<(), L2Error> {
        if self.cluster {
            let mut ready = self.cluster_ready.subscribe();
            let wait = ready.wait_for(|r| *r);
            return match tokio::time::timeout(self.bound - self.command_bound(), wait).await {
                Ok(Ok(_)) => Ok(()),
                _ => Err(L2Error::Unavailable(
                    "no connection to the cluster yet".into(),
                )),
            };
        }
        let mut conn = self.conn.write();
        if conn.is_some() {
            return Ok(());
        }
        let (c, inval) = self
            .connector
            .client()
            .and_then(|client| managers(client, &self.manager_config, self.inval_config.as_ref()))
            .map_err(|_| not_named())?;
        *conn = Some(c);
        *self.inval.write() = inval;
        Ok(())
    }

    /// With `redis.waitReplicas`: waits (`WAIT`, at most `redis.waitTimeout`) until that many
    /// replicas acknowledged the writes sent on `c`; counts a wait in vain, never fails (the
    /// invalidation was applied on the master).
    async fn wait_for_replicas(&self, c: &mut DataConn, slot_of: &str) {
        if self.wait_replicas == 0 {
            return;
        }
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(self.wait_replicas)
            .arg(self.wait_timeout.as_millis() as u64);
        // on a cluster, on the primary that took the invalidation
        let wait = c.on_slot(cmd, crate::keys::cluster_slot(slot_of));
        let bound = self.wait_timeout + self.bound;
        match tokio::time::timeout(bound, wait).await {
            Ok(Ok(redis::Value::Int(n))) if n >= i64::from(self.wait_replicas) => {}
            _ => {
                self.replica_wait_timeouts.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The data connection now.
    async fn conn(&self) -> Result<DataConn, L2Error> {
        if let Some(c) = self.conn.read().clone() {
            return Ok(c);
        }
        self.connect_now().await?;
        self.conn.read().clone().ok_or_else(not_named)
    }

    /// The bus channel of the messages about `name` (a key or a tag).
    fn channel_of(&self, name: &str) -> &str {
        crate::keys::channel_for(&self.channels, name)
    }

    /// The bound of one command's answer (`redis.commandTimeout`).
    fn command_bound(&self) -> Duration {
        self.command_timeout
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
            errors: self.errors.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            replica_wait_timeouts: self.replica_wait_timeouts.load(Ordering::Relaxed),
            breaker_opened: self.breaker.times_opened(),
            replayed: self.replayed.load(Ordering::Relaxed),
            replays_collapsed: self.replays_collapsed.load(Ordering::Relaxed),
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

    /// Keeps an invalidation that Redis did not apply, to replay it until Redis does. Never
    /// drops one: past [`MAX_REPLAYS`] distinct keys and tags, the queue becomes one
    /// invalidation of the whole prefix.
    pub fn queue_replay(&self, replay: Replay) {
        let mut q = self.replays.lock();
        if q.push(replay, &self.all_notice) == Pushed::Collapsed {
            self.replays_collapsed.fetch_add(1, Ordering::Relaxed);
        }
        self.replays_waiting.store(q.len(), Ordering::Relaxed);
        drop(q);
        // an idle process must replay too: the replay task probes Redis until it answers
        self.recovered.notify_one();
    }

    /// A later invalidation (or write) of the same key or tag reached Redis: a waiting replay
    /// of it is not needed any more, and replaying it (a delete) would only remove the newer
    /// value.
    pub fn supersede_replay(&self, done: &Replay) {
        if self.replays_waiting.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut q = self.replays.lock();
        if q.supersede(done) {
            self.replays_waiting.store(q.len(), Ordering::Relaxed);
        }
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
            Ok(Err(e)) => Err(L2Error::from_redis(e)),
            Err(_) => Err(L2Error::Timeout),
        };
        report.done = true;
        if let Err(e) = &result {
            self.errors.fetch_add(1, Ordering::Relaxed);
            if matches!(e, L2Error::Refused { .. }) {
                self.refused.fetch_add(1, Ordering::Relaxed);
            }
        }
        match &result {
            // an error reply comes at once: only silence and lost connections open the breaker
            Err(e) if e.is_availability() => self.breaker.failure(permit),
            // Redis answers, but refuses: not a recovery (the replay task keeps its pace)
            Err(_) => {
                self.breaker.success(permit);
            }
            Ok(_) => {
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
            Replay::Expire { key, notice } => self.expire(key, notice).await,
            Replay::Tag { tag, notice } => self.invalidate_tag(tag, notice).await,
            Replay::TagExpire { tag, notice } => self.invalidate_tag_as(tag, notice, true).await,
            Replay::All { notice } => self.invalidate_all(notice).await,
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

    /// A replay taken off the queue was applied.
    fn replay_done(&self) {
        let _q = self.replays.lock();
        self.replayed.fetch_add(1, Ordering::Relaxed);
        self.replays_in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Puts a replay Redis did not apply back at the front of the queue.
    fn unpop_replay(&self, replay: Replay) {
        let mut q = self.replays.lock();
        q.unpop(replay);
        self.replays_in_flight.fetch_sub(1, Ordering::Relaxed);
        self.replays_waiting.store(q.len(), Ordering::Relaxed);
    }

    /// Replays queued invalidations (oldest first) until the queue is empty or Redis fails.
    /// One Redis refused stays queued too (a later try may pass: memory freed, a script
    /// ended, a permission granted); the task tries again every [`REPLAY_RETRY`].
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
                    self.replay_done();
                }
                Err(_) => {
                    self.unpop_replay(next);
                    return;
                }
            }
        }
    }

    /// Whether invalidations wait for Redis.
    pub fn replays_waiting(&self) -> bool {
        self.replays_waiting.load(Ordering::Relaxed) > 0
            || self.replays_in_flight.load(Ordering::Relaxed) > 0
    }

    /// Redis' own hit counters (`keyspace_hits`, `keyspace_misses` of `INFO stats`).
    pub async fn keyspace_stats(&self) -> Result<(u64, u64), L2Error> {
        let mut c = self.conn().await?;
        let (mut hits, mut misses) = (0, 0);
        for (host, port) in self.primaries(&mut c).await? {
            let mut cmd = redis::cmd("INFO");
            cmd.arg("stats");
            let reply = self.bounded(c.on_node(cmd, &host, port)).await?;
            let info: String =
                redis::from_redis_value(reply).map_err(|e| L2Error::Invalid(e.to_string()))?;
            let field = |name: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            hits += field("keyspace_hits");
            misses += field("keyspace_misses");
        }
        Ok((hits, misses))
    }

    /// Makes sure a connection exists (a `PING`).
    pub async fn ping(&self) -> Result<(), L2Error> {
        let mut c = self.conn().await?;
        self.bounded(redis::cmd("PING").query_async::<()>(&mut c))
            .await
    }

    /// The raw envelopes of several keys in one round trip (`MGET`; every key of a prefix is in
    /// one cluster slot).
    pub async fn mget(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, L2Error> {
        let mut c = self.conn().await?;
        let mut cmd = redis::cmd("MGET");
        for key in keys {
            cmd.arg(self.keys.entry(key));
        }
        self.bounded(cmd.query_async::<Vec<Option<Vec<u8>>>>(&mut c))
            .await
    }

    /// The markers of several tags in one round trip: `None` for a missing (or unreadable)
    /// marker, which makes every entry carrying the tag invalid.
    pub async fn markers(&self, tags: &[String]) -> Result<Vec<Option<u64>>, L2Error> {
        self.marker_values(tags, Keyspace::tag_marker).await
    }

    /// The deletion markers of `tags` (see `MARK_DELETION`), `None` where missing.
    pub async fn deletion_markers(&self, tags: &[String]) -> Result<Vec<Option<u64>>, L2Error> {
        self.marker_values(tags, Keyspace::tag_deletion).await
    }

    async fn marker_values(
        &self,
        tags: &[String],
        name: fn(&Keyspace, &str) -> String,
    ) -> Result<Vec<Option<u64>>, L2Error> {
        let mut c = self.conn().await?;
        let mut cmd = redis::cmd("MGET");
        for tag in tags {
            cmd.arg(name(&self.keys, tag));
        }
        let raw: Vec<Option<String>> = self.bounded(cmd.query_async(&mut c)).await?;
        if raw.len() != tags.len() {
            self.errors.fetch_add(1, Ordering::Relaxed);
            return Err(L2Error::Invalid("MGET answered the wrong count".into()));
        }
        Ok(raw
            .into_iter()
            .map(|m| m.and_then(|m| m.parse::<u64>().ok()))
            .collect())
    }

    /// Stores an envelope for `ttl` and publishes `notice` on the bus in the same round trip,
    /// with its tags' markers (see the module doc). A caller's write (`load` `None`) is born at
    /// the clock now; a loader's value only while its lock is held and no tag was invalidated
    /// since its lookup. Returns how many subscribers received `notice` when it was stored,
    /// `None` when it was refused.
    pub async fn set(
        &self,
        key: &str,
        envelope: &Encoded,
        ttl: Duration,
        tags: &[String],
        notice: &str,
        load: Option<LoadedWrite<'_>>,
    ) -> Result<Option<u64>, L2Error> {
        if self.cluster {
            return self
                .sharded_set(key, envelope, ttl, tags, notice, load)
                .await;
        }
        if let (Some(l), true) = (load, tags.is_empty()) {
            // concurrent loaders' values go out together (see `batches`)
            let (tx, rx) = tokio::sync::oneshot::channel();
            let store = batches::Store {
                key: key.to_string(),
                envelope: envelope.head().to_string(),
                ttl_ms: ttl.as_millis() as u64,
                token: l.lock_token.to_string(),
                notice: notice.to_string(),
                answer: tx,
            };
            let me = self.me.get().cloned().unwrap_or_default();
            self.stores
                .submit(store, &me, |l2| &l2.stores, batches::send_stores);
            return batches::answer(rx).await;
        }
        // a caller's write replaces a value: an invalidation too (a loader's value is not)
        let mut c = if load.is_none() {
            self.inval_conn().await?
        } else {
            self.conn().await?
        };
        let mut inv = self.set_entry.key(self.keys.entry(key));
        inv.key(self.keys.lock(key)).key(self.keys.clock());
        for tag in tags {
            inv.key(self.keys.tag_marker(tag));
        }
        inv.arg(envelope.head())
            .arg(envelope.tail())
            .arg(ttl.as_millis() as u64);
        inv.arg(self.channel_of(key)).arg(notice);
        match load {
            Some(l) => inv.arg(l.born).arg(l.lock_token),
            None => inv.arg("").arg(""),
        };
        inv.arg(now_us());
        let stored = self
            .bounded(inv.invoke_async::<(u64, u64)>(&mut c))
            .await
            .map(|(stored, receivers)| (stored == 1).then_some(receivers))?;
        if load.is_none() {
            self.wait_for_replicas(&mut c, key).await;
        }
        Ok(stored)
    }

    /// Deletes `key` (marking a load in progress of it stale) and publishes `notice` on the
    /// bus. Returns how many subscribers received `notice`.
    pub async fn del(&self, key: &str, notice: &str) -> Result<u64, L2Error> {
        self.drop_entry(key, notice, None).await
    }

    /// Marks `key`'s entry stale (`expire`): an entry with a grace stays as the fail-safe copy
    /// with its fresh expiry moved to now; one without is deleted. Otherwise like [`L2::del`].
    pub async fn expire(&self, key: &str, notice: &str) -> Result<u64, L2Error> {
        self.drop_entry(key, notice, Some(crate::clock::now_ms()))
            .await
    }

    async fn drop_entry(
        &self,
        key: &str,
        notice: &str,
        expire_at: Option<u64>,
    ) -> Result<u64, L2Error> {
        let expire_at = expire_at.map_or(String::new(), |t| t.to_string());
        if self.cluster {
            return self.sharded_del(key, notice, &expire_at).await;
        }
        let mut c = self.inval_conn().await?;
        let mut inv = self.delete.key(self.keys.entry(key));
        inv.key(self.keys.lock(key));
        inv.arg(self.channel_of(key)).arg(notice).arg(expire_at);
        let receivers = self.bounded(inv.invoke_async::<u64>(&mut c)).await?;
        self.wait_for_replicas(&mut c, key).await;
        Ok(receivers)
    }

    /// The value of `key` if present, else tries to take its lock with `token` for `ttl`.
    /// `discard`: an entry the caller found unusable; if it is still there, it is deleted and
    /// counts as absent. `clock_trusted`: the bus is subscribed, so the invalidation clock this
    /// process knows may be the load's birth (cluster; see [`sharded`]).
    pub async fn read_or_lock(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
        discard: Option<Discard>,
        clock_trusted: bool,
    ) -> Result<ReadOrLock, L2Error> {
        if self.cluster {
            return self
                .sharded_read_or_lock(key, token, ttl, discard, clock_trusted)
                .await;
        }
        // concurrent misses go out together (see `batches`)
        let (tx, rx) = tokio::sync::oneshot::channel();
        let lookup = batches::Lookup {
            key: key.to_string(),
            token: token.to_string(),
            ttl_ms: ttl.as_millis() as u64,
            discard: Discard::script_arg(discard),
            answer: tx,
        };
        let me = self.me.get().cloned().unwrap_or_default();
        self.lookups
            .submit(lookup, &me, |l2| &l2.lookups, batches::send_lookups);
        batches::answer(rx).await
    }

    /// Tries to take `key`'s lock with `token` for `ttl` to refresh the entry the caller read
    /// (written by `write_id`; stale, or due for an eager refresh): [`ReadOrLock::Acquired`]
    /// or [`ReadOrLock::Busy`], with the load's birth as [`L2::read_or_lock`] gives it, or
    /// [`ReadOrLock::Value`] when another write replaced that entry meanwhile.
    pub async fn take_lock(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
        write_id: u64,
        clock_trusted: bool,
    ) -> Result<ReadOrLock, L2Error> {
        let mut c = self.conn().await?;
        let marker = crate::codec::write_marker(write_id);
        if self.cluster {
            let mut inv = self.take_lock_slot.key(self.keys.lock(key));
            inv.key(self.keys.entry(key));
            inv.arg(token).arg(ttl.as_millis() as u64).arg(marker);
            let reply: Vec<redis::Value> = self.bounded(inv.invoke_async(&mut c)).await?;
            return self.slot_lock_reply(&reply, clock_trusted).await;
        }
        let mut inv = self.take_lock.key(self.keys.lock(key));
        inv.key(self.keys.clock()).key(self.keys.entry(key));
        inv.arg(token)
            .arg(ttl.as_millis() as u64)
            .arg(now_us())
            .arg(marker);
        let reply: Vec<redis::Value> = self.bounded(inv.invoke_async(&mut c)).await?;
        self.read_or_lock_reply(&reply)
    }

    /// Reads a lookup script's reply: {1, value}, {2, clock} or {3, clock}.
    fn read_or_lock_reply(&self, reply: &[redis::Value]) -> Result<ReadOrLock, L2Error> {
        match reply {
            [redis::Value::Int(1), redis::Value::BulkString(v)] => Ok(ReadOrLock::Value(v.clone())),
            [redis::Value::Int(2), redis::Value::Int(c)] => Ok(ReadOrLock::Acquired(*c as u64)),
            [redis::Value::Int(3), redis::Value::Int(c)] => Ok(ReadOrLock::Busy(*c as u64)),
            other => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                Err(L2Error::Invalid(format!(
                    "unexpected reply to read-or-lock: {other:?}"
                )))
            }
        }
    }

    /// Extends our lock on `key` to `ttl`. Returns false when we no longer own it.
    pub async fn extend_lock(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, L2Error> {
        let mut c = self.conn().await?;
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
        let mut c = self.conn().await?;
        let mut inv = self.release_lock.key(self.keys.lock(key));
        // on a cluster the announcement goes to the bus's shard after the script
        let in_script = if self.cluster { "" } else { notice };
        inv.arg(token).arg(self.channel_of(key)).arg(in_script);
        let released = self
            .bounded(inv.invoke_async::<u64>(&mut c))
            .await
            .map(|n| n == 1)?;
        if released && self.cluster && !notice.is_empty() {
            self.publish(&mut c, self.channel_of(key), notice).await?;
        }
        Ok(released)
    }

    /// The raw envelope of `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, L2Error> {
        let mut c = self.conn().await?;
        let k = self.keys.entry(key);
        self.bounded(
            redis::cmd("GET")
                .arg(&k)
                .query_async::<Option<Vec<u8>>>(&mut c),
        )
        .await
    }

    /// Invalidates every entry tagged `tag` (O(1): its marker moves to the advanced clock) and
    /// publishes `notice`. Returns how many subscribers received `notice`.
    pub async fn invalidate_tag(&self, tag: &str, notice: &str) -> Result<u64, L2Error> {
        self.invalidate_tag_as(tag, notice, false).await
    }

    /// [`L2::invalidate_tag`] in expire mode (`expire`): the entries are stale rather than
    /// dead, kept as the fail-safe copy within their grace (see `MARK_DELETION`).
    pub async fn invalidate_tag_as(
        &self,
        tag: &str,
        notice: &str,
        expire: bool,
    ) -> Result<u64, L2Error> {
        let mode = if expire { "x" } else { "d" };
        if self.cluster {
            return self.sharded_invalidate_tag(tag, notice, mode).await;
        }
        let mut c = self.inval_conn().await?;
        let mut inv = self.invalidate_tag.key(self.keys.clock());
        inv.key(self.keys.tag_marker(tag))
            .key(self.keys.tag_deletion(tag));
        inv.arg(now_us()).arg(self.channel_of(tag)).arg(notice);
        inv.arg(self.marker_ttl.as_millis() as u64).arg(mode);
        let receivers = self.bounded(inv.invoke_async::<u64>(&mut c)).await?;
        self.wait_for_replicas(&mut c, &self.keys.tag_marker(tag))
            .await;
        Ok(receivers)
    }

    /// Deletes every entry of the prefix (`SCAN` + `UNLINK`, 1 000 keys a command, so Redis
    /// stays responsive), then publishes `notice` (every process empties its L1). The fallback
    /// of a replay queue that overflowed. Returns how many subscribers received `notice`.
    pub async fn invalidate_all(&self, notice: &str) -> Result<u64, L2Error> {
        let mut c = self.inval_conn().await?;
        let pattern = self.keys.entries_pattern();
        for (host, port) in self.primaries(&mut c).await? {
            let mut cursor: u64 = 0;
            // bounded: MAX_PURGE_ROUNDS rounds, each bounded by the command timeout
            for _ in 0..MAX_PURGE_ROUNDS {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000);
                let reply = self.bounded(c.on_node(scan, &host, port)).await?;
                let (next, found): (u64, Vec<String>) =
                    redis::from_redis_value(reply).map_err(|e| L2Error::Invalid(e.to_string()))?;
                if !found.is_empty() {
                    // on a cluster, split per slot by the client
                    self.bounded(redis::cmd("UNLINK").arg(&found).query_async::<u64>(&mut c))
                        .await?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        // every process subscribes to every channel: the first one does
        let receivers = self.publish(&mut c, &self.channels[0], notice).await?;
        self.wait_for_replicas(&mut c, &self.channels[0]).await;
        Ok(receivers)
    }

    /// The primaries to visit for a scan or a statistic: on a cluster each primary's address
    /// (`CLUSTER SLOTS`), else the one server (its address is not used).
    async fn primaries(&self, c: &mut DataConn) -> Result<Vec<(String, u16)>, L2Error> {
        if !self.cluster {
            return Ok(vec![(String::new(), 0)]);
        }
        let slots: Vec<redis::Value> = self
            .bounded(redis::cmd("CLUSTER").arg("SLOTS").query_async(c))
            .await?;
        let mut nodes = Vec::new();
        for range in slots {
            // [start, end, [host, port, id, ...], replicas...]
            let redis::Value::Array(parts) = range else {
                continue;
            };
            let Some(redis::Value::Array(primary)) = parts.get(2) else {
                continue;
            };
            let host = match primary.first() {
                Some(redis::Value::BulkString(h)) => String::from_utf8_lossy(h).into_owned(),
                Some(redis::Value::SimpleString(h)) => h.clone(),
                _ => continue,
            };
            let Some(redis::Value::Int(port)) = primary.get(1) else {
                continue;
            };
            let node = (host, *port as u16);
            if !nodes.contains(&node) {
                nodes.push(node);
            }
        }
        Ok(nodes)
    }

    /// Publishes on a bus channel: `SPUBLISH` on a cluster (a shard channel: the reply counts
    /// every subscriber, all connected to the channel's primary), else `PUBLISH`. Returns how
    /// many subscribers received it.
    async fn publish(
        &self,
        c: &mut DataConn,
        channel: &str,
        message: &str,
    ) -> Result<u64, L2Error> {
        let command = if self.cluster { "SPUBLISH" } else { "PUBLISH" };
        self.bounded(
            redis::cmd(command)
                .arg(channel)
                .arg(message)
                .query_async::<u64>(c),
        )
        .await
    }

    /// Acknowledges message `seq` of `instance`, which arrived on bus channel `channel`, on
    /// `instance`'s acknowledgement channel of that bus channel.
    pub async fn ack(&self, channel: &str, instance: &str, seq: u64) -> Result<(), L2Error> {
        let mut c = self.conn().await?;
        let channel = crate::keys::ack_channel(channel, instance);
        self.publish(&mut c, &channel, &seq.to_string())
            .await
            .map(|_| ())
    }
}

/// The connection managers of a client: for data, and (with `redis.waitReplicas`) for
/// invalidations, which `WAIT` on their own connection.
fn managers(
    client: Client,
    config: &ConnectionManagerConfig,
    inval_config: Option<&ConnectionManagerConfig>,
) -> redis::RedisResult<(DataConn, Option<DataConn>)> {
    let inval = match inval_config {
        Some(c) => Some(DataConn::Single(ConnectionManager::new_lazy_with_config(
            client.clone(),
            c.clone(),
        )?)),
        None => None,
    };
    Ok((
        DataConn::Single(ConnectionManager::new_lazy_with_config(
            client,
            config.clone(),
        )?),
        inval,
    ))
}

/// The error of a command before the sentinels named a master.
fn not_named() -> L2Error {
    L2Error::Unavailable("the sentinels have not named the master yet".into())
}

/// Gives L2 a connection to the master whenever the sentinels name a new one (a failover);
/// ends with the L2 (or its connector).
async fn follow_master(l2: Weak<L2>, mut changes: tokio::sync::watch::Receiver<u64>) {
    // bounded by the L2's life: each round waits for a change of master
    loop {
        if changes.changed().await.is_err() {
            return;
        }
        let Some(l2) = l2.upgrade() else { return };
        let made = l2
            .connector
            .client()
            .and_then(|client| managers(client, &l2.manager_config, l2.inval_config.as_ref()));
        if let Ok((manager, inval)) = made {
            *l2.conn.write() = Some(manager);
            *l2.inval.write() = inval;
            // the breaker measured the old master: probe the new one at once; and what failed
            // against the old master may pass now
            l2.breaker.probe_now();
            l2.recovered.notify_one();
        }
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

/// How often waiting replays are retried when nothing else reaches Redis.
pub const REPLAY_RETRY: Duration = Duration::from_millis(250);
