'use strict'

/** @param {number[]} xs */
function median(xs) {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

/** @param {number[]} xs */
function summary(xs) {
  if (xs.length === 0) return { n: 0, median: NaN, min: NaN, max: NaN, spread: NaN }
  const med = median(xs)
  const min = Math.min(...xs)
  const max = Math.max(...xs)
  return { n: xs.length, median: med, min, max, spread: med > 0 ? (max - min) / med : NaN }
}

module.exports = { median, summary }
