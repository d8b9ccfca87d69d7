'use strict'
// Helpers shared by scenarios (run inside the worker process).

const { makeValue } = require('../lib/values.js')

/** Key of value `i` in a key space (`item`, `warm`, ...). */
const keyOf = (space, i) => `${space}:${i}`

/** @param {string} space @param {number} n */
function keyList(space, n) {
  const keys = new Array(n)
  for (let i = 0; i < n; i++) keys[i] = keyOf(space, i)
  return keys
}

/**
 * Reads `sample` keys again and compares them with the expected values (after the timed part).
 * @returns {Promise<string[]>} problems found
 */
async function verifySample(sys, space, count, sample = 50) {
  const problems = []
  const step = Math.max(1, Math.floor(count / sample))
  for (let i = 0; i < count; i += step) {
    const got = await sys.get(keyOf(space, i))
    const want = JSON.stringify(makeValue(i))
    if (JSON.stringify(got) !== want) {
      problems.push(`value of ${keyOf(space, i)} differs from what was written (got ${String(JSON.stringify(got)).slice(0, 60)}...)`)
      if (problems.length >= 3) break
    }
  }
  return problems
}

/** Counter deltas between two `stats()` snapshots (only the numeric fields both have). */
function statsDelta(before, after) {
  if (!before || !after) return undefined
  const d = {}
  for (const k of Object.keys(after)) {
    if (k.endsWith('Ratio')) continue // derived, not a counter
    if (typeof after[k] === 'number' && typeof before[k] === 'number') d[k] = after[k] - before[k]
  }
  return d
}

/** `name +n` for every counter that moved (to explain a failed check). */
function describeDelta(delta) {
  if (!delta) return 'no counters'
  const moved = Object.entries(delta).filter(([, v]) => v !== 0).map(([k, v]) => `${k} ${v > 0 ? '+' : ''}${v}`)
  return moved.length ? moved.join(', ') : 'no counter moved'
}

module.exports = { keyOf, keyList, verifySample, statsDelta, describeDelta, makeValue }
