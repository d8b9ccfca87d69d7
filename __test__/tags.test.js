'use strict'
// Tags: invalidateTag(tag) removes every entry carrying tag from Redis and from L1, including
// the L1 copies this process made of Redis entries. Tags are markers checked on read (core/src/l2.rs).

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { scope, eventually, sleep } = require('./helpers/cache.js')

test('an entry with several tags is removed by invalidating any one of them', async (t) => {
  const s = scope(t, { name: 'tags-several' })
  const a = s.cache()
  await a.set('a', 'A', { tags: ['t1', 't2', 't3'] })
  await a.set('b', 'B', { tags: ['t2'] })
  await a.set('c', 'C', { tags: ['t3'] })
  await a.set('d', 'D', { tags: ['other'] })
  await a.set('e', 'E')

  const env = await s.envelope('a')
  assert.deepEqual([...env.t].sort(), ['t1', 't2', 't3'])

  await a.invalidateTag('t2')
  assert.equal(await a.get('a'), null)
  assert.equal(await a.get('b'), null)
  assert.equal(await s.inRedis('a'), false)
  assert.equal(await s.inRedis('b'), false)
  // untouched
  assert.equal(await a.get('c'), 'C')
  assert.equal(await a.get('d'), 'D')
  assert.equal(await a.get('e'), 'E')
  assert.equal(await s.inRedis('c'), true)
  assert.equal(await s.inRedis('d'), true)
  assert.equal(await s.inRedis('e'), true)

  await a.invalidateTag('t1') // its only entry is already gone: fine
  await a.invalidateTag('t3')
  assert.equal(await a.get('c'), null)
  assert.equal(await s.inRedis('c'), false)
  assert.equal(await a.get('d'), 'D')
  assert.equal(a.stats().tagInvalidations, 3)
})

test("invalidateTag removes this process's L1 copies of entries read from Redis", async (t) => {
  const s = scope(t, { name: 'tags-copy' })
  const a = s.cache()
  const b = s.cache()
  await a.set('k', { v: 1 }, { tags: ['group'] })
  assert.deepEqual(await b.get('k'), { v: 1 }) // copied into B's L1
  assert.equal(b.stats().l2Hits, 1)
  assert.equal(b.stats().l1Entries, 1)

  await b.invalidateTag('group')
  assert.equal(await s.inRedis('k'), false)
  assert.equal(await b.get('k'), null, "B's L1 copy survived B's own invalidateTag")
  assert.equal(await b.exists('k'), false)
  // a fresh instance agrees
  const c = s.cache()
  assert.equal(await c.get('k'), null)
})

test("a getOrSet result carries its tags: invalidateTag removes it and the loader runs again", async (t) => {
  const s = scope(t, { name: 'tags-getorset' })
  const a = s.cache()
  let calls = 0
  const loader = () => { calls++; return `v${calls}` }
  assert.equal(await a.getOrSet('k', loader, { tags: ['t'] }), 'v1')
  await eventually(() => s.inRedis('k'))
  assert.deepEqual((await s.envelope('k')).t, ['t'])
  await a.invalidateTag('t')
  assert.equal(await s.inRedis('k'), false)
  assert.equal(await a.getOrSet('k', loader, { tags: ['t'] }), 'v2')
  assert.equal(calls, 2)
})

test('tags are shared by two instances on one Redis and prefix', async (t) => {
  const s = scope(t, { name: 'tags-shared' })
  const a = s.cache()
  const b = s.cache()
  await a.set('from-a', 1, { tags: ['shared'] })
  await b.set('from-b', 2, { tags: ['shared'] })
  await b.set('b-other', 3, { tags: ['not-shared'] })
  assert.equal(await s.redis.exists(s.tagKey('shared'), s.tagKey('not-shared')), 2, 'a tag marker is missing')

  await a.invalidateTag('shared')
  // both entries are gone from Redis, whoever wrote them
  assert.equal(await s.inRedis('from-a'), false)
  assert.equal(await s.inRedis('from-b'), false)
  assert.equal(await s.inRedis('b-other'), true)
  assert.equal(await a.get('from-a'), null)
  assert.equal(await a.get('from-b'), null)
  const c = s.cache()
  assert.equal(await c.get('from-a'), null)
  assert.equal(await c.get('from-b'), null)
  assert.equal(await c.get('b-other'), 3)
})

test('re-setting a key without the tag: invalidating the tag keeps the new value', async (t) => {
  const s = scope(t, { name: 'tags-reset' })
  const a = s.cache()
  await a.set('k', 'old', { tags: ['t'] })
  await a.set('k', 'new')
  await a.set('other', 'x', { tags: ['t'] })
  await a.invalidateTag('t')
  assert.equal(await a.get('k'), 'new')
  assert.equal((await s.envelope('k')).d, 'new')
  assert.equal(await s.inRedis('other'), false)
  const b = s.cache()
  assert.equal(await b.get('k'), 'new')
})

test('re-setting a key with another tag moves it to that tag', async (t) => {
  const s = scope(t, { name: 'tags-move' })
  const a = s.cache()
  await a.set('k', 'old', { tags: ['t1'] })
  await a.set('k', 'new', { tags: ['t2'] })
  await a.invalidateTag('t1')
  assert.equal(await a.get('k'), 'new')
  assert.equal(await s.inRedis('k'), true)
  await a.invalidateTag('t2')
  assert.equal(await a.get('k'), null)
  assert.equal(await s.inRedis('k'), false)
})

test('re-set by another instance without the tag: invalidating the tag keeps the new value', async (t) => {
  const s = scope(t, { name: 'tags-reset-other' })
  const a = s.cache()
  const b = s.cache()
  await a.set('k', 'old', { tags: ['t'] })
  await b.set('k', 'new')
  await a.invalidateTag('t')
  assert.equal((await s.envelope('k'))?.d, 'new', 'the untagged value written by B was deleted from Redis')
  assert.equal(await b.get('k'), 'new')
  const c = s.cache()
  assert.equal(await c.get('k'), 'new')
  // A dropped its own old tagged copy and reads the new value
  assert.equal(await a.get('k'), 'new')
})

test('the tag marker lives as long as its longest entry; invalidation moves it, deletes nothing', async (t) => {
  const s = scope(t, { name: 'tags-marker' })
  const a = s.cache()
  await a.set('short', 1, { ttl: 5, tags: ['t'] })
  await a.set('long', 2, { ttl: 50, tags: ['t'] })
  const tagKey = s.tagKey('t')
  assert.equal(await s.redis.type(tagKey), 'string')
  const pttl = await s.redis.pttl(tagKey)
  assert.ok(pttl > 0, `the tag marker has no TTL (PTTL ${pttl})`)
  // it lives at least as long as its longest entry
  const entryPttl = await s.redis.pttl(s.entryKey('long'))
  assert.ok(pttl >= entryPttl - 50, `tag PTTL ${pttl} < entry PTTL ${entryPttl}`)
  // each entry was born at or after the marker
  const marker = BigInt(await s.redis.get(tagKey))
  for (const k of ['short', 'long']) assert.ok(BigInt((await s.envelope(k)).b) >= marker)

  await a.invalidateTag('t')
  const moved = BigInt(await s.redis.get(tagKey))
  assert.ok(moved > marker, 'the marker did not move forward')
  assert.ok(await s.redis.pttl(tagKey) >= entryPttl - 1000, 'the invalidation shortened the marker\'s life')
  // the entries are still in Redis, dead: every reader treats them as misses
  assert.equal(await s.redis.exists(s.entryKey('short'), s.entryKey('long')), 2)
  assert.equal(await s.inRedis('short'), false)
  assert.equal(await s.inRedis('long'), false)
  assert.equal(await s.cache({ l1: false }).get('long'), null)
})

test('tags match exactly: a tag that is part of another tag\'s text invalidates nothing else', async (t) => {
  const s = scope(t, { name: 'tags-exact' })
  const a = s.cache()
  await a.set('k', 'v', { tags: ['a,', ',b', '"q"', 'x]'] })
  for (const other of [',', 'a', 'b', 'q', '"q', 'x', ']', 'a,,b']) await a.invalidateTag(other)
  assert.equal(await s.cache({ l1: false }).get('k'), 'v')
  assert.equal(await a.get('k'), 'v')
  await a.invalidateTag('x]')
  assert.equal(await s.cache({ l1: false }).get('k'), null)
})

test('a tag marker whose entries all expired expires too', async (t) => {
  const s = scope(t, { name: 'tags-zset-expire' })
  const a = s.cache()
  await a.set('k', 1, { ttl: 0.2, tags: ['t'] })
  const pttl = await s.redis.pttl(s.tagKey('t'))
  assert.ok(pttl > 0, `the tag marker has no TTL (PTTL ${pttl})`)
  const gone = await eventually(async () => (await s.redis.exists(s.tagKey('t'))) === 0, { timeoutMs: 5000 })
  assert.equal(gone, true, 'the tag marker outlived its only entry by seconds')
})

test('tags may be any well-formed string (Unicode, colons, spaces)', async (t) => {
  const s = scope(t, { name: 'tags-unicode' })
  const a = s.cache()
  const tags = ['user:42', 'höhe 🏔', '标签', 'a b', '*', '[x]']
  for (const [i, tag] of tags.entries()) await a.set(`k${i}`, i, { tags: [tag] })
  // glob characters in a tag must not match other tags
  await a.invalidateTag('*')
  assert.equal(await a.get(`k${tags.indexOf('*')}`), null)
  for (const [i, tag] of tags.entries()) {
    if (tag === '*') continue
    assert.equal(await a.get(`k${i}`), i, `invalidateTag('*') removed the entry of ${tag}`)
  }
  for (const [i, tag] of tags.entries()) {
    await a.invalidateTag(tag)
    assert.equal(await a.get(`k${i}`), null)
    assert.equal(await s.inRedis(`k${i}`), false)
  }
})

test('invalidating a tag nobody used resolves and removes nothing', async (t) => {
  const s = scope(t, { name: 'tags-unused' })
  const a = s.cache()
  await a.set('k', 'v', { tags: ['t'] })
  await a.invalidateTag('never-used')
  assert.equal(await a.get('k'), 'v')
  assert.equal(await s.inRedis('k'), true)
})

test('del of a tagged key leaves the rest of the tag to invalidateTag', async (t) => {
  const s = scope(t, { name: 'tags-del' })
  const a = s.cache()
  await a.set('k1', 1, { tags: ['t'] })
  await a.set('k2', 2, { tags: ['t'] })
  await a.del('k1')
  assert.equal(await a.get('k1'), null)
  assert.equal(await a.get('k2'), 2)
  // k1 set again untagged is not removed by the tag
  await a.set('k1', 'again')
  await a.invalidateTag('t')
  assert.equal(await a.get('k2'), null)
  assert.equal(await a.get('k1'), 'again')
  await sleep(10)
  assert.equal(await s.inRedis('k1'), true)
})
