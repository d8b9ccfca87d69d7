'use strict'
// Two caches with different prefixes on one Redis share nothing: keys, tags, deletes.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { scope, sleep } = require('./helpers/cache.js')
const { uniquePrefix } = require('./helpers/redis.js')

/** Two scopes (so two prefixes, both cleaned up) on the shared Redis. */
function twoPrefixes(t, name) {
  const sa = scope(t, { name: `${name}-a` })
  const sb = scope(t, { name: `${name}-b` })
  assert.notEqual(sa.prefix, sb.prefix)
  return { sa, sb }
}

test('a value set under one prefix is not seen under another', async (t) => {
  const { sa, sb } = twoPrefixes(t, 'iso-get')
  const a = sa.cache()
  const b = sb.cache()
  await a.set('k', 'from-a')
  assert.equal(await b.get('k'), null)
  assert.equal(await b.exists('k'), false)
  assert.equal(b.stats().l2Misses, 1)

  await b.set('k', 'from-b')
  assert.equal(await a.get('k'), 'from-a')
  assert.equal(await b.get('k'), 'from-b')
  // and in Redis, through fresh instances
  const a2 = sa.cache()
  const b2 = sb.cache()
  assert.equal(await a2.get('k'), 'from-a')
  assert.equal(await b2.get('k'), 'from-b')
  assert.equal((await sa.envelope('k')).d, 'from-a')
  assert.equal((await sa.envelope('k', sb.prefix)).d, 'from-b')
})

test('every Redis key a cache writes starts with {<its prefix>}:', async (t) => {
  const { sa } = twoPrefixes(t, 'iso-keys')
  const a = sa.cache()
  await a.set('x', 1, { tags: ['t1', 't2'] })
  await a.set('y', 2)
  await a.getOrSet('z', () => 3, { tags: ['t1'] })
  await sleep(30)
  const keys = await sa.redisKeys()
  assert.deepEqual(keys, [sa.entryKey('x'), sa.entryKey('y'), sa.entryKey('z'), sa.tagKey('t1'), sa.tagKey('t2'), sa.clockKey()].sort())
})

test('invalidateTag under one prefix does not touch the same tag under another', async (t) => {
  const { sa, sb } = twoPrefixes(t, 'iso-tag')
  const a = sa.cache()
  const b = sb.cache()
  await a.set('k', 'a-value', { tags: ['t'] })
  await b.set('k', 'b-value', { tags: ['t'] })
  await b.invalidateTag('t')
  assert.equal(await b.get('k'), null)
  assert.equal(await sb.inRedis('k'), false)

  assert.equal(await sa.inRedis('k'), true)
  assert.equal(await sa.redis.exists(sa.tagKey('t')), 1)
  await sleep(100) // time for any cross-prefix message to arrive, if one (wrongly) were sent
  const before = a.stats()
  assert.equal(await a.get('k'), 'a-value')
  assert.equal(a.stats().l1Hits - before.l1Hits, 1, "A's L1 entry was dropped by B's invalidation")
  const a2 = sa.cache()
  assert.equal(await a2.get('k'), 'a-value')
})

test('del under one prefix does not touch another', async (t) => {
  const { sa, sb } = twoPrefixes(t, 'iso-del')
  const a = sa.cache()
  const b = sb.cache()
  await a.set('k', 'a-value')
  await b.set('k', 'b-value')
  await b.del('k')
  await sleep(100)
  assert.equal(await sa.inRedis('k'), true)
  const before = a.stats()
  assert.equal(await a.get('k'), 'a-value')
  assert.equal(a.stats().l1Hits - before.l1Hits, 1)
})

test('a prefix that extends another prefix is still separate', async (t) => {
  const sa = scope(t, { name: 'iso-nested' })
  const a = sa.cache()
  const nestedPrefix = sa.alsoClean(`${sa.prefix}:k`)
  const b = sa.cache({ prefix: nestedPrefix })
  await a.set('x', 'outer', { tags: ['t'] })
  await b.set('x', 'inner', { tags: ['t'] })
  assert.equal((await sa.envelope('x')).d, 'outer')
  assert.equal((await sa.envelope('x', nestedPrefix)).d, 'inner')
  await b.invalidateTag('t')
  assert.equal(await sa.inRedis('x'), true)
  assert.equal(await sa.inRedis('x', nestedPrefix), false)
  const a2 = sa.cache()
  assert.equal(await a2.get('x'), 'outer')
})

test('the prefix in use is reported by .prefix', async (t) => {
  const s = scope(t, { name: 'iso-default' })
  const a = s.cache()
  assert.equal(a.prefix, s.prefix)
  const other = uniquePrefix('iso-explicit')
  s.alsoClean(other)
  const b = s.cache({ prefix: other })
  assert.equal(b.prefix, other)
  await b.set('k', 1)
  assert.equal(await s.inRedis('k', other), true)
  assert.equal(await s.inRedis('k'), false)
})
