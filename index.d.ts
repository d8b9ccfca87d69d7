// Public typings of multi-level-cache. Hand-written over the generated `binding.d.ts`; they
// describe exactly what `index.js` exports.

/** All durations are in seconds; fractions are allowed (0.05 = 50 ms). */
export interface CacheOptions {
  /**
   * Time to live of this entry, in seconds, in both layers. Overrides `l1.ttl` and `l2.ttl`
   * (longer or shorter). A positive finite number up to 1e9; rounded up to whole milliseconds.
   */
  ttl?: number
  /**
   * Tags of this entry: `invalidateTag(tag)` removes every entry carrying `tag`, in Redis and in
   * every process's L1. Non-empty strings of at most 1024 characters, at most 64 per entry.
   */
  tags?: string[]
}

/** Options of one `set` call: those of every entry, plus its grace. */
export interface SetOptions extends CacheOptions {
  /**
   * How long past its `ttl` the entry is kept, in L1 and in Redis, as the fail-safe copy
   * served when a fresh value cannot be had (the loader throws or times out). Overrides the
   * constructor's `grace`; `0` keeps nothing. `del`/`invalidateTag` still remove it at once.
   */
  grace?: number
}

/** Options of one `getOrSet` call: those of `set`, plus the loader's bounds and freshness. */
export interface GetOrSetOptions extends SetOptions {
  /**
   * After a loader failure answered by the graced value, how long (seconds) that value keeps
   * answering without calling the loader again. Overrides the constructor's. @default 5
   */
  graceBackoff?: number
  /**
   * When a graced value exists and the lookup (Redis wait and loader) takes longer than this,
   * answer with the graced value and let the loader finish in the background, filling both
   * layers. `0` is stale-while-revalidate. Overrides the constructor's. @default undefined (off)
   */
  softTimeout?: number
  /**
   * A fraction of the `ttl` (0 < x < 1): a hit after it starts one background refresh, one
   * across all processes (the stampede lock), so readers of a hot key never miss. Overrides the
   * constructor's. @default undefined (off)
   */
  eagerRefresh?: number
  /**
   * This call's hard bound on its loader, in seconds (overrides the constructor's
   * `loaderTimeout`): past it the callers reject with `ERR_MLC_LOADER_TIMEOUT` and nothing is
   * cached. Concurrent calls for the key share the first call's loader and its bound.
   */
  loaderTimeout?: number
}

/** Options of `invalidateTag`. */
export interface InvalidateTagOptions {
  /**
   * `'delete'` (default): the entries are never served again, grace or not. `'expire'`: they
   * become stale in every process: the next read loads afresh, and the old values remain only
   * as fail-safe copies within their grace (entries without grace are gone).
   */
  mode?: 'delete' | 'expire'
}

/** The interface of the article's layers, kept so code written against it keeps working. */
export interface BaseCache {
  get<T>(key: string): Promise<T | null>
  set<T>(key: string, value: T, options?: CacheOptions): Promise<void>
  del(key: string): Promise<void>
  exists(key: string): Promise<boolean>
}

/**
 * The loader's second argument: choose the entry's options from the value just loaded
 * (adaptive caching). Each setter checks its argument at once and throws the usual error
 * (`RangeError` `ERR_MLC_INVALID_TTL`, `TypeError`/`RangeError` `ERR_MLC_INVALID_TAGS`), which
 * rejects the call; nothing is cached then.
 */
export interface LoaderContext {
  /** Caches the value for `seconds` instead of the call's (or the default) `ttl`. */
  setTtl(seconds: number): void
  /**
   * Tags the value with `tags` instead of the call's. A tag invalidated while the loader ran
   * (in any process) keeps the value out of the cache, as for tags given up front.
   */
  setTags(tags: string[]): void
  /** Returns the value to every waiting caller without caching it (neither L1 nor Redis). */
  skip(): void
  /**
   * The value cached before, kept past its ttl for its grace (or due for an eager refresh),
   * or `undefined`.
   */
  readonly stale: unknown
}

/** Supplies the value of a key on a full miss. May return a value or a Promise; may throw. */
export type Loader<T = unknown> = (key: string, ctx: LoaderContext) => Promise<T> | T

/** Where Redis Sentinel is, and how to reach the master it names. */
export interface SentinelOptions {
  /**
   * The sentinels: `redis://` or `rediss://` URLs (all of one scheme; `rediss://` also means TLS
   * to the data nodes, with `redis.tls`), each with its own auth, e.g.
   * `redis://:sentinel-password@10.0.0.5:26379`. Asked in turn.
   */
  nodes: string[]
  /** The master's name in the sentinels' configuration (`sentinel monitor <name> ...`). */
  name: string
  /** ACL user on the data nodes. @default none */
  username?: string
  /** Password on the data nodes. @default none */
  password?: string
  /** Database on the data nodes. @default 0 */
  db?: number
}

/** Where a Redis Cluster is. */
export interface ClusterOptions {
  /**
   * Seed nodes: `redis://` or `rediss://` URLs (all of one scheme; `rediss://` means TLS, with
   * `redis.tls`), auth in the URL, e.g. `redis://user:password@10.0.0.1:7000`. The other nodes
   * and the slot map are discovered; one reachable seed is enough.
   */
  nodes: string[]
}

/** Constructor options. Every one is optional; the defaults are listed with each. */
export interface MultiLevelCacheOptions {
  /**
   * Redis URL: `redis://[user:password@]host:port[/db]`, `rediss://` (TLS, see `redis.tls`),
   * `unix:///path/to/redis.sock` or `redis+unix://`.
   * An empty string is a `TypeError` (`ERR_MLC_INVALID_OPTION`): omit the option, or set
   * `l2: false`, to run on L1 alone. An empty `REDIS_URL` counts as unset.
   * @default process.env.REDIS_URL (ignored when `sentinel` or `cluster` is given); when none
   * is set the cache runs on L1 alone (no error).
   */
  redisUrl?: string
  /**
   * Redis Sentinel instead of `redisUrl` (exactly one of `redisUrl`, `sentinel`, `cluster`):
   * the master is found by `name` through the sentinels and followed through failover (data
   * connection and bus). See the README's "Topologies".
   */
  sentinel?: SentinelOptions
  /**
   * Redis Cluster instead of `redisUrl` (exactly one of `redisUrl`, `sentinel`, `cluster`):
   * the prefix's keys spread over every shard, the bus is a shard channel (Redis >= 7), and
   * `MOVED`/`ASK` and failovers are followed. See the README's "Topologies".
   */
  cluster?: ClusterOptions
  /**
   * Namespace of every Redis key and channel (1-64 characters of `A-Z a-z 0-9 _ - . :`).
   * Two caches with different prefixes share nothing.
   * @default 'mlc'
   */
  prefix?: string
  /** Consulted by `get()` on a full miss (the article's `db.query`). @default undefined */
  loader?: Loader
  /**
   * Bound on one loader call, in seconds. A loader that has not settled by then is abandoned:
   * its callers reject with `ERR_MLC_LOADER_TIMEOUT`, nothing is cached and the stampede lock
   * is released. @default 30
   */
  loaderTimeout?: number
  /**
   * Default of every write: how long past its `ttl` an entry is kept, in L1 and in Redis, to
   * be served when a fresh value cannot be had (the loader throws or times out, or Redis and
   * the loader both fail). See the README's "Freshness". @default 0 (off)
   */
  grace?: number
  /** Default of `getOrSet`'s `graceBackoff`, in seconds. @default 5 */
  graceBackoff?: number
  /** Default of `getOrSet`'s `softTimeout`, in seconds. @default undefined (off) */
  softTimeout?: number
  /** Default of `getOrSet`'s `eagerRefresh` (and of `set`'s), a fraction of the ttl. @default undefined (off) */
  eagerRefresh?: number
  /** The in-process layer, or `false` for none. */
  l1?: {
    /**
     * The most entries L1 ever holds (LRU eviction; the newest entry is always kept). Once full,
     * L1 evicts in small batches and holds between `maxEntries - min(maxEntries / 128, 256)` and
     * `maxEntries` entries. @default 10000
     */
    maxEntries?: number
    /** TTL, in seconds, of entries written without a per-entry `ttl`. @default 60 */
    ttl?: number
  } | false
  /** The Redis layer, or `false` for none even when a URL is set. */
  l2?: {
    /** TTL, in seconds, of entries written without a per-entry `ttl`. @default 3600 */
    ttl?: number
  } | false
  /** The stampede lock. */
  lock?: {
    /**
     * Lifetime of a stampede lock in Redis, in seconds. The owner extends it every `ttl / 3`
     * while its loader runs, so a loader slower than `ttl` still holds it; a crashed owner's
     * lock expires after `ttl`. @default 10
     */
    ttl?: number
    /**
     * How long a caller waits for another process's loader, in seconds, before loading
     * itself (it never fails for that reason). @default 5
     */
    wait?: number
  }
  /** Redis connection bounds, circuit breaker and TLS. See the README's "When Redis fails". */
  redis?: {
    /** Bound on making a connection, in seconds. @default 1 */
    connectTimeout?: number
    /** Bound on every Redis command, in seconds. @default 0.5 */
    commandTimeout?: number
    /** Consecutive Redis failures (timeouts, refused or dropped connections) that open the
     * circuit breaker. @default 3 */
    breakerThreshold?: number
    /** How long an open breaker skips Redis before one probe may close it, in seconds. @default 1 */
    breakerCooldown?: number
    /**
     * Replicas every invalidation (`del`, `invalidateTag`, a caller's `set`) waits for
     * (`WAIT`) before it resolves, so a failover right after it cannot bring the old value
     * back. A wait in vain (`waitTimeout` ran out, fewer replicas acknowledged) is counted
     * (`replicaWaitTimeouts`), never an error. An integer from 0 to 16. @default 0 (no wait)
     */
    waitReplicas?: number
    /** The longest an invalidation waits for `waitReplicas`, in seconds. @default redis.commandTimeout */
    waitTimeout?: number
    /** TLS material for a `rediss://` URL (PEM files). Without `caFile` the system's trust
     * store is used; `certFile` and `keyFile` (together) enable mutual TLS. */
    tls?: { caFile?: string; certFile?: string; keyFile?: string }
  }
  /** The invalidation bus (Redis pub/sub between the processes sharing `prefix`). */
  bus?: {
    /**
     * How long `set`, `del` and `invalidateTag` wait, in seconds, for every other connected
     * process to confirm it dropped its L1 copy, after Redis applied the change. When they
     * resolve, no other process serves the old value from L1 any more (unless one did not
     * confirm in time: `busAckTimeouts` counts those; a paused process delays writes by at most
     * this bound and never fails them; after such a timeout the next writes wait at most 5 ms
     * until one gets every confirmation again). `0`: resolve as soon as Redis applied the change (other
     * processes drop their copies about a millisecond later). A number from 0 to 10.
     * @default 0.05
     */
    ackTimeout?: number
  }
  /** Size limits. */
  limits?: {
    /** Largest value accepted, in bytes of its JSON text. @default 16777216 (16 MiB) */
    maxValueBytes?: number
  }
  /**
   * Where Redis problems go (wrong password, missing ACL permission, missing db, unreachable,
   * out of memory, read-only...; see the README's "Logging and warnings"). A pino-compatible
   * logger (pino, a pino child, `console`): each line is `logger[level]({ code, ... }, message)`,
   * a code is logged at most once per 5 s (with `occurrences`), and recovery is logged as
   * `info`. Must have `error`, `warn`, `info` and `debug` methods (`ERR_MLC_INVALID_OPTION`).
   * Passwords never appear in what is logged.
   * @default undefined: each distinct problem is emitted once per cache with
   * `process.emitWarning(message, { code: 'MLC_REDIS_...' })`
   */
  logger?: Logger
}

/** The codes of Redis problems reported to the `logger` option or as process warnings. */
export type RedisProblemCode =
  | 'MLC_REDIS_AUTH'
  | 'MLC_REDIS_NOPERM'
  | 'MLC_REDIS_DB'
  | 'MLC_REDIS_UNREACHABLE'
  | 'MLC_REDIS_TIMEOUT'
  | 'MLC_REDIS_OOM'
  | 'MLC_REDIS_BUSY'
  | 'MLC_REDIS_READONLY'
  | 'MLC_REDIS_LOADING'
  | 'MLC_REDIS_ERROR'
  | 'MLC_REDIS_RECOVERED'

/** The fields of one log line (the first argument of each logger call). */
export interface RedisProblemFields {
  /** What kind of problem. */
  code: RedisProblemCode
  /** Redis' own error code (`NOPERM`, `WRONGPASS`, `OOM`...), when it answered with one. */
  redisCode?: string
  /** What Redis or the connection said (first occurrence; password removed). */
  detail?: string
  /** Where it was noticed: `command` (a cache operation) or `subscribe` (the invalidation bus). */
  context: string
  /** The server: `redisUrl` with its password replaced by `***`. */
  target: string
  /** Occurrences since the previous line of this code. */
  occurrences: number
}

/** A pino-compatible logger: `(fields, message)` per level. */
export interface Logger {
  error(fields: RedisProblemFields, message: string): unknown
  warn(fields: RedisProblemFields, message: string): unknown
  info(fields: RedisProblemFields, message: string): unknown
  debug(fields: RedisProblemFields, message: string): unknown
}

/** Counters of one cache (`stats()`). Every field is a number except `busConnected`. */
export interface CacheStats {
  /** `get`/`getOrSet` answered from L1. */
  l1Hits: number
  /** `get`/`getOrSet` that missed L1. */
  l1Misses: number
  /** Lookups answered from Redis. */
  l2Hits: number
  /** Lookups Redis could not answer (absent, unreadable or unreachable). */
  l2Misses: number
  /** Loader calls. */
  loaderCalls: number
  /** Loader calls that threw or rejected. */
  loaderErrors: number
  /** Values written (`set` and loader results). */
  sets: number
  /** `del` calls. */
  deletes: number
  /** `invalidateTag` calls. */
  tagInvalidations: number
  /** `expire` calls. */
  expires: number
  /** Answers with a value kept past its ttl for its grace (soft timeouts, fail-safe, graceBackoff). */
  staleServed: number
  /** Callers answered with the stale value because the lookup took longer than `softTimeout`. */
  softTimeouts: number
  /** Loader failures answered with the value kept for its grace. */
  failSafeActivations: number
  /** Lookups that went on after their callers were answered (soft timeouts, eager refreshes) and ended well. */
  backgroundRefreshes: number
  /** Of those, the ones whose loader failed (the graced value stayed in place). */
  backgroundRefreshFailures: number
  /** Redis commands that failed or timed out. */
  redisErrors: number
  /** Unreadable values found under the prefix (treated as misses). */
  redisCorruptValues: number
  /** Redis reads not copied into L1 because an invalidation raced with them. */
  l1FillsSkipped: number
  /** Loader values not cached because their key or a tag was invalidated while they loaded. */
  loadsDiscarded: number
  /** Live L1 entries. */
  l1Entries: number
  /** L1 entries evicted to stay within `l1.maxEntries`. */
  l1Evictions: number
  /** L1 entries dropped because their TTL ran out. */
  l1Expirations: number
  /** Operations in flight. */
  pendingOperations: number
  /** Stampede locks taken by this process. */
  lockAcquired: number
  /** Misses that found another process's lock and waited for its value. */
  lockWaits: number
  /** Waits that ended with the other process's value (no loader call here). */
  lockWaitHits: number
  /** Waits that ran out (`lock.wait`) and loaded anyway. */
  lockWaitTimeouts: number
  /** Stampede locks held now. */
  locksHeld: number
  /** Bus messages published. */
  busSent: number
  /** Bus messages received from other processes. */
  busReceived: number
  /** Unreadable bus messages. */
  busMalformed: number
  /** Re-subscriptions of the bus after a lost connection (each one clears L1). */
  busResubscriptions: number
  /** Acknowledgements this process sent for other processes' writes and invalidations. */
  busAcksSent: number
  /** Writes and invalidations that stopped waiting for the other processes' acknowledgements
   * at `bus.ackTimeout` (a process paused, overloaded or of an older version). */
  busAckTimeouts: number
  /** Whether the invalidation bus is subscribed now (false without Redis). */
  busConnected: boolean
  /** Circuit breaker in front of Redis: 0 closed, 1 open (Redis skipped), 2 half-open (probing). */
  breakerState: number
  /** Times the breaker opened. */
  breakerOpened: number
  /** Redis commands skipped while the breaker was open. */
  redisSkipped: number
  /** Failed invalidations (and writes, as deletes) replayed after Redis came back. */
  replayed: number
  /** Invalidations waiting for Redis to come back, counting one being replayed until Redis answers it. */
  replaysPending: number
  /** Times more than 10 000 distinct keys and tags waited for replay, and the queue became one
   * invalidation of the whole prefix (every entry deleted, every L1 emptied). Nothing is dropped. */
  replaysCollapsed: number
  /** Redis error replies (`OOM`, `BUSY`, `NOPERM`, `READONLY`, ...); also counted in `redisErrors`. */
  redisRefused: number
  /** `set`/`del`/`invalidateTag` calls that rejected with `ERR_MLC_REDIS_REFUSED` (kept for replay). */
  invalidationsRefused: number
  /** Invalidations that waited for `redis.waitReplicas` replicas in vain (`WAIT` timed out). */
  replicaWaitTimeouts: number
  /** l1Hits / (l1Hits + l1Misses), 0 when there were none. */
  l1HitRatio: number
  /** l2Hits / (l2Hits + l2Misses), 0 when there were none. */
  l2HitRatio: number
}

/** The stable `code` of every error this package throws or rejects with. */
export type MultiLevelCacheErrorCode =
  | 'ERR_MLC_INVALID_KEY'
  | 'ERR_MLC_KEY_TOO_LONG'
  | 'ERR_MLC_INVALID_VALUE'
  | 'ERR_MLC_VALUE_TOO_LARGE'
  | 'ERR_MLC_INVALID_TTL'
  | 'ERR_MLC_INVALID_TAGS'
  | 'ERR_MLC_INVALID_OPTION'
  | 'ERR_MLC_INVALID_LOADER'
  | 'ERR_MLC_CLOSED'
  | 'ERR_MLC_LOADER_TIMEOUT'
  | 'ERR_MLC_MISSING_DEPENDENCY'
  | 'ERR_MLC_REDIS_REFUSED'

/** The error codes, by name. */
export declare const codes: Readonly<{
  INVALID_KEY: 'ERR_MLC_INVALID_KEY'
  KEY_TOO_LONG: 'ERR_MLC_KEY_TOO_LONG'
  INVALID_VALUE: 'ERR_MLC_INVALID_VALUE'
  VALUE_TOO_LARGE: 'ERR_MLC_VALUE_TOO_LARGE'
  INVALID_TTL: 'ERR_MLC_INVALID_TTL'
  INVALID_TAGS: 'ERR_MLC_INVALID_TAGS'
  INVALID_OPTION: 'ERR_MLC_INVALID_OPTION'
  INVALID_LOADER: 'ERR_MLC_INVALID_LOADER'
  CLOSED: 'ERR_MLC_CLOSED'
  LOADER_TIMEOUT: 'ERR_MLC_LOADER_TIMEOUT'
  MISSING_DEPENDENCY: 'ERR_MLC_MISSING_DEPENDENCY'
  REDIS_REFUSED: 'ERR_MLC_REDIS_REFUSED'
}>

/** Options of `registerMetrics`. */
export interface RegisterMetricsOptions {
  /** Value of the `cache` label of every series of this cache. @default cache.prefix */
  name?: string
  /** Read Redis' `INFO stats` (keyspace hits and misses) at most this often, in seconds. @default 10 */
  redisInfoInterval?: number
}

/** The subset of a prom-client `Registry` that `registerMetrics` uses. */
export interface MetricsRegistry {
  registerMetric(metric: any): void
}

/**
 * Registers prom-client collectors for `cache` on `registry` (prom-client's default registry
 * when omitted): `cache_hits_total{layer="memory"|"redis"}`, `cache_misses_total{layer}`,
 * loader, lock, bus, Redis error and circuit-breaker series, L1 size and evictions, Redis'
 * `INFO stats` hit ratio, and the `cache_operation_duration_seconds` histogram per outcome.
 * Values are read from the cache's counters at scrape time. Every series carries a `cache`
 * label; several caches can share a registry when their names differ. prom-client is an
 * optional peer dependency: without it this throws `ERR_MLC_MISSING_DEPENDENCY`.
 * @returns a function that unregisters this cache from the registry's collectors
 */
export declare function registerMetrics(
  cache: MultiLevelCache,
  registry?: MetricsRegistry,
  options?: RegisterMetricsOptions,
): () => void

/**
 * A two-level cache: L1 in process (Rust, moka), L2 in Redis, shared by every instance.
 *
 * Values are anything JSON can carry. They are stored as JSON and read back as
 * `JSON.parse` gives them (a `Date` comes back as a string), the same from either layer.
 * Objects returned by L1 hits are **shared** between callers (like node-cache's
 * `useClones: false`): do not mutate them.
 *
 * Keys are non-empty, well-formed strings of at most 1024 characters.
 * `null` means "missing"; `0`, `false`, `''`, `[]` and `{}` are values.
 */
export declare class MultiLevelCache implements BaseCache {
  /** Throws `TypeError`/`RangeError` (`ERR_MLC_INVALID_OPTION`) naming a bad option. */
  constructor(options?: MultiLevelCacheOptions)
  /** The prefix in use. */
  readonly prefix: string
  /**
   * L1, then Redis (a hit is copied into L1), then the constructor's `loader` (its value is
   * written to both layers). Resolves `null` on a miss.
   */
  get<T>(key: string): Promise<T | null>
  /**
   * Writes to L1 at once and to Redis; resolves when Redis has it and every other process
   * dropped its copy (or Redis was unreachable: the key is then deleted from Redis once it is
   * back). When Redis refuses the value (`OOM`) the key is deleted from Redis instead. Rejects
   * with `ERR_MLC_REDIS_REFUSED` (`err.redisCode`: Redis' reply) only when Redis refused even
   * that past the retry bound; the delete is then retried until Redis applies it. Rejects
   * with `ERR_MLC_INVALID_VALUE` (nothing written) for a value JSON cannot carry or writes as
   * `null`: `null`, `undefined`, `NaN`, `±Infinity`, an invalid `Date`.
   */
  set<T>(key: string, value: T, options?: SetOptions): Promise<void>
  /**
   * Removes the key from L1 and Redis, and from every other process's L1 before resolving.
   * Rejects with `ERR_MLC_REDIS_REFUSED` when Redis refused it (`BUSY` past the retry bound,
   * `NOPERM`, ...): it is then retried until Redis applies it.
   */
  del(key: string): Promise<void>
  /**
   * Marks the key stale in every process before resolving: the next read loads afresh, and the
   * old value remains only as the fail-safe copy within its grace (an entry without grace is
   * deleted). Rejects like `del`.
   */
  expire(key: string): Promise<void>
  /**
   * Whether a fresh value of the key is cached in L1 or Redis (the loader is not consulted; a
   * value kept for its grace does not count).
   */
  exists(key: string): Promise<boolean>
  /**
   * Cache-aside read: L1, then Redis, then `loader(key, ctx)`, whose result is written to both
   * layers with `options`. Concurrent calls for one key share one loader call, across
   * processes. A loader result of `null`/`undefined` is returned and not cached. With a grace,
   * a loader failure is answered by the graced value (fail-safe), and `softTimeout` answers
   * with it when the loader is slow.
   */
  getOrSet<T>(key: string, loader: Loader<T>, options?: GetOrSetOptions): Promise<T>
  /**
   * Makes every entry tagged `tag` a miss, in Redis (O(1), whatever the tag's size) and in
   * every process's L1, before resolving. With `{ mode: 'expire' }` they are stale instead:
   * kept as fail-safe copies within their grace. Rejects with `ERR_MLC_REDIS_REFUSED` like `del`.
   */
  invalidateTag(tag: string, options?: InvalidateTagOptions): Promise<void>
  /** Counters: hits and misses per layer, loader calls, sizes, ratios. */
  stats(): CacheStats
  /**
   * Rejects later calls with `ERR_MLC_CLOSED`, lets calls in flight settle (0.8 s of grace;
   * callers still waiting for a loader then reject with `ERR_MLC_CLOSED`), closes the Redis
   * connection and drops L1. Resolves once every call has settled; leaves no timer that keeps
   * the process alive. Idempotent.
   */
  close(): Promise<void>
}
