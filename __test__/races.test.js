'use strict'
// Races between loads, writes and invalidations: a cache must never keep a value older than an
// invalidation that completed.

const { clockName, lockName } = require('./helpers/layout.js')
const test = require('node:test')
const assert = require('node:assert/strict')
const { scope, sleep } = require('./helpers/cache.js')

for (const l2 of [true, false]) {
  test(`a value loaded across an invalidation is returned but not cached (${l2 ? 'L1 + Redis' : 'L1 only'})`, async (t) => {
    const s = scope(t, { name: 'race-load' })
    const cache = s.cache(l2 ? {} : { l2: false })
    let db = 1
    let loads = 0
    let started
    const firstStarted = new Promise((resolve) => { started = resolve })
    const load = async () => {
      loads++
      const v = db
      started()
      await sleep(30)
      return { v }
    }
    const first = cache.getOrSet('p', load, { tags: ['t'] })
    await firstStarted
    db = 2 // the update lands while the first load still runs
    await cache.invalidateTag('t')
    // a lookup that starts after the invalidation completed must not join the older load
    const second = await cache.getOrSet('p', load, { tags: ['t'] })
    assert.deepEqual(second, { v: 2 })
    assert.deepEqual(await first, { v: 1 }, 'the first caller gets what it loaded')
    await sleep(10)
    assert.deepEqual(await cache.getOrSet('p', load, { tags: ['t'] }), { v: 2 }, 'the older value was cached')
    assert.equal(loads, 2)
    if (l2) assert.deepEqual((await s.envelope('p')).d, { v: 2 })
    assert.ok(cache.stats().loadsDiscarded >= 1)
  })
}

test('a lookup naming no tags does not join one that began before a tag invalidation (the value found may carry the tag)', async (t) => {
  const s = scope(t, { name: 'race-tag-join' })
  const writer = s.cache()
  const reader = s.cache()
  await writer.set('p', { v: 1 }, { tags: ['t'] })
  let loads = 0
  const load = async () => { loads++; return { v: 2 } }
  const first = reader.getOrSet('p', load) // untagged: finds { v: 1 } in Redis, tagged t
  const invalidated = reader.invalidateTag('t')
  const second = reader.getOrSet('p', load)
  assert.notEqual(second, first, 'joined a lookup that began before the tag invalidation')
  await Promise.all([first, second, invalidated])
  assert.deepEqual(await reader.getOrSet('p', load), { v: 2 }, 'the tagged value outlived its invalidation')
  assert.ok(loads >= 1)
})

test('a del while a load runs keeps the loaded value out of both layers', async (t) => {
  const s = scope(t, { name: 'race-del' })
  const cache = s.cache()
  let started
  const loading = new Promise((resolve) => { started = resolve })
  const slow = cache.getOrSet('k', async () => { started(); await sleep(30); return 'old' })
  await loading
  await cache.del('k')
  assert.equal(await slow, 'old')
  await sleep(20)
  assert.equal(await s.inRedis('k'), false)
  assert.equal(await cache.get('k'), null)
})

test('an invalidation issued right after a write is applied after it (2000 rounds)', async (t) => {
  const s = scope(t, { name: 'race-order' })
  const cache = s.cache()
  const reader = s.cache()
  let survived = 0
  for (let i = 0; i < 2000; i++) {
    const key = `k${i % 50}`
    const writing = cache.getOrSet(key, () => `v${i}`, { tags: [`t${i % 50}`] })
    // the write to Redis is in flight: invalidate without waiting for it
    await new Promise((r) => setImmediate(r))
    await cache.invalidateTag(`t${i % 50}`)
    await writing
    if (await s.inRedis(key)) survived++
  }
  assert.equal(survived, 0, `${survived} values outlived the invalidation issued after them`)
  for (let i = 0; i < 50; i++) assert.equal(await reader.get(`k${i}`), null)
})

test('the invalidation clock expires 7 days after the last invalidation; a load that found no clock restarts it and still cannot undo a later delete', async (t) => {
  const s = scope(t, { name: 'race-clock-ttl' })
  const a = s.cache()
  const b = s.cache()
  await a.invalidateTag('warm')
  const clockKey = clockName(s.prefix)
  const pttl = await s.redis.pttl(clockKey)
  const WEEK = 7 * 24 * 3600 * 1000
  assert.ok(pttl > WEEK - 60_000 && pttl <= WEEK, `the clock's PTTL is ${pttl} ms, not about 7 days`)
  // as if the week had passed: a lookup finds no clock, and starts it again at the wall clock
  await s.redis.del(clockKey)
  let release
  const gate = new Promise((r) => { release = r })
  const load = a.getOrSet('k', async () => { await gate; return 'before the delete' })
  for (let i = 0; i < 200 && (await s.redis.exists(lockName(s.prefix, 'k'))) === 0; i++) await sleep(5)
  assert.ok(BigInt(await s.redis.get(clockKey)) > 1_000_000_000_000_000n, 'the lookup did not restart the clock at the wall clock in µs')
  await b.del('k') // the database changed: the load in progress is marked stale
  release()
  assert.equal(await load, 'before the delete') // returned to its caller...
  assert.equal(await s.inRedis('k'), false, 'a value loaded before the delete was written after it')
  assert.equal(await b.get('k'), null)
})
