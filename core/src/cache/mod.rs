//! The orchestrator: one cache's L1, L2, invalidation log and counters, and the queue through
//! which Redis results reach the JavaScript thread.
//!
//! Synchronous calls ([`Cache::l1_get`], [`Cache::set`], ...) run on the caller's (JS) thread
//! and never block on the network. Every Redis call is spawned on the tokio runtime under a
//! caller-chosen id; its [`Completion`] is queued, and the `notify` callback fires only when the
//! queue goes from empty to non-empty, so one wake-up of the JS thread settles a whole batch
//! ([`Cache::take_completions`]).
//!
//! Other processes reach this one through the [invalidation bus](crate::bus): their writes and invalidations
//! drop the affected L1 entries here (on the tokio thread) and wake callers waiting for a
//! [stampede lock](crate::lock).
//!
//! This file holds the [`Cache`] facade itself (construction, L1 access, reads, counters,
//! `close`) and [`Stats`]; its methods run on the JS thread and spawn their Redis halves on the
//! tokio runtime. The rest of the cache lives beside it:
//! - `completion.rs`: what operations hand back ([`Completion`], [`Outcome`], [`Hit`], [`Fill`],
//!   [`LoadContext`], [`Started`]);
//! - `shared.rs`: the state shared with the tokio tasks (completion queue, coherence of L1 with
//!   invalidations, bus handling, acknowledgements);
//! - `writes.rs`: the write path of the facade (`set`, `del`, `invalidateTag`, lock release);
//! - `write_barrier.rs`: orders invalidations after the writes issued before them;
//! - `read_batcher.rs`: plain reads, batched into `MGET`s;
//! - `locking_read.rs`: cache-aside reads with stampede protection.

mod completion;
mod locking_read;
mod read_batcher;
mod shared;
mod tag_check;
mod write_barrier;
mod writes;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::acks::AckBook;
use crate::breaker::BreakerState;
use crate::bus::{Bus, BusConfig, BusHandler};
use crate::config::Config;
use crate::invalidation::InvalidationLog;
use crate::key_order::KeyOrder;
use crate::keys::Keyspace;
use crate::l1::L1;
use crate::l2::{L2Counters, L2Error, L2};
use crate::lock::{random_token, random_u64, HeldLocks, Waiters};
use crate::metrics::{HistogramSnapshot, Latencies, LatencyOutcome, Metrics, MetricsSnapshot};
use crate::tag_versions::TagVersions;

pub use completion::{Completion, Fill, Freshness, Hit, LoadContext, Notifier, Outcome, Started};
pub use shared::SHORT_ACK_WAIT;

use completion::read_envelope;
use locking_read::LockingRead;
use read_batcher::{run_read_batcher, PendingRead, ReadQueue};
use shared::Shared;
use tag_check::judge;
use write_barrier::WriteBarrier;

/// Counters and sizes of a cache at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Event counters.
    pub counters: MetricsSnapshot,
    /// Lookups served by L1.
    pub l1_hits: u64,
    /// Lookups L1 could not serve (L1 on).
    pub l1_misses: u64,
    /// Live L1 entries.
    pub l1_entries: u64,
    /// L1 entries evicted to respect `l1.maxEntries`.
    pub l1_evictions: u64,
    /// L1 entries expired.
    pub l1_expirations: u64,
    /// Spawned operations not yet completed.
    pub pending_operations: u64,
    /// Stampede locks held now.
    pub locks_held: u64,
    /// Whether the bus subscription is active (false without Redis).
    pub bus_connected: bool,
    /// The circuit breaker in front of Redis (closed without Redis).
    pub breaker: BreakerState,
    /// Counters of the Redis layer.
    pub l2: L2Counters,
}

/// One cache instance.
pub struct Cache {
    config: Config,
    l2: RwLock<Option<Arc<L2>>>,
    reads: Option<Arc<ReadQueue>>,
    bus: Mutex<Option<Arc<Bus>>>,
    instance: String,
    /// ids of this instance's writes: a random start, then consecutive
    write_ids: std::sync::atomic::AtomicU64,
    locks: Arc<HeldLocks>,
    shared: Arc<Shared>,
    rt: Handle,
    closed: AtomicBool,
    problems: Arc<crate::problems::Problems>,
}

impl Cache {
    /// Builds a cache. Redis (if configured) is connected in the background right away, and
    /// the bus subscribes; the first command waits for both within `redis.connectTimeout`.
    pub fn new(config: Config, rt: Handle, notify: Notifier) -> Result<Cache, L2Error> {
        let shared = Arc::new(Shared {
            l1: config.l1.as_ref().map(|c| Arc::new(L1::new(c.max_entries))),
            queue: Mutex::new(Vec::new()),
            notify,
            metrics: Metrics::default(),
            latencies: Latencies::default(),
            log: InvalidationLog::new(),
            coherence: Mutex::new(()),
            waiters: Waiters::default(),
            in_flight: AtomicUsize::new(0),
            background: AtomicUsize::new(0),
            writes: WriteBarrier::default(),
            closing: watch::channel(false).0,
            acks: Arc::new(AckBook::default()),
            acker: std::sync::OnceLock::new(),
            acks_missing: AtomicBool::new(false),
            tag_versions: TagVersions::new(),
            key_order: KeyOrder::default(),
        });
        if let Some(l1) = &shared.l1 {
            rt.spawn(L1::run_expirer(Arc::downgrade(l1)));
        }
        let instance = random_token();
        let problems = Arc::new(crate::problems::Problems::new(
            config.l2.as_ref().map_or("", |c| c.url.as_str()),
        ));
        let (l2, bus) = match &config.l2 {
            Some(c) => {
                let _guard = rt.enter();
                let keys = Keyspace::new(&config.prefix);
                let connector = crate::connection::Connector::new(c);
                connector.start();
                let bus_config = BusConfig {
                    connector: connector.clone(),
                    channels: keys.bus_channels(connector.is_cluster()),
                    instance: instance.clone(),
                    connect_timeout: c.connect_timeout,
                    command_timeout: c.command_timeout,
                    problems: Some(problems.clone()),
                };
                let all_notice =
                    crate::bus::encode(&instance, &crate::bus::BusEvent::AllInvalidated);
                let l2 = L2::new(c, connector, keys, all_notice)?;
                l2.report_problems_to(problems.clone());
                let _ = shared.acker.set(Arc::downgrade(&l2));
                let settle = Arc::downgrade(&shared);
                l2.on_replayed(Box::new(move |inv| {
                    if let Some(shared) = settle.upgrade() {
                        shared.settled(inv);
                    }
                }));
                let warm = l2.clone();
                rt.spawn(async move {
                    let _ = warm.ping().await;
                });
                let handler: Arc<dyn BusHandler> = shared.clone();
                let bus = Arc::new(Bus::start(&rt, bus_config, handler));
                (Some(l2), Some(bus))
            }
            None => (None, None),
        };
        let reads = l2.as_ref().map(|l2| {
            let reads = Arc::new(ReadQueue::default());
            rt.spawn(run_read_batcher(
                shared.clone(),
                l2.clone(),
                reads.clone(),
                bus.clone(),
                config.l1.as_ref().map(|c| c.ttl),
            ));
            reads
        });
        Ok(Cache {
            config,
            l2: RwLock::new(l2),
            reads,
            bus: Mutex::new(bus),
            instance,
            write_ids: std::sync::atomic::AtomicU64::new(random_u64() | 1),
            locks: Arc::new(HeldLocks::default()),
            shared,
            rt,
            closed: AtomicBool::new(false),
            problems,
        })
    }

    /// Redis problems noticed so far (see [`crate::problems`]).
    pub fn problems(&self) -> &crate::problems::Problems {
        &self.problems
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether Redis is in use.
    pub fn has_l2(&self) -> bool {
        self.l2.read().is_some()
    }

    /// Whether L1 is in use.
    pub fn has_l1(&self) -> bool {
        self.shared.l1.is_some()
    }

    fn l2(&self) -> Option<Arc<L2>> {
        self.l2.read().clone()
    }

    fn bus(&self) -> Option<Arc<Bus>> {
        self.bus.lock().clone()
    }

    /// Runs `fut` for operation `id`; if the cache closes first, completes with `on_close`.
    fn spawn<F>(&self, id: u32, fut: F, on_close: Outcome)
    where
        F: std::future::Future<Output = Outcome> + Send + 'static,
    {
        self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
        let shared = self.shared.clone();
        let mut closing = shared.closing.subscribe();
        self.rt.spawn(async move {
            let outcome = tokio::select! {
                outcome = fut => outcome,
                _ = closing.wait_for(|closed| *closed) => on_close,
            };
            shared.complete(id, outcome);
        });
    }

    /// Runs `fut` without a completion (lock releases); `close` waits for it.
    fn spawn_background<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.shared.background.fetch_add(1, Ordering::AcqRel);
        let shared = self.shared.clone();
        self.rt.spawn(async move {
            fut.await;
            shared.background.fetch_sub(1, Ordering::AcqRel);
        });
    }

    /// L1's shared memory (the expiry table JS serves hits from), when L1 is on.
    pub fn l1_memory(&self) -> Option<crate::l1::SharedMemory> {
        self.shared.l1.as_ref().map(|l1| l1.shared_memory())
    }

    /// The L1 slot of `key` (a moka read), for runtimes without shared memory.
    pub fn l1_get(&self, key: &str) -> Option<u32> {
        self.shared.l1.as_ref()?.get(key)
    }

    /// Replays reads JS served from the expiry table into L1's LRU order.
    pub fn touch(&self, slots: &[u32]) {
        if let Some(l1) = &self.shared.l1 {
            l1.touch(slots);
        }
    }

    /// Starts Redis reads of several keys at once (`(id, key)` pairs), with one wake-up of the
    /// batcher: they go out together in one `MGET`. Each completes under its id with
    /// [`Outcome::Hit`] or [`Outcome::Miss`].
    pub fn get_l2_many(&self, reads: Vec<(u32, String)>) -> Started {
        let Some(queue) = &self.reads else {
            return Started::Finished;
        };
        if self.l2.read().is_none() {
            return Started::Finished;
        }
        if reads.is_empty() {
            return Started::Finished;
        }
        self.shared
            .in_flight
            .fetch_add(reads.len(), Ordering::AcqRel);
        let began = std::time::Instant::now();
        queue.push_many(
            reads
                .into_iter()
                .map(|(id, key)| PendingRead { id, key, began }),
        );
        Started::Pending
    }

    /// Copies a Redis value into L1 unless an invalidation raced with its read. Returns the slot
    /// where the caller must store the decoded value now. Hits handed over together are filled
    /// one after the other, then [`Cache::end_fills`] runs once before control returns to JS:
    /// L1 evicts once for the whole batch, and its bound is never observably exceeded.
    pub fn fill(&self, fill: Fill) -> Option<u32> {
        let l1 = self.shared.l1.as_ref()?;
        let _coherent = self.shared.coherence.lock();
        if self
            .shared
            .log
            .is_stale(fill.start, &fill.key, &fill.tags, fill.write_id)
        {
            Metrics::inc(&self.shared.metrics.l1_fills_skipped);
            return None;
        }
        l1.insert_unbounded(&fill.key, fill.ttl, &fill.tags, fill.write_id)
    }

    /// Ends a batch of [`Cache::fill`]: evicts down to `l1.maxEntries`.
    pub fn end_fills(&self) {
        if let Some(l1) = &self.shared.l1 {
            l1.enforce_bound();
        }
    }

    /// Starts a cache-aside read of `key` with stampede protection across processes. Completes
    /// with [`Outcome::Hit`] (from Redis, possibly written by another process's loader while we
    /// waited), or [`Outcome::Load`] (load, then [`Cache::set`] with the context: our lock, if
    /// we took it, and the clock token that keeps a value loaded before a newer invalidation out
    /// of Redis).
    /// or [`Outcome::Miss`] (load without the lock: Redis failed or `lock.wait` ran out).
    ///
    /// `refresh`: an eager refresh of an entry this process holds (see `LockingRead`): it
    /// completes with [`Outcome::Miss`] when it leaves the refresh to another process.
    /// `early_stale`: complete with [`Outcome::Stale`] instead of waiting when the entry is
    /// stale and another process holds its lock (the caller answers with the stale value).
    pub fn read_or_lock(&self, id: u32, key: &str, refresh: bool, early_stale: bool) -> Started {
        let Some(l2) = self.l2() else {
            return Started::Finished;
        };
        let task = LockingRead {
            shared: self.shared.clone(),
            locks: self.locks.clone(),
            rt: self.rt.clone(),
            l2,
            bus: self.bus(),
            key: key.to_string(),
            l1_ttl: self.config.l1.as_ref().map(|c| c.ttl),
            lock_ttl: self.config.lock.ttl,
            wait: self.config.lock.wait,
            max_hold: self.config.loader_timeout + self.config.lock.ttl,
            refresh,
            early_stale,
        };
        let failed = if refresh {
            Outcome::Miss
        } else {
            Outcome::Load(LoadContext::default(), None)
        };
        self.spawn(id, task.run(), failed);
        Started::Pending
    }

    /// Whether `key` is cached: `Ok` when known at once, else a pending Redis read (a `GET`: an
    /// entry present in Redis counts only if it is readable, not expired and valid under its
    /// tags' markers).
    /// `skip_l1`: the caller knows L1's copy is stale (kept for its grace), which does not count.
    pub fn exists(&self, id: u32, key: &str, skip_l1: bool) -> Result<bool, Started> {
        if !skip_l1 && self.shared.l1.as_ref().is_some_and(|l1| l1.contains(key)) {
            return Ok(true);
        }
        let Some(l2) = self.l2() else {
            return Ok(false);
        };
        let shared = self.shared.clone();
        let key = key.to_string();
        let bus = self.bus();
        self.spawn(
            id,
            async move {
                let bytes = match l2.get(&key).await {
                    Ok(Some(bytes)) => bytes,
                    Ok(None) => return Outcome::Bool(false),
                    Err(_) => return Outcome::Bool(false),
                };
                let Some(hit) = read_envelope(bytes, &key, shared.log.begin(), None) else {
                    return Outcome::Bool(false);
                };
                if hit.stale {
                    // kept past its ttl for its grace only
                    return Outcome::Bool(false);
                }
                if hit.tags.is_empty() {
                    return Outcome::Bool(true);
                }
                let trusted = bus.as_ref().is_some_and(|b| b.is_connected());
                Outcome::Bool(judge(&shared, &l2, trusted, &[(hit.born, &hit.tags)]).await[0])
            },
            Outcome::Bool(false),
        );
        Err(Started::Pending)
    }

    /// Starts reading Redis' own hit counters (`INFO stats`).
    pub fn keyspace_stats(&self, id: u32) -> Started {
        let Some(l2) = self.l2() else {
            return Started::Finished;
        };
        let read = async move { Outcome::KeyspaceStats(l2.keyspace_stats().await.ok()) };
        self.spawn(id, read, Outcome::KeyspaceStats(None));
        Started::Pending
    }

    /// A token for "now" in the invalidation order: pass it back in [`LoadContext::since`].
    pub fn epoch(&self) -> u64 {
        self.shared.log.epoch()
    }

    /// Whether `key`, one of `tags` or any tag at all was invalidated (locally, or by another
    /// process over the bus) since [`Cache::epoch`] returned `epoch`: a lookup that began then
    /// may return a value older than that invalidation, so later callers must not join it. Any
    /// tag counts because the value a lookup finds in Redis may carry tags its callers did not
    /// name.
    pub fn invalidated_since(&self, epoch: u64, key: &str, tags: &[String]) -> bool {
        let log = &self.shared.log;
        log.any_tag_since(epoch) || log.is_stale(log.since(epoch), key, tags, 0)
    }

    /// Whether `key` or one of `tags` was invalidated since [`Cache::epoch`] returned `epoch`
    /// (unlike [`Cache::invalidated_since`], other tags do not count: the caller knows the
    /// value's tags).
    pub fn changed_since(&self, epoch: u64, key: &str, tags: &[String]) -> bool {
        let log = &self.shared.log;
        log.is_stale(log.since(epoch), key, tags, 0)
    }

    /// The tags of `key`'s L1 entry, if it has one.
    pub fn l1_tags(&self, key: &str) -> Option<Vec<String>> {
        self.shared.l1.as_ref()?.tags_of(key)
    }

    /// Counts one loader call, whether it failed, and how long the lookup and load took.
    pub fn record_loader(&self, failed: bool, elapsed: Duration) {
        self.shared.latencies.observe(LatencyOutcome::Load, elapsed);
        let m = &self.shared.metrics;
        Metrics::inc(&m.loader_calls);
        if failed {
            Metrics::inc(&m.loader_errors);
        }
    }

    /// Every completion queued so far.
    pub fn take_completions(&self) -> Vec<Completion> {
        std::mem::take(&mut *self.shared.queue.lock())
    }

    /// L1 slots whose values must be cleared now (see [`crate::l1`]).
    pub fn take_freed(&self) -> Vec<u32> {
        self.shared
            .l1
            .as_ref()
            .map(|l1| l1.take_freed())
            .unwrap_or_default()
    }

    /// Periodic upkeep: drops expired L1 entries.
    pub fn maintain(&self) {
        if let Some(l1) = &self.shared.l1 {
            l1.maintain();
        }
    }

    /// Drops every L1 entry.
    pub fn clear_l1(&self) {
        self.shared.settled_all();
    }

    /// Operations started and not yet completed.
    pub fn pending_operations(&self) -> usize {
        self.shared.in_flight.load(Ordering::Acquire)
    }

    /// Counters and sizes.
    pub fn stats(&self) -> Stats {
        let l2 = self.l2();
        let l1 = self
            .shared
            .l1
            .as_ref()
            .map(|l1| l1.counters())
            .unwrap_or_default();
        Stats {
            counters: self.shared.metrics.snapshot(),
            l1_hits: l1.hits,
            l1_misses: l1.misses,
            l1_entries: l1.entries,
            l1_evictions: l1.evictions,
            l1_expirations: l1.expirations,
            pending_operations: self.shared.in_flight.load(Ordering::Acquire) as u64,
            locks_held: self.locks.len() as u64,
            bus_connected: self.bus().is_some_and(|b| b.is_connected()),
            breaker: l2
                .as_ref()
                .map_or(BreakerState::Closed, |l2| l2.breaker_state()),
            l2: l2.map(|l2| l2.counters()).unwrap_or_default(),
        }
    }

    /// Latency histograms of lookups, in [`LatencyOutcome::ALL`] order.
    pub fn latencies(&self) -> Vec<HistogramSnapshot> {
        self.shared.latencies.snapshot()
    }

    /// Whether [`Cache::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Stops the bus and stops using Redis: held locks are released, operations in flight get
    /// [`CLOSE_BOUND`] to finish, and whatever is still waiting then settles at once (reads as
    /// misses, writes as skipped); the connection closes. Completes `id` within `CLOSE_BOUND`
    /// even when Redis is unreachable.
    pub fn close(&self, id: u32) -> Started {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Started::Finished;
        }
        if let Some(bus) = self.bus.lock().take() {
            bus.stop();
        }
        let Some(l2) = self.l2.write().take() else {
            return Started::Finished;
        };
        for lock in self.locks.take_all() {
            let l2 = l2.clone();
            self.spawn_background(async move {
                let _ = l2.release_lock(&lock.key, &lock.token, "").await;
            });
        }
        let shared = self.shared.clone();
        self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
        self.rt.spawn(async move {
            // operations in flight (and lock releases) get a grace period to finish: a write
            // started before close lands; whatever is still waiting then (Redis unreachable or
            // frozen, a lock wait) settles at once as a miss or a skipped write
            let deadline = tokio::time::Instant::now() + CLOSE_BOUND;
            while (shared.in_flight.load(Ordering::Acquire) > 1
                || shared.background.load(Ordering::Acquire) > 0)
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let _ = shared.closing.send(true);
            drop(l2);
            shared.complete(id, Outcome::Done);
        });
        Started::Pending
    }
}

/// The longest `close` waits for operations in flight before it settles them.
pub const CLOSE_BOUND: Duration = Duration::from_millis(800);
