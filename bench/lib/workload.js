'use strict'
// Workload helpers of the multi-process scenarios: versioned values, a seeded PRNG and a Zipf
// sampler.

const { makeValue, prng } = require('./values.js')

const TEMPLATES = 512
let templates

/**
 * Value of key `i` at revision `rev`: one of 512 precomputed 1 KiB values (lib/values.js) with
 * `age` dropped, `id` set to `i` and `rev` added: 20 fields, about 1 KiB of JSON. Cheap (a
 * shallow copy), so a "database" load costs the same for every system.
 * @param {number} i
 * @param {number} rev
 */
function makeRevision(i, rev) {
  if (!templates) {
    templates = []
    for (let j = 0; j < TEMPLATES; j++) {
      const { age, ...rest } = makeValue(j)
      templates.push(rest)
    }
  }
  const v = { ...templates[i % TEMPLATES] }
  v.id = i
  v.rev = rev
  return v
}

/**
 * Zipf sampler over ranks 0..n-1 (rank 0 the most popular), P(k) proportional to 1/(k+1)^s.
 * Precomputes the CDF (n doubles) once; each sample is a binary search.
 * @param {number} n
 * @param {number} s
 * @param {() => number} rnd uniform [0, 1)
 */
function zipfSampler(n, s, rnd) {
  const cdf = new Float64Array(n)
  let sum = 0
  for (let k = 0; k < n; k++) {
    sum += 1 / Math.pow(k + 1, s)
    cdf[k] = sum
  }
  for (let k = 0; k < n; k++) cdf[k] /= sum
  return function sample() {
    const u = rnd()
    let lo = 0
    let hi = n - 1
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (cdf[mid] < u) lo = mid + 1
      else hi = mid
    }
    return lo
  }
}

module.exports = { makeRevision, prng, zipfSampler }
