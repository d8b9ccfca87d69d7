'use strict'
// A soak-test process (see soak.test.js): one MultiLevelCache in front of a "database" that is
// a separate redis-server holding a version number per key (`ver:<key>`, the source of truth).
// It runs a mixed load for a fixed time and reports every read and update with wall-clock
// timestamps, so the parent can check freshness across processes.
//
// Driven over IPC by soak.test.js (forkWorker in workers.js; the protocol is in ipc_child.js).

const path = require('node:path')
const { serve } = require('./ipc_child.js')
const { performance } = require('node:perf_hooks')
const Redis = require('ioredis')
const { MultiLevelCache } = require(path.join(__dirname, '..', '..'))

const wallMs = () => performance.timeOrigin + performance.now()
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

let cache
let db
let worker = 0

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

async function until(check, timeoutMs) {
  const deadline = Date.now() + timeoutMs
  for (let i = 0; i < 100000 && Date.now() < deadline; i++) {
    if (check()) return true
    await sleep(5)
  }
  return check()
}

const handlers = {
  async init({ cacheOptions, dbUrl, workerId }) {
    worker = workerId
    db = new Redis(dbUrl, { maxRetriesPerRequest: 1 })
    db.on('error', () => {})
    cache = new MultiLevelCache(cacheOptions)
    const connected = await until(() => cache.stats().busConnected, 5000)
    return { pid: process.pid, connected }
  },

  /**
   * Runs `loops` concurrent loops until wall-clock `endAt` (and at most `maxOps` operations
   * each). Reads: [key, start, end, version (-1: null), busConnected at start, via get].
   * Updates: [key, version, start, done, via tag].
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
    const loop = async () => {
      for (let n = 0; n < maxOps && wallMs() < endAt; n++) {
        const k = Math.floor(rnd() * keys)
        const key = keyName(k)
        try {
          if (rnd() < updateRatio) {
            const start = wallMs()
            const v = await db.incr(`ver:${key}`)
            const byTag = rnd() < 0.5
            if (byTag) await cache.invalidateTag(tagOf(k))
            else await cache.del(key)
            updates.push([k, v, start, wallMs(), byTag ? 1 : 0])
          } else {
            const viaGet = rnd() < 0.1
            const bus = cache.stats().busConnected ? 1 : 0
            const start = wallMs()
            const value = viaGet ? await cache.get(key) : await cache.getOrSet(key, loader, { tags: [tagOf(k), 'all'] })
            const end = wallMs()
            if (value !== null && (typeof value !== 'object' || value.key !== key || typeof value.v !== 'number')) {
              throw new Error(`read of ${key} returned ${JSON.stringify(value)}`)
            }
            reads.push([k, start, end, value === null ? -1 : value.v, bus, viaGet ? 1 : 0])
          }
        } catch (e) {
          if (errors.length < 20) errors.push({ message: e && e.message, code: e && e.code, at: wallMs() })
          else errors.push(null)
        }
        await sleep(1 + Math.floor(rnd() * 4))
      }
    }
    await Promise.all(Array.from({ length: loops }, loop))
    return { worker, reads, updates, errors, loaderCalls, stats: cache.stats() }
  },

  /** The value of every key through getOrSet now, with the source's version just before/after. */
  async final({ keys }) {
    const out = []
    for (let k = 0; k < keys; k++) {
      const key = keyName(k)
      const before = Number(await db.get(`ver:${key}`)) || 0
      const value = await cache.getOrSet(key, async () => ({ key, v: Number(await db.get(`ver:${key}`)) || 0 }), { tags: [tagOf(k), 'all'] })
      const after = Number(await db.get(`ver:${key}`)) || 0
      out.push({ key, got: value && value.v, before, after })
    }
    return { out, stats: cache.stats() }
  },

  stats() {
    return cache.stats()
  },

  async close() {
    if (cache) await cache.close()
    if (db) db.disconnect()
    return {}
  },
}

serve(handlers)
