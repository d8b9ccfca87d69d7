//! L1: the bounded in-process layer, a moka cache of entry metadata.
//!
//! L1 does not hold values. It holds, per key, a *slot* number, the entry's TTL and its tags;
//! the binding keeps the decoded JavaScript value in a JS array at that slot. A hit therefore
//! costs no JSON work and no copy.
//!
//! Slots follow one rule that keeps the JS array exactly in step with this cache:
//! - [`L1::insert`] hands out a slot; the caller stores the value there before anything else
//!   runs on its thread.
//! - When moka drops an entry (eviction, expiry, replacement, invalidation, on any thread) its
//!   slot goes to a *to-clear* list; it is not reused yet.
//! - [`L1::take_freed`] hands that list to the owner of the values, who clears those slots; only
//!   then do the slots become reusable. So a slot is never reused while a stale value sits in it,
//!   and a dropped value is released at the owner's next call.
//!
//! The bound is exact: [`L1::len`] counts live slots, and an insert that takes it past
//! `max_entries` runs moka's pending evictions at once. Eviction is LRU without an admission
//! filter, so the entry just written is always readable (read-your-writes).
//!
//! ## The shared expiry table (the L1 hit path)
//!
//! A napi call costs more than a whole node-cache lookup, so an L1 hit does not call into Rust.
//! L1 owns an *expiry table*: one `f64` per slot, the entry's absolute expiry in Unix
//! milliseconds while it is live, 0 once it is gone or expired. The binding exposes it to
//! JavaScript as a `Float64Array` over this memory. JS keeps a `Map` from key to slot, filled
//! by its own inserts, and serves a hit when `expires[slot] !== 0`. Every removal, on any
//! thread (eviction, invalidation, a bus message from another process), writes 0 before the
//! slot is handed back, so JS sees it on its very next read; a slot is reused only after JS has
//! taken it with [`L1::take_freed`] and dropped its map entry.
//!
//! Expiry is written the same way: an *expirer* ([`L1::expire_due`], run by a task that
//! sleeps until the next expiry) writes 0 shortly *before* an entry's time is up (1% of its
//! TTL, at most 50 ms: expiring early is always allowed, late is not), so the hit path of an
//! ordinary entry needs no clock read, which costs more than the rest of a hit on some
//! machines. Entries with a TTL under [`SHORT_TTL`] are stored with a negative expiry: for
//! those JS also compares with `Date.now()`, so a short TTL is exact even when the I/O thread
//! is late. The expirer also removes the expired entry from moka (moka keeps no timers of its
//! own: its per-entry expiry cost ~50 bytes per entry for a second copy of these deadlines), and
//! [`L1::get`] checks the table against the clock, so a late expirer never serves an expired
//! entry there either.
//!
//! Reads served that way do not reach moka, so JS records the slots it served in a small ring
//! and hands them over in batches ([`L1::touch`]), which replays them as moka reads: the LRU
//! order stays right, like the read buffers of Caffeine.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::notification::RemovalCause;
use moka::ops::compute::{CompResult, Op};
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use parking_lot::Mutex;

/// What L1 keeps per key: stored inline in moka's entry (cloning it costs at most one
/// reference count), so an entry costs no allocation of its own beyond its key.
#[derive(Debug, Clone)]
struct Meta {
    slot: u32,
    /// the write whose value this is (0: unknown)
    write_id: u64,
    tags: Option<Arc<[Arc<str>]>>,
}

impl Meta {
    fn tags(&self) -> &[Arc<str>] {
        self.tags.as_deref().unwrap_or(&[])
    }
}

/// moka's key: the same allocation as the slot table's and the tag index's copy of the key.
type Key = Arc<str>;

#[derive(Default)]
struct Slots {
    next: u32,
    reusable: Vec<u32>,
    to_clear: Vec<u32>,
    live: usize,
    /// the key whose entry holds each slot (to replay reads)
    keys: Vec<Option<Arc<str>>>,
}

/// tag -> (key -> slot of the entry that carries the tag)
type TagIndex = HashMap<Arc<str>, HashMap<Arc<str>, u32>>;

struct Shared {
    slots: Mutex<Slots>,
    tags: Mutex<TagIndex>,
    evictions: AtomicU64,
    expirations: AtomicU64,
    /// per slot: expiry in Unix ms as f64 bits; 0 when the slot holds no live entry
    expires: Box<[AtomicU64]>,
    /// written by JS through its view: [hits, misses] as f64 bits
    counters: Box<[AtomicU64]>,
    /// the deadline of every insert, earliest first
    deadlines: Mutex<BinaryHeap<Reverse<Deadline>>>,
    /// when the expirer plans to wake next (Unix ms); an earlier deadline wakes it
    scheduled: AtomicU64,
    wake: tokio::sync::Notify,
}

impl Shared {
    /// Marks `slot` gone for JS after `key`'s entry was removed, unless the slot was freed
    /// (by the listener) and given to another key meanwhile: zeroing it then would hide that
    /// key's live entry.
    fn mark_gone(&self, slot: u32, key: &str) {
        let slots = self.slots.lock();
        if slots
            .keys
            .get(slot as usize)
            .is_some_and(|k| k.as_deref() == Some(key))
        {
            self.expires[slot as usize].store(0, Ordering::Release);
        }
    }

    fn on_removed(&self, key: &str, meta: &Meta, cause: RemovalCause) {
        self.expires[meta.slot as usize].store(0, Ordering::Release);
        // expirations are counted by the expirer, which removes them (moka keeps no timers)
        if cause == RemovalCause::Size {
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        if !meta.tags().is_empty() {
            let mut index = self.tags.lock();
            for tag in meta.tags() {
                if let Some(keys) = index.get_mut(tag) {
                    if keys.get(key) == Some(&meta.slot) {
                        keys.remove(key);
                        if keys.is_empty() {
                            index.remove(tag);
                        }
                    }
                }
            }
        }
        let mut slots = self.slots.lock();
        slots.keys[meta.slot as usize] = None;
        slots.to_clear.push(meta.slot);
        slots.live -= 1;
    }

    fn counter(&self, i: usize) -> u64 {
        f64::from_bits(self.counters[i].load(Ordering::Relaxed)) as u64
    }
}

/// When the expirer is due to mark an entry gone: 16 bytes per insert (the time is derived, not
/// stored). The expiry bits identify the entry: a slot reused or replaced since holds others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Deadline {
    /// the entry's expiry as stored in the table
    bits: u64,
    slot: u32,
    /// how long before its expiry the entry is marked gone, in microseconds
    early_us: u32,
}

impl Deadline {
    /// The time (Unix ms) it is due.
    fn at(&self) -> u64 {
        let expires = f64::from_bits(self.bits).abs();
        (expires - f64::from(self.early_us) / 1000.0)
            .floor()
            .max(0.0) as u64
    }
}

impl Ord for Deadline {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at(), self.slot, self.bits).cmp(&(other.at(), other.slot, other.bits))
    }
}

impl PartialOrd for Deadline {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Counters of L1's own events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct L1Counters {
    /// Live entries.
    pub entries: u64,
    /// Entries dropped to stay within `max_entries`.
    pub evictions: u64,
    /// Entries dropped because their TTL ran out.
    pub expirations: u64,
    /// Hits served (counted by JS in the shared counters).
    pub hits: u64,
    /// Misses (counted by JS in the shared counters).
    pub misses: u64,
}

/// Entries with a TTL below this are checked against the clock by the hit path (their expiry is
/// stored negated in the table).
pub const SHORT_TTL: Duration = Duration::from_secs(2);

/// How far below `max_entries` moka is asked to keep L1: 1/128 of it, at most 256 (0 for
/// bounds under 128, where the exact bound is enforced on every insert).
fn eviction_slack(max_entries: u64) -> u64 {
    (max_entries / 128).min(256)
}

/// The largest initial capacity L1 gives moka's table (4 times the bound, up to this; larger
/// bounds grow it as entries come).
const INITIAL_CAPACITY_CAP: usize = 1 << 17;

/// Raw views of L1's shared memory, for the binding to expose to JavaScript.
pub struct SharedMemory {
    /// The expiry table: `len` f64 values.
    pub expires: *mut f64,
    /// Its length (the slot capacity).
    pub len: usize,
    /// `[hits, misses]`: 2 f64 values JavaScript increments.
    pub counters: *mut f64,
    /// Keeps the memory alive while a view of it exists.
    pub keep_alive: Arc<dyn std::any::Any + Send + Sync>,
}

/// The in-process layer. See the module documentation for the slot rule.
pub struct L1 {
    cache: Cache<Key, Meta, ahash::RandomState>,
    /// Held by an insert and by the expirer's removal: moka's conditional removal decides on
    /// the entry it sees, then removes whatever the key holds, so a plain insert in between
    /// would be removed instead. (The cache's other conditional removals already run under
    /// its coherence lock, like its inserts.)
    writes: Mutex<()>,
    shared: Arc<Shared>,
    max_entries: usize,
    capacity: usize,
}

/// `n` atomics set to 0, allocated zeroed so untouched pages cost no memory.
fn zeroed_atomics(n: usize) -> Box<[AtomicU64]> {
    let zeroed: Box<[u64]> = vec![0u64; n].into_boxed_slice();
    // SAFETY: AtomicU64 has the same size, alignment (on 64-bit targets) and bit validity as u64.
    unsafe { Box::from_raw(Box::into_raw(zeroed) as *mut [AtomicU64]) }
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

impl L1 {
    /// An empty L1 holding at most `max_entries` entries.
    pub fn new(max_entries: u64) -> Self {
        // live entries <= max and slots waiting for JS <= max: two per entry always suffice
        let capacity = (max_entries as usize) * 2 + 16;
        // Reserved, not touched: pages cost memory once used. Grown by doubling instead, a full
        // L1 held up to 1.3x their size and left the outgrown copies to the allocator.
        let slots = Slots {
            keys: Vec::with_capacity(capacity),
            ..Slots::default()
        };
        let shared = Arc::new(Shared {
            slots: Mutex::new(slots),
            tags: Mutex::new(HashMap::new()),
            evictions: AtomicU64::new(0),
            expirations: AtomicU64::new(0),
            expires: zeroed_atomics(capacity),
            counters: (0..2).map(|_| AtomicU64::new(0)).collect(),
            deadlines: Mutex::new(BinaryHeap::with_capacity(max_entries as usize)),
            scheduled: AtomicU64::new(u64::MAX),
            wake: tokio::sync::Notify::new(),
        });
        let listener_shared = shared.clone();
        let cache = Cache::builder()
            // a little below the bound: moka's own housekeeping (every few dozen writes) then
            // keeps L1 under it, and `enforce_bound` rarely has to run moka's pending work
            // itself (which, once per insert, cost more than the insert)
            .max_capacity(max_entries - eviction_slack(max_entries))
            // sized up front, with room: growing moka's table rehashes every key, and so does
            // clearing the tombstones evictions leave, which happens once they fill 10% of the
            // table (measured: rehashing took 10% of the JS thread while a fresh instance
            // filled L1 from Redis with 1x; 6.7% with 4x)
            .initial_capacity(
                (max_entries as usize)
                    .saturating_mul(4)
                    .min(INITIAL_CAPACITY_CAP),
            )
            .eviction_policy(EvictionPolicy::lru())
            .eviction_listener(move |key: Arc<Key>, meta: Meta, cause| {
                listener_shared.on_removed(&key, &meta, cause)
            })
            // a randomly seeded hasher much faster than SipHash, still resistant to crafted keys
            .build_with_hasher(ahash::RandomState::new());
        Self {
            cache,
            writes: Mutex::new(()),
            shared,
            max_entries: max_entries as usize,
            capacity,
        }
    }

    /// The shared memory JS serves hits from (see the module documentation).
    pub fn shared_memory(&self) -> SharedMemory {
        SharedMemory {
            expires: self.shared.expires.as_ptr() as *mut f64,
            len: self.capacity,
            counters: self.shared.counters.as_ptr() as *mut f64,
            keep_alive: self.shared.clone(),
        }
    }

    /// The slot of a live entry, or `None` on a miss (absent or expired). Counts nothing: JS
    /// serves hits from the expiry table.
    pub fn get(&self, key: &str) -> Option<u32> {
        self.cache
            .get(key)
            .map(|m| m.slot)
            .filter(|&slot| self.is_live(slot))
    }

    /// The tags of `key`'s entry (whatever its expiry), if it has one.
    pub fn tags_of(&self, key: &str) -> Option<Vec<String>> {
        self.cache
            .get(key)
            .map(|m| m.tags().iter().map(|t| t.to_string()).collect())
    }

    /// Whether a live entry exists (a use of the key, like [`L1::get`]).
    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Whether `slot`'s expiry, checked against the clock, is still ahead.
    fn is_live(&self, slot: u32) -> bool {
        let e = self.expiry_of(slot);
        e != 0.0 && e.abs() > now_ms()
    }

    /// The expiry (Unix ms) the shared table holds for `slot`: 0 when it holds no live entry,
    /// negative for an entry with a TTL under [`SHORT_TTL`].
    pub fn expiry_of(&self, slot: u32) -> f64 {
        f64::from_bits(self.shared.expires[slot as usize].load(Ordering::Acquire))
    }

    /// Replays reads JS served from the expiry table, so moka's LRU order sees them.
    pub fn touch(&self, slots: &[u32]) {
        let keys: Vec<Arc<str>> = {
            let s = self.shared.slots.lock();
            slots
                .iter()
                .filter_map(|&slot| s.keys.get(slot as usize).cloned().flatten())
                .collect()
        };
        for key in keys {
            let _ = self.cache.get(&*key);
        }
    }

    /// Stores an entry and returns the slot where the caller must put its value, now; `None`
    /// only if every spare slot still waits for [`L1::take_freed`] (the entry is then not
    /// cached in L1).
    pub fn insert(&self, key: &str, ttl: Duration, tags: &[String], write_id: u64) -> Option<u32> {
        let slot = self.insert_unbounded(key, ttl, tags, write_id);
        self.enforce_bound();
        slot
    }

    /// [`L1::insert`] without evicting: the caller must call [`L1::enforce_bound`] before anyone
    /// can observe the entry count (a batch of inserts on one thread then pays for moka's
    /// housekeeping once, not once per entry). The slot capacity stays sufficient: an insert
    /// that finds no spare slot is simply not cached.
    pub fn insert_unbounded(
        &self,
        key: &str,
        ttl: Duration,
        tags: &[String],
        write_id: u64,
    ) -> Option<u32> {
        let key_arc: Arc<str> = Arc::from(key);
        let slot = {
            let mut slots = self.shared.slots.lock();
            let slot = match slots.reusable.pop() {
                Some(s) => s,
                None if (slots.next as usize) < self.capacity => {
                    slots.next += 1;
                    slots.next - 1
                }
                None => return None,
            };
            slots.live += 1;
            if slots.keys.len() <= slot as usize {
                slots.keys.resize(slot as usize + 1, None);
            }
            slots.keys[slot as usize] = Some(key_arc.clone());
            slot
        };
        let ttl_ms = ttl.as_secs_f64() * 1000.0;
        let expires = now_ms() + ttl_ms;
        // short TTLs are stored negated: the hit path checks those against the clock too
        let stored = if ttl < SHORT_TTL { -expires } else { expires };
        self.shared.expires[slot as usize].store(stored.to_bits(), Ordering::Release);
        let entry = Deadline {
            bits: stored.to_bits(),
            slot,
            early_us: ((ttl_ms * 10.0).clamp(1000.0, 50_000.0)) as u32,
        };
        let deadline = entry.at();
        self.shared.deadlines.lock().push(Reverse(entry));
        if deadline < self.shared.scheduled.load(Ordering::Acquire) {
            self.shared.wake.notify_one();
        }
        let tags: Option<Arc<[Arc<str>]>> =
            (!tags.is_empty()).then(|| tags.iter().map(|t| Arc::from(t.as_str())).collect());
        if let Some(tags) = &tags {
            // Indexed before the entry exists, so a removal racing with this insert finds it.
            let mut index = self.shared.tags.lock();
            for tag in tags.iter() {
                index
                    .entry(tag.clone())
                    .or_default()
                    .insert(key_arc.clone(), slot);
            }
        }
        let _writing = self.writes.lock();
        self.cache.insert(
            key_arc,
            Meta {
                slot,
                write_id,
                tags,
            },
        );
        Some(slot)
    }

    /// Evicts down to `max_entries` if inserts went past it.
    pub fn enforce_bound(&self) {
        if self.shared.slots.lock().live > self.max_entries {
            self.cache.run_pending_tasks();
        }
    }

    /// Removes a key. Returns whether it was present.
    pub fn remove(&self, key: &str) -> bool {
        match self.cache.remove(key) {
            Some(meta) => {
                // visible to JS at once, even before moka notifies the listener
                self.shared.mark_gone(meta.slot, key);
                true
            }
            None => false,
        }
    }

    /// Removes `key`'s entry unless it holds the value of write `write_id` (then it is current).
    pub fn remove_unless_write(&self, key: &str, write_id: u64) {
        // most announcements name keys this process does not hold: skip moka's entry API (and
        // its key allocation) for them; an entry inserted meanwhile is ordered after this call
        if !self.cache.contains_key(key) {
            return;
        }
        let result = self
            .cache
            .entry(Key::from(key))
            .and_compute_with(|current| match current {
                Some(e) if write_id == 0 || e.value().write_id != write_id => Op::Remove,
                _ => Op::Nop,
            });
        if let CompResult::Removed(e) = result {
            self.shared.mark_gone(e.value().slot, key);
        }
    }

    /// Removes every entry carrying `tag`, including entries copied from Redis. Returns how many.
    pub fn invalidate_tag(&self, tag: &str) -> usize {
        let Some(keys) = self.shared.tags.lock().remove(tag) else {
            return 0;
        };
        let mut removed = 0;
        for (key, slot) in keys {
            // Only the entry that carried the tag: a newer entry under the same key may not.
            let result = self
                .cache
                .entry(key)
                .and_compute_with(|current| match current {
                    Some(e) if e.value().slot == slot => Op::Remove,
                    _ => Op::Nop,
                });
            if let CompResult::Removed(e) = result {
                self.shared.mark_gone(slot, e.key());
                removed += 1;
            }
        }
        removed
    }

    /// Drops every entry (for example when invalidation messages may have been missed).
    pub fn clear(&self) {
        let next = self.shared.slots.lock().next as usize;
        for e in &self.shared.expires[..next] {
            e.store(0, Ordering::Release);
        }
        self.cache.invalidate_all();
        self.cache.run_pending_tasks();
    }

    /// Marks every entry whose time is up as gone in the expiry table. Returns the Unix ms of
    /// the next deadline, if any. (Entries replaced or removed since are skipped: their slot
    /// holds another expiry, or 0.)
    pub fn expire_due(&self) -> Option<u64> {
        self.expire_due_at(now_ms())
    }

    /// [`L1::expire_due`] as if the clock read `now` (Unix ms): the seam that lets the unit
    /// tests move the expirer's time instead of sleeping until a deadline. Only the expirer's
    /// clock moves: inserts and [`L1::get`] still read the real one.
    fn expire_due_at(&self, now: f64) -> Option<u64> {
        let mut heap = self.shared.deadlines.lock();
        let mut due = Vec::new();
        while let Some(&Reverse(d)) = heap.peek() {
            if d.at() as f64 > now {
                break;
            }
            heap.pop();
            let Deadline { bits, slot, .. } = d;
            // still the entry that deadline was for (not replaced or removed since)
            if self.shared.expires[slot as usize]
                .compare_exchange(bits, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                due.push(slot);
            }
        }
        // replaced entries leave stale deadlines behind: drop them when they pile up
        if heap.len() > 2 * self.capacity + 1024 {
            let expires = &self.shared.expires;
            heap.retain(|Reverse(d)| expires[d.slot as usize].load(Ordering::Relaxed) == d.bits);
        }
        let next = heap.peek().map(|Reverse(d)| d.at());
        drop(heap);
        for slot in due {
            self.remove_expired(slot);
        }
        next
    }

    /// Removes from moka the entry at `slot` the expirer just marked gone (unless something
    /// removed it meanwhile: then its slot may hold another entry, with a live expiry).
    fn remove_expired(&self, slot: u32) {
        let Some(key) = self
            .shared
            .slots
            .lock()
            .keys
            .get(slot as usize)
            .cloned()
            .flatten()
        else {
            return;
        };
        let expires = &self.shared.expires[slot as usize];
        let _writing = self.writes.lock();
        let result = self
            .cache
            .entry(key)
            .and_compute_with(|current| match current {
                Some(e) if e.value().slot == slot && expires.load(Ordering::Acquire) == 0 => {
                    Op::Remove
                }
                _ => Op::Nop,
            });
        if matches!(result, CompResult::Removed(_)) {
            self.shared.expirations.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Runs the expirer until `l1` is dropped: sleeps until the next deadline (or an earlier
    /// insert), then [`L1::expire_due`]. Spawn it on the runtime next to the cache.
    pub async fn run_expirer(l1: std::sync::Weak<L1>) {
        // bounded by the L1's lifetime: each round re-checks it, and sleeps at most a second
        loop {
            let Some(strong) = l1.upgrade() else { return };
            let shared = strong.shared.clone();
            // while it runs, every insert wakes the next round: a deadline added now may come
            // before the one this round finds
            shared.scheduled.store(u64::MAX, Ordering::Release);
            let next = strong.expire_due();
            drop(strong);
            let now = now_ms() as u64;
            let nap = next.map_or(1000, |at| at.saturating_sub(now).clamp(1, 1000));
            shared.scheduled.store(now + nap, Ordering::Release);
            let _ = tokio::time::timeout(Duration::from_millis(nap), shared.wake.notified()).await;
        }
    }

    /// Slots whose values the owner must clear now; they become reusable afterwards.
    pub fn take_freed(&self) -> Vec<u32> {
        let mut slots = self.shared.slots.lock();
        if slots.to_clear.is_empty() {
            return Vec::new();
        }
        let freed = std::mem::take(&mut slots.to_clear);
        slots.reusable.extend_from_slice(&freed);
        freed
    }

    /// Runs moka's pending work: expired entries are dropped and their slots freed.
    pub fn maintain(&self) {
        self.cache.run_pending_tasks();
    }

    /// Live entries: never more than `max_entries` once an insert returns.
    pub fn len(&self) -> usize {
        self.shared.slots.lock().live
    }

    /// Whether L1 holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The configured bound.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// Entry count, evictions, expirations, hits and misses so far.
    pub fn counters(&self) -> L1Counters {
        L1Counters {
            entries: self.len() as u64,
            evictions: self.shared.evictions.load(Ordering::Relaxed),
            expirations: self.shared.expirations.load(Ordering::Relaxed),
            hits: self.shared.counter(0),
            misses: self.shared.counter(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn bound_holds_with_eviction_slack_too() {
        // 1280 entries: moka is asked to keep 1270, the exact bound is still 1280
        let l1 = L1::new(1280);
        let mut max_seen = 0;
        for i in 0..6_000 {
            let key = format!("k{i}");
            l1.insert(&key, MIN, &[], 0).unwrap();
            l1.take_freed();
            max_seen = max_seen.max(l1.len());
            assert!(l1.len() <= 1280, "len {} after insert {i}", l1.len());
            assert!(l1.get(&key).is_some(), "the entry just written was evicted");
        }
        assert!(
            max_seen >= 1270,
            "L1 never filled near its bound: {max_seen}"
        );
    }

    #[test]
    fn bound_is_never_exceeded_and_newest_is_readable() {
        let l1 = L1::new(100);
        for i in 0..5_000 {
            let key = format!("k{i}");
            l1.insert(&key, MIN, &[], 0).unwrap();
            l1.take_freed(); // as the binding does after every write
            assert!(l1.len() <= 100, "len {} after insert {i}", l1.len());
            assert!(
                l1.get(&key).is_some(),
                "newest entry {key} must be readable"
            );
        }
        assert!(l1.counters().evictions >= 4_900);
    }

    #[test]
    fn slots_are_cleared_before_reuse() {
        let l1 = L1::new(2);
        let a = l1.insert("a", MIN, &[], 0).unwrap();
        let b = l1.insert("b", MIN, &[], 0).unwrap();
        let c = l1.insert("c", MIN, &[], 0).unwrap(); // evicts one of a/b
        let freed = l1.take_freed();
        assert_eq!(freed.len(), 1);
        assert!(freed[0] == a || freed[0] == b);
        assert_ne!(
            c, freed[0],
            "a freed slot is not handed out before it was cleared"
        );
        let d = l1.insert("d", MIN, &[], 0).unwrap();
        assert_eq!(d, freed[0], "a cleared slot is reused");
        let live: HashSet<u32> = ["a", "b", "c", "d"]
            .iter()
            .filter_map(|k| l1.get(k))
            .collect();
        assert_eq!(live.len(), 2);
    }

    #[test]
    fn replacing_frees_the_old_slot() {
        let l1 = L1::new(10);
        let s1 = l1.insert("k", MIN, &[], 0).unwrap();
        let s2 = l1.insert("k", MIN, &[], 0).unwrap();
        assert_ne!(s1, s2);
        assert_eq!(l1.get("k"), Some(s2));
        l1.maintain();
        assert_eq!(l1.take_freed(), vec![s1]);
        assert_eq!(l1.len(), 1);
    }

    #[test]
    fn per_entry_ttl_expires() {
        let l1 = L1::new(10);
        // under SHORT_TTL, so stored negated; long enough that the reads below see it live on a
        // slow machine (the expirer's clock is injected, the hit path's is the real one)
        let ttl = Duration::from_secs(1);
        assert!(ttl < SHORT_TTL);
        let before = now_ms();
        l1.insert("short", ttl, &[], 0).unwrap();
        let after = now_ms();
        l1.insert("long", MIN, &[], 0).unwrap();
        assert!(l1.get("short").is_some());
        let short = l1.get("short").unwrap();
        assert!(l1.expiry_of(short) < 0.0, "a short TTL is stored negated");
        assert!(l1.expire_due_at(before).is_some(), "a deadline is pending");
        assert!(l1.expiry_of(short) != 0.0, "not due yet");
        // its deadline (at most its expiry) has passed on the expirer's clock; MIN's has not
        l1.expire_due_at(after + 1000.0);
        assert_eq!(
            l1.expiry_of(short),
            0.0,
            "the expirer marks it gone for the hit path"
        );
        assert!(l1.get("short").is_none());
        assert!(l1.get("long").is_some());
        // the expirer removed it from moka: its slot is freed at the next housekeeping (polled,
        // up to 5 s)
        let mut freed = Vec::new();
        for _ in 0..50 {
            l1.maintain();
            freed.extend(l1.take_freed());
            if !freed.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(freed.len(), 1);
        assert_eq!(l1.counters().expirations, 1);
        assert_eq!(l1.len(), 1);
    }

    #[test]
    fn tags_invalidate_only_the_tagged_entry_generation() {
        let l1 = L1::new(100);
        let tags = vec!["user:42".to_string(), "list".to_string()];
        l1.insert("a", MIN, &tags, 0).unwrap();
        l1.insert("b", MIN, &tags[..1], 0).unwrap();
        l1.insert("c", MIN, &[], 0).unwrap();
        // re-set "b" without the tag: invalidating the tag must keep it
        l1.insert("b", MIN, &[], 0).unwrap();
        assert_eq!(l1.invalidate_tag("user:42"), 1);
        assert!(l1.get("a").is_none());
        assert!(l1.get("b").is_some());
        assert!(l1.get("c").is_some());
        assert_eq!(l1.invalidate_tag("user:42"), 0);
        // "a" is gone, so its other tag has nothing left either
        l1.maintain();
        assert_eq!(l1.invalidate_tag("list"), 0);
        assert!(
            l1.shared.tags.lock().is_empty(),
            "index entries go with their entries"
        );
    }

    #[test]
    fn the_expiry_table_shows_live_entries_and_zero_once_gone() {
        let l1 = L1::new(10);
        let a = l1.insert("a", MIN, &["t".to_string()], 0).unwrap();
        let b = l1.insert("b", MIN, &[], 0).unwrap();
        let now = now_ms();
        assert!(l1.expiry_of(a) > now + 59_000.0 && l1.expiry_of(a) < now + 61_000.0);
        l1.remove("b");
        assert_eq!(l1.expiry_of(b), 0.0, "a removal is visible at once");
        l1.invalidate_tag("t");
        assert_eq!(l1.expiry_of(a), 0.0);
        let c = l1.insert("c", MIN, &[], 0).unwrap();
        l1.clear();
        assert_eq!(l1.expiry_of(c), 0.0);
    }

    #[test]
    fn slots_never_exceed_capacity_even_when_nobody_takes_freed() {
        let l1 = L1::new(4);
        let mut cached = 0;
        for i in 0..100 {
            if l1.insert(&format!("k{i}"), MIN, &[], 0).is_some() {
                cached += 1;
            }
            assert!(l1.len() <= 4);
        }
        assert!(cached >= 4, "at least capacity-many inserts are cached");
        l1.take_freed();
        assert!(
            l1.insert("again", MIN, &[], 0).is_some(),
            "taking freed slots makes room"
        );
    }

    #[test]
    fn touch_keeps_recently_read_entries() {
        let l1 = L1::new(3);
        let a = l1.insert("a", MIN, &[], 0).unwrap();
        l1.insert("b", MIN, &[], 0).unwrap();
        l1.insert("c", MIN, &[], 0).unwrap();
        l1.maintain();
        l1.touch(&[a]); // "a" was read through the expiry table
        l1.maintain();
        l1.insert("d", MIN, &[], 0).unwrap(); // evicts the least recently used: "b"
        assert!(l1.get("a").is_some(), "the touched entry survives");
        assert!(l1.get("b").is_none());
    }

    #[test]
    fn clear_drops_everything() {
        let l1 = L1::new(10);
        for k in ["a", "b", "c"] {
            l1.insert(k, MIN, &["t".to_string()], 0).unwrap();
        }
        l1.clear();
        assert!(l1.get("a").is_none());
        assert_eq!(l1.len(), 0);
        assert_eq!(l1.take_freed().len(), 3);
        assert!(l1.shared.tags.lock().is_empty());
    }

    #[test]
    fn concurrent_inserts_and_invalidations_keep_counts_exact() {
        let l1 = Arc::new(L1::new(500));
        let mut handles = Vec::new();
        for t in 0..4 {
            let l1 = l1.clone();
            handles.push(std::thread::spawn(move || {
                for i in 0..5_000 {
                    let key = format!("k{}", (i * 7 + t) % 2_000);
                    match i % 5 {
                        0 => {
                            l1.remove(&key);
                        }
                        1 => {
                            l1.invalidate_tag(&format!("t{}", i % 13));
                        }
                        _ => {
                            l1.insert(&key, MIN, &[format!("t{}", i % 13)], 0).unwrap();
                            l1.take_freed();
                        }
                    }
                    assert!(l1.len() <= 500 + 4, "bound held within concurrent inserts");
                }
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
        l1.maintain();
        assert!(l1.len() <= 500);
        let live = (0..2_000)
            .filter(|i| l1.get(&format!("k{i}")).is_some())
            .count();
        assert_eq!(live, l1.len());
    }
}
