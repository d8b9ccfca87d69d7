'use strict'
// One clock for every process of a run: CLOCK_MONOTONIC (process.hrtime), in milliseconds with
// sub-microsecond resolution. It is the same clock in every process on the machine, so times
// taken in two processes can be subtracted (propagation delays, barriers, stale-read checks).

/** Milliseconds on the machine-wide monotonic clock. */
function nowMs() {
  const t = process.hrtime()
  return t[0] * 1e3 + t[1] / 1e6
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Resolves at `atMs` (nowMs() clock): a timer for the bulk, then a short spin (at most ~3 ms)
 * so that processes waiting for the same instant start within a few tens of microseconds.
 */
async function sleepUntil(atMs) {
  const coarse = atMs - nowMs() - 3
  if (coarse > 0) await sleep(coarse)
  const limit = nowMs() + 10 // bound the spin whatever happens
  while (nowMs() < atMs && nowMs() < limit) { /* spin */ }
}

/** Percentile (nearest rank) of a numeric array or typed array; NaN when empty. */
function percentile(xs, p) {
  const n = xs.length
  if (n === 0) return NaN
  const s = Float64Array.from(xs).sort()
  const rank = Math.min(n - 1, Math.max(0, Math.ceil((p / 100) * n) - 1))
  return s[rank]
}

/** Largest element (NaN when empty); safe for arrays too long to spread into Math.max. */
function maxOf(xs) {
  let m = -Infinity
  for (let i = 0; i < xs.length; i++) if (xs[i] > m) m = xs[i]
  return xs.length ? m : NaN
}

module.exports = { nowMs, sleep, sleepUntil, percentile, maxOf }
