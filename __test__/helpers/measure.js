'use strict'
// Small timing and polling helpers for the stampede and coherence tests. Every loop is bounded
// in iterations and in time.

const { performance } = require('node:perf_hooks')

/** Wall-clock milliseconds with sub-millisecond precision, comparable across processes. */
function wallMs() {
  return performance.timeOrigin + performance.now()
}

/** The p-th percentile (0..100, nearest rank) of `samples`. */
function percentile(samples, p) {
  if (samples.length === 0) return NaN
  const sorted = [...samples].sort((a, b) => a - b)
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank]
}

/** "p50 0.41 ms, p99 1.20 ms, max 1.31 ms (n=200)" */
function summary(samples) {
  const f = (x) => `${x.toFixed(3)} ms`
  return `p50 ${f(percentile(samples, 50))}, p99 ${f(percentile(samples, 99))}, max ${f(Math.max(...samples))} (n=${samples.length})`
}

/**
 * Polls `check()` on every turn of the event loop (setImmediate) until it is truthy or
 * `timeoutMs` passes. Resolves { ok, ms } where ms is the time from the call to success.
 */
async function pollImmediate(check, timeoutMs = 1000) {
  const t0 = performance.now()
  for (let i = 0; i < 5_000_000; i++) {
    if (await check()) return { ok: true, ms: performance.now() - t0 }
    if (performance.now() - t0 > timeoutMs) break
    await new Promise((r) => setImmediate(r))
  }
  return { ok: false, ms: performance.now() - t0 }
}

/** Polls `check()` every `intervalMs` until truthy or `timeoutMs` passes; resolves { ok, ms }. */
async function pollEvery(check, { timeoutMs = 1000, intervalMs = 5 } = {}) {
  const t0 = performance.now()
  for (let i = 0; i < 100_000; i++) {
    if (await check()) return { ok: true, ms: performance.now() - t0 }
    if (performance.now() - t0 > timeoutMs) break
    await new Promise((r) => setTimeout(r, intervalMs))
  }
  return { ok: false, ms: performance.now() - t0 }
}

module.exports = { wallMs, percentile, summary, pollImmediate, pollEvery }
