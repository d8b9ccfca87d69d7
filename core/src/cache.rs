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

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::acks::{AckBook, AckWait};
use crate::breaker::BreakerState;
use crate::bus::{self, Bus, BusConfig, BusEvent, BusHandler};
use crate::codec;
use crate::config::Config;
use crate::invalidation::{InvalidationLog, ReadStart};
use crate::keys::Keyspace;
use crate::l1::L1;
use crate::l2::{L2Counters, L2Error, ReadOrLock, Replay, L2};
use crate::lock::{lock_token, random_token, random_u64, HeldLock, HeldLocks, Waiters, POLL};
use crate::metrics::{HistogramSnapshot, Latencies, LatencyOutcome, Metrics, MetricsSnapshot};

/// Called (from any thread) when completions are waiting.
pub type Notifier = Box<dyn Fn() + Send + Sync>;

/// The result of one spawned operation.
#[derive(Debug)]
pub struct Completion {
    /// The id the caller gave when it started the operation.
    pub id: u32,
    /// What happened.
    pub outcome: Outcome,
}

/// What a spawned operation produced. Redis failures never appear here: they are counted and
/// the operation completes as if Redis had no data (reads) or was skipped (writes).
#[derive(Debug)]
pub enum Outcome {
    /// A write, delete, invalidation or close finished.
    Done,
    /// The answer to `exists`.
    Bool(bool),
    /// A read found nothing usable in Redis.
    Miss,
    /// A read found a value in Redis.
    Hit(Hit),
    /// A cache-aside miss: load, then [`Cache::set`] with this context (the stampede lock if
    /// this process took it, and the invalidation clock the lookup saw, if Redis answered).
    Load(LoadContext),
    /// Redis' keyspace hits and misses (`INFO stats`); `None` when Redis did not answer.
    KeyspaceStats(Option<(u64, u64)>),
}

/// A value read from Redis, with what is needed to copy it into L1.
#[derive(Debug)]
pub struct Hit {
    envelope: String,
    value: Range<usize>,
    fill: Option<Fill>,
}

impl Hit {
    /// The value's JSON text.
    pub fn value_json(&self) -> &str {
        &self.envelope[self.value.clone()]
    }

    /// Takes the pending L1 copy, if the value may be copied into L1 at all.
    pub fn take_fill(&mut self) -> Option<Fill> {
        self.fill.take()
    }
}

/// A pending copy of a Redis value into L1. It is applied by [`Cache::fill`] on the JS thread,
/// when the value is handed over: a slot handed out on the I/O thread could be freed and reused
/// by another entry before JS stored the value in it.
#[derive(Debug)]
pub struct Fill {
    key: String,
    write_id: u64,
    ttl: Duration,
    tags: Vec<String>,
    start: ReadStart,
}

/// What a write knows about the loader call that produced its value.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadContext {
    /// The stampede lock held for this key, released once Redis has the value.
    pub lock_id: Option<u32>,
    /// [`Cache::epoch`] when the lookup that led to the loader began.
    pub since: Option<u64>,
    /// The Redis invalidation clock the lookup saw: Redis refuses the value if the key or a tag
    /// was invalidated after it (by any process).
    pub token: Option<u64>,
}

/// Whether an operation finished at once or will complete later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// Nothing was spawned: the operation is complete.
    Finished,
    /// A [`Completion`] with the caller's id will follow.
    Pending,
}

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

struct Shared {
    l1: Option<Arc<L1>>,
    queue: Mutex<Vec<Completion>>,
    notify: Notifier,
    metrics: Metrics,
    latencies: Latencies,
    log: InvalidationLog,
    /// Held while the log is checked and L1 filled, and while an invalidation is recorded and
    /// applied to L1: a fill (JS thread) and an invalidation (I/O thread) are each atomic to
    /// the other, so a copy checked before the record is inserted before the removal.
    coherence: Mutex<()>,
    waiters: Waiters,
    in_flight: AtomicUsize,
    background: AtomicUsize,
    writes: WriteBarrier,
    /// Becomes true on `close`: every operation in flight settles at once.
    closing: watch::Sender<bool>,
    /// Writes and invalidations waiting for the other processes' acknowledgements.
    acks: Arc<AckBook>,
    /// Where acknowledgements of other processes' messages are sent (set once L2 exists).
    acker: std::sync::OnceLock<std::sync::Weak<L2>>,
    /// Whether the last acknowledged write timed out (see [`SHORT_ACK_WAIT`]).
    acks_missing: AtomicBool,
}

/// How long a write waits for acknowledgements after the previous one timed out, until one gets
/// all of them again. A process that stopped for good while Redis still holds its connection
/// open (a vanished host, until Redis' TCP keepalive drops it) then costs each write this, not
/// `bus.ackTimeout`; a process that was only slow acknowledges again and restores the full wait.
pub const SHORT_ACK_WAIT: Duration = Duration::from_millis(5);

impl BusHandler for Shared {
    fn on_event(&self, event: BusEvent) {
        Metrics::inc(&self.metrics.bus_received);
        match event {
            BusEvent::KeyChanged(key, write_id) => {
                {
                    let _coherent = self.coherence.lock();
                    self.log.key_written(&key, write_id);
                    if let Some(l1) = &self.l1 {
                        // a copy of exactly this write (read from Redis after it) is current
                        l1.remove_unless_write(&key, write_id);
                    }
                }
                self.waiters.wake(&key);
            }
            BusEvent::KeyDeleted(key) => {
                self.settled_key(&key, None);
                self.waiters.wake(&key);
            }
            BusEvent::TagInvalidated(tag) => self.settled_tag(&tag),
            BusEvent::LockReleased(key) => self.waiters.wake(&key),
        }
    }

    fn on_malformed(&self) {
        Metrics::inc(&self.metrics.bus_malformed);
    }

    fn on_ack_request(&self, from: &str, seq: u64) {
        // on_event has applied the message to L1: confirm it (without holding up the bus)
        let Some(l2) = self.acker.get().and_then(|w| w.upgrade()) else {
            return;
        };
        Metrics::inc(&self.metrics.bus_acks_sent);
        let from = from.to_string();
        // a lost acknowledgement costs the sender its bound (bus.ackTimeout), nothing more
        tokio::spawn(async move {
            let _ = l2.ack(&from, seq).await;
        });
    }

    fn on_ack(&self, seq: u64) {
        self.acks.ack(seq);
    }

    fn on_subscribed(&self, resubscribed: bool) {
        if resubscribed {
            // messages may have been missed while disconnected: nothing in L1 can be trusted
            Metrics::inc(&self.metrics.bus_resubscriptions);
            self.settled_all();
            self.waiters.wake_all();
        }
    }
}

impl Shared {
    /// Queues several completions with at most one wake-up of the JS thread.
    fn complete_many(&self, done: Vec<Completion>) {
        if done.is_empty() {
            return;
        }
        let n = done.len();
        let was_empty = {
            let mut q = self.queue.lock();
            let was_empty = q.is_empty();
            q.extend(done);
            was_empty
        };
        self.in_flight.fetch_sub(n, Ordering::AcqRel);
        if was_empty {
            (self.notify)();
        }
    }

    fn complete(&self, id: u32, outcome: Outcome) {
        let was_empty = {
            let mut q = self.queue.lock();
            let was_empty = q.is_empty();
            q.push(Completion { id, outcome });
            was_empty
        };
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        if was_empty {
            (self.notify)();
        }
    }

    /// A write or delete of `key` was applied by Redis (or failed), or another process
    /// announced a delete: reads that started before now are stale for it, and whatever such a
    /// read put in L1 meanwhile goes, except
    /// a copy of the write itself (`keep`: its write id; known by id, not by slot, since a
    /// racing read's copy may have been given the slot the write's entry had).
    fn settled_key(&self, key: &str, keep: Option<u64>) {
        let _coherent = self.coherence.lock();
        self.log.key(key);
        if let Some(l1) = &self.l1 {
            match keep {
                Some(write_id) => l1.remove_unless_write(key, write_id),
                None => {
                    l1.remove(key);
                }
            }
        }
    }

    /// Applies an invalidation to the log and L1 (when issued, and again once Redis applied it).
    fn settled(&self, inv: &Replay) {
        match inv {
            Replay::Del { key, .. } => self.settled_key(key, None),
            Replay::Tag { tag, .. } => self.settled_tag(tag),
        }
    }

    /// An invalidation of `tag` (local or announced): reads that started before now are stale
    /// for it, and every L1 entry carrying it goes.
    fn settled_tag(&self, tag: &str) {
        let _coherent = self.coherence.lock();
        self.log.tag(tag);
        if let Some(l1) = &self.l1 {
            l1.invalidate_tag(tag);
        }
    }

    /// Nothing in L1 can be trusted (bus messages may have been missed, or the cache closes):
    /// every read that started before now is stale, and L1 is emptied.
    fn settled_all(&self) {
        let _coherent = self.coherence.lock();
        self.log.all();
        if let Some(l1) = &self.l1 {
            l1.clear();
        }
    }

    /// Waits (within `bound`, or [`SHORT_ACK_WAIT`] while acknowledgements are missing) until
    /// every subscriber that received a message confirmed it.
    async fn await_acks(&self, acks: AckWait, receivers: u64, bound: Duration) {
        let bound = if self.acks_missing.load(Ordering::Relaxed) {
            bound.min(SHORT_ACK_WAIT)
        } else {
            bound
        };
        let all = acks.all(receivers, bound).await;
        self.acks_missing.store(!all, Ordering::Relaxed);
        if !all {
            Metrics::inc(&self.metrics.bus_ack_timeouts);
        }
    }

    /// Counts a failed Redis call (a call skipped by the open breaker is counted by L2).
    fn redis_failed(&self, e: &L2Error) {
        if *e != L2Error::Skipped {
            Metrics::inc(&self.metrics.redis_errors);
        }
    }
}

/// Orders invalidations after the writes issued before them.
///
/// Each Redis call runs in its own task, so two calls issued one after the other may reach
/// Redis in the other order. For a write followed by an invalidation of the same data that
/// would let the older value survive the invalidation; so an invalidation first waits (within
/// the command bound) until every write issued before it has been answered. (A write after an
/// invalidation needs no such care: at worst it lands first and is deleted, a miss.)
#[derive(Default)]
struct WriteBarrier {
    /// (next sequence number, writes in flight)
    state: Mutex<(u64, std::collections::BTreeSet<u64>)>,
    changed: tokio::sync::Notify,
}

impl WriteBarrier {
    /// Registers a write (on the caller's thread, in issue order).
    fn begin(&self) -> u64 {
        let mut s = self.state.lock();
        let seq = s.0;
        s.0 += 1;
        s.1.insert(seq);
        seq
    }

    /// The write `seq` was answered (or failed).
    fn end(&self, seq: u64) {
        self.state.lock().1.remove(&seq);
        self.changed.notify_waiters();
    }

    /// Everything issued so far: what an invalidation issued now must wait for.
    fn issued(&self) -> u64 {
        self.state.lock().0
    }

    /// Waits until every write numbered below `upto` was answered, at most `bound`.
    async fn wait_for(&self, upto: u64, bound: Duration) {
        let deadline = tokio::time::Instant::now() + bound;
        // bounded: every round ends at a notification or the deadline
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self
                .state
                .lock()
                .1
                .first()
                .is_none_or(|first| *first >= upto)
            {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }
}

/// A plain read waiting for the read batcher.
struct PendingRead {
    id: u32,
    key: String,
    began: std::time::Instant,
}

/// Reads of one cache waiting to be sent, and the wake-up of the batcher that sends them.
#[derive(Default)]
struct ReadQueue {
    queue: Mutex<Vec<PendingRead>>,
    wake: tokio::sync::Notify,
}

impl ReadQueue {
    fn push_many(&self, reads: impl IntoIterator<Item = PendingRead>) {
        let was_empty = {
            let mut q = self.queue.lock();
            let was_empty = q.is_empty();
            q.extend(reads);
            was_empty && !q.is_empty()
        };
        if was_empty {
            self.wake.notify_one();
        }
    }

    fn take(&self, max: usize) -> Vec<PendingRead> {
        let mut q = self.queue.lock();
        let n = q.len().min(max);
        q.drain(..n).collect()
    }
}

/// The most keys in one `MGET`.
const MAX_BATCH: usize = 256;
/// The most `MGET`s in flight at once per cache.
const MAX_BATCHES_IN_FLIGHT: usize = 4;

/// Sends queued reads as `MGET` batches: every read that arrives while a batch is out joins the
/// next one, so 64 concurrent `get`s cost a few round trips instead of 64 commands, timers and
/// tasks (the auto-pipelining of ioredis and node-redis, done on the I/O thread).
async fn run_read_batcher(
    shared: Arc<Shared>,
    l2: Arc<L2>,
    reads: Arc<ReadQueue>,
    bus: Option<Arc<Bus>>,
    l1_ttl: Option<Duration>,
) {
    let mut closing = shared.closing.subscribe();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_BATCHES_IN_FLIGHT));
    loop {
        tokio::select! {
            _ = reads.wake.notified() => {}
            _ = closing.wait_for(|closed| *closed) => break,
        }
        if let Some(bus) = &bus {
            bus.first_attempt_done(l2.bound()).await;
        }
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let batch = reads.take(MAX_BATCH);
            if batch.is_empty() {
                break;
            }
            let (shared, l2, mut closing) = (shared.clone(), l2.clone(), closing.clone());
            tokio::spawn(async move {
                let keys: Vec<String> = batch.iter().map(|r| r.key.clone()).collect();
                let start = shared.log.begin();
                let answer = tokio::select! {
                    answer = l2.mget(&keys) => Some(answer),
                    _ = closing.wait_for(|closed| *closed) => None,
                };
                let m = &shared.metrics;
                let values = match answer {
                    Some(Ok(values)) if values.len() == batch.len() => values,
                    Some(Err(e)) => {
                        shared.redis_failed(&e);
                        vec![None; batch.len()]
                    }
                    _ => vec![None; batch.len()],
                };
                let mut done = Vec::with_capacity(batch.len());
                for (read, value) in batch.into_iter().zip(values) {
                    let outcome = match value {
                        Some(bytes) => match read_envelope(bytes, &read.key, start, l1_ttl) {
                            Some(hit) => {
                                Metrics::inc(&m.l2_hits);
                                Outcome::Hit(hit)
                            }
                            None => {
                                Metrics::inc(&m.redis_corrupt_values);
                                Metrics::inc(&m.l2_misses);
                                Outcome::Miss
                            }
                        },
                        None => {
                            Metrics::inc(&m.l2_misses);
                            Outcome::Miss
                        }
                    };
                    let label = match outcome {
                        Outcome::Hit(_) => LatencyOutcome::L2Hit,
                        _ => LatencyOutcome::Miss,
                    };
                    shared.latencies.observe(label, read.began.elapsed());
                    done.push(Completion {
                        id: read.id,
                        outcome,
                    });
                }
                shared.complete_many(done);
                drop(permit);
            });
        }
    }
    // closed: settle whatever still waits as a miss
    let left = reads.take(usize::MAX);
    shared.complete_many(
        left.into_iter()
            .map(|r| Completion {
                id: r.id,
                outcome: Outcome::Miss,
            })
            .collect(),
    );
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

/// Current wall-clock time in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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
                let bus_config = BusConfig {
                    redis: c.clone(),
                    channel: keys.bus_channel(crate::bus::WIRE_VERSION),
                    instance: instance.clone(),
                    connect_timeout: c.connect_timeout,
                    command_timeout: c.command_timeout,
                    problems: Some(problems.clone()),
                };
                let l2 = L2::new(c, keys)?;
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

    fn notice(&self, event: BusEvent) -> String {
        Metrics::inc(&self.shared.metrics.bus_sent);
        crate::bus::encode(&self.instance, &event)
    }

    /// The notice of a write or invalidation, asking the other processes to acknowledge it when
    /// `bus.ackTimeout` is on and the bus is subscribed (acknowledgements arrive through it).
    fn acked_notice(&self, event: BusEvent) -> (String, Option<AckWait>) {
        let wanted = self
            .config
            .l2
            .as_ref()
            .is_some_and(|c| !c.ack_timeout.is_zero())
            && self.bus().is_some_and(|b| b.is_connected());
        if !wanted {
            return (self.notice(event), None);
        }
        let wait = self.shared.acks.open();
        Metrics::inc(&self.shared.metrics.bus_sent);
        let notice = bus::encode_acked(&self.instance, wait.seq(), &event);
        (notice, Some(wait))
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
    pub fn read_or_lock(&self, id: u32, key: &str) -> Started {
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
        };
        self.spawn(id, task.run(), Outcome::Load(LoadContext::default()));
        Started::Pending
    }

    /// Releases a stampede lock taken by [`Cache::read_or_lock`] without writing a value (the
    /// loader failed or returned nothing). Waiting processes are woken to try again.
    pub fn unlock(&self, lock_id: u32) {
        if let Some(lock) = self.locks.take(lock_id) {
            self.release(lock);
        }
    }

    /// Releases a held lock in the background, waking the waiters of other processes (by its
    /// announcement) and of this one (a process ignores its own announcements).
    fn release(&self, lock: HeldLock) {
        let Some(l2) = self.l2() else {
            return;
        };
        let notice = self.notice(BusEvent::LockReleased(lock.key.clone()));
        let shared = self.shared.clone();
        self.spawn_background(async move {
            if let Err(e) = l2.release_lock(&lock.key, &lock.token, &notice).await {
                shared.redis_failed(&e);
            }
            shared.waiters.wake(&lock.key);
        });
    }

    /// Writes a value (its JSON text) to L1 at once and starts the Redis write (which announces
    /// the change on the bus). `ttl` overrides `l1.ttl` and `l2.ttl`. For a loader's value,
    /// `load` carries its stampede lock (released once Redis has the value) and the epoch at
    /// which the lookup began: if the key or one of `tags` was invalidated since, the value may
    /// predate the change and is not cached at all (`loads_discarded`). Returns the L1 slot to
    /// fill now, if the value went into L1.
    pub fn set(
        &self,
        id: u32,
        key: &str,
        value_json: String,
        ttl: Option<Duration>,
        tags: Vec<String>,
        load: LoadContext,
    ) -> (Option<u32>, Started) {
        let lock = load.lock_id.and_then(|id| self.locks.take(id));
        let token = load.token;
        let coherent = self.shared.coherence.lock();
        if let Some(epoch) = load.since {
            if self
                .shared
                .log
                .is_stale(self.shared.log.since(epoch), key, &tags, 0)
            {
                drop(coherent);
                Metrics::inc(&self.shared.metrics.loads_discarded);
                if let Some(lock) = lock {
                    self.release(lock);
                }
                return (None, Started::Finished);
            }
        }
        Metrics::inc(&self.shared.metrics.sets);
        self.shared.log.key(key);
        let write_id = self.write_ids.fetch_add(1, Ordering::Relaxed);
        let slot = match (&self.shared.l1, &self.config.l1) {
            (Some(l1), Some(c)) => l1.insert_unbounded(key, ttl.unwrap_or(c.ttl), &tags, write_id),
            _ => None,
        };
        drop(coherent);
        // evicting is no invalidation: it needs no coherence lock
        self.end_fills();
        let (Some(l2), Some(l2_config)) = (self.l2(), &self.config.l2) else {
            return (slot, Started::Finished);
        };
        let l2_ttl = ttl.unwrap_or(l2_config.ttl);
        let ack_timeout = l2_config.ack_timeout;
        let shared = self.shared.clone();
        let event = BusEvent::KeyChanged(key.to_string(), write_id);
        // a caller's own write waits for the other processes to drop their copies; a loader's
        // value replaces nothing they may hold (its key was absent from Redis)
        let (notice, acks) = if load.since.is_none() && lock.is_none() {
            self.acked_notice(event)
        } else {
            (self.notice(event), None)
        };
        let instance = self.instance.clone();
        let key = key.to_string();
        let seq = self.shared.writes.begin();
        let write = async move {
            let now = now_ms();
            let expires_at = now + l2_ttl.as_millis() as u64;
            let l1_ttl_ms = ttl.map(|t| t.as_millis() as u64);
            let envelope = codec::encode(&value_json, expires_at, l1_ttl_ms, write_id, &tags);
            let lock_token = lock.as_ref().map(|l| l.token.as_str());
            let written = l2
                .set(
                    &key, &envelope, l2_ttl, &tags, now, expires_at, &notice, token, lock_token,
                )
                .await;
            shared.writes.end(seq);
            if matches!(written, Ok(None)) {
                // another process invalidated the key or a tag after our lookup: the value may
                // predate that change, so it leaves L1 too
                Metrics::inc(&shared.metrics.loads_discarded);
                shared.settled_key(&key, None);
            } else {
                // a read that raced with this write may have seen the older value: it must not
                // stay in L1 (see crate::invalidation)
                shared.settled_key(&key, Some(write_id));
            }
            if let Err(e) = &written {
                shared.redis_failed(e);
                if e.is_availability() {
                    // Redis may still hold an older value: delete it once Redis is back
                    let notice = notice.clone();
                    l2.queue_replay(Replay::Del {
                        key: key.clone(),
                        notice,
                    });
                }
            }
            match (lock, &written) {
                // stored: the script released the lock and the announcement woke the waiters
                (Some(_), Ok(Some(_))) | (None, _) => {}
                (Some(lock), _) => {
                    let wake = bus::encode(&instance, &BusEvent::LockReleased(lock.key.clone()));
                    if let Err(e) = l2.release_lock(&lock.key, &lock.token, &wake).await {
                        shared.redis_failed(&e);
                    }
                }
            }
            // this process's own lookups waiting for a lock on the key (a lookup begun after an
            // invalidation detached the one holding it) hear no announcement of ours: the key's
            // value or lock changed, so they ask Redis again now rather than at their next poll
            shared.waiters.wake(&key);
            if let (Some(acks), Ok(Some(receivers))) = (acks, written) {
                shared.await_acks(acks, receivers, ack_timeout).await;
            }
            Outcome::Done
        };
        self.spawn(id, write, Outcome::Done);
        (slot, Started::Pending)
    }

    /// Removes `key` from L1 at once and starts the Redis delete (announced on the bus).
    pub fn del(&self, id: u32, key: &str) -> Started {
        Metrics::inc(&self.shared.metrics.deletes);
        let (notice, acks) = self.acked_notice(BusEvent::KeyDeleted(key.to_string()));
        self.invalidate(
            id,
            Replay::Del {
                key: key.to_string(),
                notice,
            },
            acks,
        )
    }

    /// Whether `key` is cached: `Ok` when known at once, else a pending Redis `EXISTS`.
    pub fn exists(&self, id: u32, key: &str) -> Result<bool, Started> {
        if self.shared.l1.as_ref().is_some_and(|l1| l1.contains(key)) {
            return Ok(true);
        }
        let Some(l2) = self.l2() else {
            return Ok(false);
        };
        let shared = self.shared.clone();
        let key = key.to_string();
        self.spawn(
            id,
            async move {
                match l2.exists(&key).await {
                    Ok(b) => Outcome::Bool(b),
                    Err(e) => {
                        shared.redis_failed(&e);
                        Outcome::Bool(false)
                    }
                }
            },
            Outcome::Bool(false),
        );
        Err(Started::Pending)
    }

    /// Removes every entry tagged `tag` from L1 at once and starts the Redis invalidation
    /// (announced on the bus).
    pub fn invalidate_tag(&self, id: u32, tag: &str) -> Started {
        Metrics::inc(&self.shared.metrics.tag_invalidations);
        let (notice, acks) = self.acked_notice(BusEvent::TagInvalidated(tag.to_string()));
        self.invalidate(
            id,
            Replay::Tag {
                tag: tag.to_string(),
                notice,
            },
            acks,
        )
    }

    /// Applies an invalidation to L1 at once, then to Redis once every write issued before it
    /// was answered; applies it to L1 again when Redis has (a read that raced with it may have
    /// put an older value back), and keeps it for replay if Redis could not be reached. With
    /// `acks`, it completes once the other processes confirmed it (within `bus.ackTimeout`).
    fn invalidate(&self, id: u32, inv: Replay, acks: Option<AckWait>) -> Started {
        self.shared.settled(&inv);
        let (Some(l2), Some(l2_config)) = (self.l2(), &self.config.l2) else {
            return Started::Finished;
        };
        let ack_timeout = l2_config.ack_timeout;
        let shared = self.shared.clone();
        let upto = self.shared.writes.issued();
        let task = async move {
            shared.writes.wait_for(upto, l2.bound()).await;
            let applied = l2.apply(&inv).await;
            shared.settled(&inv);
            match applied {
                Ok(receivers) => {
                    if let Some(acks) = acks {
                        shared.await_acks(acks, receivers, ack_timeout).await;
                    }
                }
                Err(e) => {
                    shared.redis_failed(&e);
                    if e.is_availability() {
                        l2.queue_replay(inv);
                    }
                }
            }
            Outcome::Done
        };
        self.spawn(id, task, Outcome::Done);
        Started::Pending
    }

    /// Starts reading Redis' own hit counters (`INFO stats`).
    pub fn keyspace_stats(&self, id: u32) -> Started {
        let Some(l2) = self.l2() else {
            return Started::Finished;
        };
        let shared = self.shared.clone();
        let read = async move {
            match l2.keyspace_stats().await {
                Ok(pair) => Outcome::KeyspaceStats(Some(pair)),
                Err(e) => {
                    shared.redis_failed(&e);
                    Outcome::KeyspaceStats(None)
                }
            }
        };
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
            let shared = self.shared.clone();
            self.spawn_background(async move {
                if let Err(e) = l2.release_lock(&lock.key, &lock.token, "").await {
                    shared.redis_failed(&e);
                }
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

/// One cache-aside read with cross-process stampede protection (see [`crate::lock`]).
struct LockingRead {
    shared: Arc<Shared>,
    locks: Arc<HeldLocks>,
    rt: Handle,
    l2: Arc<L2>,
    bus: Option<Arc<Bus>>,
    key: String,
    l1_ttl: Option<Duration>,
    lock_ttl: Duration,
    wait: Duration,
    max_hold: Duration,
}

impl LockingRead {
    async fn run(self) -> Outcome {
        let began = std::time::Instant::now();
        if let Some(bus) = &self.bus {
            bus.first_attempt_done(self.l2.bound()).await;
        }
        let signal = self.shared.waiters.register(&self.key);
        let outcome = self.attempts(&signal).await;
        self.shared.waiters.done(&self.key, signal);
        if matches!(outcome, Outcome::Hit(_)) {
            // a load is timed by its caller, from the start of the lookup to the value
            self.shared
                .latencies
                .observe(LatencyOutcome::L2Hit, began.elapsed());
        }
        outcome
    }

    async fn attempts(&self, signal: &tokio::sync::Notify) -> Outcome {
        let m = &self.shared.metrics;
        let deadline = tokio::time::Instant::now() + self.wait;
        let mut waited = false;
        // bounded: each round waits at least until a message or POLL, and stops at `deadline`
        loop {
            // listen before asking, so an announcement during the round trip is not missed
            let notified = signal.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let token = lock_token();
            let start = self.shared.log.begin();
            let answer = self.l2.read_or_lock(&self.key, &token, self.lock_ttl).await;
            if !waited && !matches!(answer, Ok(ReadOrLock::Value(_))) {
                Metrics::inc(&m.l2_misses);
            }
            match answer {
                Ok(ReadOrLock::Value(bytes)) => {
                    return match read_envelope(bytes, &self.key, start, self.l1_ttl) {
                        Some(hit) => {
                            // a lookup that waited was counted as a miss already
                            Metrics::inc(if waited {
                                &m.lock_wait_hits
                            } else {
                                &m.l2_hits
                            });
                            Outcome::Hit(hit)
                        }
                        None => {
                            // unreadable: a miss; load without the lock (and overwrite it)
                            Metrics::inc(&m.redis_corrupt_values);
                            Metrics::inc(&m.l2_misses);
                            Outcome::Load(LoadContext::default())
                        }
                    };
                }
                Ok(ReadOrLock::Acquired(clock)) => {
                    Metrics::inc(&m.lock_acquired);
                    let id = self.locks.next_id();
                    let extend = extend_while_held(
                        self.l2.clone(),
                        self.key.clone(),
                        token.clone(),
                        self.lock_ttl,
                        self.max_hold,
                    );
                    let extender = self.rt.spawn(extend).abort_handle();
                    let key = self.key.clone();
                    self.locks.insert(
                        id,
                        HeldLock {
                            key,
                            token,
                            extender,
                        },
                    );
                    return Outcome::Load(LoadContext {
                        lock_id: Some(id),
                        since: None,
                        token: Some(clock),
                    });
                }
                Ok(ReadOrLock::Busy(clock)) => {
                    if !waited {
                        waited = true;
                        Metrics::inc(&m.lock_waits);
                    }
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        Metrics::inc(&m.lock_wait_timeouts);
                        return Outcome::Load(LoadContext {
                            lock_id: None,
                            since: None,
                            token: Some(clock),
                        });
                    }
                    let _ = tokio::time::timeout((deadline - now).min(POLL), notified).await;
                }
                Err(e) => {
                    self.shared.redis_failed(&e);
                    return Outcome::Load(LoadContext::default());
                }
            }
        }
    }
}

/// Keeps our lock alive while its loader runs: every `ttl / 3`, for at most `max_hold`.
async fn extend_while_held(
    l2: Arc<L2>,
    key: String,
    token: String,
    ttl: Duration,
    max_hold: Duration,
) {
    let until = tokio::time::Instant::now() + max_hold;
    let every = (ttl / 3).max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(every).await;
        if tokio::time::Instant::now() >= until {
            return;
        }
        match l2.extend_lock(&key, &token, ttl).await {
            Ok(true) => {}
            Ok(false) => return, // lost (expired while Redis was unreachable): stop
            Err(_) => {}         // transient: try again next period
        }
    }
}

/// Decodes a Redis value and prepares its copy into L1 (with the TTL it has left, at most L1's
/// own); `None` when the bytes are not a readable envelope.
fn read_envelope(
    bytes: Vec<u8>,
    key: &str,
    start: ReadStart,
    l1_ttl: Option<Duration>,
) -> Option<Hit> {
    let envelope = String::from_utf8(bytes).ok()?;
    let decoded = codec::decode(envelope.as_bytes()).ok()?;
    let offset = decoded.value_json.as_ptr() as usize - envelope.as_ptr() as usize;
    let value = offset..offset + decoded.value_json.len();
    let now = now_ms();
    let fill = match l1_ttl {
        Some(default_ttl) if decoded.expires_at_ms > now => {
            let remaining = Duration::from_millis(decoded.expires_at_ms - now);
            let wanted = decoded.l1_ttl_ms.map_or(default_ttl, Duration::from_millis);
            Some(Fill {
                key: key.to_string(),
                write_id: decoded.write_id,
                ttl: wanted.min(remaining),
                tags: decoded.tags,
                start,
            })
        }
        _ => None,
    };
    Some(Hit {
        envelope,
        value,
        fill,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Options};
    use std::sync::Barrier;

    fn l1_only() -> Cache {
        let config = Config::from_options(Options::default()).unwrap();
        Cache::new(config, crate::runtime::shared(), Box::new(|| {})).unwrap()
    }

    /// A Redis read that began before an invalidation is settled may be filled into L1 on the
    /// JS thread while the invalidation is recorded and applied to L1 on the I/O thread. In
    /// every interleaving the copy must be gone once both are done (the soak test once saw one
    /// survive: the fill checked the log, the invalidation recorded itself and removed nothing,
    /// then the fill inserted).
    #[test]
    fn a_fill_racing_with_an_invalidation_never_outlives_it() {
        let cache = Arc::new(l1_only());
        let mut survived = 0;
        for round in 0..5_000 {
            let start = cache.shared.log.begin();
            let go = Arc::new(Barrier::new(2));
            let filler = {
                let (cache, go) = (cache.clone(), go.clone());
                std::thread::spawn(move || {
                    go.wait();
                    cache.fill(Fill {
                        key: "k".into(),
                        write_id: 0,
                        ttl: Duration::from_secs(60),
                        tags: vec!["t".into()],
                        start,
                    });
                })
            };
            go.wait();
            if round % 2 == 0 {
                cache.shared.settled_key("k", None);
            } else {
                cache.shared.settled(&Replay::Tag {
                    tag: "t".into(),
                    notice: String::new(),
                });
            }
            filler.join().unwrap();
            if cache.l1_get("k").is_some() {
                survived += 1;
                cache.shared.settled_key("k", None);
            }
        }
        assert_eq!(survived, 0, "copies that outlived the invalidation");
    }
}
