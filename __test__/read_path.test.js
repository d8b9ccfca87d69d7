'use strict'
// The read path: L1, then Redis (a hit is copied into L1), then the constructor's loader.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { scope, delta, pick, eventually } = require('./helpers/cache.js')

const COUNTERS = ['l1Hits', 'l1Misses', 'l2Hits', 'l2Misses', 'loaderCalls']

test('a value set in this process is answered from L1, without Redis', async (t) => {
  const s = scope(t, { name: 'read-l1' })
  const a = s.cache()
  await a.set('user:1', { name: 'Ada' })
  assert.equal(await s.inRedis('user:1'), true)

  // remove it behind the cache's back: only L1 can still answer
  await s.redis.del(s.entryKey('user:1'))
  const before = a.stats()
  assert.deepEqual(await a.get('user:1'), { name: 'Ada' })
  assert.deepEqual(pick(delta(before, a.stats()), COUNTERS), { l1Hits: 1, l1Misses: 0, l2Hits: 0, l2Misses: 0, loaderCalls: 0 })
})

test("a brand-new instance's very first get is answered by Redis", async (t) => {
  const s = scope(t, { name: 'read-first' })
  const a = s.cache()
  await a.set('greeting', 'hello')
  // no await, no timer between construction and the first call
  const b = s.cache()
  assert.equal(await b.get('greeting'), 'hello')
  const c = s.cache()
  assert.equal(await c.exists('greeting'), true)
})

test('a Redis hit is copied into L1 (l2Hits then l1Hits)', async (t) => {
  const s = scope(t, { name: 'read-copy' })
  const a = s.cache()
  const b = s.cache()
  await a.set('k', { n: 1, list: [1, 2, 3] })

  assert.deepEqual(await b.get('k'), { n: 1, list: [1, 2, 3] })
  assert.deepEqual(pick(b.stats(), COUNTERS), { l1Hits: 0, l1Misses: 1, l2Hits: 1, l2Misses: 0, loaderCalls: 0 })
  assert.equal(b.stats().l1Entries, 1)

  // Redis loses it: B still answers from its L1 copy
  await s.redis.del(s.entryKey('k'))
  assert.deepEqual(await b.get('k'), { n: 1, list: [1, 2, 3] })
  assert.deepEqual(await b.get('k'), { n: 1, list: [1, 2, 3] })
  assert.deepEqual(pick(b.stats(), COUNTERS), { l1Hits: 2, l1Misses: 1, l2Hits: 1, l2Misses: 0, loaderCalls: 0 })
})

test('a full miss without a loader resolves null and counts a miss in both layers', async (t) => {
  const s = scope(t, { name: 'read-miss' })
  const a = s.cache()
  assert.equal(await a.get('nothing-here'), null)
  assert.equal(await a.exists('nothing-here'), false)
  assert.deepEqual(pick(a.stats(), COUNTERS), { l1Hits: 0, l1Misses: 1, l2Hits: 0, l2Misses: 1, loaderCalls: 0 })
  assert.equal(a.stats().l1Entries, 0)
})

test("the constructor's loader runs on a full miss and its value is written to both layers", async (t) => {
  const s = scope(t, { name: 'read-loader' })
  const calls = []
  const a = s.cache({
    loader: async (key) => {
      calls.push(key)
      return { loaded: key, at: 7 }
    },
  })
  assert.deepEqual(await a.get('user:42'), { loaded: 'user:42', at: 7 })
  assert.deepEqual(calls, ['user:42'])

  // Redis has it, in the documented envelope
  const env = await eventually(() => s.envelope('user:42'))
  assert.ok(env, 'the loaded value never reached Redis')
  assert.deepEqual(env.d, { loaded: 'user:42', at: 7 })
  assert.equal(env.v, 2)

  // L1 has it: the second get is an L1 hit and the loader is not called again
  const before = a.stats()
  assert.deepEqual(await a.get('user:42'), { loaded: 'user:42', at: 7 })
  assert.deepEqual(pick(delta(before, a.stats()), COUNTERS), { l1Hits: 1, l1Misses: 0, l2Hits: 0, l2Misses: 0, loaderCalls: 0 })
  assert.deepEqual(calls, ['user:42'])
  assert.equal(a.stats().loaderCalls, 1)

  // a second instance without a loader reads it from Redis
  const b = s.cache()
  assert.deepEqual(await b.get('user:42'), { loaded: 'user:42', at: 7 })
  assert.equal(b.stats().l2Hits, 1)
})

test("the constructor's loader is not called when Redis has the value", async (t) => {
  const s = scope(t, { name: 'read-loader-l2' })
  const a = s.cache()
  await a.set('k', 'from-a')
  let calls = 0
  const b = s.cache({ loader: () => { calls++; return 'from-loader' } })
  assert.equal(await b.get('k'), 'from-a')
  assert.equal(calls, 0)
  assert.equal(b.stats().loaderCalls, 0)
  assert.equal(b.stats().l2Hits, 1)
  // and it was copied into B's L1
  const before = b.stats()
  assert.equal(await b.get('k'), 'from-a')
  assert.equal(b.stats().l1Hits - before.l1Hits, 1)
  assert.equal(calls, 0)
})

test('del removes the key from L1 and Redis', async (t) => {
  const s = scope(t, { name: 'read-del' })
  const a = s.cache()
  await a.set('k', 1)
  await a.del('k')
  assert.equal(await s.inRedis('k'), false)
  assert.equal(await a.get('k'), null)
  assert.equal(await a.exists('k'), false)
  assert.equal(a.stats().deletes, 1)
  // deleting a missing key is fine
  await a.del('never-set')
})

test('exists sees L1 and Redis but does not call the loader', async (t) => {
  const s = scope(t, { name: 'read-exists' })
  let calls = 0
  const a = s.cache({ loader: () => { calls++; return 'x' } })
  const b = s.cache()
  await b.set('in-redis', 1)
  assert.equal(await a.exists('in-redis'), true)
  assert.equal(await a.exists('absent'), false)
  assert.equal(calls, 0)
  await a.set('mine', 2)
  await s.redis.del(s.entryKey('mine'))
  assert.equal(await a.exists('mine'), true, 'exists must see the L1 entry')
})

test('gets issued together are sent in batches: each resolves its own key, hits and misses mixed', async (t) => {
  const s = scope(t, { name: 'read-batch' })
  const a = s.cache()
  const n = 100 // more than one batch of 16, and not a multiple of it
  await Promise.all(Array.from({ length: n }, (_, i) => (i % 3 === 0 ? null : a.set(`k${i}`, { i }))))
  const b = s.cache()
  const before = b.stats()
  const got = await Promise.all(Array.from({ length: n }, (_, i) => b.get(`k${i}`)))
  for (let i = 0; i < n; i++) assert.deepEqual(got[i], i % 3 === 0 ? null : { i }, `k${i}`)
  const d = delta(before, b.stats())
  assert.equal(d.l2Hits, n - Math.ceil(n / 3))
  assert.equal(d.l2Misses, Math.ceil(n / 3))
})

test('gets still queued when close() is called in the same turn settle (null or their value), none hangs', async (t) => {
  const s = scope(t, { name: 'read-batch-close' })
  const a = s.cache()
  await a.set('k1', 1)
  const b = s.cache()
  const reads = Array.from({ length: 40 }, (_, i) => b.get(`k${i % 2}`))
  const closed = b.close()
  const settled = await Promise.race([
    Promise.all(reads).then((values) => ({ values })),
    new Promise((resolve) => setTimeout(() => resolve({ timeout: true }), 3000).unref()),
  ])
  assert.ok(!settled.timeout, 'queued gets did not settle within 3 s of close()')
  for (const [i, v] of settled.values.entries()) assert.ok(v === null || (i % 2 === 1 && v === 1), `read ${i}: ${v}`)
  await closed
})
