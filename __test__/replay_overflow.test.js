'use strict'
// Invalidations that could not reach Redis are never dropped. Loader fills imply no
// invalidation (they are not queued at all); explicit invalidations beyond the queue's bound
// (10 000 distinct keys and tags) collapse into one invalidation of the whole prefix, applied
// when Redis is back: coarser (every entry of the prefix goes, in Redis and in every L1), never
// stale.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { privateRedis, uniquePrefix, eventually } = require('./helpers/redis.js')
const { FAST, caches, connected, guardProcess } = require('./helpers/failure.js')

async function frozenScene(t, name) {
  const guard = guardProcess(t)
  const server = await privateRedis(t)
  t.after(() => server.thaw())
  const make = caches(t)
  const options = { redisUrl: server.url, prefix: uniquePrefix(name), redis: FAST }
  const a = make(options)
  const b = make(options)
  await connected(a, b)
  return { guard, server, make, options, a, b }
}

/** Keeps `cache` busy with reads until `check()` holds (bounded): the breaker needs calls to probe. */
async function until(cache, check, timeoutMs = 15000) {
  return eventually(async () => {
    await cache.get('probe').catch(() => {})
    return check()
  }, { timeoutMs, intervalMs: 20 })
}

test('Redis frozen: del and invalidateTag, then 20 000 getOrSet misses: the invalidations are kept and applied', async (t) => {
  const { guard, server, make, options, a, b } = await frozenScene(t, 'ovf-fills')
  await a.set('x', 'old')
  await a.set('tagged', 'old', { tags: ['T'] })
  assert.equal(await b.get('x'), 'old')
  assert.equal(await b.get('tagged'), 'old')
  await server.freeze()
  await a.del('x')
  await a.invalidateTag('T')
  for (let i = 0; i < 20000; i += 1000) {
    const batch = []
    for (let j = i; j < i + 1000; j++) batch.push(a.getOrSet(`miss:${j}`, () => j))
    assert.deepEqual(await Promise.all(batch), Array.from({ length: 1000 }, (_, n) => i + n))
  }
  const st = a.stats()
  t.diagnostic(`while frozen: replaysPending ${st.replaysPending}, replaysCollapsed ${st.replaysCollapsed}`)
  assert.equal(st.replaysPending, 2, 'loader fills were queued as replays, or an invalidation was lost')
  assert.equal(st.replaysCollapsed, 0)
  server.thaw()
  assert.ok(await until(a, () => a.stats().replaysPending === 0), 'not replayed after the thaw')
  const fresh = make({ ...options, l1: false })
  await connected(fresh)
  assert.equal(await fresh.get('x'), null)
  assert.equal(await fresh.get('tagged'), null)
  assert.ok(await eventually(async () => (await b.get('x')) === null && (await b.get('tagged')) === null, { timeoutMs: 5000 }), 'the other process still serves the old values')
  await guard.assertNone(assert)
})

test('more distinct invalidations than the replay queue holds collapse into one invalidation of the prefix', async (t) => {
  const { guard, server, make, options, a, b } = await frozenScene(t, 'ovf-collapse')
  const keep = []
  for (let i = 0; i < 50; i++) {
    await a.set(`k:${i}`, `old:${i}`, { tags: [`t:${i % 5}`] })
    keep.push(`k:${i}`)
  }
  for (const k of keep) assert.notEqual(await b.get(k), null)
  await server.freeze()
  // 10 500 distinct keys and 600 distinct tags: more than the queue's 10 000
  const calls = []
  for (let i = 0; i < 10500; i++) calls.push(a.del(`gone:${i}`))
  for (let i = 0; i < 600; i++) calls.push(a.invalidateTag(`tag:${i}`))
  calls.push(a.del('k:3'), a.invalidateTag('t:4'))
  await Promise.all(calls)
  let st = a.stats()
  t.diagnostic(`while frozen: replaysPending ${st.replaysPending}, replaysCollapsed ${st.replaysCollapsed}`)
  assert.ok(st.replaysCollapsed >= 1, 'the queue never collapsed')
  // a replay that was out (waiting for the frozen Redis) when the queue collapsed comes back
  // covered by it: then one invalidation of the prefix waits, nothing else
  assert.ok(await eventually(() => a.stats().replaysPending === 1, { timeoutMs: 5000 }), `pending ${a.stats().replaysPending}: after collapsing, one invalidation of the prefix waits`)
  server.thaw()
  assert.ok(await until(a, () => a.stats().replaysPending === 0), 'not replayed after the thaw')
  st = a.stats()
  assert.ok(st.replayed >= 1)
  const fresh = make({ ...options, l1: false })
  await connected(fresh)
  // the whole prefix was invalidated: every old entry is gone, in Redis and in the other L1
  const fromFresh = await Promise.all(keep.map((k) => fresh.get(k)))
  assert.deepEqual(fromFresh.filter((v) => v !== null), [])
  assert.ok(await eventually(async () => (await Promise.all(keep.map((k) => b.get(k)))).every((v) => v === null), { timeoutMs: 5000 }), 'the other process still serves old values')
  // and the cache works normally afterwards
  await a.set('after', 1)
  assert.equal(await fresh.get('after'), 1)
  await guard.assertNone(assert)
})
