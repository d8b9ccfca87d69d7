'use strict'
// invalidateTag costs Redis bounded work whatever the tag's size: it moves the tag's marker,
// it deletes nothing. Redis' own SLOWLOG (threshold 10 ms) records no command of the cache
// while a tag of tens of thousands of entries is invalidated, and when invalidateTag resolves
// no process (the writer, another one with L1 copies, a fresh one) reads any of its entries.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { privateRedis, testClient, uniquePrefix } = require('./helpers/redis.js')
const { caches, connected } = require('./helpers/failure.js')

const SHAPES = [
  { name: '60 000 entries with one tag', entries: 60000, tagsOf: () => ['huge'] },
  { name: '8 000 entries with three tags each', entries: 8000, tagsOf: (i) => ['huge', `a:${i % 3}`, `b:${i % 5}`] },
]

for (const shape of SHAPES) {
  test(`a tag of ${shape.name}: O(1) for Redis, and nothing of it readable once invalidateTag resolves`, async (t) => {
    const server = await privateRedis(t, ['--slowlog-log-slower-than', '10000', '--slowlog-max-len', '1000'])
    const admin = testClient(t, server.url)
    const make = caches(t)
    const options = { redisUrl: server.url, prefix: uniquePrefix('huge'), l2: { ttl: 600 } }
    const writer = make(options)
    const other = make(options)
    await connected(writer, other)
    for (let i = 0; i < shape.entries; i += 1000) {
      const batch = []
      for (let j = i; j < Math.min(shape.entries, i + 1000); j++) batch.push(writer.set(`k:${j}`, { j }, { tags: shape.tagsOf(j) }))
      await Promise.all(batch)
    }
    const sample = Array.from({ length: 300 }, (_, n) => `k:${Math.floor((n * shape.entries) / 300)}`)
    for (const k of sample) assert.notEqual(await other.get(k), null, 'the other process did not read the entry')
    assert.equal(other.stats().l1Entries, sample.length)
    await admin.slowlog('RESET')

    await writer.invalidateTag('huge')

    // synchronously after resolving: the other process dropped its copies
    assert.equal(other.stats().l1Entries, 0, 'the other process still held copies when invalidateTag resolved')
    const slow = await admin.slowlog('GET', 1000)
    t.diagnostic(`slow commands during invalidateTag: ${slow.length}`)
    assert.deepEqual(slow.map((e) => `${e[2]} µs: ${e[3].slice(0, 3).join(' ')}`), [], 'Redis ran a command slower than 10 ms')
    const fresh = make({ ...options, l1: false })
    await connected(fresh)
    const got = await Promise.all(sample.map((k) => fresh.get(k)))
    assert.deepEqual(got.filter((v) => v !== null), [], 'a fresh process read entries of the invalidated tag')
    const fromOther = await Promise.all(sample.map((k) => other.get(k)))
    assert.deepEqual(fromOther.filter((v) => v !== null), [])
    assert.deepEqual(await Promise.all(sample.slice(0, 20).map((k) => writer.get(k))), sample.slice(0, 20).map(() => null))
  })
}
