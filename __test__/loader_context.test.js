'use strict'
// The loader's second argument (issue 12's adaptive caching): `ctx.setTtl`, `ctx.setTags` and
// `ctx.skip()` choose the entry's options from the value just loaded, in one process and across
// processes; bad arguments are the usual errors and leave nothing cached.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { scope, codes } = require('./helpers/cache.js')
const { entryName } = require('./helpers/layout.js')

test('ctx.setTtl caches the value for that many seconds, in L1 and Redis', async (t) => {
  const s = scope(t, { name: 'ctx-ttl' })
  const c = s.cache({ l2: { ttl: 3600 } })
  const v = await c.getOrSet('k', (key, ctx) => { ctx.setTtl(30); return { key } }, { ttl: 600 })
  assert.deepEqual(v, { key: 'k' })
  const pttl = await s.redis.pttl(entryName(s.prefix, 'k'))
  assert.ok(pttl > 0 && pttl <= 30000, `Redis TTL ${pttl} ms, not the 30 s the loader chose`)
  assert.equal((await s.envelope('k')).l, 30000, 'the L1 TTL travels with the entry')
})

test('ctx.setTags tags the value: an invalidation of a tag chosen by the loader reaches every process', async (t) => {
  const s = scope(t, { name: 'ctx-tags' })
  const a = s.cache({ l1: { ttl: 60 } })
  const b = s.cache({ l1: { ttl: 60 } })
  const loader = (key, ctx) => { ctx.setTags([`owner:${key.split(':')[1]}`]); return `v-${key}` }
  assert.equal(await a.getOrSet('doc:7', loader, { tags: ['ignored'] }), 'v-doc:7')
  assert.deepEqual((await s.envelope('doc:7')).t, ['owner:7'])
  assert.equal(await b.get('doc:7'), 'v-doc:7')
  await a.invalidateTag('ignored')
  assert.equal(await b.get('doc:7'), 'v-doc:7', 'the call\'s tag was replaced by the loader\'s')
  await b.invalidateTag('owner:7')
  assert.equal(a.stats().l1Entries, 0)
  assert.equal(await a.get('doc:7'), null)
  assert.equal(await s.cache({ l1: false }).get('doc:7'), null)
})

test('a tag chosen by the loader and invalidated while it ran keeps the value out of the cache', async (t) => {
  const s = scope(t, { name: 'ctx-race' })
  const a = s.cache({ l1: { ttl: 60 } })
  const other = s.cache({ l1: { ttl: 60 } })
  let release
  const gate = new Promise((r) => { release = r })
  let started
  const running = new Promise((r) => { started = r })
  const p = a.getOrSet('k', async (key, ctx) => {
    started()
    await gate // the database was read before the invalidation below
    ctx.setTags(['late'])
    return 'old'
  })
  await running
  await other.invalidateTag('late')
  release()
  assert.equal(await p, 'old', 'the caller still gets its value')
  assert.equal(await s.inRedis('k'), false, 'a value loaded across an invalidation of its tag was cached in Redis')
  assert.equal(await a.getOrSet('k', () => 'new'), 'new', 'the old value was kept in L1')
})

test('ctx.skip() returns the value to every waiting caller and caches nothing; the lock is free at once', async (t) => {
  const s = scope(t, { name: 'ctx-skip' })
  const a = s.cache({ l1: { ttl: 60 } })
  const b = s.cache({ l1: { ttl: 60 } })
  let calls = 0
  const loader = async (key, ctx) => {
    calls++
    await new Promise((r) => setTimeout(r, 20))
    ctx.skip()
    return { partial: true }
  }
  const results = await Promise.all(Array.from({ length: 10 }, () => a.getOrSet('k', loader)))
  assert.equal(calls, 1)
  for (const r of results) assert.deepEqual(r, { partial: true })
  assert.equal(a.stats().l1Entries, 0)
  assert.equal(await s.redis.exists(entryName(s.prefix, 'k')), 0)
  // the stampede lock was released: another process loads without waiting for lock.wait
  const waitsBefore = b.stats().lockWaits
  assert.equal(await b.getOrSet('k', () => 'full'), 'full')
  assert.equal(b.stats().lockWaits, waitsBefore)
  assert.equal(await a.get('k'), 'full')
})

test('bad arguments to the context are the usual errors, thrown in the loader; nothing is cached', async (t) => {
  const s = scope(t, { name: 'ctx-bad' })
  const c = s.cache()
  const cases = [
    [(ctx) => ctx.setTtl(-1), RangeError, codes.INVALID_TTL],
    [(ctx) => ctx.setTtl(NaN), RangeError, codes.INVALID_TTL],
    [(ctx) => ctx.setTtl('5'), RangeError, codes.INVALID_TTL],
    [(ctx) => ctx.setTags('t'), TypeError, codes.INVALID_TAGS],
    [(ctx) => ctx.setTags(['']), TypeError, codes.INVALID_TAGS],
  ]
  for (const [i, [misuse, Cls, code]] of cases.entries()) {
    await assert.rejects(c.getOrSet(`k${i}`, (key, ctx) => { misuse(ctx); return 'v' }), (e) => e instanceof Cls && e.code === code)
    assert.equal(await s.redis.exists(entryName(s.prefix, `k${i}`)), 0)
    assert.equal(await c.exists(`k${i}`), false)
  }
  // the key is not stuck: the next call loads
  assert.equal(await c.getOrSet('k0', () => 'ok'), 'ok')
})

test('a constructor loader gets the context too (get with loader)', async (t) => {
  const s = scope(t, { name: 'ctx-ctor' })
  const c = s.cache({ loader: (key, ctx) => { if (key === 'nocache') ctx.skip(); return `v-${key}` } })
  assert.equal(await c.get('nocache'), 'v-nocache')
  assert.equal(await c.exists('nocache'), false)
  assert.equal(await c.get('cached'), 'v-cached')
  assert.equal(await c.exists('cached'), true)
})

test('loaderTimeout per call bounds this call\'s loader; bad values are RangeErrors', async (t) => {
  const s = scope(t, { name: 'ctx-timeout' })
  const c = s.cache({ loaderTimeout: 3600 })
  const hung = c.getOrSet('k', () => new Promise(() => {}), { loaderTimeout: 0.05 })
  await assert.rejects(hung, (e) => e.code === codes.LOADER_TIMEOUT && e.key === 'k')
  assert.equal(await s.redis.exists(entryName(s.prefix, 'k')), 0)
  assert.equal(await c.getOrSet('k', () => 'v', { loaderTimeout: 1 }), 'v', 'the key was not stuck')
  for (const bad of [-1, 0, NaN, Infinity, '1']) {
    await assert.rejects(c.getOrSet('x', () => 'v', { loaderTimeout: bad }), (e) => e instanceof RangeError && e.code === codes.INVALID_TTL)
  }
})
