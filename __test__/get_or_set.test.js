'use strict'
// getOrSet: cache-aside with one loader call per key at a time in this process.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { scope, eventually, sleep } = require('./helpers/cache.js')

test('100 concurrent calls on a cold key call the loader once and all get its value', async (t) => {
  const s = scope(t, { name: 'gos-concurrent' })
  const a = s.cache()
  let calls = 0
  const loader = async (key) => {
    calls++
    await sleep(50)
    return { key, n: 42 }
  }
  const results = await Promise.all(Array.from({ length: 100 }, () => a.getOrSet('cold', loader)))
  assert.equal(calls, 1)
  assert.equal(a.stats().loaderCalls, 1)
  for (const r of results) assert.deepEqual(r, { key: 'cold', n: 42 })
  const env = await eventually(() => s.envelope('cold'))
  assert.deepEqual(env && env.d, { key: 'cold', n: 42 })
  // later calls are L1 hits
  assert.deepEqual(await a.getOrSet('cold', loader), { key: 'cold', n: 42 })
  assert.equal(calls, 1)
})

test('concurrent getOrSet on different keys calls each loader once', async (t) => {
  const s = scope(t, { name: 'gos-keys' })
  const a = s.cache()
  const calls = new Map()
  const loader = async (key) => {
    calls.set(key, (calls.get(key) || 0) + 1)
    await sleep(20)
    return key.toUpperCase()
  }
  const keys = ['a', 'b', 'c', 'd', 'e']
  const results = await Promise.all(keys.flatMap((k) => [a.getOrSet(k, loader), a.getOrSet(k, loader)]))
  assert.deepEqual(results, keys.flatMap((k) => [k.toUpperCase(), k.toUpperCase()]))
  assert.deepEqual([...calls.entries()].sort(), keys.map((k) => [k, 1]))
})

test('concurrent get with a constructor loader calls it once', async (t) => {
  const s = scope(t, { name: 'gos-ctor' })
  let calls = 0
  const a = s.cache({ loader: async () => { calls++; await sleep(30); return 'v' } })
  const results = await Promise.all(Array.from({ length: 50 }, () => a.get('k')))
  assert.ok(results.every((r) => r === 'v'))
  assert.equal(calls, 1)
})

for (const [how, makeLoader] of [
  ['throws', (err) => () => { throw err }],
  ['rejects', (err) => async () => { await sleep(30); throw err }],
]) {
  test(`a loader that ${how} rejects every concurrent caller, caches nothing, and runs again next time`, async (t) => {
    const s = scope(t, { name: 'gos-throw' })
    const a = s.cache()
    const boom = new Error('loader failed')
    let calls = 0
    const failing = makeLoader(boom)
    const loader = (key) => { calls++; return failing(key) }
    const settled = await Promise.allSettled(Array.from({ length: 20 }, () => a.getOrSet('k', loader)))
    for (const r of settled) {
      assert.equal(r.status, 'rejected')
      assert.equal(r.reason, boom, 'the caller did not get the loader\'s own error')
    }
    assert.equal(calls, 1)
    assert.equal(a.stats().loaderErrors, 1)
    assert.equal(a.stats().l1Entries, 0)
    await sleep(30)
    assert.equal(await s.inRedis('k'), false)
    assert.equal(await a.get('k'), null)

    // the next call calls the loader again
    assert.equal(await a.getOrSet('k', () => { calls++; return 'recovered' }), 'recovered')
    assert.equal(calls, 2)
    assert.equal(await a.get('k'), 'recovered')
  })
}

test('a loader may return a plain value (not a Promise)', async (t) => {
  const s = scope(t, { name: 'gos-plain' })
  const a = s.cache()
  let calls = 0
  assert.deepEqual(await a.getOrSet('k', () => { calls++; return { plain: true } }), { plain: true })
  assert.deepEqual(await a.getOrSet('k', () => { calls++; return { plain: false } }), { plain: true })
  assert.equal(calls, 1)
  const env = await eventually(() => s.envelope('k'))
  assert.deepEqual(env && env.d, { plain: true })
  const b = s.cache()
  assert.deepEqual(await b.get('k'), { plain: true })
})

test('the loader receives the key', async (t) => {
  const s = scope(t, { name: 'gos-key-arg' })
  const a = s.cache()
  const seen = []
  await a.getOrSet('user:7 ✓', (key) => { seen.push(key); return 1 })
  assert.deepEqual(seen, ['user:7 ✓'])
})

test('getOrSet does not call the loader when Redis has the value', async (t) => {
  const s = scope(t, { name: 'gos-redis' })
  const a = s.cache()
  await a.set('k', 'from-a')
  const b = s.cache()
  let calls = 0
  assert.equal(await b.getOrSet('k', () => { calls++; return 'from-loader' }), 'from-a')
  assert.equal(calls, 0)
  assert.equal(b.stats().l2Hits, 1)
  assert.equal(b.stats().loaderCalls, 0)
})

test('the loaded value is in Redis for another instance', async (t) => {
  const s = scope(t, { name: 'gos-shared' })
  const a = s.cache()
  assert.equal(await a.getOrSet('k', () => 'loaded-by-a'), 'loaded-by-a')
  const b = s.cache()
  // a null loader result is not cached, so this retries until Redis has A's value
  const got = await eventually(() => b.getOrSet('k', () => null))
  assert.equal(got, 'loaded-by-a')
})

test('a loader failure is not shared with the next wave of callers', async (t) => {
  const s = scope(t, { name: 'gos-waves' })
  const a = s.cache()
  let calls = 0
  await assert.rejects(a.getOrSet('k', async () => { calls++; await sleep(10); throw new Error('first') }))
  const results = await Promise.all(Array.from({ length: 10 }, () => a.getOrSet('k', async () => { calls++; await sleep(10); return 'second' })))
  assert.ok(results.every((r) => r === 'second'))
  assert.equal(calls, 2)
})
