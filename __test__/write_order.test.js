'use strict'
// Operations on one key reach Redis in program order, even when Redis forgot the cache's
// scripts (SCRIPT FLUSH, a restart) and a script call is sent again after NOSCRIPT while a
// later call of the same key is already out.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { privateRedis, testClient, uniquePrefix } = require('./helpers/redis.js')
const { FAST, caches, connected } = require('./helpers/failure.js')

async function scene(t) {
  const server = await privateRedis(t)
  const admin = testClient(t, server.url)
  const make = caches(t)
  const options = { redisUrl: server.url, prefix: uniquePrefix('order'), redis: FAST }
  const a = make(options)
  const fresh = make({ ...options, l1: false })
  await connected(a, fresh)
  return { server, admin, a, fresh, options, make }
}

const SHAPES = {
  'tagged set, then plain set': async (a, k) => { await Promise.all([a.set(k, 'older', { tags: ['t'] }), a.set(k, 'newer')]); return 'newer' },
  'plain set, then tagged set': async (a, k) => { await Promise.all([a.set(k, 'older'), a.set(k, 'newer', { tags: ['t'] })]); return 'newer' },
  'tagged set, then del': async (a, k) => { await Promise.all([a.set(k, 'older', { tags: ['t'] }), a.del(k)]); return null },
  'del, then set': async (a, k) => { await Promise.all([a.del(k), a.set(k, 'newer', { tags: ['t'] })]); return 'newer' },
}

for (const [shape, run] of Object.entries(SHAPES)) {
  test(`after SCRIPT FLUSH, ${shape}: Redis ends with the later operation (100 trials)`, async (t) => {
    const { admin, a, fresh } = await scene(t)
    const wrong = []
    for (let i = 0; i < 100; i++) {
      await admin.script('FLUSH')
      const k = `k:${i}`
      const want = await run(a, k)
      const got = await fresh.get(k)
      if (got !== want) wrong.push({ i, got })
    }
    assert.deepEqual(wrong, [], 'an earlier operation overwrote a later one')
  })
}

test('after a Redis restart (scripts and data gone), a tagged set then a plain set of the key: the plain set wins', async (t) => {
  const { server, a, fresh } = await scene(t)
  const wrong = []
  for (let i = 0; i < 4; i++) {
    await server.restart()
    // the first calls after a restart may fail while the connection is remade: wait (with
    // plain reads, which load no script) until one is answered, by the writer and by the reader
    // (a read that fails is a miss, and this test is about the order of writes)
    for (const c of [a, fresh]) {
      for (let tries = 0; tries < 200; tries++) {
        const errors = c.stats().redisErrors + c.stats().redisSkipped
        await c.get(`warm:${i}:${tries}`)
        if (c.stats().redisErrors + c.stats().redisSkipped === errors && c.stats().breakerState === 0) break
        await new Promise((r) => setTimeout(r, 25))
      }
    }
    for (let j = 0; j < 20; j++) {
      const k = `k:${i}:${j}`
      await Promise.all([a.set(k, 'older', { tags: ['t'] }), a.set(k, 'newer')])
      const got = await fresh.get(k)
      if (got !== 'newer') wrong.push({ i, j, got })
    }
  }
  assert.deepEqual(wrong, [])
})
