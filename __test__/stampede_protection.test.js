'use strict'
// Stampede protection: one loader call per key at a time, in one process (single-flight: one
// Promise) and across processes (a Redis lock `{<prefix>}:l:<key>`, SET NX PX with a random
// token, released by compare-and-delete, extended while the loader runs; other processes wait
// for the value on the bus, bounded by lock.wait). Loader errors and hangs.
//
// Multi-process cases fork real Node processes (helpers/cache_worker.js) talking over IPC; all
// of them use the shared Redis (REDIS_URL or 127.0.0.1:6379) under a unique prefix per test.

const { lockName } = require('./helpers/layout.js')
const { test } = require('node:test')
const assert = require('node:assert/strict')
const { scope, codes, sleep, SHARED_URL } = require('./helpers/cache.js')
const { startWorker, startWorkers } = require('./helpers/workers.js')
const { connected } = require('./helpers/failure.js')
const { pollEvery, pollImmediate } = require('./helpers/measure.js')

const LOCK_GONE_MS = 500 // bound on "the lock is released at once" (a background round trip)

const lockKey = (s, key) => lockName(s.prefix, key)

/** Whether the lock key of `key` disappears from Redis within LOCK_GONE_MS. */
async function lockGone(s, key) {
  return (await pollEvery(async () => (await s.redis.exists(lockKey(s, key))) === 0, { timeoutMs: LOCK_GONE_MS, intervalMs: 5 })).ok
}

/** Waits (bounded) until another caller holds the lock of `key`. */
async function lockTaken(s, key, timeoutMs = 3000) {
  return (await pollEvery(async () => (await s.redis.exists(lockKey(s, key))) === 1, { timeoutMs, intervalMs: 5 })).ok
}

const sum = (xs, f) => xs.reduce((acc, x) => acc + f(x), 0)

// ---- in one process ------------------------------------------------------------------------

test('1000 concurrent getOrSet calls on a cold key share one loader call and one Promise', async (t) => {
  const s = scope(t, { name: 'sp-1000' })
  const a = s.cache()
  await connected(a)
  let calls = 0
  const loader = async (key) => {
    calls++
    await sleep(100)
    return { key, loaded: calls }
  }
  const promises = Array.from({ length: 1000 }, () => a.getOrSet('cold', loader))
  assert.equal(new Set(promises).size, 1, 'concurrent callers of one key did not share one Promise')
  const results = await Promise.all(promises)
  assert.equal(calls, 1)
  for (const r of results) assert.deepEqual(r, { key: 'cold', loaded: 1 })
  const st = a.stats()
  assert.equal(st.loaderCalls, 1)
  assert.equal(st.lockAcquired, 1)
  assert.equal(st.lockWaits, 0)
  assert.ok(await lockGone(s, 'cold'), 'the stampede lock was not released after the value was written')
  assert.equal(a.stats().locksHeld, 0)
  assert.deepEqual((await s.envelope('cold')).d, { key: 'cold', loaded: 1 })
})

test('1000 concurrent get() calls with a constructor loader call it once', async (t) => {
  const s = scope(t, { name: 'sp-1000-get' })
  let calls = 0
  const a = s.cache({ loader: async (key) => { calls++; await sleep(100); return `v:${key}` } })
  await connected(a)
  const promises = Array.from({ length: 1000 }, () => a.get('cold'))
  assert.equal(new Set(promises).size, 1)
  const results = await Promise.all(promises)
  assert.ok(results.every((r) => r === 'v:cold'))
  assert.equal(calls, 1)
  assert.equal(a.stats().loaderCalls, 1)
})

test('while the loader runs, the lock is {prefix}:l:<key> = a unique token (process random prefix + counter) with PX <= lock.ttl, deleted afterwards', async (t) => {
  const s = scope(t, { name: 'sp-layout' })
  const a = s.cache({ lock: { ttl: 2 } })
  await connected(a)
  const seen = []
  const loader = async (key) => {
    seen.push({ key, token: await s.redis.get(lockKey(s, key)), pttl: await s.redis.pttl(lockKey(s, key)) })
    return 'v'
  }
  assert.equal(await a.getOrSet('k1', loader), 'v')
  assert.equal(await a.getOrSet('k2', loader), 'v')
  assert.equal(seen.length, 2)
  for (const { key, token, pttl } of seen) {
    assert.match(String(token), /^[0-9a-f]{33,48}$/, `lock of ${key} does not hold a 128-bit hex prefix and a hex counter`)
    assert.ok(pttl > 0 && pttl <= 2000, `lock of ${key} has PTTL ${pttl}, expected 0 < PTTL <= 2000`)
  }
  assert.notEqual(seen[0].token, seen[1].token, 'two locks got the same token')
  assert.equal(seen[0].token.slice(0, 32), seen[1].token.slice(0, 32), 'one random prefix per process')
  assert.ok(await lockGone(s, 'k1'))
  assert.ok(await lockGone(s, 'k2'))
})

test('the lock is released only by its owner (compare-and-delete)', async (t) => {
  const s = scope(t, { name: 'sp-owner' })
  const a = s.cache({ lock: { ttl: 0.3 } })
  await connected(a)
  const lk = lockKey(s, 'k')
  // while A's loader runs, its lock is lost and taken by someone else (another token)
  const loader = async () => {
    await s.redis.set(lk, 'intruder-token', 'PX', 5000)
    await sleep(400) // more than lock.ttl: A's extensions must not touch the intruder's lock
    return 'v'
  }
  assert.equal(await a.getOrSet('k', loader), 'v')
  await sleep(100) // the release runs in the background: give it time to (wrongly) delete
  assert.equal(await s.redis.get(lk), 'intruder-token', "A's release deleted a lock it does not own")
  const pttl = await s.redis.pttl(lk)
  assert.ok(pttl > 0 && pttl <= 5000 - 400, `the intruder's lock was extended by A (PTTL ${pttl})`)
})

test("after the lock is freed, a waiter looks in Redis before loading (the value written meanwhile is used)", async (t) => {
  const s = scope(t, { name: 'sp-recheck' })
  const b = s.cache({ lock: { wait: 3 } })
  const c = s.cache()
  await connected(b, c)
  const lk = lockKey(s, 'k')
  // "another process" holds the lock ...
  await s.redis.set(lk, 'other-process-token', 'PX', 5000)
  let calls = 0
  const pending = b.getOrSet('k', () => { calls++; return 'loaded-by-b' })
  await sleep(150) // B found the lock busy and waits
  assert.equal(b.stats().lockWaits, 1)
  // ... writes the value without any bus message and releases the lock
  await c.set('tmp', 'written-by-other')
  const envelope = await s.redis.get(s.entryKey('tmp'))
  await s.redis.set(s.entryKey('k'), envelope, 'PX', 60000)
  await s.redis.del(lk)
  assert.equal(await pending, 'written-by-other')
  assert.equal(calls, 0, 'B loaded although the value was in Redis when the lock became free')
  assert.equal(b.stats().lockWaitHits, 1)
  assert.equal(b.stats().lockWaitTimeouts, 0)
})

// ---- across processes ----------------------------------------------------------------------

test('4 processes x 250 concurrent calls on one cold key: exactly 1 loader call in total', async (t) => {
  const s = scope(t, { name: 'sp-4x250' })
  const workers = await startWorkers(t, 4, { redisUrl: SHARED_URL, prefix: s.prefix, l1: { ttl: 300 } })
  const startAt = Date.now() + 300
  const results = await Promise.all(workers.map((w) =>
    w.call('burst', { key: 'cold', n: 250, startAt, loader: { delayMs: 300 } }, { timeoutMs: 15000 })))
  const calls = sum(results, (r) => r.ownLoaderCalls)
  t.diagnostic(`loader calls per process: ${results.map((r) => r.ownLoaderCalls).join(', ')}; ` +
    `lockAcquired ${results.map((r) => r.stats.lockAcquired).join(', ')}; ` +
    `lockWaitHits ${results.map((r) => r.stats.lockWaitHits).join(', ')}; l2Hits ${results.map((r) => r.stats.l2Hits).join(', ')}; ` +
    `l1Entries ${results.map((r) => r.stats.l1Entries).join(', ')}; burst ms ${results.map((r) => r.ms.toFixed(0)).join(', ')}`)
  assert.equal(calls, 1, 'the loader ran more than once across 4 processes')
  assert.equal(sum(results, (r) => r.stats.loaderCalls), 1)
  assert.equal(sum(results, (r) => r.stats.lockAcquired), 1)
  for (const r of results) {
    assert.equal(r.fulfilled, 250, `a process had rejections: ${JSON.stringify(r.errorCodes)}`)
    assert.equal(r.samePromise, true, 'callers in one process did not share one Promise')
    assert.equal(r.values.length, 1)
  }
  const values = new Set(results.map((r) => r.values[0]))
  assert.equal(values.size, 1, `processes got different values: ${[...values].join(' / ')}`)
  // every process that did not load got the value from Redis (after waiting or not)
  for (const r of results) {
    if (r.ownLoaderCalls === 0) assert.equal(r.stats.lockWaitHits + r.stats.l2Hits, 1)
    assert.equal(r.stats.lockWaitTimeouts, 0)
  }
  assert.ok(await lockGone(s, 'cold'))
})

test('a process that finds the lock busy gets the value without loading (lockWaitHits)', async (t) => {
  const s = scope(t, { name: 'sp-waiter' })
  const [holder, waiter] = await startWorkers(t, 2, { redisUrl: SHARED_URL, prefix: s.prefix })
  const held = holder.call('burst', { key: 'k', n: 10, loader: { delayMs: 400 } })
  assert.ok(await lockTaken(s, 'k'), 'the holder did not take the lock')
  const waited = await waiter.call('burst', { key: 'k', n: 250, loader: { delayMs: 10 } })
  const h = await held
  assert.equal(h.fulfilled, 10)
  assert.equal(waited.fulfilled, 250)
  assert.deepEqual(waited.values, h.values, "the waiter did not get the holder's value")
  assert.equal(waited.ownLoaderCalls, 0, 'the waiting process ran its loader')
  assert.equal(waited.stats.loaderCalls, 0)
  assert.equal(waited.stats.lockWaits, 1)
  assert.ok(waited.stats.lockWaitHits >= 1, `lockWaitHits ${waited.stats.lockWaitHits}`)
  assert.equal(waited.stats.lockWaitTimeouts, 0)
  assert.equal(h.ownLoaderCalls, 1)
  t.diagnostic(`waiter resolved ${waited.ms.toFixed(1)} ms after it started (holder loader 400 ms)`)
})

test('a loader slower than lock.ttl keeps the lock: 2 processes, 1 loader call', async (t) => {
  const s = scope(t, { name: 'sp-slow' })
  const opts = { redisUrl: SHARED_URL, prefix: s.prefix, lock: { ttl: 0.3, wait: 5 } }
  const [first, second] = await startWorkers(t, 2, opts)
  const slow = first.call('burst', { key: 'k', n: 20, loader: { delayMs: 1200 } })
  assert.ok(await lockTaken(s, 'k'))
  await sleep(600) // twice lock.ttl: without extension the lock would be gone
  const pttl = await s.redis.pttl(lockKey(s, 'k'))
  assert.ok(pttl > 0 && pttl <= 300, `lock not kept alive while the loader runs (PTTL ${pttl})`)
  const late = await second.call('burst', { key: 'k', n: 50, loader: { delayMs: 10 } })
  const r1 = await slow
  assert.equal(r1.ownLoaderCalls + late.ownLoaderCalls, 1, 'a second process loaded while the slow loader held the lock')
  assert.equal(late.ownLoaderCalls, 0)
  assert.equal(r1.fulfilled, 20)
  assert.equal(late.fulfilled, 50)
  assert.deepEqual(late.values, r1.values)
  assert.ok(late.stats.lockWaitHits >= 1)
  assert.ok(await lockGone(s, 'k'))
})

test('lock.wait running out: the waiter loads anyway, counts lockWaitTimeouts, nobody fails', async (t) => {
  const s = scope(t, { name: 'sp-wait-out' })
  const a = s.cache({ lock: { wait: 5 } })
  const b = s.cache({ lock: { wait: 0.3 } })
  await connected(a, b)
  const order = []
  let aCalls = 0
  let bCalls = 0
  const pa = a.getOrSet('k', async () => { aCalls++; await sleep(1500); return 'from-a' })
    .then((v) => { order.push('a'); return v })
  assert.ok(await lockTaken(s, 'k'))
  const bs = Array.from({ length: 20 }, () => b.getOrSet('k', async () => { bCalls++; await sleep(20); return 'from-b' }))
  const pb = Promise.allSettled(bs).then((r) => { order.push('b'); return r })
  const [ra, rb] = await Promise.all([pa.then((v) => ({ status: 'fulfilled', value: v }), (e) => ({ status: 'rejected', reason: e })), pb])
  assert.equal(ra.status, 'fulfilled', `the lock holder failed: ${ra.reason && ra.reason.code}`)
  assert.equal(ra.value, 'from-a')
  for (const r of rb) {
    assert.equal(r.status, 'fulfilled', `a waiter failed instead of loading: ${r.reason && r.reason.code}`)
    assert.equal(r.value, 'from-b')
  }
  assert.deepEqual(order, ['b', 'a'], 'the waiter waited for the holder instead of giving up after lock.wait')
  assert.equal(bCalls, 1)
  assert.equal(aCalls, 1)
  const st = b.stats()
  assert.ok(st.lockWaitTimeouts >= 1, `lockWaitTimeouts ${st.lockWaitTimeouts}`)
  assert.equal(st.lockWaits, 1)
  assert.equal(st.lockWaitHits, 0)
  assert.equal(st.loaderCalls, 1)
  assert.ok(await lockGone(s, 'k'))
})

// ---- loader errors, hangs and plain values -------------------------------------------------

for (const [how, makeLoader] of [
  ['rejects', (err) => async () => { await sleep(100); throw err }],
  ['throws synchronously', (err) => () => { throw err }],
]) {
  test(`a loader that ${how}: 100 waiters get the error, nothing cached, lock released at once, next call loads`, async (t) => {
    const s = scope(t, { name: 'sp-error' })
    const a = s.cache()
    await connected(a)
    const boom = new Error('database down')
    boom.code = 'TEST_DB_DOWN'
    let calls = 0
    const failing = makeLoader(boom)
    const settled = await Promise.allSettled(Array.from({ length: 100 }, () => a.getOrSet('k', (key) => { calls++; return failing(key) })))
    // right after the rejection: the lock must go away promptly (not after lock.ttl = 10 s)
    const gone = await pollEvery(async () => (await s.redis.exists(lockKey(s, 'k'))) === 0, { timeoutMs: LOCK_GONE_MS, intervalMs: 5 })
    assert.ok(gone.ok, 'the lock was not released after the loader failed')
    t.diagnostic(`lock gone ${gone.ms.toFixed(1)} ms after the rejection`)
    for (const r of settled) {
      assert.equal(r.status, 'rejected')
      assert.ok(r.reason === boom || (r.reason && r.reason.cause === boom), 'a caller got an error unrelated to the loader\'s')
    }
    assert.equal(calls, 1)
    const st = a.stats()
    assert.equal(st.loaderErrors, 1)
    assert.equal(st.l1Entries, 0)
    assert.equal(st.locksHeld, 0)
    assert.equal(await s.inRedis('k'), false, 'a failed load left something in Redis')
    // the next call runs the loader again (and takes the lock again)
    assert.equal(await a.getOrSet('k', () => { calls++; return 'recovered' }), 'recovered')
    assert.equal(calls, 2)
    assert.equal(a.stats().lockAcquired, 2)
    assert.equal((await s.envelope('k')).d, 'recovered')
  })
}

test('a waiting instance takes over at once when the lock holder\'s loader fails', async (t) => {
  const s = scope(t, { name: 'sp-takeover' })
  const a = s.cache()
  const b = s.cache({ lock: { wait: 5 } })
  await connected(a, b)
  const boom = new Error('holder failed')
  const pa = Promise.allSettled(Array.from({ length: 10 }, () => a.getOrSet('k', async () => { await sleep(300); throw boom })))
  assert.ok(await lockTaken(s, 'k'))
  let bCalls = 0
  const pb = b.getOrSet('k', async () => { bCalls++; return 'from-b' })
  const ra = await pa
  assert.ok(ra.every((r) => r.status === 'rejected' && (r.reason === boom || r.reason.cause === boom)))
  assert.equal(await pb, 'from-b')
  assert.equal(bCalls, 1)
  const st = b.stats()
  assert.equal(st.lockWaitTimeouts, 0, 'B waited out lock.wait instead of taking the released lock')
  assert.equal(st.lockAcquired, 1)
  assert.equal(await a.get('k'), 'from-b')
})

test('loaderTimeout: a loader that never settles rejects callers with ERR_MLC_LOADER_TIMEOUT and frees the lock', async (t) => {
  const s = scope(t, { name: 'sp-timeout' })
  const a = s.cache({ loaderTimeout: 0.3 })
  const b = s.cache({ lock: { wait: 5 } })
  await connected(a, b)
  let calls = 0
  const started = Date.now()
  const settledP = Promise.allSettled(Array.from({ length: 20 }, () => a.getOrSet('k', () => { calls++; return new Promise(() => {}) })))
  assert.ok(await lockTaken(s, 'k'))
  // another instance waits for the hung loader; it must get the lock when A gives up
  let bCalls = 0
  const pb = b.getOrSet('k', () => { bCalls++; return 'from-b' })
  const bounded = await Promise.race([settledP, new Promise((r) => setTimeout(r, 5000, 'hung').unref())])
  assert.notEqual(bounded, 'hung', 'callers of a never-settling loader were not rejected within 5 s')
  const elapsed = Date.now() - started
  for (const r of bounded) {
    assert.equal(r.status, 'rejected')
    assert.ok(r.reason instanceof Error)
    assert.equal(r.reason.code, codes.LOADER_TIMEOUT)
  }
  assert.equal(calls, 1)
  assert.ok(elapsed >= 250, `rejected after ${elapsed} ms, before loaderTimeout (300 ms)`)
  assert.equal(await pb, 'from-b')
  assert.equal(bCalls, 1)
  assert.equal(b.stats().lockWaitTimeouts, 0, "A's lock was not released when its loader timed out")
  assert.ok(await lockGone(s, 'k'))
  assert.equal(a.stats().locksHeld, 0)
  // A works again afterwards
  assert.equal(await a.getOrSet('k2', () => { calls++; return 'ok' }), 'ok')
  assert.equal(calls, 2)
})

test('loaderTimeout alone (no other instance): the lock is deleted right after the rejection', async (t) => {
  const s = scope(t, { name: 'sp-timeout-lock' })
  const a = s.cache({ loaderTimeout: 0.2 })
  await connected(a)
  const settled = await Promise.allSettled(Array.from({ length: 5 }, () => a.getOrSet('k', () => new Promise(() => {}))))
  for (const r of settled) assert.equal(r.status, 'rejected')
  for (const r of settled) assert.equal(r.reason.code, codes.LOADER_TIMEOUT)
  assert.ok(await lockGone(s, 'k'), 'the lock outlived the loader timeout')
  assert.equal(await s.inRedis('k'), false)
  assert.equal(a.stats().l1Entries, 0)
})

test('a loader returning a plain value works; null caches nothing; both release the lock', async (t) => {
  const s = scope(t, { name: 'sp-plain' })
  const a = s.cache()
  await connected(a)
  const results = await Promise.all(Array.from({ length: 50 }, () => a.getOrSet('plain', () => 42)))
  assert.ok(results.every((r) => r === 42))
  assert.ok(await lockGone(s, 'plain'))
  assert.equal((await s.envelope('plain')).d, 42)
  let calls = 0
  assert.equal(await a.getOrSet('none', () => { calls++; return null }), null)
  assert.ok(await lockGone(s, 'none'))
  assert.equal(await s.inRedis('none'), false)
  assert.equal(await a.getOrSet('none', () => { calls++; return 'later' }), 'later')
  assert.equal(calls, 2)
})

test('a process killed while holding the lock does not block others beyond lock.ttl', async (t) => {
  const LOCK_WAIT_MS = 5000
  const s = scope(t, { name: 'sp-crash' })
  const holder = await startWorker(t, { redisUrl: SHARED_URL, prefix: s.prefix, lock: { ttl: 0.5 } })
  holder.call('burst', { key: 'k', n: 1, loader: { never: true } }, { timeoutMs: 20000 }).catch(() => {})
  assert.ok(await lockTaken(s, 'k'))
  const deadToken = await s.redis.get(lockKey(s, 'k'))
  await holder.kill()
  const b = s.cache({ lock: { wait: LOCK_WAIT_MS / 1000 } })
  await connected(b)
  let calls = 0
  let lockDuringLoad
  // set when half of lock.wait has passed: B must be done well before it (lock.ttl is 0.5 s)
  let halfWait = false
  const timer = setTimeout(() => { halfWait = true }, LOCK_WAIT_MS / 2)
  t.after(() => clearTimeout(timer))
  const value = await b.getOrSet('k', async () => {
    calls++
    lockDuringLoad = await s.redis.get(lockKey(s, 'k'))
    return 'after-crash'
  })
  const lateForWait = halfWait
  assert.equal(value, 'after-crash')
  assert.equal(calls, 1)
  assert.ok(lockDuringLoad !== null && lockDuringLoad !== deadToken,
    `B loaded without holding the lock itself (lock during its load: ${lockDuringLoad}, the dead holder's: ${deadToken})`)
  assert.equal(b.stats().lockWaitTimeouts, 0, "B waited out lock.wait: the dead holder's lock did not expire")
  assert.equal(lateForWait, false, "B got past the dead holder's lock only after half of lock.wait (lock.ttl is 0.5 s)")
})

test('a lookup waiting for its own process\'s lock (after a del detached the first) wakes when that lock ends, not at its next poll', async (t) => {
  // Redis announcements of a process are ignored by that process, so the end of its own lock
  // must wake its own waiters directly; otherwise they notice only at their next re-check.
  // The lock is released as soon as the waiting lookup found it busy (its `lockWaits` count),
  // so its next poll is POLL_MS away: a woken lookup resolves well before half of that.
  const POLL_MS = 100 // core/src/lock.rs POLL
  const ROUNDS = 10
  const s = scope(t, { name: 'own-lock-wake' })
  const a = s.cache()
  await connected(a)
  const polled = []
  for (let round = 0; round < ROUNDS; round++) {
    const key = `k${round}`
    let release
    const gate = new Promise((r) => { release = r })
    const first = a.getOrSet(key, async () => { await gate; return 'old' })
    assert.ok(await lockTaken(s, key), 'the first lookup took the lock')
    await a.del(key) // detaches the first lookup: its value may predate the delete
    let loads = 0
    const waitsBefore = a.stats().lockWaits
    const second = a.getOrSet(key, () => { loads++; return 'new' })
    // the second lookup found the lock busy and waits (counted before its poll timer starts)
    assert.ok((await pollImmediate(() => a.stats().lockWaits > waitsBefore, 5000)).ok, 'the second lookup never waited for the lock')
    assert.equal(loads, 0)
    let pollHalfDue = false
    const timer = setTimeout(() => { pollHalfDue = true }, POLL_MS / 2)
    // read the moment it resolves, whatever this thread awaits first
    const secondEnd = second.then((v) => ({ v, late: pollHalfDue }))
    release()
    assert.equal(await first, 'old') // returned to its caller, not cached (refused by the tombstone)
    const { v, late } = await secondEnd
    clearTimeout(timer)
    assert.equal(v, 'new')
    assert.equal(loads, 1)
    if (late) polled.push(round)
  }
  // woken: a few round trips after the release; not woken: at its poll, every round. A round
  // or two may be late on a loaded machine.
  assert.ok(polled.length <= ROUNDS / 2,
    `the waiting lookup resolved after half its poll interval in rounds ${polled.join(', ')} of ${ROUNDS}: not woken by the end of the lock`)
})
