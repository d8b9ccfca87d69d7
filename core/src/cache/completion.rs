//! What the cache's operations hand back: a [`Completion`] per spawned operation, its
//! [`Outcome`], and the [`Hit`] and [`Fill`] that carry a Redis value to the JS thread.
//!
//! Outcomes are made on the tokio runtime (a Redis value is decoded there, by `read_envelope`)
//! and consumed on the JS thread, which applies a [`Fill`] through [`Cache::fill`].
//!
//! [`Cache::fill`]: super::Cache::fill

use std::ops::Range;
use std::time::Duration;

use crate::clock::now_ms;
use crate::codec;
use crate::invalidation::ReadStart;

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

/// What a spawned operation produced. Redis failures appear here only as [`Outcome::Refused`]
/// (an invalidation Redis refused); any other is counted and the operation completes as if
/// Redis had no data (reads) or was skipped (writes, replayed later).
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
    /// With the entry Redis still keeps past its ttl (stale, within its grace) or due for an
    /// eager refresh: the loader's `ctx.stale` and the fail-safe value.
    ///
    /// [`Cache::set`]: super::Cache::set
    Load(LoadContext, Option<Hit>),
    /// A cache-aside lookup that found a stale entry (kept for its grace) whose refresh another
    /// process is loading: the caller answers with it and looks the key up again to wait.
    Stale(Hit),
    /// Redis' keyspace hits and misses (`INFO stats`); `None` when Redis did not answer.
    KeyspaceStats(Option<(u64, u64)>),
    /// Redis refused an invalidation (a `del`, an `invalidateTag`, or the delete that stands
    /// in for a refused `set`) past the retry bound: it is not applied yet (kept for replay
    /// when the refusal may pass).
    Refused {
        /// Redis' error code (`BUSY`, `NOPERM`, ...).
        code: String,
        /// Redis' reply.
        message: String,
    },
}

/// A value read from Redis, with what is needed to copy it into L1.
#[derive(Debug)]
pub struct Hit {
    envelope: String,
    value: Range<usize>,
    fill: Option<Fill>,
    /// the entry's birth and tags, judged against the tags' markers before it is used
    pub(super) born: u64,
    pub(super) tags: Vec<String>,
    pub(super) write_id: u64,
    /// past its fresh expiry (Redis keeps it for its grace)
    pub(super) stale: bool,
    /// past its eager-refresh time
    pub(super) refresh_due: bool,
    /// when Redis drops it (Unix ms): its fresh expiry plus its grace
    pub retain_until_ms: u64,
    /// its grace, ms (0: none)
    pub(super) grace_ms: u64,
}

impl Hit {
    /// The value's JSON text.
    pub fn value_json(&self) -> &str {
        &self.envelope[self.value.clone()]
    }

    /// Marks it stale (a tag invalidated in expire mode): a fail-safe copy, never copied into
    /// L1 as a fresh value.
    pub(super) fn make_stale(&mut self) {
        self.stale = true;
        self.fill = None;
    }

    /// The entry's tags.
    pub fn tags(&self) -> Vec<String> {
        self.tags.clone()
    }

    /// When JS should stop serving its L1 copy as a plain hit and its fresh expiry (Unix ms),
    /// for an entry with a grace or an eager refresh; `None` for others.
    pub fn soft(&self) -> Option<(f64, f64)> {
        self.fill.as_ref().and_then(|f| f.soft)
    }

    /// Takes the pending L1 copy, if the value may be copied into L1 at all.
    pub fn take_fill(&mut self) -> Option<Fill> {
        self.fill.take()
    }
}

/// A pending copy of a Redis value into L1. It is applied by [`Cache::fill`] on the JS thread,
/// when the value is handed over: a slot handed out on the I/O thread could be freed and reused
/// by another entry before JS stored the value in it.
///
/// [`Cache::fill`]: super::Cache::fill
#[derive(Debug)]
pub struct Fill {
    pub(super) key: String,
    pub(super) write_id: u64,
    pub(super) ttl: Duration,
    pub(super) tags: Vec<String>,
    pub(super) start: ReadStart,
    /// for an entry with a grace or an eager refresh: (due, fresh until) in Unix ms, for JS
    pub(super) soft: Option<(f64, f64)>,
}

/// What a write knows about the loader call that produced its value.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadContext {
    /// The stampede lock held for this key, released once Redis has the value.
    pub lock_id: Option<u32>,
    /// [`Cache::epoch`] when the lookup that led to the loader began.
    ///
    /// [`Cache::epoch`]: super::Cache::epoch
    pub since: Option<u64>,
    /// The Redis invalidation clock the lookup saw: Redis refuses the value if the key or a tag
    /// was invalidated after it (by any process).
    pub token: Option<u64>,
}

/// How long a written entry stays fresh and servable: its ttl, grace and eager refresh.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Freshness {
    /// Its ttl in both layers, overriding `l1.ttl` and `l2.ttl`.
    pub ttl: Option<Duration>,
    /// How long past its ttl the entry is kept as the fail-safe copy (in L1 and Redis).
    pub grace: Duration,
    /// The fraction of the ttl after which a hit starts a background refresh.
    pub eager_refresh: Option<f64>,
}

/// Whether an operation finished at once or will complete later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// Nothing was spawned: the operation is complete.
    Finished,
    /// A [`Completion`] with the caller's id will follow.
    Pending,
}

/// Decodes a Redis value and prepares its copy into L1 (with the TTL it has left, at most L1's
/// own); `None` when the bytes are not a readable envelope.
pub(super) fn read_envelope(
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
    let stale = decoded.expires_at_ms <= now;
    let refresh_due = decoded.refresh_at_ms.is_some_and(|r| r <= now);
    let fill = match l1_ttl {
        // a stale entry is not copied: its fail-safe use is for the lookup that found it
        Some(default_ttl) if !stale => {
            let remaining = Duration::from_millis(decoded.expires_at_ms - now);
            let wanted = decoded.l1_ttl_ms.map_or(default_ttl, Duration::from_millis);
            let fresh = wanted.min(remaining);
            let grace = Duration::from_millis(decoded.grace_ms);
            let soft = (decoded.grace_ms > 0 || decoded.refresh_at_ms.is_some()).then(|| {
                let fresh_until = now as f64 + fresh.as_secs_f64() * 1000.0;
                let due = decoded
                    .refresh_at_ms
                    .map_or(fresh_until, |r| (r as f64).min(fresh_until));
                (due, fresh_until)
            });
            Some(Fill {
                key: key.to_string(),
                write_id: decoded.write_id,
                // kept past its fresh time for its grace: JS serves it as fresh until `soft`
                ttl: fresh + grace,
                tags: decoded.tags.clone(),
                start,
                soft,
            })
        }
        _ => None,
    };
    Some(Hit {
        stale,
        refresh_due,
        retain_until_ms: decoded.expires_at_ms + decoded.grace_ms,
        grace_ms: decoded.grace_ms,
        born: decoded.born,
        tags: decoded.tags,
        write_id: decoded.write_id,
        envelope,
        value,
        fill,
    })
}
