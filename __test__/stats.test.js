'use strict'
// stats(): exact counters after known sequences of calls.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { scope, delta, pick, eventually } = require('./helpers/cache.js')

const FIELDS = ['l1Hits', 'l1Misses', 'l2Hits', 'l2Misses', 'loaderCalls', 'loaderErrors', 'sets', 'deletes',
  'tagInvalidations', 'redisErrors', 'redisCorruptValues', 'l1FillsSkipped', 'l1Entries', 'l1Evictions',
  'l1Expirations', 'pendingOperations', 'l1HitRatio', 'l2HitRatio']

test('a fresh cache reports every documented counter as 0', async (t) => {
  const s = scope(t, { name: 'stats-fresh' })
  const st = s.cache().stats()
  for (const f of FIELDS) {
    assert.equal(typeof st[f], 'number', `${f} is not a number`)
    assert.equal(st[f], 0, `${f} is not 0`)
  }
})

test('five gets of cached falsy values add exactly five l1Hits and no misses', async (t) => {
  const s = scope(t, { name: 'stats-falsy' })
  const a = s.cache()
  const values = [0, false, '', [], {}]
  for (const [i, v] of values.entries()) await a.set(`f${i}`, v)
  assert.equal(a.stats().sets, 5)
  assert.equal(a.stats().l1Entries, 5)
  const before = a.stats()
  for (const [i, v] of values.entries()) assert.deepEqual(await a.get(`f${i}`), v)
  assert.deepEqual(pick(delta(before, a.stats()), ['l1Hits', 'l1Misses', 'l2Hits', 'l2Misses', 'loaderCalls', 'sets']),
    { l1Hits: 5, l1Misses: 0, l2Hits: 0, l2Misses: 0, loaderCalls: 0, sets: 0 })
  assert.equal(a.stats().l1HitRatio, 1)
})

test('a known sequence gives exact counters and ratios', async (t) => {
  const s = scope(t, { name: 'stats-sequence' })
  const writer = s.cache()
  await writer.set('in-redis-1', 1)
  await writer.set('in-redis-2', 2)

  const a = s.cache()
  await a.set('local', 'x', { tags: ['t'] }) // sets 1
  await a.get('local') // l1 hit
  await a.get('local') // l1 hit
  await a.get('in-redis-1') // l1 miss, l2 hit (copied)
  await a.get('in-redis-1') // l1 hit
  await a.get('in-redis-2') // l1 miss, l2 hit
  await a.get('missing') // l1 miss, l2 miss
  await a.getOrSet('loaded', () => 'L') // l1 miss, l2 miss, loader call, set
  await a.getOrSet('loaded', () => 'L') // l1 hit
  await assert.rejects(a.getOrSet('fails', () => { throw new Error('boom') })) // l1 miss, l2 miss, loader call + error
  await a.del('local') // deletes 1
  await a.invalidateTag('t') // tagInvalidations 1

  const st = a.stats()
  assert.deepEqual(pick(st, ['l1Hits', 'l1Misses', 'l2Hits', 'l2Misses', 'loaderCalls', 'loaderErrors', 'sets', 'deletes',
    'tagInvalidations', 'redisErrors', 'redisCorruptValues', 'pendingOperations']), {
    l1Hits: 4,
    l1Misses: 5,
    l2Hits: 2,
    l2Misses: 3,
    loaderCalls: 2,
    loaderErrors: 1,
    sets: 2,
    deletes: 1,
    tagInvalidations: 1,
    redisErrors: 0,
    redisCorruptValues: 0,
    pendingOperations: 0,
  })
  assert.equal(st.l1HitRatio, 4 / 9)
  assert.equal(st.l2HitRatio, 2 / 5)
  // in L1: in-redis-1, in-redis-2, loaded ('local' was deleted)
  assert.equal(st.l1Entries, 3)
})

test('a corrupt value under the prefix is a miss and is counted', async (t) => {
  const s = scope(t, { name: 'stats-corrupt' })
  const a = s.cache()
  await s.redis.set(s.entryKey('bad'), 'this is not an envelope', 'PX', 10_000)
  await s.redis.set(s.entryKey('bad-json'), '{"v":1,"e":', 'PX', 10_000)
  assert.equal(await a.get('bad'), null)
  assert.equal(await a.get('bad-json'), null)
  const st = a.stats()
  assert.equal(st.redisCorruptValues, 2)
  assert.equal(st.l2Misses, 2)
  assert.equal(st.l2Hits, 0)
  assert.equal(st.l1Entries, 0)
  // and a loader replaces it
  assert.equal(await a.getOrSet('bad', () => 'fixed'), 'fixed')
  const env = await eventually(async () => {
    const e = await s.envelope('bad').catch(() => null)
    return e && e.d === 'fixed' ? e : null
  })
  assert.ok(env, 'the loaded value did not replace the corrupt one in Redis')
})

test('an unreachable Redis counts redisErrors and l2Misses', async (t) => {
  const { freePort } = require('./helpers/redis.js')
  const port = await freePort()
  const s = scope(t, { name: 'stats-down', url: `redis://127.0.0.1:${port}` })
  const a = s.cache({ redis: { connectTimeout: 0.2, commandTimeout: 0.2 } })
  assert.equal(await a.get('k'), null)
  const st = a.stats()
  assert.equal(st.l1Misses, 1)
  assert.equal(st.l2Misses, 1)
  assert.equal(st.l2Hits, 0)
  assert.ok(st.redisErrors >= 1, `redisErrors ${st.redisErrors}`)
})

test('l1Expirations counts entries dropped by their TTL', async (t) => {
  const s = scope(t, { name: 'stats-expire' })
  const a = s.cache({ l2: false })
  await a.set('k1', 1, { ttl: 0.05 })
  await a.set('k2', 2, { ttl: 0.05 })
  await a.set('k3', 3, { ttl: 60 })
  const done = await eventually(async () => {
    await a.get('k1')
    await a.get('k2')
    return a.stats().l1Expirations >= 2
  }, { timeoutMs: 4000, intervalMs: 50 })
  assert.equal(done, true, `l1Expirations ${a.stats().l1Expirations}`)
  assert.equal(a.stats().l1Entries, 1)
})

test('stats() has exactly the fields CacheStats in index.d.ts declares, and every series registerMetrics reads exists', async (t) => {
  const fs = require('node:fs')
  const path = require('node:path')
  const root = path.join(__dirname, '..')
  const dts = fs.readFileSync(path.join(root, 'index.d.ts'), 'utf8')
  const body = /export interface CacheStats \{([\s\S]*?)\n\}/.exec(dts)
  assert.ok(body, 'index.d.ts declares CacheStats')
  const declared = [...body[1].matchAll(/^ {2}(\w+): (number|boolean)$/gm)].map((m) => [m[1], m[2]])
  const s = scope(t, { name: 'stats-shape' })
  const st = s.cache().stats()
  assert.deepEqual(Object.keys(st).sort(), declared.map(([f]) => f).sort(), 'stats() and CacheStats name the same fields')
  for (const [f, type] of declared) assert.equal(typeof st[f], type, f)
  // lib/metrics.js reads stats fields by name: each must exist
  const metrics = fs.readFileSync(path.join(root, 'lib', 'metrics.js'), 'utf8')
  for (const [, f] of metrics.matchAll(/\bs\.(\w+)/g)) assert.ok(f in st, `lib/metrics.js reads s.${f}, which stats() does not have`)
})
