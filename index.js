'use strict'
// The public API. See `src/lib.rs` ("Design") for how a call flows between this file, the
// binding and the Rust core. This file owns: argument checks, JSON, the decoded L1 values
// (indexed by the slot numbers the Rust L1 hands out), and loaders.
//
// The L1 hit path makes no native call: `#index` maps a key to its slot (filled by our own
// inserts) and the hit is valid while the Rust L1's shared expiry table holds a live expiry for
// the slot (Rust writes 0 the moment it drops an entry or its time is about to be up, on any
// thread; only short TTLs are also checked against the clock). See "The shared expiry table"
// in core/src/l1.rs.
//
// Freshness (grace, eager refresh): an entry with a grace stays in L1 (and Redis) past its ttl
// as the fail-safe copy; `#due[slot]` says when its L1 copy stops being a plain hit (its eager
// refresh time, or its ttl), `#freshUntil[slot]` when it stops being fresh. An entry without
// either has `#due[slot]` 0 and its hit reads no clock. Past `#due` a fresh entry is still
// served and starts one background refresh; a stale one is looked up afresh, with its value as
// the lookup's fail-safe (`Flight.stale`).

const {
  NativeCache,
  COMPLETION_STRIDE: STRIDE,
  COMPLETION_TRUE: TRUE,
  COMPLETION_MISS: MISS,
  COMPLETION_HIT: HIT,
  COMPLETION_LOAD: LOAD,
  COMPLETION_KEYSPACE: KEYSPACE,
  COMPLETION_REFUSED: REFUSED,
  COMPLETION_STALE: STALE,
} = require('./binding.js')
const { codes, mlcError } = require('./lib/errors.js')
const { checkKey, checkCacheOptions, checkGetOrSetOptions, checkSetOptions, checkInvalidateOptions, checkTag, serialize } = require('./lib/validate.js')
const { normalizeOptions } = require('./lib/options.js')
const { ProblemReporter } = require('./lib/problems.js')
const { kLatencies, kKeyspaceStats } = require('./lib/internal.js')

// what a pending operation resolves with
const OP_VOID = 0
const OP_BOOL = 1
const OP_READ = 2
const OP_LOCKING_READ = 3
const OP_KEYSPACE = 4

/** A lock id meaning "no stampede lock held". */
const NO_LOCK = -1
/** What a locking read resolves with when Redis could not be asked. */
const LOAD_WITHOUT_REDIS = { lockId: NO_LOCK, token: undefined }
/** What an eager refresh's locking read resolves with when it leaves the refresh to another process. */
const LEFT_TO_OTHERS = { left: true }

const MAINTENANCE_MS = 1000
/** How long close() lets lookups in flight (and their loaders) finish before rejecting the
 * callers still waiting for a loader (like the core's CLOSE_BOUND for Redis operations). */
const CLOSE_GRACE_MS = 800
/** The extra grace close() gives lookups after the native side has settled every operation. */
const LATE_LOADER_GRACE_MS = 250
/** Redis reads sent in one native call at most: smaller batches let the JS thread, the I/O thread
 * and Redis overlap (measured at 64 in flight: 16 beats 1, 8 and 32) */
const READ_CHUNK = 16
const MAX_TIMER_MS = 2 ** 31 - 1
/** Keys whose failed eager refresh waits out graceBackoff, at most (beyond, they start again). */
const MAX_REFRESH_BACKOFFS = 10000
/** Slots of L1 hits recorded before they are replayed into the Rust L1's LRU order. */
const READ_RING = 256
/** One L1 hit in this many is recorded for the LRU order (a replayed read costs a moka lookup;
 * hot keys are sampled often enough, as in Caffeine's lossy read buffers). */
const READ_SAMPLE_MASK = 15

/** @typedef {{ kind: number, resolve: (v: any) => void, key?: string }} PendingOp */
/** @typedef {{ value: unknown, until: number, tags: string[] | undefined }} Stale a value kept past its ttl for its grace (or due for an eager refresh), with when it is dropped and its tags */
/**
 * @typedef {object} Flight one lookup of a key (Redis, then the loader), shared by its callers
 * @property {Promise<unknown>} promise its value
 * @property {number} epoch the invalidation epoch it began at
 * @property {string[] | undefined} tags the tags its first caller named
 * @property {Stale | undefined} stale the fail-safe value, once known
 * @property {boolean} refresh an eager refresh of a fresh entry
 * @property {boolean} background a caller was answered before it ended
 * @property {boolean} failed its loader failed (the fail-safe value may have answered)
 * @property {number} waiting callers waiting for its value (not answered early)
 * @property {(() => void)[] | null} onStale callers waiting for a stale value past their soft timeout
 */

class MultiLevelCache {
  /** @type {NativeCache} */ #native
  /** decoded L1 values, by slot */ #values = []
  /** key of each slot */ #keys = []
  /** @type {Map<string, number>} key -> slot of the entries this process put in L1 */ #index = new Map()
  /** @type {Float64Array | null} the Rust L1's expiry table (shared memory) */ #expires = null
  /** @type {Float64Array | null} [l1 hits, l1 misses], read by the Rust side */ #counters = null
  /** @type {Float64Array | null} [invalidation epoch, freed L1 slots waiting], written by the Rust side (core/src/shared_state.rs) */ #state = null
  #reads = new Uint32Array(READ_RING)
  #readCount = 0
  #readTick = 0
  /** @type {Map<number, PendingOp>} */ #ops = new Map()
  /** Redis reads issued in this turn of the event loop, sent together (one MGET) */
  #batchIds = []
  #batchKeys = []
  #batchScheduled = false
  /** @type {Map<string, Flight>} single-flight lookups, by key */ #flights = new Map()
  /** per slot: when its L1 copy stops being a plain hit (Unix ms; 0: never), for entries with
   * a grace or an eager refresh; null until the first such entry */ #due = null
  /** per slot: when its L1 copy stops being fresh (it is kept past that for its grace) */ #freshUntil = null
  /** @type {Map<string, { value: unknown, until: number, epoch: number, tags: string[] | undefined }>} fail-safe values served without calling the loader (graceBackoff), by key */ #backoff = new Map()
  /** @type {Map<string, number>} keys whose eager refresh failed: no new one before this time (graceBackoff) */ #refreshBackoff = new Map()
  /** the constructor's freshness defaults: grace, graceBackoff, softTimeout (s), eagerRefresh */ #freshness
  /** counters kept in JS (no crossing): stale answers, soft timeouts, fail-safe activations, background refreshes */ #fresh = { staleServed: 0, softTimeouts: 0, failSafeActivations: 0, backgroundRefreshes: 0, backgroundRefreshFailures: 0 }
  #l1Ttl
  #nextId = 1
  #closed = false
  /** @type {Promise<void> | undefined} */ #closing
  #loader
  #hasL1
  #hasL2
  #limits
  #loaderTimeoutMs
  #timer
  /** @type {ProblemReporter} routes the Redis problems the core noticed to the logger or warnings */
  #problems
  /** @type {Set<(err: Error) => void>} rejecters of the loader calls not yet settled (close() uses them) */
  #loaderWaits = new Set()
  /** @type {Set<Promise<unknown>>} every read-through not yet settled, detached or not (close() awaits them) */
  #lookups = new Set()

  /**
   * @param {import('./index').MultiLevelCacheOptions} [options]
   */
  constructor(options) {
    const { native, loader, logger, freshness } = normalizeOptions(options)
    this.#loader = loader
    this.#freshness = freshness
    this.#problems = new ProblemReporter(logger)
    this.#native = new NativeCache(native, () => this.#drain())
    const s = this.#native.settings()
    this.#hasL1 = s.l1
    this.#hasL2 = s.l2
    this.#limits = {
      maxKeyLength: s.maxKeyLength,
      maxTagLength: s.maxTagLength,
      maxTags: s.maxTags,
      maxTtl: s.maxTtl,
      maxValueBytes: s.maxValueBytes,
    }
    // a JS timer holds at most 2^31-1 ms (~24.8 days); longer timeouts wait that long
    this.#loaderTimeoutMs = Math.min(s.loaderTimeout * 1000, MAX_TIMER_MS)
    this.#l1Ttl = s.l1Ttl
    this.prefix = s.prefix
    if (this.#hasL1) {
      this.#expires = this.#native.expiryTable()
      this.#counters = this.#native.counterTable()
    }
    this.#state = this.#native.stateTable()
    if (this.#hasL1 || this.#hasL2) {
      // reports the Redis problems the core noticed (at most a second late: not on every batch
      // of completions, which would cost the hot path a native call), also while no operation
      // completes (an idle cache whose bus cannot subscribe)
      this.#timer = setInterval(() => {
        if (this.#hasL1) {
          this.#flushReads()
          this.#native.maintain()
          this.#clearFreed()
        }
        this.#problems.report(this.#native.takeProblems())
      }, MAINTENANCE_MS)
      this.#timer.unref()
    }
  }

  /**
   * L1, then Redis (copying a hit into L1), then the constructor's `loader` if there is one.
   * Resolves `null` on a miss.
   * @param {string} key
   */
  get(key) {
    const slot = this.#index.get(key)
    let stale
    if (slot !== undefined && this.#live(key, slot)) {
      const due = this.#due
      const d = due === null ? 0 : due[slot]
      if (!(d > 0) || d > Date.now()) return this.#hit(slot)
      const hit = this.#dueHit(key, slot, this.#loader, undefined)
      if (hit !== undefined) return hit
      stale = this.#staleOfL1(key, slot)
    }
    if (this.#closed) return closedError()
    const err = checkKey(key, this.#limits.maxKeyLength)
    if (err !== undefined) return Promise.reject(err)
    this.#missL1()
    if (this.#loader !== undefined) return this.#flight(key, this.#loader, undefined, stale)
    return this.#readL2(key)
  }

  /**
   * Cache-aside read: like `get`, but `loader(key, ctx)` supplies the value on a miss (once per
   * key at a time across processes) and its result is written to both layers. With a grace, a
   * stale value answers when the loader fails (fail-safe) or is slower than `softTimeout`.
   * @param {string} key
   * @param {(key: string, ctx: LoaderContext) => unknown} loader
   * @param {import('./index').GetOrSetOptions} [options]
   */
  getOrSet(key, loader, options) {
    if (this.#closed) return closedError()
    const err = checkKey(key, this.#limits.maxKeyLength) ||
      (typeof loader !== 'function'
        ? mlcError(TypeError, codes.INVALID_LOADER, `loader must be a function, got ${typeof loader}`, { key })
        : checkGetOrSetOptions(options, this.#limits))
    if (err !== undefined) return Promise.reject(err)
    const slot = this.#index.get(key)
    let stale
    if (slot !== undefined && this.#live(key, slot)) {
      const due = this.#due
      const d = due === null ? 0 : due[slot]
      if (!(d > 0) || d > Date.now()) return this.#hit(slot)
      const hit = this.#dueHit(key, slot, loader, options)
      if (hit !== undefined) return hit
      stale = this.#staleOfL1(key, slot)
    }
    this.#missL1()
    return this.#flight(key, loader, options, stale)
  }

  /**
   * Writes `value` to L1 at once and to Redis; resolves when Redis has it (or was skipped).
   * @param {string} key
   * @param {unknown} value
   * @param {{ ttl?: number, tags?: string[] }} [options]
   */
  set(key, value, options) {
    if (this.#closed) return closedError()
    const err = checkKey(key, this.#limits.maxKeyLength) || checkSetOptions(options, this.#limits)
    if (err !== undefined) return Promise.reject(err)
    this.#backoff.delete(key)
    this.#refreshBackoff.delete(key)
    let stored
    try {
      stored = this.#store(key, value, options, 'value')
    } catch (e) {
      return Promise.reject(e)
    }
    this.#flights.delete(key)
    return stored.written
  }

  /**
   * Removes `key` from L1 and Redis.
   * @param {string} key
   */
  del(key) {
    return this.#dropKey(key, false)
  }

  /**
   * Marks `key` stale in every process: the next read loads afresh, and the old value remains
   * only as the fail-safe copy within its grace (an entry without grace is deleted). Resolves
   * like `del`.
   * @param {string} key
   */
  expire(key) {
    return this.#dropKey(key, true)
  }

  /**
   * Whether a fresh value of `key` is cached in L1 or Redis (the loader is not consulted; a
   * value kept past its ttl for its grace does not count).
   * @param {string} key
   */
  exists(key) {
    if (this.#closed) return closedError()
    const err = checkKey(key, this.#limits.maxKeyLength)
    if (err !== undefined) return Promise.reject(err)
    const slot = this.#index.get(key)
    let staleInL1 = false
    if (slot !== undefined && this.#live(key, slot)) {
      if (this.#due === null || !(this.#freshUntil[slot] > 0) || this.#freshUntil[slot] > Date.now()) return Promise.resolve(true)
      staleInL1 = true
    }
    const id = this.#id()
    const r = this.#native.exists(id, key, staleInL1)
    return r === 2 ? this.#await(id, OP_BOOL) : Promise.resolve(r === 1)
  }

  /**
   * Removes every entry tagged `tag`, from Redis and from every process's L1. With
   * `{ mode: 'expire' }` the entries become stale instead: the next read loads afresh, and
   * the old values remain only as fail-safe copies within their grace.
   * @param {string} tag
   * @param {{ mode?: 'delete' | 'expire' }} [options]
   */
  invalidateTag(tag, options) {
    if (this.#closed) return closedError()
    const err = checkTag(tag, this.#limits.maxTagLength) || checkInvalidateOptions(options)
    if (err !== undefined) return Promise.reject(err)
    // flights that began before it are detached by the join check in #flight (any tag counts)
    const id = this.#id()
    const pending = this.#native.invalidateTag(id, tag, options != null && options.mode === 'expire')
    this.#clearFreed()
    return pending ? this.#await(id, OP_VOID, tag) : Promise.resolve()
  }

  /** Counters of this cache, plus hit ratios per layer. */
  stats() {
    const s = Object.assign(this.#native.stats(), this.#fresh)
    s.l1HitRatio = ratio(s.l1Hits, s.l1Misses)
    s.l2HitRatio = ratio(s.l2Hits, s.l2Misses)
    return s
  }

  /**
   * Rejects every later call with `ERR_MLC_CLOSED`, lets calls in flight settle (Redis
   * operations within a grace period of under a second), then closes the Redis connection and
   * drops L1. Callers still waiting for a loader then are rejected with `ERR_MLC_CLOSED` (the
   * loader itself cannot be stopped; its value is ignored): once close() resolves every call
   * has settled, and the cache holds no timer or handle that keeps the process alive.
   */
  close() {
    if (this.#closing) return this.#closing
    this.#closed = true
    this.#index = new Map() // no more L1 hits
    this.#backoff.clear()
    this.#refreshBackoff.clear()
    clearInterval(this.#timer)
    const id = this.#id()
    const pending = this.#native.close(id) ? this.#await(id, OP_VOID) : Promise.resolve()
    // no lookup can start from now on: the ones in flight get the grace period to settle
    this.#closing = Promise.all([pending, this.#lookupsSettled(CLOSE_GRACE_MS)])
      // a lookup whose Redis read the native close just settled (a frozen Redis) starts its
      // loader only now: a short extra grace lets a quick one finish
      .then(() => this.#lookupsSettled(LATE_LOADER_GRACE_MS))
      .then(() => {
        for (const reject of this.#loaderWaits) reject(closedErrorObject())
        this.#loaderWaits.clear()
        // every native operation has completed and every loader wait is settled: the lookups
        // settle within a few microtasks, and close() resolves after them
        return Promise.allSettled([...this.#lookups])
      })
      .then(() => {
        this.#problems.report(this.#native.takeProblems())
        this.#native.clearL1()
        this.#clearFreed()
        this.#values = []
        this.#keys = []
      })
    return this.#closing
  }

  /** `del` (`expire` false) or `expire`: the key's lookups and fail-safe answers end here too. */
  #dropKey(key, expire) {
    if (this.#closed) return closedError()
    const err = checkKey(key, this.#limits.maxKeyLength)
    if (err !== undefined) return Promise.reject(err)
    this.#flights.delete(key)
    this.#backoff.delete(key)
    this.#refreshBackoff.delete(key)
    const id = this.#id()
    const pending = expire ? this.#native.expire(id, key) : this.#native.del(id, key)
    this.#clearFreed()
    return pending ? this.#await(id, OP_VOID, key) : Promise.resolve()
  }

  /** Resolves once every lookup in flight has settled, or after `ms`, whichever comes first. */
  #lookupsSettled(ms) {
    if (this.#lookups.size === 0) return Promise.resolve()
    let timer
    const grace = new Promise((resolve) => { timer = setTimeout(resolve, ms) })
    return Promise.race([Promise.allSettled([...this.#lookups]), grace]).finally(() => clearTimeout(timer))
  }

  /** Latency histograms of lookups that were not L1 hits (for registerMetrics). */
  [kLatencies]() {
    return this.#native.latencies()
  }

  /** Redis' `INFO stats` keyspace hits and misses, or null (for registerMetrics). */
  [kKeyspaceStats]() {
    if (this.#closed || !this.#hasL2) return Promise.resolve(null)
    const id = this.#id()
    return this.#native.keyspaceStats(id) ? this.#await(id, OP_KEYSPACE) : Promise.resolve(null)
  }

  // ---- internals -------------------------------------------------------------------------

  /** Whether the L1 entry at `slot` is still live (shared expiry table, or a native lookup). */
  #live(key, slot) {
    const expires = this.#expires
    if (expires === null) return this.#native.l1Get(key) === slot
    // > 0: live (the Rust expirer zeroes it just before its time); < 0: a short TTL, also
    // checked against the clock
    const e = expires[slot]
    return e > 0 || (e < 0 && -e > Date.now())
  }

  /** An L1 hit: counted in the Rust L1's counters, recorded for its LRU order. */
  #hit(slot) {
    const counters = this.#counters
    if (counters !== null) counters[0]++
    if ((++this.#readTick & READ_SAMPLE_MASK) === 0) {
      const n = this.#readCount
      this.#reads[n] = slot
      this.#readCount = n + 1
      if (n + 1 === READ_RING) this.#flushReads()
    }
    return Promise.resolve(this.#values[slot])
  }

  #missL1() {
    const counters = this.#counters
    if (counters !== null) counters[1]++
  }

  /** Replays recorded L1 hits into the Rust L1's LRU order. */
  #flushReads() {
    const n = this.#readCount
    if (n === 0) return
    this.#readCount = 0
    this.#native.touch(this.#reads.subarray(0, n))
  }

  /** Records the value of a new L1 entry at the slot the Rust L1 gave it. */
  #remember(key, slot, value) {
    this.#values[slot] = value
    this.#keys[slot] = key
    if (!this.#closed) this.#index.set(key, slot)
  }

  /** The invalidation epoch now (shared memory; a native call without it). */
  #epoch() {
    const state = this.#state
    return state === null ? this.#native.epoch() : state[0]
  }

  #id() {
    const id = this.#nextId
    this.#nextId = id >= 0xfffffff0 ? 1 : id + 1
    return id
  }

  #await(id, kind, key) {
    return new Promise((resolve, reject) => {
      this.#ops.set(id, { kind, resolve, reject, key })
    })
  }

  /**
   * Redis read of `key`: resolves the parsed value (copied into L1) or null. Reads issued in
   * the same turn are handed to the native side together at its end (a microtask), so 64
   * concurrent gets cost one native call and one MGET instead of a dribble of small batches.
   */
  #readL2(key) {
    if (!this.#hasL2) return Promise.resolve(null)
    const id = this.#id()
    const read = this.#await(id, OP_READ, key)
    this.#batchIds.push(id)
    this.#batchKeys.push(key)
    if (this.#batchIds.length >= READ_CHUNK) this.#sendReads()
    else if (!this.#batchScheduled) {
      this.#batchScheduled = true
      queueMicrotask(() => {
        this.#batchScheduled = false
        this.#sendReads()
      })
    }
    return read
  }

  /** Sends the reads batched by `#readL2`; each resolves null if Redis cannot be asked. */
  #sendReads() {
    const ids = this.#batchIds
    const keys = this.#batchKeys
    if (ids.length === 0) return
    this.#batchIds = []
    this.#batchKeys = []
    let started = false
    if (!this.#closed) {
      try {
        started = this.#native.getL2Many(Uint32Array.from(ids), keys)
      } catch {
        started = false
      }
    }
    if (started) return
    for (let i = 0; i < ids.length; i++) {
      const op = this.#ops.get(ids[i])
      if (op === undefined) continue
      this.#ops.delete(ids[i])
      op.resolve(null)
    }
  }

  /**
   * An L1 hit whose entry is due (its `due` time passed): while still fresh it is served, and
   * with a loader it starts one background refresh (eager refresh); returns undefined when the
   * entry is stale (kept for its grace only: the caller looks it up afresh).
   */
  #dueHit(key, slot, loader, options) {
    const now = Date.now()
    if (now >= this.#freshUntil[slot]) return undefined
    const resting = this.#refreshBackoff.get(key)
    if (resting !== undefined) {
      // a refresh failed: the next one waits for graceBackoff (the value is still fresh)
      if (resting > now) return this.#hit(slot)
      this.#refreshBackoff.delete(key)
    }
    if (loader !== undefined && !this.#flights.has(key) && !this.#closed) {
      const flight = this.#startFlight(key, loader, options, this.#staleOfL1(key, slot), true)
      flight.background = true
    }
    return this.#hit(slot)
  }

  /** The value of `key`'s L1 entry at `slot`, as the fail-safe copy of a lookup. */
  #staleOfL1(key, slot) {
    const expires = this.#expires
    // kept until its expiry (its ttl plus its grace); without shared memory, a second at most
    const until = expires === null ? Date.now() + 1000 : Math.abs(expires[slot])
    const tags = this.#native.l1Tags(key)
    return { value: this.#values[slot], until, tags: tags === null ? undefined : tags }
  }

  /**
   * One shared read-through (Redis, then loader) per key at a time. A write or invalidation
   * of the key, or an invalidation of any tag (the value found in Redis may carry tags the
   * callers did not name), detaches the flight, whether it happened in this process or in
   * another one (its bus message arrived): callers arriving after it start a new lookup
   * instead of joining one that may return the older value.
   *
   * `stale`: the entry L1 keeps past its ttl for its grace. With `softTimeout`, callers get a
   * usable stale value when the lookup takes longer; a fail-safe value served after a loader
   * failure is served again for `graceBackoff` without calling the loader.
   */
  #flight(key, loader, options, stale) {
    const backoff = this.#backoff.get(key)
    if (backoff !== undefined) {
      if (backoff.until > Date.now() && !this.#native.changedSince(backoff.epoch, key, backoff.tags)) {
        this.#fresh.staleServed++
        return Promise.resolve(backoff.value)
      }
      this.#backoff.delete(key)
    }
    const existing = this.#flights.get(key)
    if (existing !== undefined && (existing.epoch === this.#epoch() ||
        !this.#native.invalidatedSince(existing.epoch, key, existing.tags))) {
      if (existing.stale === undefined && stale !== undefined) existing.stale = stale
      return this.#answer(key, existing, options)
    }
    return this.#answer(key, this.#startFlight(key, loader, options, stale, false), options)
  }

  /** Starts a lookup (`refresh`: an eager refresh of a fresh entry) and registers it. */
  #startFlight(key, loader, options, stale, refresh) {
    const tags = options == null ? undefined : options.tags
    // where this lookup stands in the order of invalidations: a value loaded across one of its
    // key or tags is returned but not cached (it may predate the change)
    const epoch = this.#epoch()
    /** @type {Flight} */
    const flight = { promise: undefined, epoch, tags, stale, refresh, background: false, failed: false, waiting: 0, onStale: null }
    flight.promise = this.#readThrough(key, loader, options, flight)
    this.#flights.set(key, flight)
    this.#lookups.add(flight.promise)
    const done = () => {
      this.#lookups.delete(flight.promise)
      if (this.#flights.get(key) === flight) this.#flights.delete(key)
      // callers left before it ended (soft timeout, eager refresh): it refreshed in the background
      if (flight.background) {
        if (flight.failed) this.#fresh.backgroundRefreshFailures++
        else this.#fresh.backgroundRefreshes++
      }
      if (flight.refresh && flight.failed) {
        const backoff = freshOption(options, 'graceBackoff', this.#freshness)
        if (backoff > 0) {
          // bounded: keys whose refresh failed within graceBackoff; beyond, start again
          if (this.#refreshBackoff.size >= MAX_REFRESH_BACKOFFS) this.#refreshBackoff.clear()
          this.#refreshBackoff.set(key, Date.now() + backoff * 1000)
        }
      }
    }
    flight.promise.then(done, done)
    return flight
  }

  /**
   * What a caller of `flight` gets: its value, or with `softTimeout` (this call's or the
   * constructor's) a usable stale value once the lookup has taken that long (at once for 0,
   * stale-while-revalidate); the lookup then goes on in the background and fills both layers.
   */
  #answer(key, flight, options) {
    const soft = freshOption(options, 'softTimeout', this.#freshness)
    if (soft === 0) {
      const now = this.#usableStale(key, flight)
      if (now !== undefined) return this.#servedStale(flight, now)
    }
    // a caller waiting for the lookup's value (which may be the fail-safe one)
    flight.waiting++
    if (soft === undefined) return flight.promise
    return new Promise((resolve, reject) => {
      let done = false
      let late = false
      const tryStale = () => {
        if (done || !late) return
        const value = this.#usableStale(key, flight)
        if (value === undefined) return
        done = true
        flight.waiting--
        resolve(this.#servedStale(flight, value))
      }
      const timer = setTimeout(() => {
        late = true
        tryStale()
      }, Math.min(soft * 1000, MAX_TIMER_MS))
      ;(flight.onStale || (flight.onStale = [])).push(tryStale)
      flight.promise.then((v) => {
        if (done) return
        done = true
        clearTimeout(timer)
        resolve(v)
      }, (e) => {
        if (done) return
        done = true
        clearTimeout(timer)
        reject(e)
      })
    })
  }

  /** Counts a stale answer given before its lookup ended, which goes on in the background. */
  #servedStale(flight, value) {
    this.#fresh.staleServed++
    this.#fresh.softTimeouts++
    flight.background = true
    return Promise.resolve(value)
  }

  /**
   * The flight's stale value if it may still be served: within its grace, and neither its key
   * nor one of its tags invalidated since the flight began (`del`/`invalidateTag` mean the old
   * value is never served again).
   */
  #usableStale(key, flight) {
    const stale = flight.stale
    if (stale === undefined || this.#closed || !(stale.until > Date.now())) return undefined
    if (this.#native.changedSince(flight.epoch, key, stale.tags)) return undefined
    return stale.value
  }

  async #readThrough(key, loader, options, flight) {
    const began = performance.now()
    let load = LOAD_WITHOUT_REDIS
    // callers who would rather get a stale value than wait (softTimeout) learn it at once when
    // another process is refreshing it; the lookup then asks again, to wait for that value
    let early = !flight.refresh && freshOption(options, 'softTimeout', this.#freshness) !== undefined
    // bounded: a second round only after an early stale answer
    for (let round = 0; this.#hasL2 && round < 2; round++) {
      // one round trip: the value, or the stampede lock, or a wait for another process's value
      const id = this.#id()
      if (this.#native.readOrLock(id, key, flight.refresh, early)) {
        const r = await this.#await(id, OP_LOCKING_READ, key)
        if (r.hit) return r.value
        if (r.staleOnly) {
          this.#learnStale(flight, r.stale)
          early = false
          continue
        }
        // an eager refresh another process is doing (its value did not come within lock.wait): keep what we have
        if (r.left) return flight.stale === undefined ? null : flight.stale.value
        load = r
        if (r.stale !== undefined) this.#learnStale(flight, r.stale)
      }
      break
    }
    try {
      return await this.#load(key, loader, options, load, began, flight)
    } catch (e) {
      const stale = e.code === codes.CLOSED ? undefined : this.#usableStale(key, flight)
      if (stale === undefined) {
        flight.failed = true
        throw e
      }
      // fail-safe: the value kept for its grace answers, and keeps answering for graceBackoff
      // without calling the loader again
      flight.failed = true
      // its callers still waiting get it (an eager refresh or a lookup whose callers all had
      // their answer already counts as a failed background refresh only)
      if (flight.waiting > 0) {
        this.#fresh.failSafeActivations++
        this.#fresh.staleServed += flight.waiting
      }
      const backoff = freshOption(options, 'graceBackoff', this.#freshness)
      if (backoff > 0) {
        this.#backoff.set(key, { value: stale, until: Date.now() + backoff * 1000, epoch: flight.epoch, tags: flight.stale.tags })
      }
      return stale
    }
  }

  /** Records the stale value a lookup found in Redis, and answers the callers waiting for one. */
  #learnStale(flight, stale) {
    flight.stale = stale
    if (flight.onStale !== null) for (const f of flight.onStale) f()
  }

  /**
   * Runs the loader and stores its value; `load` carries the stampede lock and clock token.
   * The loader's context may change the entry's `ttl` and `tags`, or skip caching it.
   */
  async #load(key, loader, options, load, began, flight) {
    const lockId = load.lockId
    const ctx = new LoaderContext(options, this.#limits, flight)
    let value
    try {
      value = await this.#callLoader(key, loader, ctx, options)
    } catch (e) {
      // counted, and the lock released, in one native call
      this.#native.loaded(lockId, true, (performance.now() - began) / 1000)
      throw e
    }
    const seconds = (performance.now() - began) / 1000
    if (value === null || value === undefined || this.#closed || ctx.skipped) {
      this.#native.loaded(lockId, false, seconds)
      return value
    }
    let stored
    try {
      // the loader's timing travels with its value (one native call)
      stored = this.#store(key, value, ctx.options(), `the loader's value for key ${JSON.stringify(key)}`, load, flight.epoch, seconds)
    } catch (e) {
      this.#native.loaded(lockId, false, seconds)
      // too large to cache is the cache's limit, not the caller's problem: serve it uncached
      if (e.code === codes.VALUE_TOO_LARGE) return value
      throw e
    }
    // resolve once both layers have it: another process asking next finds it in Redis
    await stored.written
    return stored.value
  }

  /**
   * Runs a loader (sync or async), rejecting with ERR_MLC_LOADER_TIMEOUT if it hangs, or with
   * ERR_MLC_CLOSED when close() ends first.
   */
  #callLoader(key, loader, ctx, options) {
    // the call's own bound, or the constructor's (a JS timer holds at most 2^31-1 ms)
    const seconds = options == null ? undefined : options.loaderTimeout
    const timeoutMs = seconds === undefined ? this.#loaderTimeoutMs : Math.min(seconds * 1000, MAX_TIMER_MS)
    let timer
    let abandon
    const timeout = new Promise((_, reject) => {
      abandon = reject
      timer = setTimeout(() => reject(mlcError(Error, codes.LOADER_TIMEOUT,
        `the loader for key ${JSON.stringify(key)} did not settle within loaderTimeout (${timeoutMs / 1000} s)`,
        { key })), timeoutMs)
    })
    this.#loaderWaits.add(abandon)
    const run = new Promise((resolve) => resolve(loader(key, ctx)))
    return Promise.race([run, timeout]).finally(() => {
      clearTimeout(timer)
      this.#loaderWaits.delete(abandon)
    })
  }

  /** Serializes and writes a value; returns the L1 copy and the Promise of the Redis write. */
  #store(key, value, options, what, load = LOAD_WITHOUT_REDIS, epoch = undefined, loaderSeconds = undefined) {
    const json = serialize(value, key, this.#limits.maxValueBytes, what)
    const ttl = options == null ? undefined : options.ttl
    const tags = options == null ? undefined : options.tags
    const grace = freshOption(options, 'grace', this.#freshness)
    const eager = freshOption(options, 'eagerRefresh', this.#freshness)
    const id = this.#id()
    this.#flushReads() // so eviction sees the latest reads
    const r = this.#native.set(id, key, json, ttl, tags, load.lockId, epoch, load.token, grace, eager, loaderSeconds)
    const slot = Math.floor(r / 2) - 1
    const copy = JSON.parse(json)
    if (slot >= 0) {
      this.#remember(key, slot, copy)
      if (grace > 0 || eager !== undefined) {
        const now = Date.now()
        const fresh = now + (ttl === undefined ? this.#l1Ttl : ttl) * 1000
        this.#setSoft(slot, eager === undefined ? fresh : now + (fresh - now) * eager, fresh)
      } else if (this.#due !== null) {
        this.#due[slot] = 0
      }
    }
    this.#clearFreed()
    return { value: copy, written: r % 2 === 1 ? this.#await(id, OP_VOID, key) : Promise.resolve() }
  }

  #clearFreed() {
    // nothing to clear (shared memory says so): no native call
    if (this.#state !== null && this.#state[1] === 0) return
    const freed = this.#native.takeFreed()
    if (freed === null) return
    const values = this.#values
    const keys = this.#keys
    const index = this.#index
    const due = this.#due
    for (let i = 0; i < freed.length; i++) {
      const slot = freed[i]
      const key = keys[slot]
      if (key !== undefined && index.get(key) === slot) index.delete(key)
      keys[slot] = undefined
      values[slot] = undefined
      if (due !== null) due[slot] = 0
    }
  }

  /** Records when the L1 copy at `slot` stops being a plain hit, and stops being fresh. */
  #setSoft(slot, due, freshUntil) {
    if (this.#due === null) {
      // per slot, allocated with the first entry that needs it
      const n = this.#expires === null ? 0 : this.#expires.length
      this.#due = n > 0 ? new Float64Array(n) : []
      this.#freshUntil = n > 0 ? new Float64Array(n) : []
    }
    this.#due[slot] = due
    this.#freshUntil[slot] = freshUntil
  }

  /** Parses a Redis hit and stores it at its L1 slot (-1: not copied into L1). */
  #fromRedis(key, slot, json, due, freshUntil) {
    const value = JSON.parse(json)
    if (slot >= 0) {
      this.#remember(key, slot, value)
      if (due !== undefined) this.#setSoft(slot, due, freshUntil)
      else if (this.#due !== null) this.#due[slot] = 0
    }
    return value
  }

  /** Settles every finished native operation (called once per batch by the native side). */
  #drain() {
    const out = this.#native.drain()
    const ops = this.#ops
    for (let i = 0; i < out.length; i += STRIDE) {
      const id = out[i]
      const op = ops.get(id)
      if (op === undefined) continue
      ops.delete(id)
      const kind = out[i + 1]
      if (kind === REFUSED) {
        // Redis refused an invalidation (and the retries within the bound): it is kept for
        // replay, and the caller learns that it has not been applied yet
        op.reject(mlcError(Error, codes.REDIS_REFUSED,
          `Redis refused the invalidation (${out[i + 2]}); it is retried until Redis applies it, ` +
          'and the old value may be served until then: ' + out[i + 3], { key: op.key, redisCode: out[i + 2] }))
        continue
      }
      switch (op.kind) {
        case OP_VOID:
          op.resolve(undefined)
          break
        case OP_BOOL:
          op.resolve(kind === TRUE)
          break
        case OP_READ: {
          if (kind !== HIT) {
            op.resolve(null)
            break
          }
          op.resolve(this.#fromRedis(op.key, out[i + 2], out[i + 3], out[i + 4], out[i + 5]))
          break
        }
        case OP_KEYSPACE:
          op.resolve(kind === KEYSPACE && out[i + 2] !== undefined ? { hits: out[i + 2], misses: out[i + 3] } : null)
          break
        default: // OP_LOCKING_READ: { hit, value } on a hit, else { lockId, token, stale } to load with
          if (kind === HIT) op.resolve({ hit: true, value: this.#fromRedis(op.key, out[i + 2], out[i + 3], out[i + 4], out[i + 5]) })
          else if (kind === LOAD) {
            const stale = out[i + 4] === undefined ? undefined
              : { value: JSON.parse(out[i + 4]), until: out[i + 5], tags: out[i + 6].length === 0 ? undefined : out[i + 6] }
            op.resolve({ lockId: out[i + 2], token: out[i + 3], stale })
          } else if (kind === STALE) {
            op.resolve({ staleOnly: true, stale: { value: JSON.parse(out[i + 4]), until: out[i + 5], tags: out[i + 6].length === 0 ? undefined : out[i + 6] } })
          } else if (kind === MISS) op.resolve(LEFT_TO_OTHERS)
          else op.resolve(LOAD_WITHOUT_REDIS)
      }
    }
    this.#clearFreed()
  }
}

/**
 * The loader's second argument: it may choose the entry's options from the value it loaded
 * (bentocache's adaptive caching). Each setter is checked at once (the usual error, thrown
 * inside the loader, so the call rejects with it and nothing is cached).
 */
class LoaderContext {
  #options
  #limits
  #flight
  #ttl
  #tags
  #skipped = false

  constructor(options, limits, flight) {
    this.#options = options
    this.#limits = limits
    this.#flight = flight
  }

  /**
   * The value cached before (kept past its ttl for its grace, or due for an eager refresh),
   * or undefined: a loader may use it, for instance to answer a conditional request.
   */
  get stale() {
    const stale = this.#flight === undefined ? undefined : this.#flight.stale
    return stale === undefined ? undefined : stale.value
  }

  /** Caches the value for `seconds` instead of the call's (or the default) `ttl`. */
  setTtl(seconds) {
    const err = checkCacheOptions({ ttl: seconds }, this.#limits)
    if (err !== undefined) throw err
    this.#ttl = seconds
  }

  /** Tags the value with `tags` instead of the call's. */
  setTags(tags) {
    const err = checkCacheOptions({ tags }, this.#limits)
    if (err !== undefined) throw err
    this.#tags = [...tags]
  }

  /** Returns the value to the callers without caching it (in L1 or Redis). */
  skip() {
    this.#skipped = true
  }

  /** Whether `skip()` was called: the value is returned, not cached. */
  get skipped() {
    return this.#skipped
  }

  /** The options the value is stored with. */
  options() {
    if (this.#ttl === undefined && this.#tags === undefined) return this.#options
    const base = this.#options == null ? {} : this.#options
    return {
      ...base,
      ttl: this.#ttl !== undefined ? this.#ttl : base.ttl,
      tags: this.#tags !== undefined ? this.#tags : base.tags,
    }
  }
}

/**
 * A freshness option (`grace`, `graceBackoff`, `softTimeout`, `eagerRefresh`): this call's, else
 * the constructor's (undefined when neither gives it).
 */
function freshOption(options, name, defaults) {
  if (options != null && options[name] !== undefined) return options[name]
  return defaults[name]
}

function ratio(hits, misses) {
  const total = hits + misses
  return total === 0 ? 0 : hits / total
}

function closedErrorObject() {
  return mlcError(Error, codes.CLOSED, 'the cache was closed; create a new MultiLevelCache')
}

function closedError() {
  return Promise.reject(closedErrorObject())
}

module.exports = { MultiLevelCache, codes, registerMetrics: require('./lib/metrics.js').registerMetrics }
