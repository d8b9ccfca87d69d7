'use strict'
// Instances sharing one Redis and prefix (each stands for a process): a change made through one
// reaches the others' L1 (invalidation bus), and a cold key is loaded once among them
// (stampede lock). Every wait is bounded.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { scope, eventually, sleep, runNode, SHARED_URL } = require('./helpers/cache.js')

const BUS_TIMEOUT_MS = 3000

test("invalidateTag in one instance removes the entry from another instance's L1", async (t) => {
  const s = scope(t, { name: 'xi-tag' })
  const a = s.cache()
  const b = s.cache()
  await a.set('read-by-b', 'v1', { tags: ['t'] })
  await b.set('set-by-b', 'v2', { tags: ['t'] })
  assert.equal(await b.get('read-by-b'), 'v1') // B's L1 copy of A's entry
  assert.equal(b.stats().l1Entries, 2)

  await a.invalidateTag('t')
  assert.equal(await s.inRedis('read-by-b'), false)
  assert.equal(await s.inRedis('set-by-b'), false)
  const gone = await eventually(async () => (await b.get('read-by-b')) === null && (await b.get('set-by-b')) === null,
    { timeoutMs: BUS_TIMEOUT_MS })
  assert.equal(gone, true, "B kept serving entries of an invalidated tag from its L1")
})

test("del in one instance removes another instance's L1 copy", async (t) => {
  const s = scope(t, { name: 'xi-del' })
  const a = s.cache()
  const b = s.cache()
  await a.set('k', 'v')
  assert.equal(await b.get('k'), 'v')
  await a.del('k')
  assert.equal(await s.inRedis('k'), false)
  const gone = await eventually(async () => (await b.get('k')) === null, { timeoutMs: BUS_TIMEOUT_MS })
  assert.equal(gone, true, 'B kept serving the deleted key from its L1')
})

test("set in one instance replaces another instance's L1 copy", async (t) => {
  const s = scope(t, { name: 'xi-set' })
  const a = s.cache()
  const b = s.cache()
  await a.set('k', 'old')
  assert.equal(await b.get('k'), 'old')
  await a.set('k', 'new')
  const updated = await eventually(async () => (await b.get('k')) === 'new', { timeoutMs: BUS_TIMEOUT_MS })
  assert.equal(updated, true, 'B kept serving the old value from its L1')
})

test('a change made by another process reaches this process (child process)', async (t) => {
  const s = scope(t, { name: 'xi-child' })
  const a = s.cache()
  await a.set('k', 'old', { tags: ['t'] })
  assert.equal(await a.get('k'), 'old')
  const script = `
const { MultiLevelCache } = require('.')
;(async () => {
  const c = new MultiLevelCache({ redisUrl: process.env.URL, prefix: process.env.PREFIX })
  await c.invalidateTag('t')
  await c.close()
})().catch((e) => { console.error(e); process.exit(3) })
`
  const r = await runNode(script, { env: { ...process.env, URL: SHARED_URL, PREFIX: s.prefix }, timeoutMs: 5000 })
  assert.equal(r.code, 0, r.stderr)
  assert.equal(await s.inRedis('k'), false)
  const gone = await eventually(async () => (await a.get('k')) === null, { timeoutMs: BUS_TIMEOUT_MS })
  assert.equal(gone, true, "the other process's invalidation did not reach this process's L1")
})

test('concurrent getOrSet in two instances on a cold key calls the loader once in all', async (t) => {
  const s = scope(t, { name: 'xi-stampede' })
  const a = s.cache()
  const b = s.cache()
  let calls = 0
  const loader = async () => {
    calls++
    await sleep(200)
    return { loaded: true }
  }
  const results = await Promise.all([
    ...Array.from({ length: 10 }, () => a.getOrSet('cold', loader)),
    ...Array.from({ length: 10 }, () => b.getOrSet('cold', loader)),
  ])
  for (const r of results) assert.deepEqual(r, { loaded: true })
  assert.equal(calls, 1, 'the loader ran in both instances')
  assert.equal(a.stats().loaderCalls + b.stats().loaderCalls, 1)
})

test('concurrent get with constructor loaders in two instances loads once in all', async (t) => {
  const s = scope(t, { name: 'xi-stampede-get' })
  let calls = 0
  const loader = async (key) => {
    calls++
    await sleep(200)
    return `value of ${key}`
  }
  const a = s.cache({ loader })
  const b = s.cache({ loader })
  const results = await Promise.all([a.get('cold'), b.get('cold'), a.get('cold'), b.get('cold')])
  assert.deepEqual(results, Array(4).fill('value of cold'))
  assert.equal(calls, 1)
})
