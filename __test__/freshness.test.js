'use strict'
// Freshness (issue 12): grace (fail-safe), graceBackoff, softTimeout / stale-while-revalidate,
// eagerRefresh, expire, ctx.stale, and the counters. Against the real Redis at REDIS_URL, a
// private redis-server where Redis must die, and a child process where "another process"
// must be a process. Entries are given short ttls and the tests poll until they are stale
// (exists() turns false); nothing asserts on how long anything took.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { scope, codes, eventually, rejectsWith } = require('./helpers/cache.js')
const { startRedis } = require('./helpers/redis.js')
const { forkWorker } = require('./helpers/workers.js')

/** A promise with its resolve/reject, to hold a loader until the test lets it go. */
function deferred() {
  let resolve, reject
  const promise = new Promise((res, rej) => { resolve = res; reject = rej })
  return { promise, resolve, reject }
}

/** Polls until `key`'s fresh value is gone from `cache` (its ttl ran out; a graced copy does not count). */
async function staleNow(cache, key) {
  assert.ok(await eventually(async () => !(await cache.exists(key)), { timeoutMs: 5000 }), `${key} did not go stale`)
}

const failing = (message = 'database down') => () => {
  const e = new Error(message)
  e.code = 'TEST_DB_DOWN'
  throw e
}

test('grace: a loader failure past the ttl is answered by the graced value (L1), counted; without grace it rejects', async (t) => {
  const s = scope(t, { name: 'grace-l1' })
  const graced = s.cache({ grace: 60, graceBackoff: 0 })
  const plain = s.cache({ prefix: s.alsoClean(`${s.prefix}-plain`) })
  await graced.set('k', { v: 1 }, { ttl: 0.2 })
  await plain.set('k', { v: 1 }, { ttl: 0.2 })
  await staleNow(graced, 'k')
  await staleNow(plain, 'k')
  assert.equal(await graced.get('k'), null, 'a plain get serves fresh values only')
  assert.deepEqual(await graced.getOrSet('k', failing()), { v: 1 })
  assert.equal(graced.stats().failSafeActivations, 1)
  assert.equal(graced.stats().staleServed, 1)
  assert.equal(graced.stats().loaderErrors, 1)
  await rejectsWith(assert, plain.getOrSet('k', failing()), Error, 'TEST_DB_DOWN')
  // a loader that works replaces the graced value in both layers
  assert.equal(await graced.getOrSet('k', () => 'v2', { ttl: 60 }), 'v2')
  assert.equal(await s.cache({ l1: false }).get('k'), 'v2')
})

test('grace survives across processes: a fresh process finds the graced entry in Redis and serves it when its loader fails', async (t) => {
  const s = scope(t, { name: 'grace-x' })
  const writer = s.cache({ grace: 60 })
  await writer.set('user:1', { name: 'Ada' }, { ttl: 0.2 })
  const env = await s.envelope('user:1')
  assert.equal(env.g, 60000, 'the grace travels with the entry')
  assert.equal(env.v, 3, 'envelope version 3: a 0.3 reader (which would not check e) reads it as a miss')
  await writer.set('plain', 1, { grace: 0 })
  assert.equal((await s.envelope('plain')).v, 2, 'an entry without grace or eager refresh stays version 2')
  assert.ok(await s.redis.pttl(s.entryKey('user:1')) > 1000, 'Redis keeps it past its ttl')
  await staleNow(writer, 'user:1')
  const other = await forkWorker(t, require.resolve('./helpers/cache_worker.js'))
  await other.call('init', { options: { redisUrl: s.url, prefix: s.prefix } })
  const r = await other.call('burst', { key: 'user:1', n: 20, loader: { fail: 'db down' } })
  assert.deepEqual(r.errorCodes, [], 'no caller saw the loader error')
  assert.deepEqual(r.values.map((v) => JSON.parse(v)), [{ name: 'Ada' }])
  const st = await other.call('stats')
  assert.equal(st.ownLoaderCalls, 1, 'one loader call for the 20 callers')
  assert.equal(st.failSafeActivations, 1)
})

test('graceBackoff: after a fail-safe answer the loader is not called again until it has passed', async (t) => {
  const s = scope(t, { name: 'backoff' })
  const c = s.cache({ grace: 60, graceBackoff: 0.3 })
  await c.set('k', 'old', { ttl: 0.1 })
  await staleNow(c, 'k')
  let calls = 0
  const loader = () => { calls++; throw new Error('down') }
  assert.equal(await c.getOrSet('k', loader), 'old')
  for (let i = 0; i < 20; i++) assert.equal(await c.getOrSet('k', loader), 'old')
  assert.equal(calls, 1, 'the loader was not called during the backoff')
  assert.equal(c.stats().staleServed, 21)
  // once the backoff has passed, the loader is tried again (and its value replaces the old one)
  assert.ok(await eventually(async () => (await c.getOrSet('k', () => { calls++; return 'new' })) === 'new', { timeoutMs: 5000 }))
  assert.ok(calls >= 2)
})

test('graceBackoff never outlives del or invalidateTag (here or in another process)', async (t) => {
  const s = scope(t, { name: 'backoff-inv' })
  const a = s.cache({ grace: 60, graceBackoff: 600 })
  const b = s.cache()
  await a.set('k', 'old', { ttl: 0.1, tags: ['t'] })
  await a.set('j', 'old', { ttl: 0.1 })
  await staleNow(a, 'k')
  await staleNow(a, 'j')
  assert.equal(await a.getOrSet('k', failing()), 'old')
  assert.equal(await a.getOrSet('j', failing()), 'old')
  await b.invalidateTag('t')
  await rejectsWith(assert, a.getOrSet('k', failing()), Error, 'TEST_DB_DOWN')
  await b.del('j')
  await rejectsWith(assert, a.getOrSet('j', failing()), Error, 'TEST_DB_DOWN')
})

test('del and invalidateTag keep their meaning: the old value is never served again, grace or not', async (t) => {
  const s = scope(t, { name: 'grace-del' })
  const a = s.cache({ grace: 600 })
  const b = s.cache({ grace: 600 })
  for (const k of ['d1', 't1', 'x1']) await a.set(k, `old-${k}`, { ttl: 0.2, tags: [`tag-${k}`] })
  for (const k of ['d1', 't1', 'x1']) assert.equal(await b.get(k), `old-${k}`)
  await staleNow(a, 'x1')
  await a.del('d1')
  await a.invalidateTag('tag-t1')
  for (const c of [a, b]) {
    await rejectsWith(assert, c.getOrSet('d1', failing()), Error, 'TEST_DB_DOWN')
    await rejectsWith(assert, c.getOrSet('t1', failing()), Error, 'TEST_DB_DOWN')
  }
  // the untouched one is still the fail-safe in both processes (b reads it from Redis)
  assert.equal(await b.getOrSet('x1', failing()), 'old-x1')
})

test('an invalidation while the loader runs: the stale value is not served as the fail-safe', async (t) => {
  const s = scope(t, { name: 'grace-race' })
  const a = s.cache({ grace: 600 })
  const b = s.cache()
  await a.set('k', 'old', { ttl: 0.1, tags: ['t'] })
  await staleNow(a, 'k')
  const gate = deferred()
  const p = a.getOrSet('k', async () => { await gate.promise; failing()() })
  await eventually(() => a.stats().loaderCalls === 1)
  await b.invalidateTag('t')
  gate.resolve()
  await assert.rejects(p, (e) => e.code === 'TEST_DB_DOWN')
})

test('softTimeout: a slow loader is answered with the graced value; it finishes in the background and fills both layers', async (t) => {
  const s = scope(t, { name: 'soft' })
  const c = s.cache({ grace: 60 })
  const other = s.cache()
  await c.set('k', 'old', { ttl: 0.1 })
  await staleNow(c, 'k')
  const gate = deferred()
  let calls = 0
  const answer = await c.getOrSet('k', async () => { calls++; await gate.promise; return 'new' }, { softTimeout: 0.05, ttl: 60 })
  assert.equal(answer, 'old', 'answered before the loader finished')
  assert.equal(calls, 1)
  assert.equal(c.stats().softTimeouts, 1)
  gate.resolve()
  assert.ok(await eventually(() => c.stats().backgroundRefreshes === 1), 'the loader finished in the background')
  assert.equal(await c.get('k'), 'new')
  assert.equal(await other.get('k'), 'new', 'Redis has the background value')
  assert.equal(calls, 1)
})

test('softTimeout without a graced value waits for the loader (there is nothing else to answer with)', async (t) => {
  const s = scope(t, { name: 'soft-none' })
  const c = s.cache({ grace: 60, softTimeout: 0 })
  const gate = deferred()
  const p = c.getOrSet('fresh-key', async () => { await gate.promise; return 'v' })
  let settled = false
  p.then(() => { settled = true }, () => { settled = true })
  await eventually(() => c.stats().loaderCalls === 1)
  assert.equal(settled, false)
  gate.resolve()
  assert.equal(await p, 'v')
  assert.equal(c.stats().softTimeouts, 0)
})

test('stale-while-revalidate (softTimeout 0): 100 callers of an expired key get the stale value at once, one loader call', async (t) => {
  const s = scope(t, { name: 'swr' })
  const c = s.cache({ grace: 60, softTimeout: 0 })
  await c.set('hot', 'v1', { ttl: 0.1 })
  await staleNow(c, 'hot')
  const gate = deferred()
  let calls = 0
  const loader = async () => { calls++; await gate.promise; return 'v2' }
  const answers = await Promise.all(Array.from({ length: 100 }, () => c.getOrSet('hot', loader, { ttl: 60 })))
  // every caller was answered at once, before the one lookup even reached the loader
  assert.deepEqual([...new Set(answers)], ['v1'])
  assert.equal(c.stats().softTimeouts, 100)
  assert.ok(await eventually(() => calls === 1), 'one background load')
  gate.resolve()
  assert.ok(await eventually(async () => (await c.get('hot')) === 'v2'))
  assert.ok(await eventually(() => c.stats().backgroundRefreshes === 1))
  assert.equal(calls, 1)
})

test('stale-while-revalidate across processes: the stale value comes from Redis, one loader call across both', async (t) => {
  const s = scope(t, { name: 'swr-x' })
  const a = s.cache({ grace: 60, softTimeout: 0 })
  const b = s.cache({ grace: 60, softTimeout: 0 })
  await a.set('k', 'v1', { ttl: 0.1 })
  await staleNow(a, 'k')
  const gate = deferred()
  let calls = 0
  const loader = async () => { calls++; await gate.promise; return 'v2' }
  const answers = await Promise.all([
    ...Array.from({ length: 20 }, () => a.getOrSet('k', loader, { ttl: 60 })),
    ...Array.from({ length: 20 }, () => b.getOrSet('k', loader, { ttl: 60 })),
  ])
  assert.deepEqual([...new Set(answers)], ['v1'])
  gate.resolve()
  assert.ok(await eventually(async () => (await a.get('k')) === 'v2' && (await b.get('k')) === 'v2', { timeoutMs: 5000 }))
  assert.equal(calls, 1, 'the stampede lock held across processes for the background load')
})

test('a background refresh that fails leaves the graced value in place, is counted, and rejects nobody', async (t) => {
  const s = scope(t, { name: 'bg-fail' })
  const c = s.cache({ grace: 60, softTimeout: 0, graceBackoff: 0 })
  await c.set('k', 'v1', { ttl: 0.1 })
  await staleNow(c, 'k')
  const gate = deferred()
  const answers = await Promise.all(Array.from({ length: 10 }, () => c.getOrSet('k', async () => { await gate.promise; throw new Error('down') })))
  assert.deepEqual([...new Set(answers)], ['v1'])
  gate.resolve()
  assert.ok(await eventually(() => c.stats().backgroundRefreshFailures === 1))
  assert.equal(c.stats().backgroundRefreshes, 0)
  // still the graced value, in this process and for another one
  assert.equal(await c.getOrSet('k', failing()), 'v1')
  assert.equal(await s.cache().getOrSet('k', failing()), 'v1')
})

test('a hanging loader: loaderTimeout ends it, and the graced value answers (fail-safe on timeout)', async (t) => {
  const s = scope(t, { name: 'hang' })
  const c = s.cache({ grace: 60 })
  await c.set('k', 'v1', { ttl: 0.1 })
  await staleNow(c, 'k')
  const v = await c.getOrSet('k', () => new Promise(() => {}), { loaderTimeout: 0.1 })
  assert.equal(v, 'v1')
  assert.equal(c.stats().failSafeActivations, 1)
  const none = s.cache({ prefix: s.alsoClean(`${s.prefix}-none`) })
  await rejectsWith(assert, none.getOrSet('k', () => new Promise(() => {}), { loaderTimeout: 0.1 }), Error, codes.LOADER_TIMEOUT)
})

test('eagerRefresh: hits past the fraction start one background refresh; readers never wait and never miss', async (t) => {
  const s = scope(t, { name: 'eager' })
  const c = s.cache({ eagerRefresh: 0.5 })
  let calls = 0
  let gate = deferred()
  const loader = async () => { calls++; if (calls > 1) await gate.promise; return `v${calls}` }
  assert.equal(await c.getOrSet('hot', loader, { ttl: 1 }), 'v1')
  const env = await s.envelope('hot')
  assert.ok(env.r > 0 && env.r < env.e, 'the refresh time travels with the entry')
  // wait past the refresh time (half the ttl), without reading the key
  assert.ok(await eventually(() => Date.now() >= env.r + 20, { timeoutMs: 5000 }))
  const l1Before = c.stats().l1Hits
  // readers during the refresh: all served at once from L1, while the loader is held
  for (let i = 0; i < 200; i++) assert.equal(await c.getOrSet('hot', loader, { ttl: 1 }), 'v1')
  // the refresh took the lock in Redis and called the loader, which the gate holds
  assert.ok(await eventually(() => calls === 2))
  for (let i = 0; i < 200; i++) assert.equal(await c.getOrSet('hot', loader, { ttl: 1 }), 'v1')
  assert.equal(calls, 2, 'one refresh for 400 hits')
  assert.equal(c.stats().l1Hits - l1Before, 400, 'every read was an L1 hit')
  gate.resolve()
  assert.ok(await eventually(async () => (await c.getOrSet('hot', loader, { ttl: 1 })) === 'v2'))
  assert.equal(c.stats().backgroundRefreshes, 1)
  assert.equal((await s.envelope('hot')).d, 'v2', 'Redis has the refreshed value')
  gate = deferred()
  gate.resolve()
})

test('eagerRefresh across processes: one loader call between two processes refreshing the same key', async (t) => {
  const s = scope(t, { name: 'eager-x' })
  const a = s.cache({ eagerRefresh: 0.3 })
  const b = s.cache({ eagerRefresh: 0.3 })
  let calls = 0
  const gate = deferred()
  const loader = async () => { calls++; if (calls > 1) await gate.promise; return `v${calls}` }
  assert.equal(await a.getOrSet('k', loader, { ttl: 2 }), 'v1')
  assert.equal(await b.getOrSet('k', loader, { ttl: 2 }), 'v1')
  const env = await s.envelope('k')
  assert.ok(await eventually(() => Date.now() >= env.r + 20, { timeoutMs: 5000 }))
  for (let i = 0; i < 50; i++) {
    assert.equal(await a.getOrSet('k', loader, { ttl: 2 }), 'v1')
    assert.equal(await b.getOrSet('k', loader, { ttl: 2 }), 'v1')
  }
  // the second process found the lock taken: it waits for the first one's value
  assert.ok(await eventually(() => calls === 2))
  gate.resolve()
  assert.ok(await eventually(async () => (await a.getOrSet('k', loader)) === 'v2' && (await b.getOrSet('k', loader)) === 'v2', { timeoutMs: 5000 }))
  assert.equal(calls, 2, 'one refresh across both processes')
})

test('a failed eager refresh keeps the current value and rejects nobody', async (t) => {
  const s = scope(t, { name: 'eager-fail' })
  const c = s.cache({ eagerRefresh: 0.3 })
  let calls = 0
  const loader = () => { calls++; if (calls > 1) throw new Error('down'); return 'v1' }
  assert.equal(await c.getOrSet('k', loader, { ttl: 2 }), 'v1')
  const env = await s.envelope('k')
  assert.ok(await eventually(() => Date.now() >= env.r + 20, { timeoutMs: 5000 }))
  assert.equal(await c.getOrSet('k', loader, { ttl: 2 }), 'v1')
  assert.ok(await eventually(() => c.stats().backgroundRefreshFailures >= 1))
  assert.equal(await c.getOrSet('k', loader, { ttl: 2 }), 'v1')
})

test('expire(key): the next read loads afresh; the old value remains only as the fail-safe within grace', async (t) => {
  const s = scope(t, { name: 'expire' })
  const a = s.cache({ grace: 600 })
  const b = s.cache({ grace: 600 })
  await a.set('k', 'old', { ttl: 600 })
  assert.equal(await b.get('k'), 'old')
  await a.expire('k')
  assert.equal(a.stats().expires, 1)
  // stale everywhere: exists and plain reads see no fresh value; the entry is kept in Redis
  assert.equal(await b.exists('k'), false)
  assert.equal(await b.get('k'), null)
  const env = await s.envelope('k')
  assert.ok(env !== null && env.e <= Date.now(), 'Redis keeps it, marked stale')
  // a failing loader falls back on it, in either process
  assert.equal(await b.getOrSet('k', failing()), 'old')
  // a working loader replaces it
  let calls = 0
  assert.equal(await a.getOrSet('k', () => { calls++; return 'new' }), 'new')
  assert.equal(calls, 1)
  assert.equal(await s.cache().get('k'), 'new')
})

test('expire(key) of an entry without grace deletes it', async (t) => {
  const s = scope(t, { name: 'expire-nograce' })
  const a = s.cache()
  await a.set('k', 'old', { ttl: 600 })
  await a.expire('k')
  assert.equal(await s.redis.exists(s.entryKey('k')), 0)
  await rejectsWith(assert, a.getOrSet('k', failing()), Error, 'TEST_DB_DOWN')
  await rejectsWith(assert, a.expire(''), TypeError, codes.INVALID_KEY)
})

test('ctx.stale: the loader sees the graced value (and undefined without one)', async (t) => {
  const s = scope(t, { name: 'ctx-stale' })
  const c = s.cache({ grace: 60 })
  await c.set('k', { etag: 'abc', n: 1 }, { ttl: 0.1 })
  await staleNow(c, 'k')
  let seen
  assert.deepEqual(await c.getOrSet('k', (key, ctx) => { seen = ctx.stale; return { etag: 'abc', n: 2 } }), { etag: 'abc', n: 2 })
  assert.deepEqual(seen, { etag: 'abc', n: 1 })
  let none = 'unset'
  await c.getOrSet('other', (key, ctx) => { none = ctx.stale; return 1 })
  assert.equal(none, undefined)
  // another process, whose stale value comes from Redis
  await c.set('r', 'before', { ttl: 0.1 })
  await staleNow(c, 'r')
  const fresh = s.cache()
  let fromRedis
  await fresh.getOrSet('r', (key, ctx) => { fromRedis = ctx.stale; return 'after' })
  assert.equal(fromRedis, 'before')
})

test('Redis down and the loader failing: the graced L1 copy answers, and every call is bounded', async (t) => {
  const server = await startRedis()
  t.after(() => server.stop())
  const s = scope(t, { name: 'grace-down', url: server.url })
  const c = s.cache({ grace: 600, redis: { commandTimeout: 0.1, connectTimeout: 0.1 } })
  await c.set('k', 'kept', { ttl: 0.2 })
  await staleNow(c, 'k')
  await server.stop()
  for (let i = 0; i < 5; i++) assert.equal(await c.getOrSet('k', failing()), 'kept')
  // without a graced copy the loader's error is the caller's
  await rejectsWith(assert, c.getOrSet('unknown', failing()), Error, 'TEST_DB_DOWN')
})

test('bad freshness options are the usual errors, and nothing is written', async (t) => {
  const s = scope(t, { name: 'fresh-bad' })
  for (const [opts, Cls] of [[{ grace: -1 }, RangeError], [{ grace: NaN }, RangeError], [{ grace: '5' }, TypeError],
    [{ graceBackoff: -1 }, RangeError], [{ softTimeout: -0.5 }, RangeError], [{ softTimeout: NaN }, RangeError],
    [{ eagerRefresh: 0 }, RangeError], [{ eagerRefresh: 1 }, RangeError], [{ eagerRefresh: 1.5 }, RangeError], [{ eagerRefresh: '0.5' }, TypeError]]) {
    assert.throws(() => s.cache(opts), (e) => e instanceof Cls && e.code === codes.INVALID_OPTION, JSON.stringify(opts))
  }
  const c = s.cache()
  for (const [opts, code] of [[{ grace: -1 }, codes.INVALID_TTL], [{ grace: NaN }, codes.INVALID_TTL], [{ graceBackoff: -1 }, codes.INVALID_TTL],
    [{ softTimeout: NaN }, codes.INVALID_TTL], [{ eagerRefresh: 0 }, codes.INVALID_OPTION], [{ eagerRefresh: 2 }, codes.INVALID_OPTION]]) {
    await rejectsWith(assert, c.getOrSet('k', () => 1, opts), RangeError, code)
  }
  await rejectsWith(assert, c.set('k', 1, { grace: -1 }), RangeError, codes.INVALID_TTL)
  assert.deepEqual(await s.redisKeys(), [], 'nothing half-written')
  assert.equal(c.stats().loaderCalls, 0)
})

test('the Prometheus series of freshness are exported', async (t) => {
  const { Registry } = require('prom-client')
  const { registerMetrics } = require('..')
  const s = scope(t, { name: 'fresh-metrics' })
  const c = s.cache({ grace: 60, softTimeout: 0 })
  await c.set('k', 'v', { ttl: 0.1 })
  await staleNow(c, 'k')
  assert.equal(await c.getOrSet('k', failing()), 'v')
  assert.ok(await eventually(() => c.stats().backgroundRefreshFailures === 1))
  const registry = new Registry()
  registerMetrics(c, registry)
  const text = await registry.metrics()
  for (const series of ['cache_stale_served_total', 'cache_soft_timeouts_total', 'cache_fail_safe_activations_total', 'cache_background_refreshes_total', 'cache_expires_total']) {
    assert.match(text, new RegExp(`^${series}`, 'm'), series)
  }
  assert.match(text, /^cache_stale_served_total\{[^}]*\} 1$/m)
  assert.match(text, /^cache_background_refreshes_total\{[^}]*result="error"[^}]*\} 1$/m)
})

test('invalidateTag(tag, { mode: "expire" }): every process loads afresh; the old values remain only as fail-safe copies', async (t) => {
  const s = scope(t, { name: 'tag-expire' })
  const a = s.cache({ grace: 600 })
  const b = s.cache({ grace: 600 })
  await a.set('p:1', 'old-1', { ttl: 600, tags: ['product'] })
  await a.set('p:2', 'old-2', { ttl: 600, tags: ['product', 'other'] })
  await a.set('n:1', 'no-grace', { ttl: 600, tags: ['product'], grace: 0 })
  for (const k of ['p:1', 'p:2', 'n:1']) await b.get(k)
  await a.invalidateTag('product', { mode: 'expire' })
  // no process serves them as fresh any more
  for (const c of [a, b]) {
    for (const k of ['p:1', 'p:2', 'n:1']) {
      assert.equal(await c.get(k), null, k)
      assert.equal(await c.exists(k), false, k)
    }
  }
  // the next read loads afresh...
  let calls = 0
  assert.equal(await b.getOrSet('p:1', () => { calls++; return 'new-1' }), 'new-1')
  assert.equal(calls, 1)
  assert.equal(await a.get('p:1'), 'new-1')
  // ...and a failing loader falls back on the old value, in either process
  assert.equal(await a.getOrSet('p:2', failing()), 'old-2')
  assert.equal(await s.cache().getOrSet('p:2', failing()), 'old-2')
  // an entry without grace is gone
  await rejectsWith(assert, b.getOrSet('n:1', failing()), Error, 'TEST_DB_DOWN')
  // a later delete-mode invalidation ends the fail-safe copies too
  await b.invalidateTag('other')
  await rejectsWith(assert, s.cache().getOrSet('p:2', failing()), Error, 'TEST_DB_DOWN')
  await rejectsWith(assert, a.invalidateTag('x', { mode: 'soft' }), RangeError, codes.INVALID_OPTION)
  await rejectsWith(assert, a.invalidateTag('x', { mode: 1 }), TypeError, codes.INVALID_OPTION)
})

test('invalidateTag in expire mode: a new entry of the tag written after it is fresh; a delete after it kills the stale copy', async (t) => {
  const s = scope(t, { name: 'tag-expire-order' })
  const a = s.cache({ grace: 600 })
  await a.set('k', 'v1', { ttl: 600, tags: ['t'] })
  await a.invalidateTag('t', { mode: 'expire' })
  await a.set('k2', 'fresh', { ttl: 600, tags: ['t'] })
  assert.equal(await s.cache().get('k2'), 'fresh')
  assert.equal(await s.cache().getOrSet('k', failing()), 'v1')
  await a.invalidateTag('t')
  assert.equal(await s.cache().get('k2'), null)
  await rejectsWith(assert, s.cache().getOrSet('k', failing()), Error, 'TEST_DB_DOWN')
})

test('all together under load: grace + softTimeout + eagerRefresh on hot keys, a database failing 1 load in 5: no caller ever sees an error', async (t) => {
  const s = scope(t, { name: 'combined' })
  const opts = { grace: 60, graceBackoff: 0.05, softTimeout: 0.02, eagerRefresh: 0.5 }
  const a = s.cache(opts)
  const b = s.cache(opts)
  let loads = 0
  const db = async (key) => {
    loads++
    await new Promise((r) => setTimeout(r, 5))
    if (loads % 5 === 0) throw new Error('db hiccup')
    return `${key}@${loads}`
  }
  const keys = ['h1', 'h2', 'h3']
  for (const k of keys) await a.getOrSet(k, async () => `${k}@0`, { ttl: 0.1 })
  let errors = 0
  let answers = 0
  const deadline = Date.now() + 20000
  // until the database served (and failed) enough refreshes; bounded by rounds and a generous
  // deadline; each round yields to the I/O loop
  for (let round = 0; round < 2_000_000 && loads < 20 && Date.now() < deadline; round++) {
    const c = round % 2 === 0 ? a : b
    const results = await Promise.allSettled(keys.map((k) => c.getOrSet(k, db, { ttl: 0.1 })))
    for (const r of results) {
      if (r.status === 'rejected') errors++
      else answers++
    }
    await new Promise((r) => setImmediate(r))
  }
  t.diagnostic(`${answers} answers, ${loads} loads, a: ${JSON.stringify(pick(a.stats()))}, b: ${JSON.stringify(pick(b.stats()))}`)
  assert.equal(errors, 0, 'no caller saw a loader error while a graced value existed')
  assert.ok(loads >= 20, 'the keys were refreshed during the run')
  assert.ok(a.stats().loaderErrors + b.stats().loaderErrors > 0, 'the database did fail meanwhile')
})

test('eager refresh and stale-while-revalidate with Redis down: each process refreshes its own copy, callers never wait or fail', async (t) => {
  const server = await startRedis()
  t.after(() => server.stop())
  const s = scope(t, { name: 'fresh-down', url: server.url })
  const c = s.cache({ grace: 600, softTimeout: 0, eagerRefresh: 0.5, redis: { commandTimeout: 0.1, connectTimeout: 0.1 } })
  let n = 0
  const loader = () => `v${++n}`
  assert.equal(await c.getOrSet('k', loader, { ttl: 0.3 }), 'v1')
  await server.stop()
  // past the refresh time: served, and refreshed in this process without Redis
  assert.ok(await eventually(async () => (await c.getOrSet('k', loader, { ttl: 0.3 })) !== 'v1', { timeoutMs: 5000 }))
  // stale past its ttl: answered at once with the stale value, refreshed in the background
  const before = n
  assert.ok(await eventually(async () => !(await c.exists('k')), { timeoutMs: 5000 }))
  assert.equal(await c.getOrSet('k', loader, { ttl: 0.3 }), `v${before}`)
  assert.ok(await eventually(() => n > before))
})

function pick(st) {
  const { staleServed, softTimeouts, failSafeActivations, backgroundRefreshes, backgroundRefreshFailures, loaderCalls, loaderErrors } = st
  return { staleServed, softTimeouts, failSafeActivations, backgroundRefreshes, backgroundRefreshFailures, loaderCalls, loaderErrors }
}

test('a failed eager refresh waits out graceBackoff before the next one', async (t) => {
  const s = scope(t, { name: 'eager-backoff' })
  const c = s.cache({ eagerRefresh: 0.2, graceBackoff: 600 })
  let calls = 0
  const loader = () => { calls++; if (calls > 1) throw new Error('down'); return 'v1' }
  assert.equal(await c.getOrSet('k', loader, { ttl: 5 }), 'v1')
  const env = await s.envelope('k')
  assert.ok(await eventually(() => Date.now() >= env.r + 20, { timeoutMs: 5000 }))
  assert.equal(await c.getOrSet('k', loader, { ttl: 5 }), 'v1')
  assert.ok(await eventually(() => c.stats().backgroundRefreshFailures === 1))
  // hits during the backoff: served, no new refresh
  for (let i = 0; i < 50; i++) {
    assert.equal(await c.getOrSet('k', loader, { ttl: 5 }), 'v1')
    await new Promise((r) => setImmediate(r))
  }
  assert.equal(calls, 2)
  assert.equal(c.stats().failSafeActivations, 0, 'no caller waited for the failed refresh')
  // a write ends the backoff
  await c.set('k', 'v2', { ttl: 5 })
  assert.equal(await c.getOrSet('k', loader), 'v2')
})
