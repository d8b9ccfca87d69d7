'use strict'
// TTLs: per-entry ttl in both layers, overriding l1.ttl / l2.ttl both ways; L1 copies of Redis
// entries never outlive them. Every wait is bounded (`eventually`, a few seconds at most).

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { scope, delta, pick, eventually, sleep } = require('./helpers/cache.js')

const COUNTERS = ['l1Hits', 'l1Misses', 'l2Hits', 'l2Misses']

/** Waits (bounded) until Redis no longer has the entry of `key`; asserts it went. */
async function waitGoneFromRedis(s, key, timeoutMs = 3000) {
  const gone = await eventually(async () => !(await s.inRedis(key)), { timeoutMs, intervalMs: 10 })
  assert.equal(gone, true, `the Redis entry of ${key} did not expire within ${timeoutMs} ms`)
}

test('a fractional per-entry ttl (0.2 s) expires in both layers', async (t) => {
  const s = scope(t, { name: 'ttl-frac' })
  const a = s.cache()
  const b = s.cache()
  await a.set('k', { v: 1 }, { ttl: 0.2 })
  const pttl = await s.redis.pttl(s.entryKey('k'))
  assert.ok(pttl > 0 && pttl <= 200, `PTTL ${pttl} is not within (0, 200] ms`)
  assert.deepEqual(await b.get('k'), { v: 1 }) // B now has an L1 copy
  assert.deepEqual(await a.get('k'), { v: 1 })

  await waitGoneFromRedis(s, 'k')
  const beforeA = a.stats()
  const beforeB = b.stats()
  assert.equal(await a.get('k'), null, "A's L1 outlived the entry's ttl")
  assert.equal(await b.get('k'), null, "B's L1 copy outlived the entry's ttl")
  assert.equal(a.stats().l1Hits, beforeA.l1Hits)
  assert.equal(b.stats().l1Hits, beforeB.l1Hits)
  assert.equal(await a.exists('k'), false)
})

test('a fractional ttl is rounded up to whole milliseconds', async (t) => {
  const s = scope(t, { name: 'ttl-round' })
  const a = s.cache()
  await a.set('k', 1, { ttl: 1.2341 })
  const pttl = await s.redis.pttl(s.entryKey('k'))
  assert.ok(pttl > 1000 && pttl <= 1235, `PTTL ${pttl}`)
  await a.set('tiny', 1, { ttl: 0.0001 }) // positive: accepted, at least 1 ms
})

test('a per-entry ttl longer than l1.ttl and l2.ttl keeps the entry in both layers', async (t) => {
  const s = scope(t, { name: 'ttl-longer' })
  const a = s.cache({ l1: { ttl: 0.2 }, l2: { ttl: 0.2 } })
  await a.set('k', 'long', { ttl: 5 })
  await a.set('default', 'short')
  const pttl = await s.redis.pttl(s.entryKey('k'))
  assert.ok(pttl > 4000 && pttl <= 5000, `PTTL ${pttl} is not the entry's 5 s`)
  const pttlDefault = await s.redis.pttl(s.entryKey('default'))
  assert.ok(pttlDefault > 0 && pttlDefault <= 200, `PTTL ${pttlDefault} is not l2.ttl`)

  await sleep(450) // well past l1.ttl and l2.ttl
  const before = a.stats()
  assert.equal(await a.get('k'), 'long')
  assert.deepEqual(pick(delta(before, a.stats()), COUNTERS), { l1Hits: 1, l1Misses: 0, l2Hits: 0, l2Misses: 0 },
    'the entry left L1 at l1.ttl instead of its own ttl')
  assert.equal(await s.inRedis('k'), true)
  // the entry without its own ttl used the defaults: gone from both layers
  assert.equal(await a.get('default'), null)
  assert.equal(await s.inRedis('default'), false)
})

test('a per-entry ttl shorter than l1.ttl and l2.ttl expires the entry in both layers', async (t) => {
  const s = scope(t, { name: 'ttl-shorter' })
  const a = s.cache({ l1: { ttl: 60 }, l2: { ttl: 3600 } })
  await a.set('k', 'short', { ttl: 0.2 })
  const pttl = await s.redis.pttl(s.entryKey('k'))
  assert.ok(pttl > 0 && pttl <= 200, `PTTL ${pttl}`)
  await waitGoneFromRedis(s, 'k')
  const before = a.stats()
  assert.equal(await a.get('k'), null)
  assert.equal(a.stats().l1Hits, before.l1Hits, 'the entry stayed in L1 for l1.ttl')
})

test('l1.ttl and l2.ttl apply to entries written without a ttl', async (t) => {
  const s = scope(t, { name: 'ttl-defaults' })
  const a = s.cache({ l1: { ttl: 0.2 }, l2: { ttl: 30 } })
  await a.set('k', 'v')
  const pttl = await s.redis.pttl(s.entryKey('k'))
  assert.ok(pttl > 29_000 && pttl <= 30_000, `PTTL ${pttl} is not l2.ttl`)
  await sleep(450)
  // gone from L1, still in Redis
  const before = a.stats()
  assert.equal(await a.get('k'), 'v')
  assert.deepEqual(pick(delta(before, a.stats()), COUNTERS), { l1Hits: 0, l1Misses: 1, l2Hits: 1, l2Misses: 0 })
})

test('the default l2.ttl is one hour', async (t) => {
  const s = scope(t, { name: 'ttl-default-l2' })
  const a = s.cache()
  await a.set('k', 'v')
  const pttl = await s.redis.pttl(s.entryKey('k'))
  assert.ok(pttl > 3_590_000 && pttl <= 3_600_000, `PTTL ${pttl}`)
})

test('a value copied from Redis into L1 does not outlive the Redis entry', async (t) => {
  const s = scope(t, { name: 'ttl-copy' })
  const a = s.cache()
  const b = s.cache({ l1: { ttl: 60 } })
  await a.set('k', 'v', { ttl: 0.3 })
  assert.equal(await b.get('k'), 'v') // at once: copied into B's L1
  assert.equal(b.stats().l2Hits, 1)
  assert.equal(await b.get('k'), 'v')
  assert.equal(b.stats().l1Hits, 1)

  await waitGoneFromRedis(s, 'k')
  assert.equal(await b.get('k'), null, "B's L1 copy outlived the Redis entry")
  assert.equal(await b.exists('k'), false)
})

test('a copy read late (most of the ttl used) expires with the Redis entry, not a full ttl later', async (t) => {
  const s = scope(t, { name: 'ttl-copy-late' })
  const a = s.cache()
  // B's l1.ttl (0.9 s) is shorter than the entry's ttl (1 s) but longer than what remains of it
  const b = s.cache({ l1: { ttl: 0.9 } })
  await a.set('k', 'v', { ttl: 1 })
  await sleep(300)
  assert.equal(await b.get('k'), 'v')
  assert.equal(b.stats().l2Hits, 1)
  await waitGoneFromRedis(s, 'k')
  assert.equal(await b.get('k'), null, "B's L1 copy outlived the Redis entry")
})

test('a copy of an entry written with l2.ttl (no per-entry ttl) does not outlive it', async (t) => {
  const s = scope(t, { name: 'ttl-copy-l2ttl' })
  const a = s.cache({ l2: { ttl: 0.3 } })
  const b = s.cache({ l1: { ttl: 60 } })
  await a.set('k', 'v')
  assert.equal(await b.get('k'), 'v')
  await waitGoneFromRedis(s, 'k')
  assert.equal(await b.get('k'), null, "B's L1 copy outlived the Redis entry")
})

test('setting a key again replaces its ttl', async (t) => {
  const s = scope(t, { name: 'ttl-reset' })
  const a = s.cache()
  await a.set('k', 'first', { ttl: 0.2 })
  await a.set('k', 'second', { ttl: 5 })
  const pttl = await s.redis.pttl(s.entryKey('k'))
  assert.ok(pttl > 4000, `PTTL ${pttl}`)
  await sleep(400)
  assert.equal(await a.get('k'), 'second')
  const b = s.cache()
  assert.equal(await b.get('k'), 'second')
})

test("getOrSet's ttl applies to the loaded value in both layers", async (t) => {
  const s = scope(t, { name: 'ttl-getorset' })
  const a = s.cache()
  let calls = 0
  const loader = () => { calls++; return `v${calls}` }
  assert.equal(await a.getOrSet('k', loader, { ttl: 0.2 }), 'v1')
  const pttl = await eventually(async () => {
    const p = await s.redis.pttl(s.entryKey('k'))
    return p > 0 ? p : 0
  })
  assert.ok(pttl > 0 && pttl <= 200, `PTTL ${pttl}`)
  assert.equal(await a.getOrSet('k', loader, { ttl: 0.2 }), 'v1')
  await waitGoneFromRedis(s, 'k')
  assert.equal(await a.getOrSet('k', loader, { ttl: 0.2 }), 'v2')
  assert.equal(calls, 2)
})
