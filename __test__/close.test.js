'use strict'
// close(): later calls reject with ERR_MLC_CLOSED, calls in flight settle, the Redis connection
// is closed, and a process exits on its own whether or not it closed its cache.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { scope, rejectsWith, codes, runNode, sleep, eventually, MultiLevelCache, SHARED_URL } = require('./helpers/cache.js')
const { startRedis, client, freePort, uniquePrefix } = require('./helpers/redis.js')

const CHILD_TIMEOUT_MS = 2500

/** A child script: one cache on `url`, a set and a get, then close or not. */
function childScript({ close }) {
  return `
const { MultiLevelCache } = require('.')
;(async () => {
  const c = new MultiLevelCache({ redisUrl: process.env.URL, prefix: process.env.PREFIX })
  await c.set('k', { from: 'child' })
  const got = await c.get('k')
  const missing = await c.get('missing')
  ${close ? 'await c.close()' : ''}
  console.log(JSON.stringify({ got, missing }))
})().catch((e) => { console.error(e); process.exit(3) })
`
}

for (const close of [true, false]) {
  test(`a process using Redis exits on its own ${close ? 'after close()' : 'without close()'}`, async (t) => {
    const s = scope(t, { name: 'close-child' })
    const r = await runNode(childScript({ close }), {
      env: { ...process.env, URL: SHARED_URL, PREFIX: s.prefix },
      timeoutMs: CHILD_TIMEOUT_MS,
    })
    assert.equal(r.timedOut, false, `the child was still running after ${CHILD_TIMEOUT_MS} ms`)
    assert.equal(r.signal, null)
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(JSON.parse(r.stdout), { got: { from: 'child' }, missing: null })
    assert.deepEqual((await s.envelope('k')).d, { from: 'child' })
  })

  test(`a process whose Redis port is closed exits on its own ${close ? 'after close()' : 'without close()'}`, async (t) => {
    const port = await freePort() // freshly freed: nothing listens there
    const r = await runNode(childScript({ close }), {
      env: { ...process.env, URL: `redis://127.0.0.1:${port}`, PREFIX: uniquePrefix('close-dead') },
      timeoutMs: CHILD_TIMEOUT_MS,
    })
    assert.equal(r.timedOut, false, `the child was still running after ${CHILD_TIMEOUT_MS} ms`)
    assert.equal(r.signal, null)
    assert.equal(r.code, 0, r.stderr)
    // L1 still answered the set, Redis is a miss
    assert.deepEqual(JSON.parse(r.stdout), { got: { from: 'child' }, missing: null })
  })
}

test('a process that only constructs a cache (no call) exits on its own', async (t) => {
  const s = scope(t, { name: 'close-idle' })
  const script = `
const { MultiLevelCache } = require('.')
new MultiLevelCache({ redisUrl: process.env.URL, prefix: process.env.PREFIX })
console.log('constructed')
`
  const r = await runNode(script, { env: { ...process.env, URL: SHARED_URL, PREFIX: s.prefix }, timeoutMs: CHILD_TIMEOUT_MS })
  assert.equal(r.timedOut, false)
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.stdout.trim(), 'constructed')
})

test('every method rejects with ERR_MLC_CLOSED after close()', async (t) => {
  const s = scope(t, { name: 'close-methods' })
  const a = s.cache()
  await a.set('k', 'v', { tags: ['t'] })
  await a.close()
  let calls = 0
  const attempts = [
    () => a.get('k'),
    () => a.set('k', 'w'),
    () => a.set('other', 'w'),
    () => a.del('k'),
    () => a.exists('k'),
    () => a.getOrSet('k', () => { calls++; return 'w' }),
    () => a.invalidateTag('t'),
  ]
  for (const attempt of attempts) {
    let p
    assert.doesNotThrow(() => { p = attempt() })
    const err = await rejectsWith(assert, p, Error, codes.CLOSED)
    assert.equal(err.code, 'ERR_MLC_CLOSED')
  }
  assert.equal(calls, 0)
  // nothing changed in Redis
  assert.equal((await s.envelope('k')).d, 'v')
  assert.equal(await s.inRedis('other'), false)
  assert.equal(await s.redis.exists(s.tagKey('t')), 1)
})

test('ERR_MLC_CLOSED wins over bad arguments', async (t) => {
  const s = scope(t, { name: 'close-args' })
  const a = s.cache()
  await a.close()
  await rejectsWith(assert, a.get(42), Error, codes.CLOSED)
  await rejectsWith(assert, a.set('', undefined), Error, codes.CLOSED)
})

test('close() is idempotent', async (t) => {
  const s = scope(t, { name: 'close-twice' })
  const a = s.cache()
  await a.set('k', 1)
  const p1 = a.close()
  const p2 = a.close()
  await Promise.all([p1, p2])
  await a.close()
  await rejectsWith(assert, a.get('k'), Error, codes.CLOSED)
})

test('calls in flight when close() is called settle; L1 is dropped', async (t) => {
  const s = scope(t, { name: 'close-inflight' })
  const a = s.cache()
  const setting = a.set('written', { v: 1 })
  const loading = a.getOrSet('loaded', async () => {
    await sleep(100)
    return 'slow'
  })
  const closing = a.close()
  await setting
  assert.equal(await loading, 'slow')
  await closing
  assert.deepEqual((await s.envelope('written')).d, { v: 1 })
  assert.equal(a.stats().l1Entries, 0)
  assert.equal(a.stats().pendingOperations, 0)
})

test('close() closes the Redis connection', async (t) => {
  const server = await startRedis()
  t.after(() => server.stop())
  const redis = client(server.url)
  t.after(() => redis.quit())
  const connected = async () => Number(/connected_clients:(\d+)/.exec(await redis.info('clients'))[1])
  await redis.ping()
  assert.equal(await connected(), 1)

  const a = new MultiLevelCache({ redisUrl: server.url, prefix: uniquePrefix('close-conn') })
  try {
    await a.set('k', 1)
    assert.ok((await connected()) >= 2, 'the cache is not connected')
  } finally {
    await a.close()
  }
  const closed = await eventually(async () => (await connected()) === 1, { timeoutMs: 2000 })
  assert.equal(closed, true, 'the cache left its Redis connection open after close()')
})

test('close() of a cache whose Redis is unreachable resolves', async (t) => {
  const port = await freePort()
  const a = new MultiLevelCache({ redisUrl: `redis://127.0.0.1:${port}`, prefix: uniquePrefix('close-down') })
  let timer
  try {
    await a.set('k', 1)
    assert.equal(await a.get('k'), 1)
  } finally {
    const bound = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('close() did not resolve within 5 s')), 5000) })
    await Promise.race([a.close(), bound])
    clearTimeout(timer)
  }
  await rejectsWith(assert, a.get('k'), Error, codes.CLOSED)
})

test('close() of an L1-only cache resolves', async (t) => {
  const a = new MultiLevelCache({ l2: false, prefix: uniquePrefix('close-l1') })
  try {
    await a.set('k', 1)
  } finally {
    await a.close()
  }
  await rejectsWith(assert, a.set('k', 2), Error, codes.CLOSED)
})

/** A child: a cache (on URL, or without Redis), a getOrSet whose loader never settles, close(). */
const CHILD_HANGING_LOADER = `
const { MultiLevelCache } = require('.')
;(async () => {
  const options = { prefix: process.env.PREFIX, loaderTimeout: 600 }
  if (process.env.URL) options.redisUrl = process.env.URL
  else options.l2 = false
  const c = new MultiLevelCache(options)
  let settled = null
  const pending = c.getOrSet('k', () => new Promise(() => {})).then(
    (v) => { settled = { value: v } },
    (e) => { settled = { code: e.code } })
  // the loader is running (the lookup reached it) before close()
  for (let i = 0; i < 1000 && c.stats().loaderCalls === 0; i++) await new Promise((r) => setImmediate(r))
  // a second caller joined the same flight
  const joined = c.getOrSet('k', () => 'other').then((v) => ({ value: v }), (e) => ({ code: e.code }))
  await c.close()
  const atClose = settled
  await pending
  console.log(JSON.stringify({ atClose, joined: await joined }))
  // no process.exit: the test asserts the process ends by itself
})().catch((e) => { console.error(e); process.exit(3) })
`

for (const withRedis of [true, false]) {
  test(`close() settles callers of a loader that never settles and the process exits by itself (${withRedis ? 'with Redis' : 'L1 only'})`, async (t) => {
    const s = scope(t, { name: 'close-hang' })
    const env = { ...process.env, PREFIX: s.prefix }
    if (withRedis) env.URL = SHARED_URL
    else delete env.URL
    // loaderTimeout is 600 s in the child: a child still alive at 20 s is waiting for it
    const r = await runNode(CHILD_HANGING_LOADER, { env, timeoutMs: 20000 })
    assert.equal(r.timedOut, false, 'the child did not exit by itself: something of the cache kept it alive')
    assert.equal(r.code, 0, r.stderr)
    const out = JSON.parse(r.stdout)
    assert.deepEqual(out.atClose, { code: codes.CLOSED }, 'a caller was still pending when close() resolved')
    assert.deepEqual(out.joined, { code: codes.CLOSED })
  })
}
