'use strict'
// Cross-instance L1 coherence over the invalidation bus (`{<prefix>}:bus:v1`): a set, del or
// invalidateTag in one process drops every other process's L1 copy within milliseconds (long
// before l1.ttl = 300 s could), a process ignores its own messages, messages name keys and tags
// but never values, and a process clears its L1 after its bus connection comes back.
//
// Two MultiLevelCache instances in one process are separate instances (own instance id, own bus
// connection), so most measurements use two instances; one test uses a child process.
// Propagation delays are printed (p50/p99); only generous sanity bounds are asserted (1 s).

const { busChannel } = require('./helpers/layout.js')
const { test } = require('node:test')
const assert = require('node:assert/strict')
const { performance } = require('node:perf_hooks')
const { scope, eventually, sleep, SHARED_URL } = require('./helpers/cache.js')
const { startRedis, client } = require('./helpers/redis.js')
const { startWorker } = require('./helpers/workers.js')
const { connected } = require('./helpers/failure.js')
const { wallMs, summary, pollImmediate, pollEvery } = require('./helpers/measure.js')

const L1 = { ttl: 300 } // far longer than any test: a dropped copy was dropped by the bus
const SANITY_MS = 1000 // the bound asserted on one propagation (the target is ~10 ms)
const SAMPLES = 200

/** Waits until `to` has received every message `from` has published so far. */
async function delivered(from, to, timeoutMs = SANITY_MS) {
  const r = await pollEvery(() => to.stats().busReceived >= from.stats().busSent, { timeoutMs, intervalMs: 1 })
  if (!r.ok) {
    const f = from.stats()
    const o = to.stats()
    const fields = ['busSent', 'busReceived', 'busResubscriptions', 'busConnected', 'busMalformed', 'redisErrors', 'breakerState', 'breakerOpened', 'redisSkipped', 'replaysPending', 'replayed', 'pendingOperations']
    const show = (x) => fields.map((k) => `${k}=${x[k]}`).join(' ')
    const why = o.busResubscriptions > 0
      ? ` (B's bus connection dropped and resubscribed ${o.busResubscriptions} time(s) during the test: the messages published meanwhile were lost)`
      : ''
    assert.fail(`B received ${o.busReceived} of A's ${f.busSent} messages within ${timeoutMs} ms${why}\n  A: ${show(f)}\n  B: ${show(o)}`)
  }
}

function report(t, what, samples) {
  const line = `propagation of ${what}: ${summary(samples)}`
  t.diagnostic(line)
}

// ---- propagation, measured -----------------------------------------------------------------

const OPS = {
  set: { write: (a, i) => a.set('k', `new-${i}`), after: (i) => `new-${i}` },
  del: { write: (a) => a.del('k'), after: () => null },
  invalidateTag: { write: (a) => a.invalidateTag('grp'), after: () => null },
}

for (const [op, { write, after }] of Object.entries(OPS)) {
  test(`${op} in A drops B's L1 copy within milliseconds, not after l1.ttl (${SAMPLES} samples)`, async (t) => {
    const s = scope(t, { name: `coh-${op}` })
    const a = s.cache({ l1: L1 })
    const b = s.cache({ l1: L1 })
    await connected(a, b)
    const samples = []
    for (let i = 0; i < SAMPLES; i++) {
      // B holds a copy of the current value in L1 (read from Redis, with its tags)
      await a.set('k', `old-${i}`, { tags: ['grp'] })
      await delivered(a, b)
      assert.equal(await b.get('k'), `old-${i}`)
      assert.equal(b.stats().l1Entries, 1, "B's read was not copied into its L1")
      const hits = b.stats().l1Hits
      assert.equal(await b.get('k'), `old-${i}`)
      assert.equal(b.stats().l1Hits, hits + 1, 'B did not serve the key from L1')

      const t0 = performance.now()
      const written = write(a, i)
      const seen = await pollImmediate(() => b.stats().l1Entries === 0, SANITY_MS)
      const ms = performance.now() - t0
      await written
      assert.ok(seen.ok, `sample ${i}: B still held its L1 copy ${SANITY_MS} ms after A's ${op}`)
      samples.push(ms)
      // and B now reads the new state, from Redis
      assert.deepEqual(await b.get('k'), after(i))
    }
    report(t, `${op} A -> B (two instances, one process)`, samples)
    assert.equal(b.stats().busResubscriptions, 0)
  })
}

test('propagation across processes: set in this process drops a child process\'s L1 copy (timestamps)', async (t) => {
  const s = scope(t, { name: 'coh-proc' })
  const a = s.cache({ l1: L1 })
  await connected(a)
  const w = await startWorker(t, { redisUrl: SHARED_URL, prefix: s.prefix, l1: L1 })
  const samples = []
  const roundTrips = []
  const N = 100
  for (let i = 0; i < N; i++) {
    await a.set('k', `old-${i}`)
    const warm = await w.call('warm', { key: 'k', expected: `old-${i}`, busReceived: a.stats().busSent })
    assert.ok(warm.ok, `sample ${i}: could not warm the child's L1: ${warm.why}`)
    const watch = w.call('watchL1Drop', { timeoutMs: SANITY_MS })
    await w.call('ping') // the watch is armed (messages are handled in order)
    const t0 = wallMs()
    const p0 = performance.now()
    await a.set('k', `new-${i}`)
    const r = await watch
    roundTrips.push(performance.now() - p0)
    assert.ok(r.dropped, `sample ${i}: the child still held its L1 copy ${SANITY_MS} ms after the set`)
    samples.push(r.at - t0)
  }
  report(t, 'set, this process -> child process (clock timestamps)', samples)
  report(t, 'set, this process -> child process (upper bound, incl. IPC reply)', roundTrips)
  const last = await w.call('get', { key: 'k' })
  assert.equal(last.value, `new-${N - 1}`)
  assert.equal(last.stats.busResubscriptions, 0)
})

test('set, del and invalidateTag in a child process drop this process\'s L1 copies', async (t) => {
  const s = scope(t, { name: 'coh-from-child' })
  const a = s.cache({ l1: L1 })
  await connected(a)
  const w = await startWorker(t, { redisUrl: SHARED_URL, prefix: s.prefix, l1: L1 })
  await a.set('k1', 'a1')
  await a.set('k2', 'a2')
  await a.set('k3', 'a3', { tags: ['tg'] })
  await a.set('k4', 'a4')
  assert.equal(a.stats().l1Entries, 4)
  const t0 = wallMs()
  await w.call('set', { key: 'k1', value: 'from-child' })
  await w.call('del', { key: 'k2' })
  const done = await w.call('invalidateTag', { tag: 'tg' })
  const r = await pollImmediate(() => a.stats().busReceived >= 3 && a.stats().l1Entries === 1, SANITY_MS)
  assert.ok(r.ok, `this process's L1 still had ${a.stats().l1Entries} entries (busReceived ${a.stats().busReceived})`)
  t.diagnostic(`three changes from the child applied here ${(wallMs() - done.at).toFixed(2)} ms after the last one returned there (${(wallMs() - t0).toFixed(1)} ms for all)`)
  assert.equal(await a.get('k1'), 'from-child')
  assert.equal(await a.get('k2'), null)
  assert.equal(await a.get('k3'), null)
  const hits = a.stats().l1Hits
  assert.equal(await a.get('k4'), 'a4', 'an unrelated key was dropped')
  assert.equal(a.stats().l1Hits, hits + 1)
})

test('an idle bus stays subscribed: no resubscription, and B keeps its L1 copy across several heartbeats', async (t) => {
  const s = scope(t, { name: 'coh-idle' })
  const a = s.cache({ l1: L1 })
  const b = s.cache({ l1: L1 })
  await connected(a, b)
  await a.set('k', 'v')
  await delivered(a, b)
  assert.equal(await b.get('k'), 'v')
  assert.equal(b.stats().l1Entries, 1)
  // the subscriber pings Redis every second (core/src/bus.rs): watch 3 s of idleness
  const events = []
  let last = b.stats()
  for (let i = 0; i < 30; i++) {
    await sleep(100)
    const now = b.stats()
    if (now.busConnected !== last.busConnected || now.busResubscriptions !== last.busResubscriptions || now.l1Entries !== last.l1Entries) {
      events.push(`${(i + 1) * 100} ms: busConnected=${now.busConnected} busResubscriptions=${now.busResubscriptions} l1Entries=${now.l1Entries}`)
    }
    last = now
  }
  assert.deepEqual(events, [], `B's bus dropped its connection while idle (and cleared L1):\n  ${events.join('\n  ')}`)
  assert.equal(a.stats().busResubscriptions, 0)
  const hits = b.stats().l1Hits
  assert.equal(await b.get('k'), 'v')
  assert.equal(b.stats().l1Hits, hits + 1, 'B no longer serves k from L1 after 3 idle seconds (l1.ttl is 300 s)')
  // and a change still reaches B promptly
  const t0 = performance.now()
  await a.set('k', 'v2')
  const seen = await pollImmediate(() => b.stats().l1Entries === 0, SANITY_MS)
  assert.ok(seen.ok, 'a set after 3 idle seconds did not reach B')
  t.diagnostic(`propagation after 3 idle seconds: ${(performance.now() - t0).toFixed(2)} ms`)
})

// ---- own messages, payload format ----------------------------------------------------------

test('a process ignores its own bus messages', async (t) => {
  const s = scope(t, { name: 'coh-own' })
  const a = s.cache({ l1: L1 })
  const b = s.cache({ l1: L1 })
  await connected(a, b)
  await a.set('mine', 'v', { tags: ['g'] })
  await a.set('other', 'w')
  await a.del('gone')
  await a.invalidateTag('unrelated')
  await delivered(a, b)
  await sleep(50) // A's own copies of these messages arrived too by now
  const st = a.stats()
  assert.equal(st.busSent, 4)
  assert.equal(b.stats().busReceived, 4)
  assert.equal(st.busReceived, 0, 'A counted its own messages as received')
  assert.equal(st.l1Entries, 2, 'A dropped its own fresh writes from L1 on its own messages')
  const before = a.stats()
  assert.equal(await a.get('mine'), 'v')
  assert.equal(await a.get('other'), 'w')
  assert.equal(a.stats().l1Hits - before.l1Hits, 2)
  assert.equal(a.stats().l2Hits - before.l2Hits, 0)
})

/** Subscribes an ioredis client (quit after the test) to the prefix's bus channel; returns the messages array it fills. */
async function tap(t, url, prefix) {
  const sub = client(url)
  t.after(() => sub.quit().catch(() => sub.disconnect()))
  const messages = []
  sub.on('message', (channel, message) => messages.push({ channel, message }))
  await sub.subscribe(busChannel(prefix))
  return messages
}

// <instance>[#<ack seq>]|<op>|<name>; a set's op carries its write id (s:<id>), see core/src/bus.rs
const MESSAGE = /^([^|#]+)(?:#(\d+))?\|(s|d|t|r)(?::(\d+))?\|(.+)$/s

test('bus messages are <instance>[#<ack seq>]|<op>|<name> on {prefix}:bus:v1 and never carry values', async (t) => {
  const s = scope(t, { name: 'coh-wire' })
  const messages = await tap(t, s.url, s.prefix)
  const a = s.cache({ l1: L1 })
  const b = s.cache({ l1: L1 })
  await connected(a, b)
  const SECRET = 'S3CR3T-value-4b1d'
  await a.set('user:1', { password: SECRET, n: 1 }, { tags: ['team:7'] })
  await a.set('user:2', SECRET)
  await a.del('user:1')
  await a.invalidateTag('team:7')
  await b.set('user:3', `${SECRET}-b`)
  assert.equal(await a.getOrSet('nothing', () => null), null) // lock released without a value
  const ok = await eventually(() => messages.length >= 6, { timeoutMs: SANITY_MS })
  assert.ok(ok, `got ${messages.length} bus messages, expected 6: ${JSON.stringify(messages)}`)
  await sleep(50)
  assert.equal(messages.length, 6, `unexpected extra messages: ${JSON.stringify(messages)}`)
  const parsed = messages.map(({ channel, message }) => {
    assert.equal(channel, busChannel(s.prefix))
    assert.ok(!message.includes(SECRET), `a bus message carries a value: ${message}`)
    const m = MESSAGE.exec(message)
    assert.ok(m, `malformed bus message: ${message}`)
    return { instance: m[1], ack: m[2], op: m[3], writeId: m[4], name: m[5] }
  })
  const [setTagged, setPlain, del, tag, setB, released] = parsed
  assert.deepEqual([setTagged.op, setTagged.name], ['s', 'user:1'])
  assert.ok(setTagged.writeId && setPlain.writeId && setTagged.writeId !== setPlain.writeId, 'each set names its own write id')
  assert.deepEqual([setPlain.op, setPlain.name], ['s', 'user:2'])
  assert.equal(del.name, 'user:1')
  assert.ok(del.op === 's' || del.op === 'd', `a delete was announced with op ${del.op}`)
  assert.deepEqual([tag.op, tag.name], ['t', 'team:7'])
  assert.deepEqual([setB.op, setB.name], ['s', 'user:3'])
  assert.deepEqual([released.op, released.name], ['r', 'nothing'])
  const aIds = new Set([setTagged, setPlain, del, tag, released].map((p) => p.instance))
  assert.equal(aIds.size, 1, 'one instance announced under several ids')
  assert.notEqual(setB.instance, setTagged.instance, 'two instances share one instance id')
  for (const p of parsed) assert.ok(p.instance.length >= 16, `instance id ${p.instance} is too short to be unique`)
  // writes and invalidations ask for acknowledgements (bus.ackTimeout), each with its own number
  const asked = [setTagged, setPlain, del, tag].map((p) => p.ack)
  assert.ok(asked.every((x) => x !== undefined), `a write did not ask for acknowledgements: ${JSON.stringify(parsed)}`)
  assert.equal(new Set(asked).size, 4)
  assert.equal(released.ack, undefined, 'a lock release asked for acknowledgements')
})

test('a delete is announced with op "d", as the v1 wire format documents (core/src/bus.rs)', async (t) => {
  const s = scope(t, { name: 'coh-wire-del' })
  const messages = await tap(t, s.url, s.prefix)
  const a = s.cache()
  await connected(a)
  await a.set('k', 'v')
  await a.del('k')
  assert.ok(await eventually(() => messages.length >= 2, { timeoutMs: SANITY_MS }))
  const ops = messages.map(({ message }) => (MESSAGE.exec(message) || [])[3])
  assert.deepEqual(ops, ['s', 'd'], `messages: ${messages.map((m) => m.message).join(' ; ')}`)
})

// ---- tags across instances -----------------------------------------------------------------

test('invalidateTag in B removes keys tagged in A from Redis and from A\'s L1', async (t) => {
  const s = scope(t, { name: 'coh-tag-b' })
  const a = s.cache({ l1: L1 })
  const b = s.cache({ l1: L1 })
  const c = s.cache({ l1: L1 })
  await connected(a, b, c)
  await a.set('x', 'x1', { tags: ['grp', 'other'] })
  await a.set('y', 'y1', { tags: ['grp'] })
  await a.set('plain', 'p1')
  await c.set('z', 'z1', { tags: ['grp'] }) // written elsewhere ...
  await delivered(c, a)
  assert.equal(await a.get('z'), 'z1') // ... and copied into A's L1 from Redis, with its tags
  assert.equal(a.stats().l1Entries, 4)
  // B never saw any of these keys
  const t0 = performance.now()
  await b.invalidateTag('grp')
  for (const k of ['x', 'y', 'z']) assert.equal(await s.inRedis(k), false, `${k} is still in Redis`)
  assert.equal(await s.redis.exists(s.tagKey('grp')), 1, 'the tag marker is kept: it outranks the entries it invalidated')
  assert.equal(await s.inRedis('plain'), true)
  const r = await pollImmediate(() => a.stats().l1Entries === 1, SANITY_MS)
  assert.ok(r.ok, `A's L1 still holds ${a.stats().l1Entries} entries after B invalidated the tag`)
  t.diagnostic(`A's L1 dropped 3 tagged entries ${(performance.now() - t0).toFixed(2)} ms after B called invalidateTag`)
  const before = a.stats()
  assert.equal(await a.get('x'), null)
  assert.equal(await a.get('y'), null)
  assert.equal(await a.get('z'), null)
  assert.equal(await a.get('plain'), 'p1')
  const after = a.stats()
  assert.equal(after.l1Hits - before.l1Hits, 1, 'only the untagged key is served from L1')
})

// ---- bus connection loss -------------------------------------------------------------------

/** A private redis-server and a scope on it; the server stops after the scope's cleanup. */
async function privateScope(t, name) {
  const srv = await startRedis()
  let s
  try {
    s = scope(t, { name, url: srv.url })
  } finally {
    t.after(() => srv.stop()) // registered after scope(): runs after its caches and client close
  }
  return { srv, s }
}

test('after its bus connection is killed (CLIENT KILL TYPE pubsub) a process resubscribes and clears its L1', async (t) => {
  const { s } = await privateScope(t, 'coh-kill')
  const a = s.cache({ l1: L1 })
  const b = s.cache({ l1: L1 })
  await connected(a, b)
  await a.set('k', 'old')
  await a.set('k2', 'old2')
  await delivered(a, b)
  assert.equal(await b.get('k'), 'old')
  assert.equal(await b.get('k2'), 'old2')
  assert.equal(b.stats().l1Entries, 2)
  // the value changes in Redis without any bus message: B's L1 is now stale
  await s.redis.del(s.entryKey('k'))
  assert.equal(await b.get('k'), 'old', 'precondition: B serves k from L1')
  const before = b.stats().busResubscriptions
  const killed = await s.redis.client('KILL', 'TYPE', 'pubsub')
  assert.ok(killed >= 2, `CLIENT KILL TYPE pubsub killed ${killed} connections, expected A's and B's`)
  const r = await pollEvery(() => b.stats().busResubscriptions > before && b.stats().busConnected, { timeoutMs: 3000, intervalMs: 5 })
  assert.ok(r.ok, `B did not resubscribe within 3 s (busResubscriptions ${b.stats().busResubscriptions}, busConnected ${b.stats().busConnected})`)
  t.diagnostic(`B resubscribed ${r.ms.toFixed(1)} ms after CLIENT KILL`)
  assert.equal(b.stats().busResubscriptions, before + 1)
  const cleared = await pollEvery(() => b.stats().l1Entries === 0, { timeoutMs: SANITY_MS, intervalMs: 2 })
  assert.ok(cleared.ok, `B's L1 still holds ${b.stats().l1Entries} entries after resubscribing`)
  assert.equal(await b.get('k'), null, 'B still serves the stale L1 entry after reconnecting')
  assert.equal(await b.get('k2'), 'old2')
  // and the bus works again
  await delivered(a, b, 3000) // A's bus was killed too; its published messages still reach B
  assert.equal(await b.get('k2'), 'old2')
  await a.set('k2', 'new2')
  const seen = await pollImmediate(async () => (await b.get('k2')) === 'new2', SANITY_MS)
  assert.ok(seen.ok, 'an invalidation after the reconnect did not reach B')
})

test('after Redis restarts, a process resubscribes, clears its L1, and invalidations flow again', async (t) => {
  const { srv, s } = await privateScope(t, 'coh-restart')
  const a = s.cache({ l1: L1 })
  const b = s.cache({ l1: L1 })
  await connected(a, b)
  await a.set('k', 'before-restart')
  await delivered(a, b)
  assert.equal(await b.get('k'), 'before-restart')
  assert.equal(b.stats().l1Entries, 1)
  const before = b.stats().busResubscriptions
  await srv.restart() // a fresh, empty server on the same port
  const r = await pollEvery(() => b.stats().busResubscriptions > before && b.stats().busConnected, { timeoutMs: 5000, intervalMs: 5 })
  assert.ok(r.ok, `B did not resubscribe within 5 s of the restart (busResubscriptions ${b.stats().busResubscriptions})`)
  t.diagnostic(`B resubscribed ${r.ms.toFixed(1)} ms after the restart`)
  assert.equal(b.stats().l1Entries, 0, 'B kept L1 entries across a bus connection loss')
  assert.equal(await b.get('k'), null, 'B served an L1 entry from before the restart')
  // invalidations flow again (A's command connection reconnects by itself; retry briefly)
  const aUp = await pollEvery(() => a.stats().busConnected, { timeoutMs: 5000, intervalMs: 5 })
  assert.ok(aUp.ok)
  const written = await pollEvery(async () => {
    await a.set('k', 'after-restart')
    return s.inRedis('k')
  }, { timeoutMs: 3000, intervalMs: 50 })
  assert.ok(written.ok, 'A could not write to the restarted Redis within 3 s')
  assert.ok(await eventually(async () => (await b.get('k')) === 'after-restart', { timeoutMs: SANITY_MS }))
  assert.equal(b.stats().l1Entries, 1)
  await a.set('k', 'newest')
  const seen = await pollImmediate(() => b.stats().l1Entries === 0, SANITY_MS)
  assert.ok(seen.ok, "A's set after the restart did not drop B's L1 copy")
  assert.equal(await b.get('k'), 'newest')
})

for (const how of ['del', 'invalidateTag']) {
  test(`a lookup in flight when another process's ${how} arrives is not joined by later callers`, async (t) => {
    const s = scope(t, { name: `flight-${how}` })
    const a = s.cache({ l1: L1 })
    const b = s.cache({ l1: L1 })
    await connected(a, b)
    let releaseOld
    let oldCalls = 0
    let newCalls = 0
    const oldLoader = () => { oldCalls++; return new Promise((resolve) => { releaseOld = () => resolve({ v: 1 }) }) }
    const newLoader = () => { newCalls++; return { v: 2 } }
    // B starts a lookup whose loader read the database before the update
    const first = b.getOrSet('k', oldLoader, { tags: ['t'] })
    assert.ok(await eventually(() => oldCalls === 1, { timeoutMs: 2000 }), "B's first loader was not called")
    // A updates: its invalidation reaches B while B's lookup is still in flight
    if (how === 'del') await a.del('k')
    else await a.invalidateTag('t')
    await delivered(a, b)
    // a caller arriving now must not get the value loaded before the update
    const second = b.getOrSet('k', newLoader, { tags: ['t'] })
    releaseOld()
    assert.deepEqual(await first, { v: 1 }, 'the first caller began before the update: the old value is fine')
    assert.deepEqual(await second, { v: 2 }, 'a caller that arrived after the invalidation joined the older lookup')
    assert.equal(newCalls, 1)
    assert.deepEqual(await b.get('k'), { v: 2 }, 'the value loaded before the update was cached')
    assert.deepEqual(await a.get('k'), { v: 2 })
  })
}
