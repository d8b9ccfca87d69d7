'use strict'
// Per-test scaffolding: a unique prefix, caches that are always closed, an ioredis client that
// is always quit, and the Redis names of the prefix (see core/src/keys.rs). No mocks.

const { clockName, entryName, markerName } = require('./layout.js')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { MultiLevelCache, codes } = require('../..')
const { SHARED_URL, uniquePrefix, client, eventually } = require('./redis.js')

const ROOT = path.join(__dirname, '..', '..')

/**
 * Everything one test needs. Registers cleanup with `t.after`: every cache made here is closed,
 * the prefix's keys are deleted from Redis and the ioredis client is quit.
 * @param {import('node:test').TestContext} t
 * @param {{ name?: string, url?: string }} [opts]
 */
function scope(t, opts = {}) {
  const url = opts.url || SHARED_URL
  const prefix = uniquePrefix(opts.name || 'mlc')
  const caches = []
  const prefixes = [prefix]
  let redis
  const s = {
    url,
    prefix,
    /** A cache on this test's Redis and prefix (options override both). */
    cache(options = {}) {
      const c = new MultiLevelCache({ redisUrl: url, prefix, ...options })
      caches.push(c)
      return c
    },
    /** Registers a cache made elsewhere so that it is closed after the test. */
    track(c) {
      caches.push(c)
      return c
    },
    /** Deletes the keys of another prefix too when the test ends. */
    alsoClean(p) {
      prefixes.push(p)
      return p
    },
    /** A lazily made ioredis client on this test's Redis. */
    get redis() {
      if (redis === undefined) redis = client(url)
      return redis
    },
    entryKey: (key, p = prefix) => entryName(p, key),
    /** The Redis key of a tag's marker (see core/src/keys.rs). */
    tagKey: (tag, p = prefix) => markerName(p, tag),
    clockKey: (p = prefix) => clockName(p),
    /** The parsed envelope of `key` in Redis, or null. */
    async envelope(key, p = prefix) {
      const raw = await s.redis.get(s.entryKey(key, p))
      return raw === null ? null : JSON.parse(raw)
    },
    /** Whether Redis holds a live entry of `key` (see `liveEntry`). */
    inRedis: (key, p = prefix) => liveEntry(s.redis, p, key),
    /** Every Redis key of the prefix (bounded SCAN). */
    async redisKeys(p = prefix) {
      const out = []
      let cursor = '0'
      for (let i = 0; i < 10000; i++) {
        const [next, keys] = await s.redis.scan(cursor, 'MATCH', `${p}:v3:*`, 'COUNT', 1000)
        out.push(...keys)
        cursor = next
        if (cursor === '0') break
      }
      return out.sort()
    },
  }
  t.after(async () => {
    await Promise.allSettled(caches.map((c) => c.close()))
    const r = s.redis
    for (const p of prefixes) {
      try {
        const keys = await s.redisKeys(p)
        if (keys.length) await r.del(...keys)
      } catch {}
    }
    try { await r.quit() } catch { r.disconnect() }
  })
  return s
}

/**
 * Whether Redis holds a live entry of `key` under `prefix`: present, and valid under its tags'
 * markers (each present and not newer than the entry's birth `b`; see core/src/l2.rs). An entry
 * invalidated by a tag stays in Redis as dead bytes until its TTL: this reads it as absent, as
 * every process does. An independent reading of the rule, checked against the cache's.
 * @param {import('ioredis').Redis} redis
 */
async function liveEntry(redis, prefix, key) {
  const raw = await redis.get(entryName(prefix, key))
  if (raw === null) return false
  const env = JSON.parse(raw)
  for (const tag of env.t || []) {
    const marker = await redis.get(markerName(prefix, tag))
    if (marker === null || BigInt(marker) > BigInt(env.b)) return false
  }
  return true
}

/** Counter differences between two `stats()` snapshots (only the counters named in `after`). */
function delta(before, after) {
  const d = {}
  for (const k of Object.keys(after)) d[k] = after[k] - before[k]
  return d
}

/** Picks some fields of an object (to compare counters with deepEqual). */
function pick(obj, fields) {
  const out = {}
  for (const f of fields) out[f] = obj[f]
  return out
}

/**
 * Asserts that `promiseOrFn` rejects with an error of class `Cls` and code `code`.
 * Returns the error for more checks.
 */
async function rejectsWith(assert, promise, Cls, code) {
  let caught
  await assert.rejects(promise, (err) => {
    caught = err
    return true
  })
  assert.ok(caught instanceof Cls, `expected a ${Cls.name}, got ${caught && caught.constructor && caught.constructor.name}: ${caught && caught.message}`)
  assert.equal(caught.code, code)
  return caught
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms))
}

/**
 * Runs `node -e script` in a child process (cwd = the package root), killed after `timeoutMs`.
 * Resolves { code, signal, stdout, stderr, timedOut, ms }.
 * @param {string} script
 * @param {{ env?: NodeJS.ProcessEnv, timeoutMs?: number }} [opts]
 */
function runNode(script, { env = process.env, timeoutMs = 2000 } = {}) {
  return new Promise((resolve) => {
    const started = Date.now()
    const child = spawn(process.execPath, ['-e', script], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let timedOut = false
    child.stdout.on('data', (d) => { stdout += d })
    child.stderr.on('data', (d) => { stderr += d })
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, timeoutMs)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, timedOut, ms: Date.now() - started })
    })
  })
}

module.exports = { MultiLevelCache, codes, scope, liveEntry, delta, pick, rejectsWith, sleep, runNode, eventually, SHARED_URL, ROOT }
