'use strict'
// Turning layers off: `l1: false` (every get goes to Redis), `l2: false` (Redis untouched even
// with a URL), and no URL at all (L1 only, no error). REDIS_URL is the default URL.

const { entryName } = require('./helpers/layout.js')
const { test } = require('node:test')
const assert = require('node:assert/strict')
const { scope, pick, runNode, sleep, SHARED_URL } = require('./helpers/cache.js')
const { startRedis, client, uniquePrefix } = require('./helpers/redis.js')

test('l1: false: every get goes to Redis', async (t) => {
  const s = scope(t, { name: 'layers-no-l1' })
  const a = s.cache({ l1: false })
  await a.set('k', { v: 1 })
  assert.equal(a.stats().l1Entries, 0)
  for (let i = 0; i < 3; i++) assert.deepEqual(await a.get('k'), { v: 1 })
  const st = a.stats()
  assert.equal(st.l1Hits, 0)
  assert.equal(st.l2Hits, 3)
  assert.equal(st.l1Entries, 0)

  // Redis loses it: nothing else can answer
  await s.redis.del(s.entryKey('k'))
  assert.equal(await a.get('k'), null)
  assert.equal(await a.exists('k'), false)
})

test('l1: false: getOrSet and tags still work through Redis', async (t) => {
  const s = scope(t, { name: 'layers-no-l1-tags' })
  const a = s.cache({ l1: false })
  let calls = 0
  assert.equal(await a.getOrSet('k', () => { calls++; return 'v' }, { tags: ['t'] }), 'v')
  assert.equal(await a.getOrSet('k', () => { calls++; return 'w' }), 'v')
  assert.equal(calls, 1)
  await a.invalidateTag('t')
  assert.equal(await a.get('k'), null)
  assert.equal(a.stats().l1Entries, 0)
})

test('l2: false with a URL never touches Redis', async (t) => {
  const server = await startRedis()
  t.after(() => server.stop())
  const redis = client(server.url)
  t.after(() => redis.quit())
  await redis.ping()
  const connectionsBefore = Number(/total_connections_received:(\d+)/.exec(await redis.info('stats'))[1])

  const s = scope(t, { name: 'layers-no-l2', url: server.url })
  const a = s.cache({ l2: false })
  await a.set('k', 'v', { tags: ['t'], ttl: 5 })
  assert.equal(await a.get('k'), 'v')
  assert.equal(await a.get('missing'), null)
  assert.equal(await a.exists('k'), true)
  assert.equal(await a.getOrSet('g', () => 'loaded'), 'loaded')
  await a.del('g')
  await a.invalidateTag('t')
  assert.equal(await a.get('k'), null)
  await a.set('after', 1)
  await sleep(50)

  assert.equal(await redis.dbsize(), 0, 'the cache wrote to Redis')
  const connectionsAfter = Number(/total_connections_received:(\d+)/.exec(await redis.info('stats'))[1])
  assert.equal(connectionsAfter, connectionsBefore, 'the cache connected to Redis')
  assert.deepEqual(pick(a.stats(), ['l2Hits', 'redisErrors']), { l2Hits: 0, redisErrors: 0 })

  // two such caches share nothing
  const b = s.cache({ l2: false })
  assert.equal(await b.get('after'), null)
})

test("redisUrl: '' is a TypeError ERR_MLC_INVALID_OPTION, not a silent way to run without Redis", async (t) => {
  // an empty variable passed through (REDIS_URL= in a deployment) used to run on L1 alone and
  // look exactly like "Redis down"; omitting the option or l2: false is how to turn Redis off
  const { MultiLevelCache, codes } = require('..')
  assert.throws(() => new MultiLevelCache({ redisUrl: '' }), (e) => e instanceof TypeError && e.code === codes.INVALID_OPTION)
  const s = scope(t, { name: 'layers-empty-url' })
  const a = s.cache({ l2: false })
  await a.set('k', 'v', { tags: ['t'] })
  assert.equal(await a.get('k'), 'v')
  await a.invalidateTag('t')
  assert.equal(await a.get('k'), null)
  assert.equal(a.stats().redisErrors, 0)
  await sleep(30)
  assert.deepEqual(await s.redisKeys(), [], 'a cache with l2: false wrote to Redis')
})

const CHILD_L1_ONLY = `
const { MultiLevelCache } = require('.')
;(async () => {
  const c = new MultiLevelCache({ prefix: process.env.PREFIX })
  await c.set('k', { v: 1 }, { tags: ['t'] })
  const got = await c.get('k')
  const loaded = await c.getOrSet('g', () => 'loaded')
  const missing = await c.get('missing')
  await c.invalidateTag('t')
  const afterInvalidate = await c.get('k')
  const st = c.stats()
  await c.close()
  console.log(JSON.stringify({ got, loaded, missing, afterInvalidate, redisErrors: st.redisErrors, l2Hits: st.l2Hits }))
})().catch((e) => { console.error(e); process.exit(3) })
`

test('no redisUrl and no REDIS_URL: L1 only, no error (child process)', async (t) => {
  const s = scope(t, { name: 'layers-no-url' })
  const env = { ...process.env, PREFIX: s.prefix }
  delete env.REDIS_URL
  const r = await runNode(CHILD_L1_ONLY, { env, timeoutMs: 5000 })
  assert.equal(r.timedOut, false, 'the child did not exit')
  assert.equal(r.code, 0, r.stderr)
  assert.deepEqual(JSON.parse(r.stdout), { got: { v: 1 }, loaded: 'loaded', missing: null, afterInvalidate: null, redisErrors: 0, l2Hits: 0 })
  assert.deepEqual(await s.redisKeys(), [])
})

test('REDIS_URL is the default redisUrl (child process)', async (t) => {
  const s = scope(t, { name: 'layers-env-url' })
  const script = `
const { MultiLevelCache } = require('.')
;(async () => {
  const c = new MultiLevelCache({ prefix: process.env.PREFIX })
  await c.set('from-child', 'hello')
  await c.close()
})().catch((e) => { console.error(e); process.exit(3) })
`
  const r = await runNode(script, { env: { ...process.env, PREFIX: s.prefix, REDIS_URL: SHARED_URL }, timeoutMs: 5000 })
  assert.equal(r.code, 0, r.stderr)
  assert.equal((await s.envelope('from-child')).d, 'hello')
  const a = s.cache()
  assert.equal(await a.get('from-child'), 'hello')
})

test('an explicit redisUrl wins over REDIS_URL', async (t) => {
  const server = await startRedis()
  t.after(() => server.stop())
  const prefix = uniquePrefix('layers-explicit')
  const script = `
const { MultiLevelCache } = require('.')
;(async () => {
  const c = new MultiLevelCache({ prefix: process.env.PREFIX, redisUrl: process.env.EXPLICIT })
  await c.set('k', 'v')
  await c.close()
})().catch((e) => { console.error(e); process.exit(3) })
`
  const r = await runNode(script, { env: { ...process.env, PREFIX: prefix, REDIS_URL: SHARED_URL, EXPLICIT: server.url }, timeoutMs: 5000 })
  assert.equal(r.code, 0, r.stderr)
  const priv = client(server.url)
  const shared = client(SHARED_URL)
  try {
    assert.equal(await priv.exists(entryName(prefix, 'k')), 1)
    assert.equal(await shared.exists(entryName(prefix, 'k')), 0)
  } finally {
    await priv.quit()
    await shared.quit()
  }
})
