'use strict'
// Eviction never revives an invalidated entry. Under every maxmemory-policy, a private
// redis-server with a small maxmemory evicts entries and tag markers while tagged entries are
// written; after invalidateTag of half the tags (and more writes that evict again), a fresh
// process must not read any entry carrying an invalidated tag. Losing metadata makes a miss,
// never a stale read. With noeviction, Redis refuses the writes instead (OOM): same promise.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { privateRedis, testClient, uniquePrefix } = require('./helpers/redis.js')
const { caches, connected } = require('./helpers/failure.js')

const POLICIES = ['allkeys-lru', 'allkeys-lfu', 'allkeys-random', 'volatile-lru', 'volatile-lfu', 'volatile-random', 'volatile-ttl', 'noeviction']
const GROUPS = 40
const PAD = 'x'.repeat(160)

async function writeAll(cache, n, makeKey, makeOptions, value) {
  for (let i = 0; i < n; i += 500) {
    const batch = []
    for (let j = i; j < Math.min(n, i + 500); j++) batch.push(cache.set(makeKey(j), value(j), makeOptions(j)))
    await Promise.all(batch)
  }
}

function info(text, field) {
  const m = new RegExp(`^${field}:(\\d+)`, 'm').exec(text)
  return m ? Number(m[1]) : 0
}

for (const [shape, policy] of POLICIES.map((p, i) => [i % 2 === 0 ? 'one tag' : 'two tags', p])) {
  test(`${policy}, ${shape} per entry: no entry of an invalidated tag is readable after eviction`, async (t) => {
    const server = await privateRedis(t, ['--maxmemory', '3mb', '--maxmemory-policy', policy])
    const admin = testClient(t, server.url)
    const make = caches(t)
    const prefix = uniquePrefix(`ev-${policy}`)
    const options = { redisUrl: server.url, prefix, l2: { ttl: 600 } }
    const writer = make(options)
    await connected(writer)

    const N = 12000
    const tagsOf = (i) => shape === 'one tag' ? [`g:${i % GROUPS}`] : [`g:${i % GROUPS}`, `h:${i % 7}`]
    await writeAll(writer, N, (i) => `old:${i}`, (i) => ({ tags: tagsOf(i) }), (i) => ({ gen: 1, i, PAD }))
    // invalidate every even group
    for (let g = 0; g < GROUPS; g += 2) await writer.invalidateTag(`g:${g}`)
    // more writes: evict again (markers too), and re-create some invalidated tags' markers
    await writeAll(writer, N, (i) => `new:${i}`, (i) => ({ tags: [`g:${i % GROUPS}`] }), (i) => ({ gen: 2, i, PAD }))

    const stats = await admin.info('stats')
    const evicted = info(stats, 'evicted_keys')
    t.diagnostic(`${policy}: evicted_keys ${evicted}, writer redisErrors ${writer.stats().redisErrors}`)
    if (policy === 'noeviction') {
      assert.ok(writer.stats().redisErrors > 0, 'memory never filled up: the test did not exercise OOM')
    } else {
      assert.ok(evicted > 1000, `only ${evicted} keys were evicted: the test did not exercise eviction`)
    }

    const reader = make({ ...options, l1: false })
    await connected(reader)
    let stale = 0
    let alive = 0
    for (let i = 0; i < N; i += 250) {
      const keys = []
      for (let j = i; j < Math.min(N, i + 250); j++) keys.push(j)
      const got = await Promise.all(keys.map((j) => reader.get(`old:${j}`)))
      for (const [n, j] of keys.entries()) {
        if (got[n] === null) continue
        if ((j % GROUPS) % 2 === 0) stale++
        else alive++
      }
    }
    t.diagnostic(`${policy}: old entries of invalidated tags read ${stale}, of other tags still readable ${alive}`)
    assert.equal(stale, 0, 'entries of invalidated tags were served after eviction')
    // the same through getOrSet (the lookup script) and exists
    for (let j = 0; j < 200; j++) {
      const k = `old:${j * GROUPS}` // an entry of group 0, invalidated
      assert.equal(await reader.exists(k), false, `${k} exists`)
      assert.deepEqual(await reader.getOrSet(k, () => ({ gen: 3 })), { gen: 3 })
    }
  })
}
