'use strict'
// A fault-injection soak process (see fault_soak.test.js): one MultiLevelCache in front of a
// "database" that is a separate redis-server holding a version number per key (`ver:<key>`,
// the source of truth). It runs a mixed load for a fixed time and reports every read and
// update with wall-clock timestamps, so the parent can check freshness across processes while
// the cache's redis-server evicts, refuses (OOM, BUSY), freezes and restarts.
//
// It grew from the earlier restart-only soak's worker (now replaced by this one). What it adds:
//  - an update whose `del`/`invalidateTag` rejects with ERR_MLC_REDIS_REFUSED is not an error
//    (the package promises exactly that rejection when Redis refused the invalidation past the
//    retry bound) but an update that did NOT complete: the source of truth changed, the cache
//    may serve the old value until the queued replay lands. Its "done" time is the first moment
//    this process later sees `stats().replaysPending === 0` (polled every 5 ms): from then on
//    the replay has been applied by Redis, announced on the bus and settled in this process's
//    L1, so it is judged like any completed update (plus the cross-process grace for the other
//    process). Rejections are counted per `redisCode`;
//  - one key in four is cached without tags (see `untagged`);
//  - the cache reports its problems to a silent logger that counts them per code (no warning
//    noise on stderr);
//  - `stats` can be asked for at any time (the parent snapshots them between fault phases),
//    and `settle` waits (bounded) until no replay is pending.
//
// Driven over IPC by fault_soak.test.js (forkWorker in workers.js; the protocol is in
// ipc_child.js).

const path = require('node:path')
const { serve } = require('./ipc_child.js')
const { performance } = require('node:perf_hooks')
const Redis = require('ioredis')
const { MultiLevelCache } = require(path.join(__dirname, '..', '..'))

const wallMs = () => performance.timeOrigin + performance.now()
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

const REFUSED = 'ERR_MLC_REDIS_REFUSED'

let cache
let db
let worker = 0
/** problems the cache logged, per code (MLC_REDIS_OOM, MLC_REDIS_BUSY, ...) */
const problems = {}
/** rejected updates whose replay has not been seen complete yet (entries of `rejections`) */
let unresolved = []
/** every ERR_MLC_REDIS_REFUSED rejection: [key, version, start, rejectedAt, redisCode, byTag, done (-1: not yet)] */
const rejections = []

/** mulberry32 */
function prng(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const keyName = (i) => `item:${i}`
const tagOf = (i) => `tag:item:${i}`
/**
 * One key in four is cached without tags (and updated by `del` only). Redis refuses a loader's
 * write of such a key when memory is full (OOM under noeviction): a tagged write renews its
 * markers' TTL first (a write Redis allows), after which Redis lets the script's SET through.
 */
const untagged = (i) => i % 4 === 0
const readOptions = (i) => untagged(i) ? {} : { tags: [tagOf(i), 'all'] }

async function until(check, timeoutMs) {
  const deadline = Date.now() + timeoutMs
  for (let i = 0; i < 100000 && Date.now() < deadline; i++) {
    if (check()) return true
    await sleep(5)
  }
  return check()
}

/** Marks every rejected update seen so far as done when no replay is pending any more. */
function resolveRejections() {
  if (unresolved.length === 0) return
  if (cache.stats().replaysPending !== 0) return
  const now = wallMs()
  for (const r of unresolved) r[6] = now
  unresolved = []
}

function countingLogger() {
  const note = (fields) => {
    const code = (fields && fields.code) || 'unknown'
    problems[code] = (problems[code] || 0) + 1
  }
  return { error: note, warn: note, info: note, debug: note }
}

const handlers = {
  async init({ cacheOptions, dbUrl, workerId }) {
    worker = workerId
    db = new Redis(dbUrl, { maxRetriesPerRequest: 1 })
    db.on('error', () => {})
    cache = new MultiLevelCache({ ...cacheOptions, logger: countingLogger() })
    const connected = await until(() => cache.stats().busConnected, 5000)
    return { pid: process.pid, connected }
  },

  /**
   * Runs `loops` concurrent loops until wall-clock `endAt` (and at most `maxOps` operations
   * each). Reads: [key, start, end, version (-1: null), busConnected at start, via get].
   * Updates (completed): [key, version, start, done, via tag].
   * Rejections (ERR_MLC_REDIS_REFUSED): see `rejections` above.
   */
  async run({ endAt, loops, keys, updateRatio, seed, maxOps }) {
    const rnd = prng(seed)
    const reads = []
    const updates = []
    const errors = []
    let loaderCalls = 0
    const loader = async (key) => {
      loaderCalls++
      const v = Number(await db.get(`ver:${key}`)) || 0
      const pause = Math.floor(rnd() * 3)
      if (pause) await sleep(pause)
      return { key, v }
    }
    let running = true
    // watches for the replays of rejected updates (bounded: one check every 5 ms while running)
    const watcher = (async () => {
      for (let i = 0; i < 1_000_000 && running; i++) {
        resolveRejections()
        await sleep(5)
      }
    })()
    const loop = async () => {
      for (let n = 0; n < maxOps && wallMs() < endAt; n++) {
        const k = Math.floor(rnd() * keys)
        const key = keyName(k)
        try {
          if (rnd() < updateRatio) {
            const start = wallMs()
            const v = await db.incr(`ver:${key}`)
            const byTag = rnd() < 0.5 && !untagged(k)
            try {
              if (byTag) await cache.invalidateTag(tagOf(k))
              else await cache.del(key)
              updates.push([k, v, start, wallMs(), byTag ? 1 : 0])
            } catch (e) {
              if (!e || e.code !== REFUSED) throw e
              const r = [k, v, start, wallMs(), String(e.redisCode), byTag ? 1 : 0, -1]
              rejections.push(r)
              unresolved.push(r)
            }
          } else {
            const viaGet = rnd() < 0.1
            const bus = cache.stats().busConnected ? 1 : 0
            const start = wallMs()
            const value = viaGet ? await cache.get(key) : await cache.getOrSet(key, loader, readOptions(k))
            const end = wallMs()
            if (value !== null && (typeof value !== 'object' || value.key !== key || typeof value.v !== 'number')) {
              throw new Error(`read of ${key} returned ${JSON.stringify(value)}`)
            }
            reads.push([k, start, end, value === null ? -1 : value.v, bus, viaGet ? 1 : 0])
          }
        } catch (e) {
          if (errors.length < 20) errors.push({ message: e && e.message, code: e && e.code, redisCode: e && e.redisCode, at: wallMs() })
          else errors.push(null)
        }
        await sleep(1 + Math.floor(rnd() * 4))
      }
    }
    await Promise.all(Array.from({ length: loops }, loop))
    running = false
    await watcher
    resolveRejections()
    return { worker, reads, updates, rejections, errors, loaderCalls, problems, stats: cache.stats() }
  },

  /** Waits (at most `timeoutMs`) until no replay is pending; resolves the rejections' done time. */
  async settle({ timeoutMs = 10000 }) {
    const ok = await until(() => cache.stats().replaysPending === 0, timeoutMs)
    resolveRejections()
    return { ok, stats: cache.stats(), rejections, problems }
  },

  /** The value of every key through getOrSet now, with the source's version just before/after. */
  async final({ keys }) {
    const out = []
    for (let k = 0; k < keys; k++) {
      const key = keyName(k)
      const before = Number(await db.get(`ver:${key}`)) || 0
      const value = await cache.getOrSet(key, async () => ({ key, v: Number(await db.get(`ver:${key}`)) || 0 }), readOptions(k))
      const after = Number(await db.get(`ver:${key}`)) || 0
      out.push({ key, got: value && value.v, before, after })
    }
    return { out, stats: cache.stats() }
  },

  stats() {
    return { at: wallMs(), stats: cache.stats(), rejected: rejections.length, problems: { ...problems } }
  },

  async close() {
    if (cache) await cache.close()
    if (db) db.disconnect()
    return {}
  },
}

serve(handlers)
