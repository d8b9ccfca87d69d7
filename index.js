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

const {
  NativeCache,
  COMPLETION_TRUE: TRUE,
  COMPLETION_HIT: HIT,
  COMPLETION_LOAD: LOAD,
  COMPLETION_KEYSPACE: KEYSPACE,
  COMPLETION_REFUSED: REFUSED,
} = require('./binding.js')
const { codes, mlcError } = require('./lib/errors.js')
const { checkKey, checkCacheOptions, checkGetOrSetOptions, checkTag, serialize } = require('./lib/validate.js')
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
/** Slots of L1 hits recorded before they are replayed into the Rust L1's LRU order. */
const READ_RING = 256
/** One L1 hit in this many is recorded for the LRU order (a replayed read costs a moka lookup;
 * hot keys are sampled often enough, as in Caffeine's lossy read buffers). */
const READ_SAMPLE_MASK = 15

/** @typedef {{ kind: number, resolve: (v: any) => void, key?: string }} PendingOp */

class MultiLevelCache {
  /** @type {NativeCache} */ #native
  /** decoded L1 values, by slot */ #values = []
  /** key of each slot */ #keys = []
  /** @type {Map<string, number>} key -> slot of the entries this process put in L1 */ #index = new Map()
  /** @type {Float64Array | null} the Rust L1's expiry table (shared memory) */ #expires = null
  /** @type {Float64Array | null} [l1 hits, l1 misses], read by the Rust side */ #counters = null
  #reads = new Uint32Array(READ_RING)
  #readCount = 0
  #readTick = 0
  /** @type {Map<number, PendingOp>} */ #ops = new Map()
  /** Redis reads issued in this turn of the event loop, sent together (one MGET) */
  #batchIds = []
  #batchKeys = []
  #batchScheduled = false
  /** @type {Map<string, { promise: Promise<unknown>, epoch: number, tags?: string[] }>} single-flight lookups, by key, with the invalidation epoch they began at */ #flights = new Map()
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
    const { native, loader, logger } = normalizeOptions(options)
    this.#loader = loader
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
    this.prefix = s.prefix
    if (this.#hasL1) {
      this.#expires = this.#native.expiryTable()
      this.#counters = this.#native.counterTable()
    }
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
    if (slot !== undefined && this.#live(key, slot)) return this.#hit(slot)
    if (this.#closed) return closedError()
    const err = checkKey(key, this.#limits.maxKeyLength)
    if (err !== undefined) return Promise.reject(err)
    this.#missL1()
    if (this.#loader !== undefined) return this.#flight(key, this.#loader, undefined)
    return this.#readL2(key)
  }

  /**
   * Cache-aside read: like `get`, but `loader(key)` supplies the value on a miss (once per key
   * at a time in this process) and its result is written to both layers.
   * @param {string} key
   * @param {(key: string) => unknown} loader
   * @param {{ ttl?: number, tags?: string[] }} [options]
   */
  getOrSet(key, loader, options) {
    if (this.#closed) return closedError()
    const err = checkKey(key, this.#limits.maxKeyLength) ||
      (typeof loader !== 'function'
        ? mlcError(TypeError, codes.INVALID_LOADER, `loader must be a function, got ${typeof loader}`, { key })
        : checkGetOrSetOptions(options, this.#limits))
    if (err !== undefined) return Promise.reject(err)
    const slot = this.#index.get(key)
    if (slot !== undefined && this.#live(key, slot)) return this.#hit(slot)
    this.#missL1()
    return this.#flight(key, loader, options)
  }

  /**
   * Writes `value` to L1 at once and to Redis; resolves when Redis has it (or was skipped).
   * @param {string} key
   * @param {unknown} value
   * @param {{ ttl?: number, tags?: string[] }} [options]
   */
  set(key, value, options) {
    if (this.#closed) return closedError()
    const err = checkKey(key, this.#limits.maxKeyLength) || checkCacheOptions(options, this.#limits)
    if (err !== undefined) return Promise.reject(err)
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
    if (this.#closed) return closedError()
    const err = checkKey(key, this.#limits.maxKeyLength)
    if (err !== undefined) return Promise.reject(err)
    this.#flights.delete(key)
    const id = this.#id()
    const pending = this.#native.del(id, key)
    this.#clearFreed()
    return pending ? this.#await(id, OP_VOID, key) : Promise.resolve()
  }

  /**
   * Whether `key` is cached in L1 or Redis (the loader is not consulted).
   * @param {string} key
   */
  exists(key) {
    if (this.#closed) return closedError()
    const err = checkKey(key, this.#limits.maxKeyLength)
    if (err !== undefined) return Promise.reject(err)
    const slot = this.#index.get(key)
    if (slot !== undefined && this.#live(key, slot)) return Promise.resolve(true)
    const id = this.#id()
    const r = this.#native.exists(id, key)
    return r === 2 ? this.#await(id, OP_BOOL) : Promise.resolve(r === 1)
  }

  /**
   * Removes every entry tagged `tag`, from Redis and from this process's L1.
   * @param {string} tag
   */
  invalidateTag(tag) {
    if (this.#closed) return closedError()
    const err = checkTag(tag, this.#limits.maxTagLength)
    if (err !== undefined) return Promise.reject(err)
    // flights that began before it are detached by the join check in #flight (any tag counts)
    const id = this.#id()
    const pending = this.#native.invalidateTag(id, tag)
    this.#clearFreed()
    return pending ? this.#await(id, OP_VOID, tag) : Promise.resolve()
  }

  /** Counters of this cache, plus hit ratios per layer. */
  stats() {
    const s = this.#native.stats()
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
   * One shared read-through (Redis, then loader) per key at a time. A write or invalidation
   * of the key, or an invalidation of any tag (the value found in Redis may carry tags the
   * callers did not name), detaches the flight, whether it happened in this process or in
   * another one (its bus message arrived): callers arriving after it start a new lookup
   * instead of joining one that may return the older value.
   */
  #flight(key, loader, options) {
    const existing = this.#flights.get(key)
    if (existing !== undefined && (existing.epoch === this.#native.epoch() ||
        !this.#native.invalidatedSince(existing.epoch, key, existing.tags))) {
      return existing.promise
    }
    const tags = options == null ? undefined : options.tags
    // where this lookup stands in the order of invalidations: a value loaded across one of its
    // key or tags is returned but not cached (it may predate the change)
    const epoch = this.#native.epoch()
    const flight = { promise: this.#readThrough(key, loader, options, epoch), epoch, tags }
    this.#flights.set(key, flight)
    this.#lookups.add(flight.promise)
    const done = () => {
      this.#lookups.delete(flight.promise)
      if (this.#flights.get(key) === flight) this.#flights.delete(key)
    }
    flight.promise.then(done, done)
    return flight.promise
  }

  async #readThrough(key, loader, options, epoch) {
    const began = performance.now()
    let load = LOAD_WITHOUT_REDIS
    if (this.#hasL2) {
      // one round trip: the value, or the stampede lock, or a wait for another process's value
      const id = this.#id()
      if (this.#native.readOrLock(id, key)) {
        const r = await this.#await(id, OP_LOCKING_READ, key)
        if (r.hit) return r.value
        load = r
      }
    }
    return this.#load(key, loader, options, load, began, epoch)
  }

  /**
   * Runs the loader and stores its value; `load` carries the stampede lock and clock token.
   * The loader's context may change the entry's `ttl` and `tags`, or skip caching it.
   */
  async #load(key, loader, options, load, began, epoch) {
    const lockId = load.lockId
    const ctx = new LoaderContext(options, this.#limits)
    let value
    try {
      value = await this.#callLoader(key, loader, ctx, options)
    } catch (e) {
      this.#native.recordLoader(true, (performance.now() - began) / 1000)
      if (lockId !== NO_LOCK) this.#native.unlock(lockId)
      throw e
    }
    this.#native.recordLoader(false, (performance.now() - began) / 1000)
    if (value === null || value === undefined || this.#closed || ctx.skipped) {
      if (lockId !== NO_LOCK) this.#native.unlock(lockId)
      return value
    }
    let stored
    try {
      stored = this.#store(key, value, ctx.options(), `the loader's value for key ${JSON.stringify(key)}`, load, epoch)
    } catch (e) {
      if (lockId !== NO_LOCK) this.#native.unlock(lockId)
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
  #store(key, value, options, what, load = LOAD_WITHOUT_REDIS, epoch = undefined) {
    const json = serialize(value, key, this.#limits.maxValueBytes, what)
    const ttl = options == null ? undefined : options.ttl
    const tags = options == null ? undefined : options.tags
    const id = this.#id()
    this.#flushReads() // so eviction sees the latest reads
    const r = this.#native.set(id, key, json, ttl, tags, load.lockId, epoch, load.token)
    const slot = Math.floor(r / 2) - 1
    const copy = JSON.parse(json)
    if (slot >= 0) this.#remember(key, slot, copy)
    this.#clearFreed()
    return { value: copy, written: r % 2 === 1 ? this.#await(id, OP_VOID, key) : Promise.resolve() }
  }

  #clearFreed() {
    const freed = this.#native.takeFreed()
    if (freed === null) return
    const values = this.#values
    const keys = this.#keys
    const index = this.#index
    for (let i = 0; i < freed.length; i++) {
      const slot = freed[i]
      const key = keys[slot]
      if (key !== undefined && index.get(key) === slot) index.delete(key)
      keys[slot] = undefined
      values[slot] = undefined
    }
  }

  /** Parses a Redis hit and stores it at its L1 slot (-1: not copied into L1). */
  #fromRedis(key, slot, json) {
    const value = JSON.parse(json)
    if (slot >= 0) this.#remember(key, slot, value)
    return value
  }

  /** Settles every finished native operation (called once per batch by the native side). */
  #drain() {
    const out = this.#native.drain()
    const ops = this.#ops
    for (let i = 0; i < out.length; i += 4) {
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
          op.resolve(this.#fromRedis(op.key, out[i + 2], out[i + 3]))
          break
        }
        case OP_KEYSPACE:
          op.resolve(kind === KEYSPACE && out[i + 2] !== undefined ? { hits: out[i + 2], misses: out[i + 3] } : null)
          break
        default: // OP_LOCKING_READ: { hit, value } on a hit, else { lockId, token } to load with
          if (kind === HIT) op.resolve({ hit: true, value: this.#fromRedis(op.key, out[i + 2], out[i + 3]) })
          else if (kind === LOAD) op.resolve({ lockId: out[i + 2], token: out[i + 3] })
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
  #ttl
  #tags
  #skipped = false

  constructor(options, limits) {
    this.#options = options
    this.#limits = limits
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
