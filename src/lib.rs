//! # multi-level-cache: the Node.js binding
//!
//! ## Design
//!
//! Three layers, each with one job:
//!
//! - `index.js` (hand-written JavaScript) is the public API. It validates every argument (so it
//!   can reject with the right `TypeError`/`RangeError` and `code`), runs `JSON.stringify` /
//!   `JSON.parse`, keeps the **decoded values** in a JS array indexed by L1 slot, and runs
//!   loaders (single-flight per key).
//! - this module (the only one that knows napi) converts arguments and results and nothing else.
//! - `mlc-core` (the `core/` crate, plain Rust) owns L1 (moka), L2 (Redis), tags, the
//!   invalidation log and the counters.
//!
//! ### How a `get` flows
//!
//! 1. JS looks the key up in its own `Map` of key -> L1 slot and checks the slot in the Rust
//!    L1's *expiry table*, shared memory exposed by [`NativeCache::expiry_table`]: non-zero
//!    means live. On a hit JS resolves with `values[slot]`: no native call, no tokio, no JSON.
//!    (Without shared memory, e.g. under Electron, it asks [`NativeCache::l1_get`] instead.)
//! 2. On a miss JS gives the read a fresh operation id and queues it; the reads of one turn go
//!    to [`NativeCache::get_l2_many`] together (16 per call at most). They are sent as `MGET`s
//!    on the tokio thread (reads issued while others are in flight join the next one); a tagged
//!    entry is judged against its tags' markers (known to this process, or fetched with one
//!    more `MGET` per batch: an entry whose tag was invalidated after it was born is a miss);
//!    results are queued in the core.
//! 3. When the queue goes from empty to non-empty, the core calls a threadsafe function once;
//!    on the JS thread, JS calls [`NativeCache::drain`] and settles every finished operation of
//!    the batch. `drain` has the core copy the batch's Redis hits into L1 (each unless an invalidation raced
//!    with its read; one eviction pass for all) and returns the slot where JS stores each parsed
//!    value.
//! 4. With a loader (`getOrSet`), [`NativeCache::read_or_lock`] replaces step 2: one script
//!    returns the value, or the stampede lock and the invalidation clock. JS runs the loader
//!    and calls [`NativeCache::set`], which writes L1 synchronously (returning the slot) and
//!    starts the Redis write, which Redis refuses if the key was written or deleted since (the
//!    stampede lock is marked) or a tag was invalidated since (its marker is newer than the
//!    lookup's clock). A `del`/`invalidateTag` Redis refuses completes as kind 7 (`refused`),
//!    which JS turns into `ERR_MLC_REDIS_REFUSED`.
//!
//! ### Threads and ownership
//!
//! - The JS thread owns the value array and is the only caller of these methods.
//! - The tokio runtime (one worker thread, shared by all caches) runs every Redis command.
//! - moka may drop entries on either thread; freed slots wait in the core until JS takes them
//!   with [`NativeCache::take_freed`] and clears them, so a slot is never reused while it holds
//!   a stale value. JS asks only when the state table ([`NativeCache::state_table`], shared
//!   memory) says some wait; it reads the invalidation epoch there too, without a call.
//! - The threadsafe function is *weak*: it is referenced only while operations are in flight,
//!   so an idle cache (even one never closed) never keeps the process alive.

use std::cell::Cell;
use std::sync::Arc;

use mlc_core::cache::{Cache, Freshness, LoadContext, Outcome, Started, StatValue};
use mlc_core::config::{self, Config, Options};
use mlc_core::error::{CacheError, ErrorClass};
use mlc_core::metrics::{LatencyOutcome, LATENCY_BUCKETS};
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;

/// The addon's allocator: L1 keeps several small allocations per entry, and mimalloc (no
/// per-object header, fine size classes) holds them in measurably less memory than the
/// system allocator (see the memory scenario in `bench/`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The notifier: a weak threadsafe function taking no arguments.
type Notify = ThreadsafeFunction<(), (), (), Status, false, true>;

/// The resolved settings, as JS needs them.
#[napi(object)]
pub struct NativeSettings {
    /// Whether L1 is on.
    pub l1: bool,
    /// Whether Redis is on.
    pub l2: bool,
    /// The prefix in use.
    pub prefix: String,
    /// Largest serialized value in bytes.
    pub max_value_bytes: f64,
    /// Longest key in UTF-16 code units.
    pub max_key_length: u32,
    /// Longest tag in UTF-16 code units.
    pub max_tag_length: u32,
    /// Most tags per entry.
    pub max_tags: u32,
    /// Longest TTL in seconds.
    pub max_ttl: f64,
    /// `lock.ttl` in seconds.
    pub lock_ttl: f64,
    /// `lock.wait` in seconds.
    pub lock_wait: f64,
    /// `loaderTimeout` in seconds.
    pub loader_timeout: f64,
    /// `l1.ttl` in seconds (0 when L1 is off).
    pub l1_ttl: f64,
    /// `l2.ttl` in seconds (0 when Redis is off).
    pub l2_ttl: f64,
}

/// A Redis problem noticed by the core (see `core/src/problems.rs`).
#[napi(object)]
pub struct NativeProblem {
    /// The stable code, `MLC_REDIS_*`.
    pub code: String,
    /// `error`, `warn` or `info`.
    pub level: String,
    /// One line for humans; never contains the password.
    pub message: String,
    /// Redis' own error code (`NOPERM`, `WRONGPASS`, ...), when it gave one.
    pub redis_code: Option<String>,
    /// What Redis or the connection said (first occurrence).
    pub detail: String,
    /// Where: `command` or `subscribe`.
    pub context: String,
    /// The server, `redisUrl` with its password replaced by `***`.
    pub target: String,
    /// Occurrences since the previous drain.
    pub count: f64,
}

/// Latency histograms.
#[napi(object)]
pub struct NativeLatencies {
    /// Upper bounds of the buckets, in seconds.
    pub bounds: Vec<f64>,
    /// One histogram per outcome.
    pub outcomes: Vec<NativeHistogram>,
}

/// One latency histogram.
#[napi(object)]
pub struct NativeHistogram {
    /// `l2_hit`, `miss` or `load`.
    pub outcome: String,
    /// Observations per bucket (not cumulative).
    pub buckets: Vec<f64>,
    /// Observations.
    pub count: f64,
    /// Sum of the observations, in seconds.
    pub sum: f64,
}

/// A `Float64Array` over memory owned by the core, kept alive by the view's finalizer; `None`
/// when the runtime copied it instead of sharing it (Electron).
fn shared_view<'env>(
    env: &'env Env,
    data: *mut f64,
    len: usize,
    keep_alive: Arc<dyn std::any::Any + Send + Sync>,
) -> Result<Option<Float64ArraySlice<'env>>> {
    // SAFETY: `data` points to `len` f64 owned by `keep_alive`, which lives until the finalizer
    // runs. The core writes it with atomic 8-byte stores; JS reads (and, for the counters,
    // writes) aligned 8-byte values.
    let view =
        unsafe { Float64ArraySlice::from_external(env, data, len, keep_alive, |_, k| drop(k)) }?;
    Ok(std::ptr::eq(view.as_ptr(), data).then_some(view))
}

/// Throws `e` as the JS class it names, with its `code`, and returns the marker error.
fn throw(env: &Env, e: &CacheError) -> Error {
    let code = Some(e.code.as_str());
    let _ = match e.class {
        ErrorClass::Type => env.throw_type_error(&e.message, code),
        ErrorClass::Range => env.throw_range_error(&e.message, code),
        ErrorClass::Plain => env.throw_error(&e.message, code),
    };
    Error::from_status(Status::PendingException)
}

/// One cache: the native half of `MultiLevelCache`.
#[napi]
pub struct NativeCache {
    inner: Cache,
    notify: Arc<Notify>,
    referenced: Cell<bool>,
}

/// Values per completion in [`NativeCache::drain`]'s array.
#[napi]
pub const COMPLETION_STRIDE: u32 = 7;
/// Completion kind of [`NativeCache::drain`]: finished, nothing to report.
#[napi]
pub const COMPLETION_DONE: u32 = 0;
/// Completion kind: a yes/no answer, yes.
#[napi]
pub const COMPLETION_TRUE: u32 = 1;
/// Completion kind: a yes/no answer, no.
#[napi]
pub const COMPLETION_FALSE: u32 = 2;
/// Completion kind: a read found nothing.
#[napi]
pub const COMPLETION_MISS: u32 = 3;
/// Completion kind: a read found a value (`slot`, `json`).
#[napi]
pub const COMPLETION_HIT: u32 = 4;
/// Completion kind: a lookup's miss, to load (`slot`: the lock id, `json`: the clock token).
#[napi]
pub const COMPLETION_LOAD: u32 = 5;
/// Completion kind: Redis' keyspace hits and misses (in `slot` and `json`).
#[napi]
pub const COMPLETION_KEYSPACE: u32 = 6;
/// Completion kind: Redis refused an invalidation (`slot`: its code, `json`: its reply).
#[napi]
pub const COMPLETION_REFUSED: u32 = 7;
/// Completion kind: a lookup found a stale entry another process is refreshing (`a`: its
/// JSON, `b`: when Redis drops it, `c`: its tags).
#[napi]
pub const COMPLETION_STALE: u32 = 8;

#[napi]
impl NativeCache {
    /// Validates `options` (throwing `TypeError`/`RangeError` with an `ERR_MLC_*` code) and
    /// builds the cache. `notify` is called with no arguments when completions are waiting.
    #[napi(constructor)]
    pub fn new(
        env: Env,
        #[napi(ts_arg_type = "Record<string, unknown>")] options: Object,
        notify: Function<(), ()>,
    ) -> Result<Self> {
        // one list of options: mlc_core::config::Options, under its camelCase names
        let opts: Options = env.from_js_value(options).map_err(|e| {
            Error::from_reason(format!(
                "the JS layer passed options mlc-core does not know: {e}"
            ))
        })?;
        let config = Config::from_options(opts).map_err(|e| throw(&env, &e))?;
        let notify: Arc<Notify> = Arc::new(
            notify
                .build_threadsafe_function::<()>()
                .weak::<true>()
                .callee_handled::<false>()
                .build()?,
        );
        let for_core = notify.clone();
        let notifier = Box::new(move || {
            for_core.call((), ThreadsafeFunctionCallMode::NonBlocking);
        });
        let inner = Cache::new(config, mlc_core::runtime::shared(), notifier)
            .map_err(|e| Error::from_reason(e.to_string()))?;
        Ok(NativeCache {
            inner,
            notify,
            referenced: Cell::new(false),
        })
    }

    /// The resolved settings.
    #[napi]
    pub fn settings(&self) -> NativeSettings {
        let c = self.inner.config();
        NativeSettings {
            l1: self.inner.has_l1(),
            l2: self.inner.has_l2(),
            prefix: c.prefix.clone(),
            max_value_bytes: c.max_value_bytes as f64,
            max_key_length: config::MAX_KEY_LENGTH as u32,
            max_tag_length: config::MAX_TAG_LENGTH as u32,
            max_tags: config::MAX_TAGS_PER_ENTRY as u32,
            max_ttl: config::MAX_TTL_SECS,
            lock_ttl: c.lock.ttl.as_secs_f64(),
            lock_wait: c.lock.wait.as_secs_f64(),
            loader_timeout: c.loader_timeout.as_secs_f64(),
            l1_ttl: c.l1.as_ref().map_or(0.0, |l| l.ttl.as_secs_f64()),
            l2_ttl: c.l2.as_ref().map_or(0.0, |l| l.ttl.as_secs_f64()),
        }
    }

    /// Keeps the process alive while operations are in flight.
    fn started(&self, env: &Env, started: Started) -> bool {
        let pending = started == Started::Pending;
        if pending && !self.referenced.get() {
            // SAFETY: called on the JS thread with a live threadsafe function.
            unsafe { napi::sys::napi_ref_threadsafe_function(env.raw(), self.notify.raw()) };
            self.referenced.set(true);
        }
        pending
    }

    /// A view of L1's expiry table (per slot: the entry's expiry in Unix ms, 0 once gone), or
    /// null when L1 is off or this runtime cannot share memory (JS then asks [`Self::l1_get`]).
    /// See "The shared expiry table" in `core/src/l1.rs`.
    #[napi]
    pub fn expiry_table<'env>(&self, env: &'env Env) -> Result<Option<Float64ArraySlice<'env>>> {
        let Some(mem) = self.inner.l1_memory() else {
            return Ok(None);
        };
        shared_view(env, mem.expires, mem.len, mem.keep_alive)
    }

    /// A view of L1's hit and miss counters (`[hits, misses]`, incremented by JS), or null.
    #[napi]
    pub fn counter_table<'env>(&self, env: &'env Env) -> Result<Option<Float64ArraySlice<'env>>> {
        let Some(mem) = self.inner.l1_memory() else {
            return Ok(None);
        };
        shared_view(env, mem.counters, 2, mem.keep_alive)
    }

    /// A view of the numbers JS reads instead of asking (`[epoch, freed slots waiting]`, see
    /// `core/src/shared_state.rs`), or null when this runtime cannot share memory.
    #[napi]
    pub fn state_table<'env>(&self, env: &'env Env) -> Result<Option<Float64ArraySlice<'env>>> {
        let table = self.inner.state_table();
        let ptr = table.as_ptr();
        shared_view(env, ptr, mlc_core::shared_state::LEN, table)
    }

    /// L1 lookup without shared memory: the slot of a live entry, or -1.
    #[napi]
    pub fn l1_get(&self, key: String) -> i32 {
        self.inner.l1_get(&key).map_or(-1, |s| s as i32)
    }

    /// Replays the slots of L1 hits served in JS into L1's LRU order.
    #[napi]
    pub fn touch(&self, slots: Uint32Array) {
        self.inner.touch(&slots);
    }

    /// Starts Redis reads of `keys[i]` under operation `ids[i]`, sent together (one `MGET`).
    /// Returns whether completions will follow (for every one of them, or for none).
    #[napi]
    pub fn get_l2_many(&self, env: Env, ids: Uint32Array, keys: Vec<String>) -> Result<bool> {
        if ids.len() != keys.len() {
            return Err(Error::new(
                Status::InvalidArg,
                "getL2Many: ids and keys differ in length",
            ));
        }
        let reads = ids.iter().copied().zip(keys).collect();
        Ok(self.started(&env, self.inner.get_l2_many(reads)))
    }

    /// Starts a cache-aside read with stampede protection under operation `id`. Completes with
    /// a hit or kind 5, load (then `set` with the lock id and token it carries). `refresh`: an
    /// eager refresh of an entry this process holds (completes as a miss when another process
    /// refreshes it). `early_stale`: a stale entry another process is refreshing completes at
    /// once as kind 8, stale (the caller answers with it, then asks again to wait). Returns
    /// whether a completion will follow.
    #[napi]
    pub fn read_or_lock(
        &self,
        env: Env,
        id: u32,
        key: String,
        refresh: Option<bool>,
        early_stale: Option<bool>,
    ) -> bool {
        let (refresh, early) = (refresh.unwrap_or(false), early_stale.unwrap_or(false));
        self.started(&env, self.inner.read_or_lock(id, &key, refresh, early))
    }

    /// A token for "now" in the order of invalidations (see `set`'s `load_epoch`).
    #[napi]
    pub fn epoch(&self) -> f64 {
        self.inner.epoch() as f64
    }

    /// Whether `key`, one of `tags` or any tag at all was invalidated since `epoch` (a value of
    /// [`Self::epoch`]), in this process or by another one (bus): JS then starts a new lookup
    /// instead of joining one that began before.
    #[napi]
    pub fn invalidated_since(&self, epoch: f64, key: String, tags: Option<Vec<String>>) -> bool {
        self.inner
            .invalidated_since(epoch as u64, &key, tags.as_deref().unwrap_or(&[]))
    }

    /// Whether `key` or one of `tags` was invalidated (or expired) since `epoch`, here or in
    /// another process: a stale value of the key carrying `tags`, held since then, may no
    /// longer be served as the fail-safe.
    #[napi]
    pub fn changed_since(&self, epoch: f64, key: String, tags: Option<Vec<String>>) -> bool {
        self.inner
            .changed_since(epoch as u64, &key, tags.as_deref().unwrap_or(&[]))
    }

    /// The tags of `key`'s L1 entry (live or kept for its grace), or null.
    #[napi]
    pub fn l1_tags(&self, key: String) -> Option<Vec<String>> {
        self.inner.l1_tags(&key)
    }

    /// Writes `json` under `key` (L1 now, Redis under operation `id`). For a loader's value:
    /// `lock_id` (when >= 0) is the stampede lock to release once Redis has it, and `load_epoch`
    /// the [`Self::epoch`] taken when the lookup began (a value loaded across an invalidation of
    /// its key or tags is not cached). `grace_secs`: how long past its ttl the entry is kept as
    /// the fail-safe copy; `eager_refresh`: the fraction of its ttl after which a hit refreshes it.
    /// Returns `(slot + 1) * 2 + pending`: slot -1 when L1 is off; pending 1 when a completion
    /// will follow.
    #[napi]
    #[allow(clippy::too_many_arguments)]
    pub fn set(
        &self,
        env: Env,
        id: u32,
        key: String,
        json: String,
        ttl_secs: Option<f64>,
        tags: Option<Vec<String>>,
        lock_id: Option<i32>,
        load_epoch: Option<f64>,
        load_token: Option<f64>,
        grace_secs: Option<f64>,
        eager_refresh: Option<f64>,
        loader_secs: Option<f64>,
    ) -> Result<f64> {
        let ttl = match ttl_secs {
            Some(s) => Some(config::ttl_from_secs(s).map_err(|e| throw(&env, &e))?),
            None => None,
        };
        let fresh = Freshness {
            ttl,
            grace: match grace_secs {
                Some(s) if s > 0.0 => config::ttl_from_secs(s).map_err(|e| throw(&env, &e))?,
                _ => std::time::Duration::ZERO,
            },
            eager_refresh,
        };
        let load = LoadContext {
            lock_id: lock_id.and_then(|l| u32::try_from(l).ok()),
            since: load_epoch.map(|e| e as u64),
            token: load_token.map(|t| t as u64),
        };
        let tags = tags.unwrap_or_default();
        if let Some(secs) = loader_secs {
            // the loader that produced this value: counted with it (one crossing, not two)
            self.record_loader(false, secs);
        }
        let (slot, started) = self.inner.set(id, &key, json, fresh, tags, load);
        let pending = self.started(&env, started);
        let slot = slot.map_or(0.0, |s| s as f64 + 1.0);
        Ok(slot * 2.0 + if pending { 1.0 } else { 0.0 })
    }

    /// Deletes `key` (L1 now, Redis under operation `id`). Returns whether a completion follows.
    #[napi]
    pub fn del(&self, env: Env, id: u32, key: String) -> bool {
        self.started(&env, self.inner.del(id, &key))
    }

    /// Marks `key` stale (L1 now, Redis under operation `id`): kept only as the fail-safe copy
    /// within its grace. Returns whether a completion follows.
    #[napi]
    pub fn expire(&self, env: Env, id: u32, key: String) -> bool {
        self.started(&env, self.inner.expire(id, &key))
    }

    /// Whether `key` is cached: 0 no, 1 yes, 2 a completion will follow. `skip_l1`: L1's copy
    /// is stale (JS knows), ask Redis.
    #[napi]
    pub fn exists(&self, env: Env, id: u32, key: String, skip_l1: Option<bool>) -> u32 {
        match self.inner.exists(id, &key, skip_l1.unwrap_or(false)) {
            Ok(b) => b as u32,
            Err(started) => {
                self.started(&env, started);
                2
            }
        }
    }

    /// Invalidates `tag` (L1 now, Redis under operation `id`); with `expire`, its entries
    /// become stale instead (kept as fail-safe copies within their grace). Returns whether a
    /// completion follows.
    #[napi]
    pub fn invalidate_tag(&self, env: Env, id: u32, tag: String, expire: Option<bool>) -> bool {
        let expire = expire.unwrap_or(false);
        self.started(&env, self.inner.invalidate_tag(id, &tag, expire))
    }

    /// Finished operations, flattened as `[id, kind, slot, json, a, b, c, ...]` ([`COMPLETION_STRIDE`]
    /// values each), kinds named by the `COMPLETION_*` constants (exported to JS, so both sides
    /// share them): 0 done, 1 true, 2 false, 3 miss, 4 hit (`json` is the value's JSON text;
    /// `slot` is where to store the parsed value, or -1 when it was not copied into L1; for an
    /// entry with a grace or an eager refresh, `a` is when its L1 copy stops being a plain hit
    /// and `b` its fresh expiry, Unix ms), 5 load (`slot` is the stampede lock id or -1, `json`
    /// the invalidation clock token or undefined; `a` the JSON of the stale value Redis keeps
    /// for its grace, if any, `b` when Redis drops it, and `c` its tags), 6 keyspace stats, 7 refused (`slot`
    /// is Redis' error code, `json` its reply: the invalidation was not applied), 8 stale (`a`,
    /// `b`, `c` as for a load: another process is refreshing it).
    #[napi]
    pub fn drain<'env>(&self, env: &'env Env) -> Result<Array<'env>> {
        // every hit of the batch is copied into L1 first, evicting once for the whole batch
        let completions = self.inner.drain();
        let stride = COMPLETION_STRIDE as usize;
        let mut out = env.create_array((completions.len() * stride) as u32)?;
        for (i, (c, filled)) in completions.into_iter().enumerate() {
            let base = (i * stride) as u32;
            out.set(base, c.id)?;
            match c.outcome {
                Outcome::Done => out.set(base + 1, COMPLETION_DONE)?,
                Outcome::Bool(true) => out.set(base + 1, COMPLETION_TRUE)?,
                Outcome::Bool(false) => out.set(base + 1, COMPLETION_FALSE)?,
                Outcome::Miss => out.set(base + 1, COMPLETION_MISS)?,
                Outcome::KeyspaceStats(pair) => {
                    out.set(base + 1, COMPLETION_KEYSPACE)?;
                    if let Some((hits, misses)) = pair {
                        out.set(base + 2, hits as f64)?;
                        out.set(base + 3, misses as f64)?;
                    }
                }
                Outcome::Load(load, stale) => {
                    out.set(base + 1, COMPLETION_LOAD)?;
                    out.set(base + 2, load.lock_id.map_or(-1, i64::from))?;
                    if let Some(token) = load.token {
                        out.set(base + 3, token as f64)?;
                    }
                    if let Some(stale) = stale {
                        out.set(base + 4, stale.value_json())?;
                        out.set(base + 5, stale.retain_until_ms as f64)?;
                        out.set(base + 6, stale.tags())?;
                    }
                }
                Outcome::Stale(stale) => {
                    out.set(base + 1, COMPLETION_STALE)?;
                    out.set(base + 4, stale.value_json())?;
                    out.set(base + 5, stale.retain_until_ms as f64)?;
                    out.set(base + 6, stale.tags())?;
                }
                Outcome::Refused { code, message } => {
                    out.set(base + 1, COMPLETION_REFUSED)?;
                    out.set(base + 2, code)?;
                    out.set(base + 3, message)?;
                }
                Outcome::Hit(hit) => {
                    out.set(base + 1, COMPLETION_HIT)?;
                    out.set(base + 2, filled.map_or(-1, |f| f.slot as i64))?;
                    out.set(base + 3, hit.value_json())?;
                    if let Some((due, fresh)) = filled.and_then(|f| f.soft) {
                        out.set(base + 4, due)?;
                        out.set(base + 5, fresh)?;
                    }
                }
            }
        }
        if self.referenced.get() && self.inner.pending_operations() == 0 {
            // SAFETY: called on the JS thread with a live threadsafe function.
            unsafe { napi::sys::napi_unref_threadsafe_function(env.raw(), self.notify.raw()) };
            self.referenced.set(false);
        }
        Ok(out)
    }

    /// L1 slots whose values JS must clear now, or null when there are none.
    #[napi]
    pub fn take_freed(&self) -> Option<Vec<u32>> {
        let freed = self.inner.take_freed();
        (!freed.is_empty()).then_some(freed)
    }

    /// The distinct Redis problems noticed since the last call, or null when there are none.
    #[napi]
    pub fn take_problems(&self) -> Option<Vec<NativeProblem>> {
        let problems = self.inner.problems().take();
        (!problems.is_empty()).then(|| {
            problems
                .into_iter()
                .map(|p| NativeProblem {
                    code: p.code.as_str().to_string(),
                    level: p.code.level().to_string(),
                    message: p.message(),
                    redis_code: p.redis_code,
                    detail: p.detail,
                    context: p.context.to_string(),
                    target: p.target,
                    count: p.count as f64,
                })
                .collect()
        })
    }

    /// Periodic upkeep (drops expired L1 entries).
    #[napi]
    pub fn maintain(&self) {
        self.inner.maintain();
    }

    /// Drops every L1 entry.
    #[napi]
    pub fn clear_l1(&self) {
        self.inner.clear_l1();
    }

    /// A loader call that produced no value to write (it failed, returned nothing or was
    /// skipped): counts it with the seconds its lookup and load took, and releases its
    /// stampede lock (`lock_id` >= 0) without writing a value.
    #[napi]
    pub fn loaded(&self, lock_id: i32, failed: bool, elapsed_secs: f64) {
        self.record_loader(failed, elapsed_secs);
        if let Ok(lock_id) = u32::try_from(lock_id) {
            self.inner.unlock(lock_id);
        }
    }

    /// Counts a loader call and the seconds its lookup and load took.
    fn record_loader(&self, failed: bool, elapsed_secs: f64) {
        let elapsed = std::time::Duration::from_secs_f64(elapsed_secs.max(0.0));
        self.inner.record_loader(failed, elapsed);
    }

    /// Starts reading Redis' `INFO stats` under operation `id` (kind 6: hits in the slot field,
    /// misses in the json field; both absent when Redis did not answer). Returns whether a
    /// completion follows.
    #[napi]
    pub fn keyspace_stats(&self, env: Env, id: u32) -> bool {
        self.started(&env, self.inner.keyspace_stats(id))
    }

    /// Latency histograms of lookups that were not L1 hits.
    #[napi]
    pub fn latencies(&self) -> NativeLatencies {
        let outcomes = LatencyOutcome::ALL
            .iter()
            .zip(self.inner.latencies())
            .map(|(o, h)| NativeHistogram {
                outcome: o.label().to_string(),
                buckets: h.buckets.iter().map(|b| *b as f64).collect(),
                count: h.count as f64,
                sum: h.sum_secs,
            })
            .collect();
        NativeLatencies {
            bounds: LATENCY_BUCKETS.to_vec(),
            outcomes,
        }
    }

    /// Counters and sizes: an object with one property per statistic, named as
    /// `mlc_core::cache::Stats::fields` names them (the one list; `CacheStats` in `index.d.ts`
    /// is checked against it).
    #[napi(ts_return_type = "Record<string, number | boolean>")]
    pub fn stats<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        let mut out = Object::new(env)?;
        for (name, value) in self.inner.stats().fields() {
            match value {
                StatValue::Number(v) => out.set(name, v)?,
                StatValue::Bool(b) => out.set(name, b)?,
            }
        }
        Ok(out)
    }

    /// Stops using Redis once in-flight operations end. Returns whether a completion follows.
    #[napi]
    pub fn close(&self, env: Env, id: u32) -> bool {
        self.started(&env, self.inner.close(id))
    }
}
