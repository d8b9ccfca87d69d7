//! A short memory of recent invalidations, so a Redis read that raced with one is not copied
//! into L1.
//!
//! The race: `get(k)` misses L1 and reads Redis; before the answer arrives, `set(k)`, `del(k)`
//! or an invalidation of one of `k`'s tags (local, or from another process over the bus)
//! happens. Copying the older answer into L1 would resurrect a value that was just replaced.
//! A read records the epoch when it started ([`InvalidationLog::begin`]); before filling L1 it
//! asks [`InvalidationLog::is_stale`] whether its key or any of its tags was invalidated since.
//! A stale answer is still returned to its caller (it was current when read), only not cached.
//!
//! A local write or invalidation is applied twice: when it is issued and again when Redis has
//! applied it (the cache records it here again and removes whatever a racing read put in L1
//! meanwhile). Reads race with it in between, since they may reach Redis first; after the
//! second record, any read that started earlier is stale. A change from another process is
//! recorded when its bus message arrives, which is after Redis applied it.
//!
//! The cache checks the log and fills L1 as one step, and records an invalidation and applies
//! it to L1 as one step (under one lock): otherwise a fill on the JS thread could check the log
//! just before an invalidation on the I/O thread is recorded, and insert just after that
//! invalidation found nothing to remove.
//!
//! Memory is bounded: entries older than [`HORIZON`] are pruned (and the maps give a burst's
//! capacity back), and a read that started before the pruning horizon counts as stale. Names are remembered by a 64-bit keyed hash, not
//! by their text (a write-heavy second remembers every key written): two names with the same
//! hash can only make a read look stale when it is not, which costs an L1 fill, never
//! correctness. The pruning timeline keeps one mark per [`GRAIN`], not one per record.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How long an invalidation is remembered. Reads slower than this are never copied into L1.
pub const HORIZON: Duration = Duration::from_secs(10);
/// Remembered names above which the log forgets everything and moves its floor instead.
const MAX_REMEMBERED: usize = 100_000;
/// The pruning timeline's resolution: a record is pruned up to this much later than
/// [`HORIZON`].
pub const GRAIN: Duration = Duration::from_millis(50);

/// The names' hashes are already keyed hashes: the map uses them as they are.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // only u64 keys are hashed (write_u64); fold anything else in anyway
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type ByHash = HashMap<u64, Record, BuildHasherDefault<PreHashed>>;

/// Where a read started.
#[derive(Debug, Clone, Copy)]
pub struct ReadStart {
    epoch: u64,
    at: Instant,
}

/// What the log remembers of one key or tag.
#[derive(Debug, Clone, Copy)]
struct Record {
    /// epoch of its latest invalidation
    last: u64,
    /// id of the write that latest invalidation announced, or 0 (a delete, a tag, a local write)
    write: u64,
    /// epoch of the latest invalidation by anything other than `write`: a read that returned
    /// `write` itself is still stale if it began before this one
    other: u64,
}

impl Record {
    /// Whether a read that began at `start` and returned write `write_id` (0: unknown) may
    /// predate one of the remembered invalidations.
    fn is_stale(&self, start: u64, write_id: u64) -> bool {
        if self.last <= start {
            return false;
        }
        if write_id != 0 && self.write == write_id {
            return self.other > start;
        }
        true
    }
}

#[derive(Default)]
struct Recent {
    /// hash of a key -> what is remembered of it
    keys: ByHash,
    /// hash of a tag -> what is remembered of it
    tags: ByHash,
    /// every read that began at or before this epoch is stale
    floor: u64,
    last_prune: Option<Instant>,
    /// (epoch, when) marks in order, at least [`GRAIN`] apart, to prune by age: every record
    /// up to a mark's epoch was made at or before its time
    timeline: std::collections::VecDeque<(u64, Instant)>,
}

impl Recent {
    /// Forgets every name and makes every read that began at or before `epoch` stale. The
    /// maps' memory goes too: a burst of writes grows them to [`MAX_REMEMBERED`] names (~4 MB),
    /// which `clear` would keep for the life of the cache.
    fn forget_all(&mut self, epoch: u64) {
        self.keys = ByHash::default();
        self.tags = ByHash::default();
        self.timeline.clear();
        self.floor = epoch;
    }
}

/// The log. Cheap when nothing was invalidated since a read began (one atomic load).
#[derive(Default)]
pub struct InvalidationLog {
    epoch: AtomicU64,
    /// epoch of the latest tag invalidation (or of clearing everything)
    tag_epoch: AtomicU64,
    recent: Mutex<Recent>,
    /// keyed per log, so names cannot be crafted to collide
    hasher: ahash::RandomState,
    /// where the epoch is published for JavaScript (see [`crate::shared_state`])
    mirror: Option<std::sync::Arc<crate::shared_state::StateTable>>,
}

impl InvalidationLog {
    /// An empty log that publishes its epoch in `mirror`.
    pub fn with_mirror(mirror: std::sync::Arc<crate::shared_state::StateTable>) -> Self {
        InvalidationLog {
            mirror: Some(mirror),
            ..Self::default()
        }
    }

    fn publish(&self, epoch: u64) {
        if let Some(m) = &self.mirror {
            m.set(crate::shared_state::EPOCH, epoch);
        }
    }

    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the start of a read.
    pub fn begin(&self) -> ReadStart {
        ReadStart {
            epoch: self.epoch.load(Ordering::Acquire),
            at: Instant::now(),
        }
    }

    /// The epoch now: a token for work (a loader call) that runs outside Rust, turned back into
    /// a start with [`InvalidationLog::since`]. Invalidations pruned meanwhile still count: a
    /// start before the pruning floor is stale.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// A start from an [`InvalidationLog::epoch`] token.
    pub fn since(&self, epoch: u64) -> ReadStart {
        ReadStart {
            epoch,
            at: Instant::now(),
        }
    }

    /// Records that `key` was written or removed.
    pub fn key(&self, key: &str) {
        self.record(false, key, 0);
    }

    /// Records that another process wrote `key` with write `write_id`: a read that returns
    /// exactly that write is not stale because of it.
    pub fn key_written(&self, key: &str, write_id: u64) {
        self.record(false, key, write_id);
    }

    /// Records that every entry tagged `tag` was invalidated.
    pub fn tag(&self, tag: &str) {
        self.record(true, tag, 0);
    }

    /// Records that everything was invalidated (L1 cleared).
    pub fn all(&self) {
        let mut recent = self.recent.lock();
        let e = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        self.publish(e);
        self.tag_epoch.store(e, Ordering::Release);
        recent.forget_all(e);
    }

    /// Whether any tag was invalidated (or everything) since `epoch`: for a lookup whose value's
    /// tags are not known yet.
    pub fn any_tag_since(&self, epoch: u64) -> bool {
        self.tag_epoch.load(Ordering::Acquire) > epoch
    }

    fn record(&self, is_tag: bool, name: &str, write_id: u64) {
        let name = self.hasher.hash_one(name);
        let mut recent = self.recent.lock();
        let e = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        self.publish(e);
        if is_tag {
            self.tag_epoch.store(e, Ordering::Release);
        }
        let now = Instant::now();
        if recent.keys.len() + recent.tags.len() >= MAX_REMEMBERED {
            recent.forget_all(e);
            return;
        }
        let names = if is_tag {
            &mut recent.tags
        } else {
            &mut recent.keys
        };
        let record = match names.get(&name) {
            // the same write announced again: what came before it still counts
            Some(r) if write_id != 0 && r.write == write_id => Record { last: e, ..*r },
            // everything remembered so far was something other than this write
            Some(r) => Record {
                last: e,
                write: write_id,
                other: r.last,
            },
            None => Record {
                last: e,
                write: write_id,
                other: 0,
            },
        };
        names.insert(name, record);
        if recent
            .timeline
            .back()
            .is_none_or(|&(_, at)| now.duration_since(at) >= GRAIN)
        {
            recent.timeline.push_back((e, now));
        }
        if recent
            .last_prune
            .is_none_or(|t| now.duration_since(t) > Duration::from_secs(1))
        {
            recent.last_prune = Some(now);
            prune(&mut recent, now);
        }
    }

    /// Whether `key` or one of `tags` was invalidated after `start`, by anything other than
    /// the write `write_id` the read returned (0: unknown).
    pub fn is_stale(&self, start: ReadStart, key: &str, tags: &[String], write_id: u64) -> bool {
        if self.epoch.load(Ordering::Acquire) == start.epoch {
            return false;
        }
        if start.at.elapsed() >= HORIZON {
            return true;
        }
        let recent = self.recent.lock();
        if start.epoch < recent.floor {
            return true;
        }
        let newer = |names: &ByHash, name: &str| {
            names
                .get(&self.hasher.hash_one(name))
                .is_some_and(|r| r.is_stale(start.epoch, write_id))
        };
        newer(&recent.keys, key) || tags.iter().any(|t| newer(&recent.tags, t))
    }

    /// Whether `tag` was invalidated after `start` (or everything was): a marker fetched from
    /// Redis by a read that began then may be older than what this process already knows.
    pub fn tag_stale(&self, start: ReadStart, tag: &str) -> bool {
        if self.tag_epoch.load(Ordering::Acquire) <= start.epoch {
            return false;
        }
        if start.at.elapsed() >= HORIZON {
            return true;
        }
        let recent = self.recent.lock();
        start.epoch < recent.floor
            || recent
                .tags
                .get(&self.hasher.hash_one(tag))
                .is_some_and(|r| r.is_stale(start.epoch, 0))
    }
}

fn prune(recent: &mut Recent, now: Instant) {
    let mut cut = None;
    while let Some(&(e, at)) = recent.timeline.front() {
        if now.duration_since(at) < HORIZON {
            break;
        }
        cut = Some(e);
        recent.timeline.pop_front();
    }
    if let Some(cut) = cut {
        recent.keys.retain(|_, r| r.last > cut);
        recent.tags.retain(|_, r| r.last > cut);
        // a burst's capacity is given back once it is pruned (not below what is still held)
        for names in [&mut recent.keys, &mut recent.tags] {
            if names.capacity() > 4 * names.len() + 1024 {
                names.shrink_to(2 * names.len());
            }
        }
        // reads older than HORIZON are stale anyway; the floor keeps that true after pruning
        recent.floor = recent.floor.max(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unrelated_invalidations_do_not_make_a_read_stale() {
        let log = InvalidationLog::new();
        let start = log.begin();
        assert!(!log.is_stale(start, "k", &[], 0));
        log.key("other");
        log.tag("t-other");
        assert!(!log.is_stale(start, "k", &["t".into()], 0));
    }

    #[test]
    fn key_and_tag_invalidations_after_the_start_make_it_stale() {
        let log = InvalidationLog::new();
        log.key("k"); // before the read: irrelevant
        let start = log.begin();
        assert!(!log.is_stale(start, "k", &[], 0));
        log.tag("t");
        assert!(log.is_stale(start, "k", &["x".into(), "t".into()], 0));
        assert!(!log.is_stale(start, "k", &["x".into()], 0));
        log.key("k");
        assert!(log.is_stale(start, "k", &[], 0));
    }

    #[test]
    fn a_read_of_exactly_the_announced_write_is_not_stale() {
        let log = InvalidationLog::new();
        let start = log.begin();
        log.key_written("k", 7);
        assert!(
            !log.is_stale(start, "k", &[], 7),
            "the read returned write 7 itself"
        );
        assert!(log.is_stale(start, "k", &[], 6), "an older write is stale");
        assert!(
            log.is_stale(start, "k", &[], 0),
            "an unknown write is stale"
        );
        log.key_written("k", 8);
        assert!(log.is_stale(start, "k", &[], 7), "write 8 came after");
    }

    #[test]
    fn an_announced_write_does_not_hide_an_earlier_invalidation() {
        // the soak test's stale read: this process deletes `k` (Redis applies the DEL after
        // another process's write 7); the bus message announcing write 7 arrives after the
        // DEL's answer. A read that began before the DEL and returned write 7 (it reached
        // Redis first) must not go into L1: the DEL removed write 7.
        let log = InvalidationLog::new();
        let start = log.begin();
        log.key("k"); // our DEL, settled
        log.key_written("k", 7); // write 7's announcement, arriving late
        assert!(log.is_stale(start, "k", &[], 7));
        let after_del = log.begin();
        log.key_written("k", 7); // announced again (a replay): still only the DEL counts
        assert!(!log.is_stale(after_del, "k", &[], 7));
        assert!(log.is_stale(start, "k", &[], 7));
    }

    #[test]
    fn any_tag_invalidation_is_seen_by_lookups_of_unknown_tags() {
        let log = InvalidationLog::new();
        let epoch = log.epoch();
        log.key("k");
        assert!(!log.any_tag_since(epoch));
        log.tag("t");
        assert!(log.any_tag_since(epoch));
        let later = log.epoch();
        assert!(!log.any_tag_since(later));
        log.all();
        assert!(log.any_tag_since(later));
    }

    #[test]
    fn forgetting_everything_gives_the_memory_back() {
        let log = InvalidationLog::new();
        let start = log.begin();
        // one more name than it remembers: it forgets them all
        for i in 0..=MAX_REMEMBERED {
            log.key(&format!("k{i}"));
        }
        let recent = log.recent.lock();
        assert!(recent.keys.len() < 2, "the log forgot everything");
        assert!(recent.keys.capacity() < 1024, "and released its capacity");
        drop(recent);
        assert!(
            log.is_stale(start, "k1", &[], 0),
            "older reads are still stale"
        );
    }

    #[test]
    fn a_tag_is_stale_only_after_its_own_invalidation() {
        let log = InvalidationLog::new();
        let start = log.begin();
        log.key("t");
        assert!(!log.tag_stale(start, "t"), "a key is not a tag");
        log.tag("u");
        assert!(!log.tag_stale(start, "t"));
        assert!(log.tag_stale(start, "u"));
        let later = log.begin();
        log.all();
        assert!(
            log.tag_stale(later, "t"),
            "clearing everything covers every tag"
        );
    }

    #[test]
    fn clearing_everything_makes_older_reads_stale() {
        let log = InvalidationLog::new();
        let start = log.begin();
        log.all();
        assert!(log.is_stale(start, "anything", &[], 0));
        let after = log.begin();
        assert!(!log.is_stale(after, "anything", &[], 0));
    }
}
