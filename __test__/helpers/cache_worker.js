'use strict'
// A child process holding one MultiLevelCache, driven by IPC messages from a test (see
// workers.js; the protocol is in ipc_child.js). Loaders are described by plain data (functions
// cannot cross IPC): { delayMs, fail, never, value }.

const path = require('node:path')
const { serve, errorInfo } = require('./ipc_child.js')
const { performance } = require('node:perf_hooks')
const { MultiLevelCache } = require(path.join(__dirname, '..', '..'))

let cache
let loaderCalls = 0
const LOOP_CAP = 1_000_000

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const nowMs = () => performance.timeOrigin + performance.now()
const tick = () => new Promise((r) => setImmediate(r))

function makeLoader(spec = {}) {
  return async (key) => {
    loaderCalls++
    const n = loaderCalls
    if (spec.never) return new Promise(() => {})
    if (spec.delayMs) await sleep(spec.delayMs)
    if (spec.fail) {
      const e = new Error(spec.fail)
      e.code = 'TEST_LOADER_FAILED'
      throw e
    }
    return spec.value !== undefined ? spec.value : { key, pid: process.pid, n }
  }
}

/** Waits (bounded) until `check()` is true. */
async function until(check, timeoutMs) {
  const deadline = Date.now() + timeoutMs
  for (let i = 0; i < 100000 && Date.now() < deadline; i++) {
    if (await check()) return true
    await sleep(2)
  }
  return false
}

const handlers = {
  async init({ options }) {
    cache = new MultiLevelCache(options)
    const connected = await until(() => cache.stats().busConnected, 5000)
    return { pid: process.pid, connected }
  },

  ping() {
    return { pid: process.pid, at: nowMs() }
  },

  stats() {
    return { ...cache.stats(), ownLoaderCalls: loaderCalls }
  },

  /** `n` concurrent getOrSet calls on `key`, started at wall-clock time `startAt` (if given). */
  async burst({ key, n, loader, startAt, options }) {
    if (startAt) {
      const wait = startAt - Date.now()
      if (wait > 0) await sleep(Math.min(wait, 5000))
    }
    const fn = makeLoader(loader)
    const started = nowMs()
    const promises = []
    for (let i = 0; i < n; i++) promises.push(cache.getOrSet(key, fn, options))
    const settled = await Promise.allSettled(promises)
    const values = new Set()
    const errors = []
    let fulfilled = 0
    for (const r of settled) {
      if (r.status === 'fulfilled') {
        fulfilled++
        values.add(JSON.stringify(r.value))
      } else {
        errors.push(errorInfo(r.reason))
      }
    }
    return {
      fulfilled,
      rejected: errors.length,
      values: [...values],
      errorCodes: [...new Set(errors.map((e) => e.code))],
      samePromise: new Set(promises).size === 1,
      ms: nowMs() - started,
      ownLoaderCalls: loaderCalls,
      stats: cache.stats(),
    }
  },

  async get({ key }) {
    return { value: await cache.get(key), stats: cache.stats() }
  },

  async set({ key, value, options }) {
    await cache.set(key, value, options)
    return { at: nowMs() }
  },

  async del({ key }) {
    await cache.del(key)
    return { at: nowMs() }
  },

  async invalidateTag({ tag }) {
    await cache.invalidateTag(tag)
    return { at: nowMs() }
  },

  /**
   * Makes sure `key` is in this process's L1 with `expected`: first waits until this process
   * has received `busReceived` messages (so no older announcement can drop the copy later),
   * then reads it (copying it from Redis into L1).
   */
  async warm({ key, expected, busReceived, timeoutMs = 2000 }) {
    const received = await until(() => cache.stats().busReceived >= busReceived, timeoutMs)
    if (!received) return { ok: false, why: `busReceived ${cache.stats().busReceived} < ${busReceived}` }
    const value = await cache.get(key)
    const again = await cache.get(key) // an L1 hit if the copy was kept
    const s = cache.stats()
    const ok = JSON.stringify(value) === JSON.stringify(expected) && JSON.stringify(again) === JSON.stringify(expected) && s.l1Entries >= 1
    return { ok, value, l1Entries: s.l1Entries, why: ok ? undefined : `got ${JSON.stringify(value)}, l1Entries ${s.l1Entries}` }
  },

  /**
   * Resolves with the wall-clock time at which this process's L1 stopped holding `key` (its
   * entry count dropped below the count at arming), polling on every turn of the event loop.
   */
  async watchL1Drop({ timeoutMs = 1000 }) {
    const baseline = cache.stats().l1Entries
    const deadline = Date.now() + timeoutMs
    for (let i = 0; i < LOOP_CAP; i++) {
      if (cache.stats().l1Entries < baseline) return { dropped: true, at: nowMs() }
      if (Date.now() >= deadline) break
      await tick()
    }
    return { dropped: false, at: nowMs(), baseline }
  },

  async close() {
    if (cache) await cache.close()
    return {}
  },
}

serve(handlers)
