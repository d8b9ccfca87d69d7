'use strict'
// Values are what JSON carries, read back as JSON.parse gives them, the same from either layer.
// Large values, Unicode keys, values JSON cannot carry, and limits.maxValueBytes.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { scope, rejectsWith, codes, sleep } = require('./helpers/cache.js')

test('JSON round trip: a Date becomes a string, the same from L1 and from Redis', async (t) => {
  const s = scope(t, { name: 'values-json' })
  const when = new Date('2024-05-06T07:08:09.010Z')
  const value = {
    when,
    n: 1.5,
    neg: -0,
    nan: NaN,
    skipped: undefined,
    text: 'héllo "quoted" \\ \n',
    nested: { arr: [1, 'two', null, true, { deep: [[]] }], obj: { a: { b: { c: 'd' } } } },
  }
  const expected = JSON.parse(JSON.stringify(value))
  assert.equal(expected.when, '2024-05-06T07:08:09.010Z')

  const a = s.cache()
  await a.set('doc', value)
  const fromL1 = await a.get('doc')
  assert.equal(a.stats().l1Hits, 1)
  assert.deepEqual(fromL1, expected)
  assert.equal(typeof fromL1.when, 'string')
  assert.equal(Object.hasOwn(fromL1, 'skipped'), false)
  assert.equal(fromL1.nan, null)

  const b = s.cache()
  const fromL2 = await b.get('doc')
  assert.equal(b.stats().l2Hits, 1)
  assert.deepEqual(fromL2, expected)
  assert.deepEqual(fromL2, fromL1)

  const env = await s.envelope('doc')
  assert.deepEqual(env.d, expected)
})

test('the loader result is read back as JSON too (a Date becomes a string)', async (t) => {
  const s = scope(t, { name: 'values-loader-json' })
  const a = s.cache()
  const when = new Date('2020-01-02T03:04:05.000Z')
  const got = await a.getOrSet('k', () => ({ when }))
  assert.deepEqual(got, { when: '2020-01-02T03:04:05.000Z' })
  assert.deepEqual(await a.get('k'), { when: '2020-01-02T03:04:05.000Z' })
})

test('the cache keeps its own copy: mutating the object after set changes nothing', async (t) => {
  const s = scope(t, { name: 'values-copy' })
  const a = s.cache()
  const obj = { list: [1, 2], inner: { x: 1 } }
  await a.set('k', obj)
  obj.list.push(3)
  obj.inner.x = 99
  obj.added = true
  assert.deepEqual(await a.get('k'), { list: [1, 2], inner: { x: 1 } })
})

test('primitive top-level values round trip in both layers', async (t) => {
  const s = scope(t, { name: 'values-primitives' })
  const a = s.cache()
  const values = [42, -3.25, 1e300, true, 'a string', 'ünïcödé 🚀', [1, [2, [3]]], Number.MAX_SAFE_INTEGER]
  for (let i = 0; i < values.length; i++) await a.set(`p${i}`, values[i])
  const b = s.cache()
  for (let i = 0; i < values.length; i++) {
    assert.deepEqual(await a.get(`p${i}`), values[i])
    assert.deepEqual(await b.get(`p${i}`), values[i])
  }
  assert.equal(b.stats().l2Hits, values.length)
})

test('deeply nested objects round trip in both layers', async (t) => {
  const s = scope(t, { name: 'values-deep' })
  let deep = { leaf: 'bottom' }
  for (let i = 0; i < 200; i++) deep = { level: i, child: deep, list: [i] }
  const expected = JSON.parse(JSON.stringify(deep))
  const a = s.cache()
  await a.set('deep', deep)
  assert.deepEqual(await a.get('deep'), expected)
  const b = s.cache()
  assert.deepEqual(await b.get('deep'), expected)
  assert.equal(b.stats().l2Hits, 1)
})

test('a 1 MiB value round trips in both layers', async (t) => {
  const s = scope(t, { name: 'values-1mib' })
  const big = 'x'.repeat(1024 * 1024 - 64) + '🎉'.repeat(8) + 'end'
  const value = { big, size: big.length, list: Array.from({ length: 1000 }, (_, i) => i) }
  const a = s.cache()
  await a.set('big', value)
  assert.deepEqual(await a.get('big'), value)
  assert.ok((await s.redis.strlen(s.entryKey('big'))) > 1024 * 1024)

  const b = s.cache()
  const got = await b.get('big')
  assert.equal(b.stats().l2Hits, 1)
  assert.equal(got.big.length, big.length)
  assert.ok(got.big === big, 'the 1 MiB string came back different')
  assert.deepEqual(got, value)
})

test('Unicode keys (emoji, CJK, combining marks) work in both layers', async (t) => {
  const s = scope(t, { name: 'values-unicode' })
  const keys = ['🔑', 'emoji:👩‍👩‍👧‍👦:😀', '日本語のキー', '中文键', '한국어', 'ключ', 'e\u0301', 'e\u00e9', 'a b\tc', '{braces}:k:x', '\u0000nul']
  const a = s.cache()
  for (const [i, key] of keys.entries()) await a.set(key, { i, key })
  for (const [i, key] of keys.entries()) {
    assert.deepEqual(await a.get(key), { i, key })
    assert.equal(await s.inRedis(key), true, `Redis has no entry named after ${JSON.stringify(key)}`)
  }
  assert.equal(a.stats().l1Hits, keys.length)

  const b = s.cache()
  for (const [i, key] of keys.entries()) assert.deepEqual(await b.get(key), { i, key })
  assert.equal(b.stats().l2Hits, keys.length)
  // 'e\u0301' and 'e\u00e9' are different keys (no normalization)
  assert.notDeepEqual(await b.get('e\u0301'), await b.get('e\u00e9'))
  assert.equal(await b.get('é'), null)
})

test('a key of exactly 1024 characters (astral characters count as two) is accepted', async (t) => {
  const s = scope(t, { name: 'values-longkey' })
  const a = s.cache()
  const ascii = 'k'.repeat(1024)
  const astral = '😀'.repeat(512) // 1024 UTF-16 code units
  await a.set(ascii, 1)
  await a.set(astral, 2)
  const b = s.cache()
  assert.equal(await b.get(ascii), 1)
  assert.equal(await b.get(astral), 2)
})

const INVALID = [
  ['undefined', undefined],
  ['a function', () => 1],
  ['a symbol', Symbol('s')],
  ['a BigInt', 10n],
  ['a nested BigInt', { a: { b: [1, 2n] } }],
  ['a circular object', (() => { const o = { a: 1 }; o.self = o; return o })()],
  ['null', null],
  ['an object whose toJSON returns undefined', { toJSON() { return undefined } }],
]

for (const [what, value] of INVALID) {
  test(`set rejects ${what} with TypeError ERR_MLC_INVALID_VALUE and writes nothing`, async (t) => {
    const s = scope(t, { name: 'values-invalid' })
    const a = s.cache()
    const p = a.set('k', value)
    assert.ok(p instanceof Promise, 'set must return a Promise, not throw')
    await rejectsWith(assert, p, TypeError, codes.INVALID_VALUE)
    assert.equal(codes.INVALID_VALUE, 'ERR_MLC_INVALID_VALUE')
    assert.equal(await a.get('k'), null)
    assert.equal(await s.inRedis('k'), false)
    assert.equal(a.stats().l1Entries, 0)

    // an existing value is left as it was
    await a.set('kept', 'old')
    await rejectsWith(assert, a.set('kept', value), TypeError, codes.INVALID_VALUE)
    assert.equal(await a.get('kept'), 'old')
    assert.equal((await s.envelope('kept')).d, 'old')
  })
}

test('a loader result JSON cannot carry rejects getOrSet with ERR_MLC_INVALID_VALUE and caches nothing', async (t) => {
  const s = scope(t, { name: 'values-invalid-loader' })
  const a = s.cache()
  await rejectsWith(assert, a.getOrSet('k', () => ({ n: 5n })), TypeError, codes.INVALID_VALUE)
  await rejectsWith(assert, a.getOrSet('k', () => () => 1), TypeError, codes.INVALID_VALUE)
  await sleep(30)
  assert.equal(await s.inRedis('k'), false)
  assert.equal(await a.get('k'), null)
  assert.equal(await a.getOrSet('k', () => 'fine'), 'fine')
})

test('values over limits.maxValueBytes reject with RangeError ERR_MLC_VALUE_TOO_LARGE', async (t) => {
  const s = scope(t, { name: 'values-limit' })
  const a = s.cache({ limits: { maxValueBytes: 1000 } })

  // JSON text of exactly 1000 bytes is accepted
  const exact = 'a'.repeat(998)
  assert.equal(JSON.stringify(exact).length, 1000)
  await a.set('exact', exact)
  assert.equal(await a.get('exact'), exact)

  const cases = [
    ['one byte over', 'a'.repeat(999)],
    ['an object', { list: Array.from({ length: 300 }, (_, i) => i) }],
    ['multi-byte text (bytes, not characters)', '€'.repeat(400)], // 402 characters, 1202 bytes
  ]
  for (const [what, value] of cases) {
    const err = await rejectsWith(assert, a.set(`big-${what}`, value), RangeError, codes.VALUE_TOO_LARGE)
    assert.ok(err, what)
    assert.equal(await a.get(`big-${what}`), null, what)
    assert.equal(await s.inRedis(`big-${what}`), false, what)
  }
  // a loader value over the limit is the cache's limit, not the caller's problem: served, not cached
  let loads = 0
  const big = () => { loads++; return 'b'.repeat(2000) }
  assert.equal(await a.getOrSet('loaded', big), 'b'.repeat(2000))
  assert.equal(await s.inRedis('loaded'), false)
  assert.equal(await a.getOrSet('loaded', big), 'b'.repeat(2000))
  assert.equal(loads, 2, 'an uncacheable value is loaded again next time')
  // still working
  await a.set('small', 'ok')
  assert.equal(await a.get('small'), 'ok')
})

// Values JSON writes as null (NaN, ±Infinity, an invalid Date) used to be stored as null: get()
// then returned null (a miss) while exists() said true. They are refused like null is.
const UNREPRESENTABLE = [
  ['NaN', NaN],
  ['Infinity', Infinity],
  ['-Infinity', -Infinity],
  ['new Date(NaN)', new Date(NaN)],
  ['an object whose toJSON() returns null', { toJSON: () => null }],
]

test('set() refuses NaN, ±Infinity and an invalid Date like null: TypeError ERR_MLC_INVALID_VALUE, nothing written', async (t) => {
  const s = scope(t, { name: 'values-nan' })
  const a = s.cache()
  const b = s.cache()
  for (const [name, value] of UNREPRESENTABLE) {
    const key = `k-${name}`
    const err = await rejectsWith(assert, a.set(key, value), TypeError, codes.INVALID_VALUE)
    assert.equal(err.key, key, name)
    assert.equal(await a.exists(key), false, `${name}: exists() is true after a refused set`)
    assert.equal(await s.inRedis(key), false, `${name}: written to Redis`)
    assert.equal(await b.exists(key), false, name)
  }
  assert.equal(a.stats().sets, 0, 'a refused set was counted as a write')
  assert.equal(a.stats().l1Entries, 0, 'a refused set reached L1')
})

test('a loader returning NaN, ±Infinity or an invalid Date rejects with ERR_MLC_INVALID_VALUE; nothing is cached and the lock is released', async (t) => {
  const s = scope(t, { name: 'values-nan-loader' })
  const a = s.cache()
  for (const [name, value] of UNREPRESENTABLE) {
    const key = `k-${name}`
    await rejectsWith(assert, a.getOrSet(key, () => value), TypeError, codes.INVALID_VALUE)
    assert.equal(await a.exists(key), false, `${name}: cached`)
    assert.equal(await s.inRedis(key), false, `${name}: written to Redis`)
    // the stampede lock was released: a second lookup loads at once instead of waiting for it
    let calls = 0
    assert.equal(await a.getOrSet(key, () => { calls++; return 'good' }), 'good', name)
    assert.equal(calls, 1, name)
  }
  assert.equal(a.stats().lockWaits, 0, 'a lookup waited for a lock the failed load kept')
})

test('NaN nested inside an object stays JSON: it reads back as null in both layers', async (t) => {
  const s = scope(t, { name: 'values-nan-nested' })
  const a = s.cache()
  const b = s.cache()
  await a.set('k', { n: NaN, i: Infinity, d: new Date(NaN), list: [NaN] })
  const expected = { n: null, i: null, d: null, list: [null] }
  assert.deepEqual(await a.get('k'), expected)
  assert.deepEqual(await b.get('k'), expected)
})
