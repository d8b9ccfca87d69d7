'use strict'
// `null` only means "missing": 0, false, '', [] and {} are values, hits in both layers.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { scope, delta, pick, eventually, sleep } = require('./helpers/cache.js')

const FALSY = [
  ['zero', 0],
  ['false', false],
  ['empty-string', ''],
  ['empty-array', []],
  ['empty-object', {}],
]

const COUNTERS = ['l1Hits', 'l1Misses', 'l2Hits', 'l2Misses', 'loaderCalls']

for (const [name, value] of FALSY) {
  test(`${name} (${JSON.stringify(value)}) is a hit in L1 and, from a fresh instance, in Redis`, async (t) => {
    const s = scope(t, { name: `falsy-${name}` })
    const a = s.cache()
    await a.set(name, value)

    const before = a.stats()
    assert.deepEqual(await a.get(name), value)
    assert.equal(await a.exists(name), true)
    assert.deepEqual(pick(delta(before, a.stats()), COUNTERS), { l1Hits: 1, l1Misses: 0, l2Hits: 0, l2Misses: 0, loaderCalls: 0 })

    // stored in Redis as the value, not as a missing marker
    const env = await s.envelope(name)
    assert.ok(env, 'the value is not in Redis')
    assert.deepEqual(env.d, value)

    const b = s.cache()
    assert.deepEqual(await b.get(name), value)
    assert.deepEqual(pick(b.stats(), COUNTERS), { l1Hits: 0, l1Misses: 1, l2Hits: 1, l2Misses: 0, loaderCalls: 0 })
    // copied into B's L1 like any other hit
    assert.deepEqual(await b.get(name), value)
    assert.deepEqual(pick(b.stats(), COUNTERS), { l1Hits: 1, l1Misses: 1, l2Hits: 1, l2Misses: 0, loaderCalls: 0 })
    const c = s.cache()
    assert.equal(await c.exists(name), true)
  })
}

test('getOrSet with cached falsy values never calls the loader (L1 and Redis)', async (t) => {
  const s = scope(t, { name: 'falsy-getorset' })
  const a = s.cache()
  for (const [name, value] of FALSY) await a.set(name, value)

  let calls = 0
  const loader = () => {
    calls++
    return 'from-loader'
  }
  for (const [name, value] of FALSY) assert.deepEqual(await a.getOrSet(name, loader), value)
  assert.equal(calls, 0, 'the loader was called for a cached falsy value (L1)')

  const b = s.cache()
  for (const [name, value] of FALSY) assert.deepEqual(await b.getOrSet(name, loader), value)
  assert.equal(calls, 0, 'the loader was called for a cached falsy value (Redis)')
  assert.equal(b.stats().loaderCalls, 0)
  assert.equal(b.stats().l2Hits, FALSY.length)
})

test("get with a constructor loader treats cached falsy values as hits", async (t) => {
  const s = scope(t, { name: 'falsy-ctor-loader' })
  const writer = s.cache()
  for (const [name, value] of FALSY) await writer.set(name, value)
  let calls = 0
  const b = s.cache({ loader: () => { calls++; return 'from-loader' } })
  for (const [name, value] of FALSY) assert.deepEqual(await b.get(name), value)
  for (const [name, value] of FALSY) assert.deepEqual(await b.get(name), value)
  assert.equal(calls, 0)
})

test('falsy loader results (0, false, \'\', [], {}) are cached like any value', async (t) => {
  const s = scope(t, { name: 'falsy-loaded' })
  const a = s.cache()
  for (const [name, value] of FALSY) {
    let calls = 0
    const loader = () => { calls++; return value }
    assert.deepEqual(await a.getOrSet(name, loader), value)
    assert.deepEqual(await a.getOrSet(name, loader), value)
    assert.equal(calls, 1, `${name} was loaded twice`)
    const env = await eventually(() => s.envelope(name))
    assert.ok(env, `${name} never reached Redis`)
    assert.deepEqual(env.d, value)
  }
})

for (const nothing of [null, undefined]) {
  test(`a loader result of ${nothing} is returned and not cached (getOrSet)`, async (t) => {
    const s = scope(t, { name: 'falsy-nothing' })
    const a = s.cache()
    let calls = 0
    const loader = async () => { calls++; return nothing }
    assert.equal(await a.getOrSet('k', loader), nothing)
    assert.equal(await a.getOrSet('k', loader), nothing)
    assert.equal(calls, 2, 'the loader must be called again: nothing was cached')
    assert.equal(a.stats().l1Entries, 0)
    assert.equal(a.stats().sets, 0)
    await sleep(50) // a stray write would have landed by now
    assert.equal(await s.inRedis('k'), false)
    assert.equal(await a.exists('k'), false)
    // a later real value is cached normally
    assert.equal(await a.getOrSet('k', () => 'real'), 'real')
    assert.equal(await a.getOrSet('k', loader), 'real')
    assert.equal(calls, 2)
  })

  test(`a constructor loader result of ${nothing} is a miss and not cached (get)`, async (t) => {
    const s = scope(t, { name: 'falsy-nothing-ctor' })
    let calls = 0
    const a = s.cache({ loader: () => { calls++; return nothing } })
    // the loader's own result is returned (`undefined` may be reported as the miss, `null`)
    const first = await a.get('k')
    if (nothing === null) assert.equal(first, null)
    else assert.ok(first === undefined || first === null)
    assert.ok((await a.get('k')) == null)
    assert.equal(calls, 2)
    assert.equal(a.stats().l1Entries, 0)
    await sleep(50)
    assert.equal(await s.inRedis('k'), false)
  })
}
