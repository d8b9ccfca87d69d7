'use strict'
// Property-based tests with a seeded PRNG (no dependency): random keys, values, options and
// loaders against every method, and random constructor options. Properties:
//  - a call never throws synchronously; it resolves, or rejects with an Error whose `code`
//    starts with ERR_MLC_ (or with the very error a loader threw);
//  - the outcome matches the documented rules (README "Errors"): which inputs are valid, and
//    for invalid ones the code and class (key errors first, then loader, options, value);
//  - an invalid call writes nothing: no Redis entry for its key, no L1 entry;
//  - a valid set is read back as JSON.parse(JSON.stringify(value));
//  - every entry in Redis belongs to a key that was validly written; no lock is left behind;
//  - the cache still works afterwards;
//  - invalidateTag removes exactly the entries carrying the tag, whatever characters the tags
//    contain (the Lua script matches tags inside the envelope's JSON text);
//  - the constructor either builds a cache or throws TypeError/RangeError ERR_MLC_INVALID_OPTION.
//
// The seed is printed; rerun with MLC_FUZZ_SEED=<seed> to reproduce a failure.

const { entryName, kindOf } = require('./helpers/layout.js')
const { test } = require('node:test')
const assert = require('node:assert/strict')
const { performance } = require('node:perf_hooks')
const { scope, codes, sleep, runNode, MultiLevelCache, SHARED_URL } = require('./helpers/cache.js')
const { uniquePrefix } = require('./helpers/redis.js')

const SEED = process.env.MLC_FUZZ_SEED !== undefined ? Number(process.env.MLC_FUZZ_SEED) >>> 0 : (Math.random() * 2 ** 32) >>> 0
const ITERATIONS = 2000
const TIME_BUDGET_MS = 25000
const MAX_VALUE_BYTES = 64 * 1024

/** mulberry32: a small, fast, seeded 32-bit PRNG. */
function prng(seed) {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const r = {
    next,
    int: (n) => Math.floor(next() * n),
    pick: (xs) => xs[Math.floor(next() * xs.length)],
    chance: (p) => next() < p,
    string(len, alphabet) {
      let s = ''
      for (let i = 0; i < len; i++) s += alphabet[Math.floor(next() * alphabet.length)]
      return s
    },
  }
  return r
}

// characters that are special somewhere: JSON, Lua patterns, the bus format, Redis globs and
// the key layout, plus non-ASCII and surrogate halves
const ALPHABET = ['a', 'b', 'Z', '0', ' ', ':', '|', '{', '}', '[', ']', ',', '"', '\\', '*', '?', '%', '.', '-', '\u0000',
  '\n', '\u2028', 'é', '中', '😀', '\uD83D', '\uDE00', '\t', '/', "'"]

function genKey(r) {
  if (r.chance(0.55)) return r.chance(0.5) ? `k:${r.int(40)}` : r.string(1 + r.int(40), ALPHABET).replace(/[\uD800-\uDFFF]/g, '_')
  switch (r.int(18)) {
    case 0: return ''
    case 1: return 'k'.repeat(1025 + r.int(100))
    case 2: return 'k'.repeat(1024)
    case 3: return `\uD800${r.int(10)}`
    case 4: return `a\uDC00`
    case 5: return `😀${r.int(20)}`
    case 6: return '😀'.slice(0, 1)
    case 7: return r.int(1e6)
    case 8: return { k: 1 }
    case 9: return null
    case 10: return undefined
    case 11: return ['k']
    case 12: return Symbol('k')
    case 13: return new String('k') // eslint-disable-line no-new-wrappers
    case 14: return true
    case 15: return 10n
    default: return r.chance(0.5) ? `k:${r.int(40)}` : r.string(1 + r.int(40), ALPHABET)
  }
}

function circular() {
  const o = { a: 1 }
  o.self = o
  return o
}

const VALID_VALUES = [0, -0, 1.5, -7, 'str', '', true, false, [], {}, [1, 'a', null], { a: { b: [1, 2] } }, { n: NaN, i: Infinity }]

function genValue(r) {
  if (r.chance(0.5)) return r.chance(0.5) ? r.pick(VALID_VALUES) : { s: r.string(r.int(30), ALPHABET), n: r.int(1000) }
  switch (r.int(30)) {
    case 0: return undefined
    case 1: return null
    case 2: return () => 1
    case 3: return Symbol('v')
    case 4: return 10n
    case 5: return { a: 1n }
    case 6: return circular()
    case 7: return { toJSON() { return undefined } }
    case 8: return { toJSON() { throw new Error('toJSON fails') } }
    case 9: return { get boom() { throw new Error('getter fails') } }
    case 10: return 'x'.repeat(MAX_VALUE_BYTES + r.int(1000)) // too large
    case 11: return 'é'.repeat(Math.ceil(MAX_VALUE_BYTES / 2) + 10) // too large in bytes only
    case 12: return new Date(r.int(2e12))
    case 13: return NaN
    case 14: return Infinity
    case 15: return -0
    case 16: return 0
    case 17: return false
    case 18: return ''
    case 19: return []
    case 20: return {}
    case 21: return { toJSON() { return null } }
    case 22: return new Map([[1, 2]])
    case 23: return new Uint8Array([1, 2, 3])
    case 24: { // nested
      let v = { leaf: r.string(5, ALPHABET) }
      for (let i = 0, n = r.int(50); i < n; i++) v = r.chance(0.5) ? [v, i] : { i, v }
      return v
    }
    case 25: return 'y'.repeat(r.int(MAX_VALUE_BYTES - 10))
    case 26: return { __proto__: null, a: 1 }
    case 27: return JSON.parse('{"__proto__":{"x":1}}')
    default: return r.pick([1.5, -7, 'str', r.string(r.int(30), ALPHABET), true, [1, 'a', null], { a: { b: [1, 2] } }])
  }
}

const TTLS = [undefined, undefined, -1, 0, -0, NaN, Infinity, -Infinity, '5', 1e9, 1e9 + 1, 1e10, 0.0001, 0.5, 1, 5, 60,
  2 ** 53, Number.MIN_VALUE, null, true, {}, []]

function genTag(r) {
  switch (r.int(10)) {
    case 0: return ''
    case 1: return 't'.repeat(1025)
    case 2: return 1
    case 3: return null
    case 4: return '\uD800'
    default: return r.chance(0.5) ? `t${r.int(10)}` : r.string(1 + r.int(12), ALPHABET)
  }
}

function genTags(r) {
  switch (r.int(10)) {
    case 0: return undefined
    case 1: return 'a'
    case 2: return { length: 1, 0: 'a' }
    case 3: return Array.from({ length: 65 }, (_, i) => `t${i}`)
    case 4: return []
    default: return Array.from({ length: r.int(4) }, () => genTag(r))
  }
}

function genOptions(r) {
  if (r.chance(0.5)) {
    return r.pick([undefined, {}, { ttl: r.pick([1, 5, 60, 3600]) }, { tags: [`t${r.int(10)}`] },
      { ttl: 30, tags: Array.from({ length: r.int(5) }, () => r.string(1 + r.int(8), ALPHABET).replace(/[\uD800-\uDFFF]/g, '_')) }])
  }
  switch (r.int(10)) {
    case 0: return undefined
    case 1: return null
    case 2: return r.pick(['opts', 5, true, Symbol('o'), () => {}])
    case 3: return {}
    default: {
      const o = {}
      if (r.chance(0.6)) o.ttl = r.pick(TTLS)
      if (r.chance(0.6)) o.tags = genTags(r)
      if (r.chance(0.1)) o.other = 1 // unknown fields are ignored
      return o
    }
  }
}

// ---- the documented rules (README "Errors"), as a model ------------------------------------

const K = { cls: TypeError }
function keyError(key) {
  if (typeof key !== 'string' || key.length === 0) return { ...K, code: codes.INVALID_KEY }
  if (key.length > 1024) return { cls: RangeError, code: codes.KEY_TOO_LONG }
  if (!key.isWellFormed()) return { ...K, code: codes.INVALID_KEY }
  return null
}

function tagError(tag) {
  if (typeof tag !== 'string' || tag.length === 0) return { cls: TypeError, code: codes.INVALID_TAGS }
  if (tag.length > 1024) return { cls: RangeError, code: codes.INVALID_TAGS }
  if (!tag.isWellFormed()) return { cls: TypeError, code: codes.INVALID_TAGS }
  return null
}

function optionsError(o) {
  if (o === undefined || o === null) return null
  if (typeof o !== 'object') return { cls: TypeError, code: codes.INVALID_OPTION }
  if (o.ttl !== undefined && (typeof o.ttl !== 'number' || !(o.ttl > 0) || o.ttl > 1e9)) return { cls: RangeError, code: codes.INVALID_TTL }
  if (o.tags !== undefined) {
    if (!Array.isArray(o.tags)) return { cls: TypeError, code: codes.INVALID_TAGS }
    if (o.tags.length > 64) return { cls: RangeError, code: codes.INVALID_TAGS }
    for (const t of o.tags) {
      const e = tagError(t)
      if (e) return e
    }
  }
  return null
}

/** { json } for a value JSON can carry within the limit, else { error }. */
function valueModel(v) {
  const t = typeof v
  if (v === undefined || v === null || t === 'function' || t === 'symbol' || t === 'bigint') return { error: { cls: TypeError, code: codes.INVALID_VALUE } }
  let json
  try {
    json = JSON.stringify(v)
  } catch {
    return { error: { cls: TypeError, code: codes.INVALID_VALUE } }
  }
  if (json === undefined) return { error: { cls: TypeError, code: codes.INVALID_VALUE } }
  // NaN, ±Infinity, an invalid Date, a toJSON() returning null: JSON writes null, a miss
  if (json === 'null') return { error: { cls: TypeError, code: codes.INVALID_VALUE } }
  if (Buffer.byteLength(json, 'utf8') > MAX_VALUE_BYTES) return { error: { cls: RangeError, code: codes.VALUE_TOO_LARGE } }
  return { json }
}

/** A short printable description of any input, for failure messages. */
function show(x) {
  if (typeof x === 'symbol') return x.toString()
  if (typeof x === 'bigint') return `${x}n`
  if (typeof x === 'function') return 'function'
  try {
    const s = JSON.stringify(x)
    if (s === undefined) return String(x)
    return s.length > 400 ? `${s.slice(0, 400)}…(${s.length})` : s
  } catch {
    return Object.prototype.toString.call(x)
  }
}

/** Calls a method, asserting it returns a Promise rather than throwing; resolves its outcome. */
async function outcome(fn, what) {
  let p
  try {
    p = fn()
  } catch (e) {
    assert.fail(`${what} threw synchronously: ${e && e.stack}`)
  }
  assert.ok(p instanceof Promise, `${what} did not return a Promise`)
  const t0 = performance.now()
  try {
    return { ok: true, value: await p, ms: performance.now() - t0 }
  } catch (error) {
    return { ok: false, error, ms: performance.now() - t0 }
  }
}

function assertMlcError(err, what, allowed) {
  assert.ok(err instanceof Error, `${what} rejected with a non-Error: ${show(err)}`)
  assert.equal(typeof err.code, 'string', `${what} rejected without a code: ${err.stack}`)
  assert.ok(err.code.startsWith('ERR_MLC_'), `${what} rejected with code ${err.code}`)
  if (allowed) {
    assert.equal(err.code, allowed.code, `${what}: code`)
    assert.ok(err instanceof allowed.cls, `${what}: ${err.constructor.name} instead of ${allowed.cls.name} (${err.code})`)
  }
}

test(`random calls: every outcome follows the documented rules and invalid calls write nothing (seed ${SEED})`, async (t) => {
  t.diagnostic(`seed ${SEED} (MLC_FUZZ_SEED=${SEED} reproduces this run)`)
  const r = prng(SEED)
  const s = scope(t, { name: 'fuzz' })
  const c = s.cache({ l1: { ttl: 60 }, limits: { maxValueBytes: MAX_VALUE_BYTES }, loaderTimeout: 0.2, lock: { wait: 0.5 } })
  const written = new Set() // keys that may be in Redis (a valid write resolved)
  const writtenTags = new Set()
  const counts = { set: 0, get: 0, getOrSet: 0, del: 0, exists: 0, invalidateTag: 0, resolved: 0, rejected: 0, checkedInRedis: 0 }
  const t0 = performance.now()
  let i = 0
  for (; i < ITERATIONS && performance.now() - t0 < TIME_BUDGET_MS; i++) {
    const op = r.pick(['set', 'set', 'get', 'getOrSet', 'getOrSet', 'del', 'exists', 'invalidateTag'])
    counts[op]++
    const key = genKey(r)
    const kErr = keyError(key)
    const ctx = `#${i} (seed ${SEED}) ${op}(${show(key)}`
    let expected = null // null: must resolve; else the error it must reject with
    let res
    let loaderThrew
    let valueJson
    if (op === 'set') {
      const value = genValue(r)
      const options = genOptions(r)
      const vm = valueModel(value)
      expected = kErr || optionsError(options) || vm.error || null
      valueJson = vm.json
      res = await outcome(() => c.set(key, value, options), `${ctx}, ${show(value)}, ${show(options)})`)
      if (res.ok) {
        written.add(key)
        for (const tag of options && options.tags ? options.tags : []) writtenTags.add(tag)
        // read back at once (unless the entry may already have expired)
        const ttl = options && options.ttl
        if (ttl === undefined || ttl >= 1) {
          const back = await c.get(key)
          assert.deepEqual(back, JSON.parse(valueJson), `${ctx}: read back`)
        }
      }
    } else if (op === 'getOrSet') {
      const options = genOptions(r)
      let loader
      let value
      let loaderCalled = false
      const kind = r.int(100)
      if (kind < 8) loader = r.pick(['not a function', 5, null, undefined, {}])
      else if (kind < 14) loader = () => { loaderThrew = new Error('loader failed'); throw loaderThrew }
      else if (kind < 20) loader = async () => { loaderThrew = new TypeError('async loader failed'); throw loaderThrew }
      else if (kind < 21) loader = () => new Promise(() => {}) // never settles: ERR_MLC_LOADER_TIMEOUT
      else {
        value = genValue(r)
        const delay = r.int(3)
        loader = r.chance(0.5) ? () => { loaderCalled = true; return value } : async () => { loaderCalled = true; await sleep(delay); return value }
      }
      const lErr = typeof loader === 'function' ? null : { cls: TypeError, code: codes.INVALID_LOADER }
      expected = kErr || lErr || optionsError(options) || undefined // undefined: depends on the loader / cache
      res = await outcome(() => c.getOrSet(key, loader, options), `${ctx}, loader, ${show(options)})`)
      if (expected === undefined) {
        const vm = valueModel(value)
        if (!res.ok && res.error !== loaderThrew) {
          assertMlcError(res.error, ctx)
          assert.ok([codes.LOADER_TIMEOUT, codes.INVALID_VALUE].includes(res.error.code), `${ctx}: rejected with ${res.error.code}`)
          if (res.error.code === codes.INVALID_VALUE) assert.ok(loaderCalled && vm.error && vm.error.code === codes.INVALID_VALUE, `${ctx}: INVALID_VALUE for a loader value ${show(value)}`)
        }
        if (loaderCalled && vm.error && vm.error.code === codes.VALUE_TOO_LARGE) {
          // README: a loader result over limits.maxValueBytes is returned and not cached
          assert.ok(res.ok && res.value === value, `${ctx}: a loader value over the limit was not served`)
          if (!written.has(key)) assert.equal(await s.inRedis(key), false, `${ctx}: a loader value over the limit was written to Redis`)
        } else if (res.ok) {
          written.add(key)
        }
        expected = res.ok ? null : { any: true }
      }
    } else if (op === 'invalidateTag') {
      const tag = r.chance(0.5) ? genTag(r) : r.pick([...writtenTags, 't1'])
      expected = tagError(tag)
      res = await outcome(() => c.invalidateTag(tag), `#${i} (seed ${SEED}) invalidateTag(${show(tag)})`)
    } else {
      expected = kErr
      res = await outcome(() => c[op](key), `${ctx})`)
      if (res.ok && op === 'get' && !written.has(key)) assert.equal(res.value, null, `${ctx}: found a value never written`)
      if (res.ok && op === 'exists' && !written.has(key)) assert.equal(res.value, false, `${ctx}: found a value never written`)
    }

    if (res.ok) counts.resolved++
    else counts.rejected++
    if (expected === null) {
      assert.ok(res.ok, `${ctx}: valid call rejected: ${res.error && (res.error.code || res.error.stack)}`)
    } else if (expected.any) {
      // already checked above (the loader's own error, a timeout or an invalid loader value)
    } else {
      assert.ok(!res.ok, `${ctx}: invalid call resolved (expected ${expected.code})`)
      assertMlcError(res.error, ctx, expected)
    }
    assert.ok(res.ms < 3000, `${ctx}: took ${res.ms.toFixed(0)} ms`)
    // a rejected write left nothing behind for its key
    if (!res.ok && (op === 'set' || op === 'getOrSet') && kErr === null && !written.has(key)) {
      counts.checkedInRedis++
      assert.equal(await s.inRedis(key), false, `${ctx}: a rejected call wrote to Redis`)
      assert.equal(await c.exists(key), false, `${ctx}: a rejected call wrote to L1`)
    }
  }
  t.diagnostic(`${i} calls in ${(performance.now() - t0).toFixed(0)} ms: ${JSON.stringify(counts)}`)
  assert.ok(i >= 500, `only ${i} iterations ran within the time budget`)

  // every entry in Redis belongs to a validly written key; no stampede lock is left
  await sleep(100)
  const entries = new Set([...written].map((key) => entryName(s.prefix, key)))
  for (const k of await s.redisKeys()) {
    if (kindOf(s.prefix, k) === 'entry') assert.ok(entries.has(k), `Redis holds ${show(k)}, never validly written`)
    assert.ok(kindOf(s.prefix, k) !== 'lock', `a stampede lock was left behind: ${show(k)}`)
  }
  assert.equal(c.stats().locksHeld, 0)
  assert.equal(c.stats().pendingOperations, 0)

  // still works, and another instance sees its writes through Redis
  await c.set('after-fuzz', { ok: true }, { tags: ['after'] })
  const other = s.cache({ l1: false }) // reads Redis every time
  assert.deepEqual(await other.get('after-fuzz'), { ok: true })
  await c.invalidateTag('after')
  assert.equal(await other.get('after-fuzz'), null)
})

test(`invalidateTag removes exactly the entries carrying the tag, whatever the tag's characters (seed ${SEED})`, async (t) => {
  const r = prng(SEED ^ 0x9e3779b9)
  const s = scope(t, { name: 'fuzz-tags' })
  const c = s.cache({ l1: { ttl: 60 } })
  const other = s.cache({ l1: false }) // reads Redis only
  const t0 = performance.now()
  let rounds = 0
  for (; rounds < 60 && performance.now() - t0 < 10000; rounds++) {
    // a pool of adversarial tags: prefixes / suffixes of each other, JSON metacharacters
    const base = r.string(1 + r.int(6), ALPHABET).replace(/[\uD800-\uDFFF]/g, 'x')
    const pool = [base, `${base},`, `,${base}`, `"${base}"`, `${base}"]`, `["${base}`, `${base}\\`, `${base}${base}`, base.slice(0, 1), `${base}","${base}`]
    const entries = []
    for (let j = 0; j < 8; j++) {
      const tags = [...new Set(Array.from({ length: r.int(4) }, () => r.pick(pool)))]
      const key = `r${rounds}:e${j}`
      await c.set(key, j, { tags })
      entries.push({ key, tags })
    }
    const victim = r.pick(pool)
    await c.invalidateTag(victim)
    for (const { key, tags } of entries) {
      const carries = tags.includes(victim)
      const ctx = `seed ${SEED} round ${rounds}: ${key} tags ${show(tags)}, invalidateTag(${show(victim)})`
      assert.equal(await s.inRedis(key), !carries, `${ctx}: in Redis`)
      assert.equal(await other.get(key), carries ? null : Number(key.split(':e')[1]), `${ctx}: read by another instance`)
      assert.equal(await c.get(key), carries ? null : Number(key.split(':e')[1]), `${ctx}: L1`)
    }
  }
  t.diagnostic(`${rounds} rounds of 8 entries`)
  assert.ok(rounds >= 10)
})

// ---- random constructor options ---------------------------------------------------------------

const NUMBERS = [-1, 0, 0.001, 0.5, 1, 2.5, 3, 1e9, 1e10, NaN, Infinity, -Infinity, '1', null, true, 2 ** 32, 4294967295, 1e6, 1e6 + 1, 536870912, 536870913]
const URLS = [undefined, '', SHARED_URL, 'redis://127.0.0.1:1', 'http://127.0.0.1:6379', 'garbage', 'redis://', 'redis://:@', 'rediss://127.0.0.1:1',
  'unix:///tmp/mlc-no-such.sock', 'redis+unix:///tmp/mlc-no-such.sock', 'redis://user:pass@127.0.0.1:1/3', 'redis://127.0.0.1:99999', 'redis://[::1]:1',
  'redis://127.0.0.1:6379/abc', 'redis://127.0.0.1:6379/99999', 'REDIS://127.0.0.1:1', 'redis://127.0.0.1:1?x=%zz', 'redis://%00@127.0.0.1:1', 42, null, {}, ['redis://x']]
const PREFIXES = [undefined, 'ok', '', 'a'.repeat(64), 'a'.repeat(65), 'bad{', 'bad}', 'with space', 'é', 'a:b.c-d_e', 42, null]

// The L1 allocates its slot table for l1.maxEntries up front; values above the documented
// maximum once aborted the process (a 64 GiB allocation at 4294967295). Large values are tried
// in child processes by the test "l1.maxEntries beyond its documented maximum ..." below, so
// that a regression there cannot take this process down.
const MAX_ENTRIES = NUMBERS.filter((n) => !(typeof n === 'number' && n > 1e7 && n <= 4294967295))

function genSection(r, fields) {
  switch (r.int(8)) {
    case 0: return undefined
    case 1: return false
    case 2: return r.pick([true, null, [], 'x', 5])
    case 3: return { unknownField: 1 }
    default: {
      const o = {}
      for (const f of fields) {
        if (r.chance(0.5)) o[f] = r.chance(0.6) ? r.pick([0.5, 1, 2, 3, 10]) : r.pick(f === 'maxEntries' ? MAX_ENTRIES : NUMBERS)
      }
      return o
    }
  }
}

function genCtorOptions(r) {
  if (r.int(20) === 0) return r.pick([null, 'opts', 5, [], () => {}])
  const o = {}
  const set = (name, v) => { if (v !== undefined || r.chance(0.2)) o[name] = v }
  set('redisUrl', r.chance(0.3) ? `redis://127.0.0.1:1` : r.pick(URLS))
  set('prefix', r.chance(0.5) ? uniquePrefix('fz') : r.pick(PREFIXES))
  if (r.chance(0.2)) o.loader = r.pick([() => 1, 'loader', 5, null])
  if (r.chance(0.3)) o.loaderTimeout = r.pick(NUMBERS)
  if (r.chance(0.4)) o.l1 = genSection(r, ['maxEntries', 'ttl'])
  if (r.chance(0.3)) o.l2 = genSection(r, ['ttl'])
  if (r.chance(0.3)) o.lock = genSection(r, ['ttl', 'wait'])
  if (r.chance(0.4)) {
    const redis = genSection(r, ['connectTimeout', 'commandTimeout', 'breakerThreshold', 'breakerCooldown'])
    if (redis && typeof redis === 'object' && !Array.isArray(redis) && r.chance(0.3)) {
      redis.tls = r.pick([{}, null, 'x', { caFile: '/nonexistent/ca.pem' }, { caFile: 5 }, { other: 1 }, { certFile: '/nonexistent/c.pem' }])
    }
    o.redis = redis
  }
  if (r.chance(0.3)) o.limits = genSection(r, ['maxValueBytes'])
  if (r.chance(0.05)) o.unknownOption = 1
  return o
}

test(`random constructor options: a cache, or TypeError/RangeError ERR_MLC_INVALID_OPTION (seed ${SEED})`, async (t) => {
  const r = prng(SEED ^ 0x85ebca6b)
  let built = 0
  let refused = 0
  const slow = []
  const t0 = performance.now()
  let i = 0
  for (; i < 400 && performance.now() - t0 < 10000; i++) {
    const options = genCtorOptions(r)
    let c
    try {
      c = new MultiLevelCache(options)
    } catch (e) {
      refused++
      const what = `#${i} (seed ${SEED}) new MultiLevelCache(${show(options)})`
      assert.ok(e instanceof TypeError || e instanceof RangeError, `${what} threw ${e && e.constructor && e.constructor.name}: ${e && e.message}`)
      assert.equal(e.code, codes.INVALID_OPTION, `${what}: ${e.message}`)
      continue
    }
    built++
    // a cache that was built works (whatever Redis it points at) and closes
    const ctx = `#${i} (seed ${SEED}) built from ${show(options)}`
    const res = await outcome(() => c.getOrSet('k', () => 'v'), `${ctx}: getOrSet`)
    assert.ok(res.ok, `${ctx}: getOrSet rejected: ${res.error && (res.error.code || res.error.message)}`)
    const closed = await outcome(() => c.close(), `${ctx}: close`)
    slow.push({ ms: res.ms + closed.ms, ctx })
    assert.ok(closed.ok && closed.ms < 2000, `${ctx}: close ${closed.ok ? `took ${closed.ms} ms` : 'rejected'}`)
  }
  t.diagnostic(`${i} option sets: ${built} built, ${refused} refused`)
  slow.sort((a, b) => b.ms - a.ms)
  for (const x of slow.slice(0, 3)) t.diagnostic(`slowest: ${x.ms.toFixed(0)} ms ${x.ctx}`)
  assert.ok(built > 10 && refused > 10, `built ${built}, refused ${refused}: the generator is skewed`)
})

test('a loaderTimeout longer than a JS timer can hold (2^31 ms, ~24.8 days) does not time loaders out at once', async (t) => {
  // loaderTimeout accepts up to 1e9 s; setTimeout() clamps delays over 2^31-1 ms to 1 ms
  for (const loaderTimeout of [2_000_000, 3e6, 1e9]) {
    const c = new MultiLevelCache({ l2: false, prefix: uniquePrefix('fz-lt'), loaderTimeout })
    try {
      const res = await outcome(() => c.getOrSet('k', async () => { await sleep(20); return 'v' }), `loaderTimeout ${loaderTimeout}`)
      assert.ok(res.ok, `loaderTimeout ${loaderTimeout} s: a 20 ms loader rejected with ${res.error && res.error.code}`)
      assert.equal(res.value, 'v')
    } finally {
      await c.close()
    }
  }
})

test('l1.maxEntries beyond its documented maximum (10000000) is a RangeError, never a crash', async (t) => {
  // in child processes: an allocation failure aborts the whole process
  for (const maxEntries of [10_000_000, 10_000_001, 2 ** 31, 4294967295]) {
    const script = `
const { MultiLevelCache } = require('.')
let c
try {
  c = new MultiLevelCache({ l2: false, l1: { maxEntries: ${maxEntries} } })
} catch (e) {
  console.log(JSON.stringify({ threw: e.constructor.name, code: e.code }))
  process.exit(0)
}
c.set('k', 1).then(() => c.get('k')).then((v) => c.close().then(() => console.log(JSON.stringify({ built: true, v }))))
`
    const r = await runNode(script, { timeoutMs: 20000 })
    const what = `l1.maxEntries ${maxEntries}`
    t.diagnostic(`${what}: exit ${r.code}, signal ${r.signal}, ${r.ms} ms, ${r.stdout.trim() || r.stderr.split('\n')[0]}`)
    assert.equal(r.timedOut, false, `${what}: the process hung`)
    assert.equal(r.signal, null, `${what}: the process died of ${r.signal}: ${r.stderr.split('\n')[0]}`)
    assert.equal(r.code, 0, `${what}: ${r.stderr.split('\n')[0]}`)
    const out = JSON.parse(r.stdout)
    if (maxEntries > 10_000_000) assert.equal(out.threw, 'RangeError', `${what}: over the documented maximum must be refused`)
    if (out.threw) {
      assert.ok(out.threw === 'RangeError' || out.threw === 'TypeError', `${what}: threw ${out.threw} (${out.code})`)
      assert.equal(out.code, codes.INVALID_OPTION, `${what}: threw ${out.threw} with code ${out.code}`)
    } else {
      assert.deepEqual(out, { built: true, v: 1 })
    }
  }
})
