'use strict'
// Deterministic test values: plain objects of 20 fields whose JSON text is exactly 1024 bytes
// (ASCII only), the same for every system and every run. `makeValue(i)` depends on `i` only.

const VALUE_BYTES = 1024
const ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'

/** mulberry32: a small seeded PRNG returning floats in [0, 1). */
function prng(seed) {
  let a = seed >>> 0
  return function next() {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function word(rnd, n) {
  let s = ''
  for (let i = 0; i < n; i++) s += ALPHABET[Math.floor(rnd() * ALPHABET.length)]
  return s
}

/**
 * @param {number} i index of the value (any non-negative integer)
 * @returns {Record<string, unknown>} 20 top-level fields, JSON length exactly VALUE_BYTES
 */
function makeValue(i) {
  const rnd = prng(0x9e3779b9 ^ Math.imul(i + 1, 0x85ebca6b))
  const base = Date.UTC(2024, 0, 1)
  const v = {
    id: i,
    name: `${word(rnd, 8)} ${word(rnd, 10)}`,
    email: `${word(rnd, 10)}@example.com`,
    age: 18 + Math.floor(rnd() * 70),
    active: true,
    score: Math.round(rnd() * 1e6) / 100,
    balance: Math.round(rnd() * 1e8) / 100,
    createdAt: new Date(base + Math.floor(rnd() * 3e10)).toISOString(),
    updatedAt: new Date(base + 3e10 + Math.floor(rnd() * 3e9)).toISOString(),
    country: word(rnd, 2).toUpperCase(),
    city: word(rnd, 12),
    street: `${1 + Math.floor(rnd() * 999)} ${word(rnd, 16)}`,
    zip: String(10000 + Math.floor(rnd() * 89999)),
    phone: `+1-${String(Math.floor(rnd() * 1e10)).padStart(10, '0')}`,
    company: word(rnd, 20),
    role: ['admin', 'editor', 'viewer', 'owner'][Math.floor(rnd() * 4)],
    tags: [word(rnd, 6), word(rnd, 7), word(rnd, 5)],
    prefs: { theme: rnd() < 0.5 ? 'dark' : 'light', lang: 'en', notifications: rnd() < 0.5 },
    history: [Math.floor(rnd() * 1000), Math.floor(rnd() * 1000), Math.floor(rnd() * 1000), Math.floor(rnd() * 1000)],
    bio: '',
  }
  const missing = VALUE_BYTES - JSON.stringify(v).length
  if (missing < 0) throw new Error(`value ${i}: fixed fields already exceed ${VALUE_BYTES} bytes`)
  v.bio = word(rnd, missing)
  return v
}

module.exports = { VALUE_BYTES, makeValue, prng }
