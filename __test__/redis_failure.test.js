'use strict'
// The golden rule: whatever Redis does (absent, killed, frozen, restarted), every call resolves
// (or rejects only for bad arguments), within a bound, from L1 and the loaders; the circuit
// breaker makes a dead Redis cost nothing per call; invalidations that could not reach Redis
// are replayed once it is back; close() and process exit are never held up by Redis.
//
// Every test starts its own redis-server (helpers/redis.js: startRedis) on a free loopback
// port, so it can kill, freeze (SIGSTOP), thaw (SIGCONT) or restart it. Latencies are printed
// (t.diagnostic); the bounds asserted are generous behavioural checks, not benchmarks.

const { clockName, entryName, markerName } = require('./helpers/layout.js')
const { test } = require('node:test')
const assert = require('node:assert/strict')
const { performance } = require('node:perf_hooks')
const { codes, rejectsWith, runNode, sleep, eventually, liveEntry } = require('./helpers/cache.js')
const { privateRedis, testClient: spy, freePort, uniquePrefix } = require('./helpers/redis.js')
const { percentile, wallMs } = require('./helpers/measure.js')
const { FAST, guardProcess, timed, within, latencyLine, caches, connected } = require('./helpers/failure.js')

const CMD_MS = FAST.commandTimeout * 1000
const SLACK_MS = 300 // scheduling slack on a loaded CI machine
/** The bound of a call that makes `n` Redis round trips while Redis is frozen. */
const frozenBound = (n) => n * CMD_MS + SLACK_MS
const CALL_BOUND_MS = 2000 // no call may take longer than this, whatever Redis does
const SKIP_P99_MS = 50 // p99 of calls once the breaker is open (Redis skipped)

function report(t, line) {
  t.diagnostic(line)
}

const failed = (results) => results.filter((r) => !r.ok).map((r) => `${r.op}: ${r.error && (r.error.code || r.error.message)}`)

/**
 * Runs a mixed loop of getOrSet / set / get (and, with `all`, del / exists / invalidateTag) on
 * fresh keys for `durationMs` (bounded in count too). Each sample records the operation, its
 * start (ms since the loop began), its duration, and whether the breaker had opened before it
 * started.
 */
async function workload(cache, { durationMs, maxCalls = 30000, all = false, onTick }) {
  const samples = []
  const t0 = performance.now()
  let loaderCalls = 0
  const ops = all ? ['getOrSet', 'set', 'get', 'del', 'exists', 'invalidateTag'] : ['getOrSet', 'set', 'get']
  for (let i = 0; i < maxCalls && performance.now() - t0 < durationMs; i++) {
    if (onTick) onTick(performance.now() - t0)
    const op = ops[i % ops.length]
    const openBefore = cache.stats().breakerOpened >= 1
    const start = performance.now() - t0
    const r = await timed(() => {
      switch (op) {
        case 'getOrSet': return cache.getOrSet(`g:${i}`, (k) => { loaderCalls++; return { k } })
        case 'set': return cache.set(`s:${i}`, { i }, { tags: ['wl'] })
        case 'get': return cache.get(`m:${i}`)
        case 'del': return cache.del(`s:${i - 5}`)
        case 'exists': return cache.exists(`m:${i}`)
        default: return cache.invalidateTag(`tag:${i}`)
      }
    })
    if (op === 'getOrSet' && r.ok) assert.deepEqual(r.value, { k: `g:${i}` })
    if (op === 'get' && r.ok) assert.equal(r.value, null)
    samples.push({ op, start, ms: r.ms, ok: r.ok, error: r.error, openBefore })
  }
  return { samples, loaderCalls }
}

// ---- Redis absent, killed, frozen, restarted -----------------------------------------------

test('Redis unreachable from the start: the constructor does not throw and every call resolves', async (t) => {
  const guard = guardProcess(t)
  const make = caches(t)
  const port = await freePort() // freshly freed: nothing listens there
  let c
  assert.doesNotThrow(() => {
    c = make({ redisUrl: `redis://127.0.0.1:${port}`, prefix: uniquePrefix('rf-absent'), redis: FAST })
  })
  let loads = 0
  const calls = [
    ['get', () => c.get('a'), null],
    ['getOrSet', () => c.getOrSet('b', (k) => { loads++; return `loaded:${k}` }), 'loaded:b'],
    ['set', () => c.set('c', { v: 1 }, { tags: ['t'] }), undefined],
    ['get (L1)', () => c.get('c'), { v: 1 }],
    ['exists (L1)', () => c.exists('c'), true],
    ['exists (absent)', () => c.exists('zz'), false],
    ['del', () => c.del('c'), undefined],
    ['get after del', () => c.get('c'), null],
    ['set tagged', () => c.set('d', 'x', { tags: ['t'] }), undefined],
    ['invalidateTag', () => c.invalidateTag('t'), undefined],
    ['get after invalidateTag', () => c.get('d'), null],
    ['getOrSet (L1)', () => c.getOrSet('b', () => { loads++; return 'again' }), 'loaded:b'],
  ]
  const times = []
  for (const [name, call, expected] of calls) {
    const r = await timed(() => within(call(), CALL_BOUND_MS, name))
    assert.ok(r.ok, `${name} rejected: ${r.error && (r.error.code || r.error.message)}`)
    assert.deepEqual(r.value, expected, name)
    times.push(r.ms)
  }
  assert.equal(loads, 1)
  report(t, `calls with Redis unreachable: ${latencyLine(times)}`)
  const st = c.stats()
  assert.ok(st.redisErrors + st.redisSkipped > 0, `no Redis failure counted: ${JSON.stringify(st)}`)
  assert.equal(st.busConnected, false)
  await guard.assertNone(assert)
})

test('Redis that comes up after the cache started: the first bus subscription clears what L1 took in meanwhile', async (t) => {
  // the cache served (and filled L1) without the bus: messages published meanwhile were missed
  const guard = guardProcess(t)
  const port = await freePort()
  const prefix = uniquePrefix('rf-late')
  const c = caches(t)({ redisUrl: `redis://127.0.0.1:${port}`, prefix, redis: FAST })
  await c.set('k', 'written before Redis was up')
  assert.equal(await c.get('k'), 'written before Redis was up')
  assert.equal(c.stats().l1Entries, 1)
  const server = await privateRedis(t, [], { port })
  const up = await eventually(() => c.stats().busConnected, { timeoutMs: 8000, intervalMs: 20 })
  const st = c.stats()
  report(t, `bus subscribed ${up ? 'after Redis came up' : 'never'}; busResubscriptions ${st.busResubscriptions}, l1Entries ${st.l1Entries}`)
  assert.ok(up, 'the bus did not subscribe within 8 s of Redis coming up')
  assert.equal(st.busResubscriptions, 1, 'a first subscription after failed attempts counts as a resubscription')
  assert.equal(st.l1Entries, 0, 'L1 kept an entry taken in while the bus was down')
  void server
  await guard.assertNone(assert)
})

test('Redis killed (SIGKILL) mid-run: no call fails, each is bounded, the breaker opens and later calls skip Redis', async (t) => {
  const guard = guardProcess(t)
  const server = await privateRedis(t)
  const c = caches(t)({ redisUrl: server.url, prefix: uniquePrefix('rf-kill'), redis: FAST })
  await connected(c)
  await c.set('warm', 1)
  let killedAt = -1
  let killing
  const { samples, loaderCalls } = await workload(c, {
    durationMs: 2500,
    onTick: (elapsed) => {
      if (killing === undefined && elapsed >= 400) {
        killedAt = elapsed
        killing = server.stop('SIGKILL')
      }
    },
  })
  await killing
  assert.ok(killedAt > 0, 'Redis was never killed')
  assert.deepEqual(failed(samples), [], 'calls rejected while Redis was killed')
  const before = samples.filter((s) => s.start < killedAt).map((s) => s.ms)
  const afterKill = samples.filter((s) => s.start >= killedAt)
  const skipped = afterKill.filter((s) => s.openBefore).map((s) => s.ms)
  const all = afterKill.map((s) => s.ms)
  report(t, `Redis up: ${latencyLine(before)}`)
  report(t, `after SIGKILL, all calls: ${latencyLine(all)}`)
  report(t, `after SIGKILL, once the breaker had opened: ${latencyLine(skipped)}`)
  const st = c.stats()
  report(t, `breakerOpened ${st.breakerOpened}, redisErrors ${st.redisErrors}, redisSkipped ${st.redisSkipped}, loader calls ${loaderCalls}`)
  const slowest = Math.max(...samples.map((s) => s.ms))
  assert.ok(slowest < CALL_BOUND_MS, `a call took ${slowest.toFixed(1)} ms with Redis killed`)
  assert.ok(st.breakerOpened >= 1, 'the circuit breaker never opened')
  assert.ok(st.redisSkipped > 0, 'no Redis command was skipped by the open breaker')
  assert.ok(skipped.length >= 100, `only ${skipped.length} calls ran with the breaker open`)
  assert.ok(percentile(skipped, 99) < SKIP_P99_MS, `p99 ${percentile(skipped, 99).toFixed(1)} ms with the breaker open`)
  await guard.assertNone(assert)
})

test('Redis frozen (SIGSTOP) then thawed: calls stay bounded by commandTimeout and L2 is used again after the thaw', async (t) => {
  const guard = guardProcess(t)
  const server = await privateRedis(t)
  t.after(() => server.thaw())
  const prefix = uniquePrefix('rf-freeze')
  const make = caches(t)
  const c = make({ redisUrl: server.url, prefix, redis: FAST })
  await connected(c)
  await c.set('warm', 1)
  await server.freeze()
  const { samples } = await workload(c, { durationMs: 1500, all: true })
  assert.deepEqual(failed(samples), [], 'calls rejected while Redis was frozen')
  const rounds = { getOrSet: 2, set: 1, get: 1, del: 1, exists: 1, invalidateTag: 1 }
  const overBound = samples.filter((s) => s.ms > frozenBound(rounds[s.op]))
  for (const op of Object.keys(rounds)) {
    report(t, `frozen, ${op}: ${latencyLine(samples.filter((s) => s.op === op).map((s) => s.ms))}`)
  }
  const skipped = samples.filter((s) => s.openBefore).map((s) => s.ms)
  report(t, `frozen, all calls: ${latencyLine(samples.map((s) => s.ms))}`)
  report(t, `frozen, once the breaker had opened: ${latencyLine(skipped)}`)
  assert.deepEqual(overBound.map((s) => `${s.op} ${s.ms.toFixed(1)} ms`), [],
    `calls exceeded commandTimeout (${CMD_MS} ms) per round trip + ${SLACK_MS} ms`)
  const st = c.stats()
  assert.ok(st.breakerOpened >= 1, 'the circuit breaker never opened')
  assert.ok(percentile(skipped, 99) < SKIP_P99_MS, `p99 ${percentile(skipped, 99).toFixed(1)} ms with the breaker open`)

  server.thaw()
  const thawedAt = performance.now()
  // a fresh instance writes through Redis; the frozen-then-thawed cache must read it from Redis
  const other = make({ redisUrl: server.url, prefix, redis: FAST })
  await other.set('fresh', { from: 'other' })
  let seen
  for (let i = 0; i < 100 && performance.now() - thawedAt < 5000; i++) {
    seen = await c.get('fresh')
    if (seen !== null && c.stats().breakerState === 0) break
    await sleep(50)
  }
  const recoverMs = performance.now() - thawedAt
  report(t, `after the thaw: L2 used again after ${recoverMs.toFixed(0)} ms`)
  assert.deepEqual(seen, { from: 'other' }, 'the cache did not read Redis again within 5 s of the thaw')
  assert.equal(c.stats().breakerState, 0)
  assert.ok(c.stats().l2Hits >= 1)
  await guard.assertNone(assert)
})

test('a tag marker made after the invalidation clock was lost (evicted, or a restart) outranks every entry born before', async (t) => {
  // an entry with tags is born at the clock; invalidateTag sets the tag's marker to the advanced
  // clock. A lost clock restarts at the wall clock in microseconds (never at 0), so the marker of
  // an invalidation after the loss is still newer than every birth before it
  const guard = guardProcess(t)
  const server = await privateRedis(t)
  const prefix = uniquePrefix('rf-clock')
  const make = caches(t)
  const c = make({ redisUrl: server.url, prefix, redis: FAST })
  const fresh = make({ redisUrl: server.url, prefix, redis: FAST, l1: false })
  const r = spy(t, server.url)
  await connected(c, fresh)
  for (let i = 0; i < 5; i++) await c.invalidateTag(`warm:${i}`)
  await c.set('k', 'old', { tags: ['t'] })
  const born = BigInt(JSON.parse(await r.get(entryName(prefix, 'k'))).b)
  await r.del(clockName(prefix)) // what an eviction does
  await c.invalidateTag('t')
  const marker = BigInt(await r.get(markerName(prefix, 't')))
  report(t, `birth before the clock was lost ${born}, marker after it ${marker}`)
  assert.ok(marker > born, `marker ${marker} after losing the clock is not above the birth ${born}`)
  assert.equal(await fresh.get('k'), null)
  // a restart loses the clock (and, without persistence, the data): the next marker is still
  // above every birth handed out before it
  await server.restart()
  assert.equal(await r.get(clockName(prefix)), null, 'the restart kept the clock')
  const other = make({ redisUrl: server.url, prefix, redis: FAST })
  await connected(other)
  await other.invalidateTag('t')
  assert.ok(BigInt(await r.get(markerName(prefix, 't'))) > marker)
  await guard.assertNone(assert)
})

test('Redis restarted on the same port: the cache reconnects, resubscribes, clears L1 and uses L2 again within seconds', async (t) => {
  const guard = guardProcess(t)
  const server = await privateRedis(t)
  const prefix = uniquePrefix('rf-restart')
  const make = caches(t)
  const c = make({ redisUrl: server.url, prefix, redis: FAST, l1: { ttl: 300 } })
  await connected(c)
  await c.set('k', 'before-restart')
  assert.equal(c.stats().l1Entries, 1)
  const resubscriptions = c.stats().busResubscriptions
  await server.restart() // SIGKILL, then a new server on the same port (data not kept)
  const restartedAt = performance.now()
  const other = make({ redisUrl: server.url, prefix, redis: FAST })
  await other.set('fresh', 'after-restart')
  let seen = null
  for (let i = 0; i < 200 && performance.now() - restartedAt < 8000; i++) {
    seen = await c.get('fresh')
    if (seen !== null) break
    await sleep(25)
  }
  const recoverMs = performance.now() - restartedAt
  report(t, `after the restart: L2 used again after ${recoverMs.toFixed(0)} ms`)
  assert.equal(seen, 'after-restart', 'the cache did not read Redis again within 8 s of the restart')
  const resub = await eventually(() => c.stats().busConnected && c.stats().busResubscriptions >= resubscriptions + 1, { timeoutMs: 5000 })
  assert.ok(resub, `the bus did not resubscribe (busResubscriptions ${c.stats().busResubscriptions})`)
  report(t, `busResubscriptions ${c.stats().busResubscriptions}, breakerOpened ${c.stats().breakerOpened}, redisErrors ${c.stats().redisErrors}`)
  // L1 was cleared: the old value is gone (Redis lost it), not served from L1
  assert.equal(await c.get('k'), null, 'L1 kept a value across the restart')
  // and invalidations flow again: another instance's write drops c's L1 copy
  await c.set('z', 1)
  await connected(c, other)
  await other.set('z', 2)
  const coherent = await eventually(async () => (await c.get('z')) === 2, { timeoutMs: 2000 })
  assert.ok(coherent, "another instance's write did not reach c after the restart")
  await guard.assertNone(assert)
})

test('a healthy Redis: the bus stays subscribed and L1 keeps its entries (no spurious resubscription)', async (t) => {
  const server = await privateRedis(t)
  const c = caches(t)({ redisUrl: server.url, prefix: uniquePrefix('rf-healthy'), l1: { ttl: 60 } })
  await connected(c)
  await c.set('k', 'v')
  const hits = c.stats().l1Hits
  let disconnectedSamples = 0
  const t0 = performance.now()
  for (let i = 0; i < 200 && performance.now() - t0 < 3500; i++) {
    if (!c.stats().busConnected) disconnectedSamples++
    await sleep(20)
  }
  assert.equal(await c.get('k'), 'v')
  const st = c.stats()
  report(t, `over 3.5 s of a healthy Redis: busResubscriptions ${st.busResubscriptions}, samples with the bus disconnected ${disconnectedSamples}, l1Hits +${st.l1Hits - hits}`)
  assert.equal(st.busResubscriptions, 0, 'the bus resubscribed (and cleared L1) although Redis never failed')
  assert.equal(disconnectedSamples, 0, 'the bus was seen disconnected although Redis never failed')
  assert.equal(st.l1Hits, hits + 1, 'the L1 entry was dropped (get went to Redis) although nothing invalidated it')
})

// ---- stampede protection and invalidations while Redis is down -----------------------------

test('stampede protection while Redis is down: 100 concurrent getOrSet calls share one loader call', async (t) => {
  const guard = guardProcess(t)
  const server = await privateRedis(t)
  const c = caches(t)({ redisUrl: server.url, prefix: uniquePrefix('rf-stampede'), redis: FAST })
  await connected(c)
  await server.stop()
  let calls = 0
  const loader = async (key) => {
    calls++
    await sleep(50)
    return { key, n: calls }
  }
  // first with the breaker closed (the read fails against the dead server) ...
  const first = await within(Promise.all(Array.from({ length: 100 }, () => c.getOrSet('hot', loader))), CALL_BOUND_MS, 'the first burst')
  assert.equal(calls, 1)
  for (const v of first) assert.deepEqual(v, { key: 'hot', n: 1 })
  // ... then with the breaker open (Redis skipped)
  for (let i = 0; i < 10 && c.stats().breakerState !== 1; i++) await c.get(`probe:${i}`)
  assert.equal(c.stats().breakerState, 1, 'the breaker did not open')
  const second = await within(Promise.all(Array.from({ length: 100 }, () => c.getOrSet('hot2', loader))), CALL_BOUND_MS, 'the second burst')
  assert.equal(calls, 2)
  for (const v of second) assert.deepEqual(v, { key: 'hot2', n: 2 })
  await guard.assertNone(assert)
})

test('del and invalidateTag while Redis is frozen apply to L1 at once and resolve within commandTimeout', async (t) => {
  const guard = guardProcess(t)
  const server = await privateRedis(t)
  t.after(() => server.thaw())
  const c = caches(t)({ redisUrl: server.url, prefix: uniquePrefix('rf-local'), redis: FAST })
  await connected(c)
  await c.set('k1', 'v1', { tags: ['t'] })
  await c.set('k2', 'v2', { tags: ['t'] })
  await c.set('k3', 'v3')
  assert.equal(c.stats().l1Entries, 3)
  await server.freeze()
  const deleting = timed(() => c.del('k3'))
  assert.equal(c.stats().l1Entries, 2, 'del did not drop the L1 entry at once')
  const invalidating = timed(() => c.invalidateTag('t'))
  assert.equal(c.stats().l1Entries, 0, 'invalidateTag did not drop the tagged L1 entries at once')
  const [d, inv] = await Promise.all([deleting, invalidating])
  assert.ok(d.ok && inv.ok)
  report(t, `frozen: del ${d.ms.toFixed(1)} ms, invalidateTag ${inv.ms.toFixed(1)} ms`)
  assert.ok(d.ms < frozenBound(1) && inv.ms < frozenBound(1), `del ${d.ms} ms / invalidateTag ${inv.ms} ms`)
  let loads = 0
  assert.equal(await c.getOrSet('k1', () => { loads++; return 'reloaded' }), 'reloaded')
  assert.equal(loads, 1, 'an invalidated value was served')
  assert.equal(await c.get('k3'), null)
  await guard.assertNone(assert)
})

/** Polls `check` while keeping light traffic on `cache` (a get of an unrelated key). */
async function withTraffic(cache, check, timeoutMs) {
  const t0 = performance.now()
  for (let i = 0; i < 1000 && performance.now() - t0 < timeoutMs; i++) {
    if (await check()) return { ok: true, ms: performance.now() - t0 }
    await cache.get(`traffic:${i}`)
    await sleep(50)
  }
  return { ok: !!(await check()), ms: performance.now() - t0 }
}

test('invalidations and writes that failed while Redis was frozen are replayed after the thaw', async (t) => {
  const guard = guardProcess(t)
  const server = await privateRedis(t)
  t.after(() => server.thaw())
  const prefix = uniquePrefix('rf-replay')
  const make = caches(t)
  const c = make({ redisUrl: server.url, prefix, redis: FAST })
  const r = spy(t, server.url)
  await connected(c)
  await c.set('k', 'v', { tags: ['t'] })
  await c.set('k2', 'v2', { tags: ['t2'] })
  await c.set('k3', 'old')
  const entry = (key) => entryName(prefix, key)
  assert.equal(await r.exists(entry('k'), entry('k2'), entry('k3')), 3)

  await server.freeze()
  const ops = [
    ['del(k)', () => c.del('k')],
    ['invalidateTag(t2)', () => c.invalidateTag('t2')],
    ['set(k3)', () => c.set('k3', 'new')],
  ]
  for (const [name, op] of ops) {
    const res = await timed(op)
    assert.ok(res.ok, `${name} rejected`)
    report(t, `frozen: ${name} resolved in ${res.ms.toFixed(1)} ms`)
    assert.ok(res.ms < frozenBound(1), `${name} took ${res.ms.toFixed(1)} ms`)
  }
  // locally, at once
  assert.equal(await c.get('k'), null)
  assert.equal(await c.get('k2'), null)
  assert.equal(await c.get('k3'), 'new')
  assert.ok(c.stats().replaysPending >= 3, `replaysPending ${c.stats().replaysPending}`)

  server.thaw()
  const done = await withTraffic(c, async () => {
    const st = c.stats()
    return st.replaysPending === 0 && st.replayed >= 3 &&
      !(await liveEntry(r, prefix, 'k')) && !(await liveEntry(r, prefix, 'k2')) && (await r.get(entry('k3'))) !== 'old'
  }, 5000)
  const st = c.stats()
  report(t, `replayed ${st.replayed} (pending ${st.replaysPending}) ${done.ms.toFixed(0)} ms after the thaw; breakerOpened ${st.breakerOpened}`)
  assert.ok(done.ok, `after 5 s: replayed ${st.replayed}, pending ${st.replaysPending}, k ${await liveEntry(r, prefix, 'k')}, k2 ${await liveEntry(r, prefix, 'k2')}, k3 ${await r.get(entry('k3'))}`)
  // another instance does not see the stale values either
  const other = make({ redisUrl: server.url, prefix, redis: FAST })
  assert.equal(await other.get('k'), null)
  assert.equal(await other.get('k2'), null)
  assert.notEqual(await other.get('k3'), 'old')
  await guard.assertNone(assert)
})

/** A private Redis (thawed after the test), one cache on it with FAST settings and its bus up, a spy client. */
async function replayScene(t, name) {
  const guard = guardProcess(t)
  const server = await privateRedis(t)
  t.after(() => server.thaw())
  const prefix = uniquePrefix(name)
  const c = caches(t)({ redisUrl: server.url, prefix, redis: FAST })
  const r = spy(t, server.url)
  await connected(c)
  return { guard, server, prefix, c, r }
}

test('an invalidateTag that failed without opening the breaker is still replayed once Redis answers again', async (t) => {
  const { guard, server, prefix, c, r } = await replayScene(t, 'rf-replay-closed') // breakerThreshold 3
  await c.set('k', 'v', { tags: ['t'] })
  const entry = entryName(prefix, 'k')
  assert.equal(await r.exists(entry), 1)
  await server.freeze()
  const res = await timed(() => c.invalidateTag('t')) // one failure: below the threshold
  assert.ok(res.ok)
  server.thaw()
  assert.equal(c.stats().breakerOpened, 0)
  const done = await withTraffic(c, async () => c.stats().replaysPending === 0 && !(await liveEntry(r, prefix, 'k')), 5000)
  const st = c.stats()
  report(t, `after the thaw: replayed ${st.replayed}, pending ${st.replaysPending}, breakerOpened ${st.breakerOpened}, entry live in Redis ${await liveEntry(r, prefix, 'k')}`)
  assert.ok(done.ok, `5 s after Redis answered again the failed invalidateTag was not replayed (replaysPending ${st.replaysPending}) and the tagged entry is still live in Redis (${await liveEntry(r, prefix, 'k')})`)
  assert.ok(st.replayed >= 1)
  await guard.assertNone(assert)
})

test('writes and deletes of the same keys that failed many times are replayed once per key and tag', async (t) => {
  const { guard, server, prefix, c, r } = await replayScene(t, 'rf-replay-merge')
  await c.set('hot', 'v0', { tags: ['t'] })
  const entry = (key) => entryName(prefix, key)
  await server.freeze()
  // 40 failed operations on 2 keys and 1 tag (the breaker opens after the first few)
  for (let i = 0; i < 10; i++) {
    for (const op of [() => c.set('hot', `v${i + 1}`, { tags: ['t'] }), () => c.del('hot'), () => c.set('warm', i), () => c.invalidateTag('t')]) {
      assert.ok((await timed(op)).ok)
    }
  }
  assert.equal(c.stats().replaysPending, 3, 'one replay waits per key and tag')
  server.thaw()
  const done = await withTraffic(c, async () => c.stats().replaysPending === 0 &&
    !(await liveEntry(r, prefix, 'hot')) && !(await liveEntry(r, prefix, 'warm')), 5000)
  const st = c.stats()
  report(t, `after the thaw: replayed ${st.replayed}, pending ${st.replaysPending}, collapsed ${st.replaysCollapsed}`)
  assert.ok(done.ok, `5 s after the thaw: pending ${st.replaysPending}, hot live ${await liveEntry(r, prefix, 'hot')}, warm live ${await liveEntry(r, prefix, 'warm')}`)
  assert.equal(st.replayed, 3)
  assert.equal(st.replaysCollapsed, 0)
  await guard.assertNone(assert)
})

test('a replayed delete also removes the old value a read copied into this process\'s L1 before the replay', async (t) => {
  const { guard, server, prefix, c, r } = await replayScene(t, 'rf-replay-l1')
  await c.set('k', 'old')
  await server.freeze()
  // open the breaker (threshold 3), so the delete is skipped, not sent, and waits for replay
  for (let i = 0; i < 3; i++) assert.ok((await timed(() => c.get(`x${i}`))).ok)
  assert.equal(c.stats().breakerState !== 0, true, 'the breaker did not open')
  await c.del('k')
  assert.equal(await c.get('k'), null, 'del did not apply to L1 at once')
  assert.equal(c.stats().replaysPending, 1)
  server.thaw()
  // Redis still holds 'old': a read that gets through before the replay copies it into L1
  let copied = false
  const t0 = performance.now()
  for (let i = 0; i < 2000 && performance.now() - t0 < 5000 && c.stats().replayed === 0; i++) {
    if ((await c.get('k')) === 'old') copied = true
    await sleep(1)
  }
  const st = c.stats()
  report(t, `a read copied the old value before the replay: ${copied}; replayed ${st.replayed}`)
  assert.equal(st.replayed, 1, 'the delete was not replayed within 5 s of the thaw')
  assert.equal(await r.exists(entryName(prefix, 'k')), 0)
  // whether or not a read got there first, the replay leaves nothing of 'old' in L1
  assert.equal(await c.get('k'), null)
  await guard.assertNone(assert)
})

test('an idle process replays its failed invalidations once Redis is back (no further call needed)', async (t) => {
  const { guard, server, prefix, c, r } = await replayScene(t, 'rf-replay-idle')
  await c.set('k', 'v', { tags: ['t'] })
  const entry = entryName(prefix, 'k')
  await server.freeze()
  // enough failures to open the breaker, then the process goes idle
  for (const op of [() => c.invalidateTag('t'), () => c.get('x1'), () => c.get('x2'), () => c.get('x3')]) {
    assert.ok((await timed(op)).ok)
  }
  server.thaw()
  const gone = await eventually(async () => c.stats().replaysPending === 0 && !(await liveEntry(r, prefix, 'k')), { timeoutMs: 4000, intervalMs: 50 })
  const st = c.stats()
  report(t, `idle after the thaw: breakerState ${st.breakerState}, replayed ${st.replayed}, pending ${st.replaysPending}, entry live in Redis ${await liveEntry(r, prefix, 'k')}`)
  assert.ok(gone, `4 s after the thaw the invalidated entry is still in Redis (replaysPending ${st.replaysPending}, breakerState ${st.breakerState})`)
  await guard.assertNone(assert)
})

// ---- close() ---------------------------------------------------------------------------------

test('close() with Redis frozen: calls in flight settle, close resolves within ~1 s, later calls reject ERR_MLC_CLOSED', async (t) => {
  const guard = guardProcess(t)
  const server = await privateRedis(t)
  t.after(() => server.thaw())
  // long command bounds: only close() can settle the calls stuck on the frozen server
  const c = caches(t)({ redisUrl: server.url, prefix: uniquePrefix('rf-close'), redis: { commandTimeout: 10, connectTimeout: 10 } })
  await connected(c)
  await c.set('warm', 1)
  await server.freeze()
  const pending = [
    c.get('a'),
    c.set('b', 1),
    c.del('warm'),
    c.exists('c'),
    c.invalidateTag('t'),
    c.getOrSet('d', async () => { await sleep(50); return 'loaded' }),
  ]
  await sleep(100) // they are all waiting on Redis now
  const t0 = performance.now()
  const closing = c.close()
  await rejectsWith(assert, c.get('a'), Error, codes.CLOSED)
  await rejectsWith(assert, c.set('x', 1), Error, codes.CLOSED)
  await within(closing, 3000, 'close()')
  const closeMs = performance.now() - t0
  const settled = await within(Promise.allSettled(pending), 500, 'the calls in flight')
  report(t, `close() with Redis frozen resolved in ${closeMs.toFixed(0)} ms`)
  assert.deepEqual(settled.map((s) => s.status), Array(pending.length).fill('fulfilled'))
  assert.deepEqual(settled.map((s) => s.value), [null, undefined, undefined, false, undefined, 'loaded'])
  assert.ok(closeMs < 1200, `close() took ${closeMs.toFixed(0)} ms`)
  for (const call of [() => c.getOrSet('k', () => 1), () => c.del('k'), () => c.exists('k'), () => c.invalidateTag('t')]) {
    await rejectsWith(assert, call(), Error, codes.CLOSED)
  }
  assert.equal(c.stats().pendingOperations, 0)
  await guard.assertNone(assert)
})

/** A child that uses a cache on process.env.URL, then closes it or not; prints timestamps. */
function childScript({ close }) {
  return `
const { MultiLevelCache } = require('.')
;(async () => {
  const c = new MultiLevelCache({ redisUrl: process.env.URL, prefix: process.env.PREFIX,
    redis: { commandTimeout: 0.2, connectTimeout: 0.3, breakerCooldown: 0.5 } })
  await c.set('k', { from: 'child' })
  const got = await c.get('k')
  const loaded = await c.getOrSet('l', () => 'loaded')
  const missing = await c.get('missing')
  const doneAt = Date.now()
  ${close ? 'await c.close()' : ''}
  console.log(JSON.stringify({ got, loaded, missing, doneAt }))
})().catch((e) => { console.error(e); process.exit(3) })
`
}

test('a child process whose Redis is frozen or unreachable exits quickly, with or without close()', async (t) => {
  const server = await privateRedis(t)
  t.after(() => server.thaw())
  await server.freeze()
  const deadPort = await freePort()
  const cases = []
  for (const [where, url] of [['frozen', server.url], ['unreachable', `redis://127.0.0.1:${deadPort}`]]) {
    for (const close of [true, false]) cases.push({ where, url, close })
  }
  const results = await Promise.all(cases.map(async (k) => {
    const r = await runNode(childScript({ close: k.close }), {
      env: { ...process.env, URL: k.url, PREFIX: uniquePrefix('rf-child') },
      timeoutMs: 8000,
    })
    return { ...k, r, exitAt: Date.now() }
  }))
  for (const { where, close, r, exitAt } of results) {
    const name = `${where} Redis, ${close ? 'close()' : 'no close()'}`
    assert.equal(r.timedOut, false, `${name}: the child was still running after 8 s`)
    assert.equal(r.code, 0, `${name}: ${r.stderr}`)
    const out = JSON.parse(r.stdout)
    assert.deepEqual({ got: out.got, loaded: out.loaded, missing: out.missing }, { got: { from: 'child' }, loaded: 'loaded', missing: null }, name)
    const exitMs = exitAt - out.doneAt
    report(t, `${name}: exited ${exitMs} ms after its last call (${r.ms} ms in all)`)
    assert.ok(exitMs < 1500, `${name}: exited ${exitMs} ms after its last call`)
  }
})
