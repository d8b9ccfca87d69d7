'use strict'
// Helpers for the tests of the "golden rule" (Redis failing never breaks a call): timed calls,
// a guard that records unhandled rejections and uncaught exceptions during a test, and short
// Redis bounds so that failures are detected quickly.

const { performance } = require('node:perf_hooks')
const assert = require('node:assert/strict')
const { percentile } = require('./measure.js')
const { MultiLevelCache, eventually } = require('./cache.js')

/** Short bounds used by most failure tests (seconds). */
const FAST = Object.freeze({ commandTimeout: 0.2, connectTimeout: 0.3, breakerCooldown: 0.5 })

/**
 * Records every unhandled rejection and uncaught exception while the test runs. Call
 * `guard.assertNone(assert)` at the end of the test (after letting the event loop turn).
 * The listeners are removed when the test ends.
 * @param {import('node:test').TestContext} t
 */
function guardProcess(t) {
  const seen = []
  const onRejection = (reason) => { seen.push({ kind: 'unhandledRejection', reason }) }
  const onException = (err) => { seen.push({ kind: 'uncaughtException', reason: err }) }
  process.on('unhandledRejection', onRejection)
  process.on('uncaughtExceptionMonitor', onException)
  t.after(() => {
    process.off('unhandledRejection', onRejection)
    process.off('uncaughtExceptionMonitor', onException)
  })
  return {
    seen,
    async assertNone(assert) {
      // let pending microtasks and timers surface anything
      await new Promise((r) => setTimeout(r, 20))
      await new Promise((r) => setImmediate(r))
      assert.deepEqual(seen.map((s) => `${s.kind}: ${s.reason && (s.reason.stack || s.reason)}`), [])
    },
  }
}

/** Runs `fn()` and resolves { ok, value | error, ms }; never rejects. */
async function timed(fn) {
  const t0 = performance.now()
  try {
    const value = await fn()
    return { ok: true, value, ms: performance.now() - t0 }
  } catch (error) {
    return { ok: false, error, ms: performance.now() - t0 }
  }
}

/** Rejects with a clear error if `promise` has not settled within `ms`. */
function within(promise, ms, what) {
  let timer
  const bound = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms)
  })
  return Promise.race([promise, bound]).finally(() => clearTimeout(timer))
}

/**
 * A factory of caches that are closed after the test `t` (bounded: close never waits on Redis
 * more than ~1 s, and cleanup gives up after 3 s).
 * @param {import('node:test').TestContext} t
 */
function caches(t) {
  const made = []
  t.after(async () => {
    await Promise.allSettled(made.map((c) => within(c.close(), 3000, 'close() in cleanup')))
  })
  return (options) => {
    const c = new MultiLevelCache(options)
    made.push(c)
    return c
  }
}

/** Whether every cache's bus subscribed within 3 s. */
function busUp(...cs) {
  return eventually(() => cs.every((c) => c.stats().busConnected), { timeoutMs: 3000 })
}

/** Asserts that every cache's bus subscribed within 3 s. */
async function connected(...cs) {
  assert.ok(await busUp(...cs), 'a cache did not subscribe to the bus within 3 s')
}

/** "p50 0.4 ms, p99 1.2 ms, max 3.1 ms (n=200)" with one decimal. */
function latencyLine(samples) {
  if (samples.length === 0) return 'no samples'
  const f = (x) => `${x.toFixed(1)} ms`
  return `p50 ${f(percentile(samples, 50))}, p99 ${f(percentile(samples, 99))}, max ${f(Math.max(...samples))} (n=${samples.length})`
}

module.exports = { FAST, guardProcess, timed, within, latencyLine, caches, busUp, connected }
