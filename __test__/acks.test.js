'use strict'
// Acknowledged invalidations (`bus.ackTimeout`): `set`, `del` and `invalidateTag` resolve once
// every other subscribed process has confirmed on the bus that it dropped its L1 copy, or after
// `bus.ackTimeout`, never with an error. A plain Redis subscriber on the bus channel stands in
// for a process that is slow, paused or of an older version: it counts among PUBLISH's receivers
// and acknowledges only when (and if) the test says so.

const { ackChannel, busChannel } = require('./helpers/layout.js')
const { test } = require('node:test')
const assert = require('node:assert/strict')
const { performance } = require('node:perf_hooks')
const { scope, MultiLevelCache, codes } = require('./helpers/cache.js')
const { client } = require('./helpers/redis.js')
const { connected } = require('./helpers/failure.js')
const prom = require('prom-client')
const { registerMetrics } = require('../index.js')

const L1 = { ttl: 300 }
const OPS = {
  set: (c, i) => c.set('k', `new-${i}`, { tags: ['grp'] }),
  del: (c) => c.del('k'),
  invalidateTag: (c) => c.invalidateTag('grp'),
}

/** A raw subscriber of the prefix's bus channel; `onMessage(text)` sees every message. */
async function rawSubscriber(t, prefix, onMessage) {
  const sub = client()
  sub.on('error', () => {})
  t.after(() => sub.disconnect())
  await sub.subscribe(busChannel(prefix))
  sub.on('message', (_channel, text) => onMessage(text))
  return sub
}

/** Sends the acknowledgement a cache's subscriber would send for bus message `text`. */
function ackFor(pub, prefix, text) {
  const sender = text.slice(0, text.indexOf('|'))
  const [instance, seq] = sender.split('#')
  return pub.publish(ackChannel(prefix, instance), seq)
}

for (const [op, write] of Object.entries(OPS)) {
  test(`${op}: when it resolves, no other instance still holds the old copy in L1 (100 rounds, 2 other instances)`, async (t) => {
    const s = scope(t, { name: `ack-${op}` })
    const a = s.cache({ l1: L1 })
    const b = s.cache({ l1: L1 })
    const c = s.cache({ l1: L1 })
    await connected(a, b, c)
    const late = []
    for (let i = 0; i < 100; i++) {
      await a.set('k', `old-${i}`, { tags: ['grp'] })
      for (const x of [b, c]) {
        // copy the current value into x's L1 (its bus may still be delivering the set above)
        for (let tries = 0; tries < 100 && (await x.get('k')) !== `old-${i}`; tries++) await new Promise((r) => setImmediate(r))
        assert.equal(await x.get('k'), `old-${i}`)
      }
      assert.equal(b.stats().l1Entries + c.stats().l1Entries, 2)
      await write(a, i)
      // checked synchronously, before this thread runs anything else
      if (b.stats().l1Entries !== 0 || c.stats().l1Entries !== 0) late.push(i)
    }
    assert.deepEqual(late, [], `rounds in which ${op} resolved before another instance dropped its copy`)
    assert.equal(a.stats().busAckTimeouts, 0)
    assert.ok(b.stats().busAcksSent >= 100 && c.stats().busAcksSent >= 100, 'each instance acknowledged every round')
  })
}

test('a receiver that does not acknowledge delays a write by bus.ackTimeout once, then by 5 ms until all acknowledge again; never fails', async (t) => {
  const s = scope(t, { name: 'ack-silent' })
  const a = s.cache({ l1: L1, bus: { ackTimeout: 0.3 } })
  const b = s.cache({ l1: L1, bus: { ackTimeout: 0.3 } })
  await connected(a, b)
  const seen = []
  const silent = await rawSubscriber(t, s.prefix, (text) => seen.push(text))
  const timed = async (p) => {
    const t0 = performance.now()
    await p
    return performance.now() - t0
  }
  let ms = await timed(a.set('k', 'v'))
  assert.ok(ms >= 290 && ms < 1000, `the first write took ${ms.toFixed(1)} ms, not bus.ackTimeout (300 ms)`)
  assert.equal(a.stats().busAckTimeouts, 1, 'the silent subscriber was waited for')
  // acknowledgements are missing: the next writes wait 5 ms, not 300
  ms = await timed(a.del('k'))
  assert.ok(ms < 150, `the second write took ${ms.toFixed(1)} ms although acknowledgements were missing`)
  assert.equal(a.stats().busAckTimeouts, 2)
  assert.equal(await a.get('k'), null)
  assert.ok(seen.some((m) => /#\d+\|d\|k$/.test(m)), `the delete asked for acknowledgements: ${seen.join(', ')}`)
  assert.ok(b.stats().busAcksSent >= 2, 'b acknowledged both writes')

  // the silent receiver goes away: a write gets every acknowledgement, the full wait is back
  await silent.unsubscribe()
  ms = await timed(a.set('k', 'v2'))
  assert.equal(a.stats().busAckTimeouts, 2, `a write timed out with only acknowledging receivers (${ms.toFixed(1)} ms)`)
  const pub = client()
  t.after(() => pub.quit())
  await rawSubscriber(t, s.prefix, (text) => {
    if (text.includes('#')) setTimeout(() => ackFor(pub, s.prefix, text), 100)
  })
  ms = await timed(a.del('k'))
  assert.ok(ms >= 90 && ms < 290, `a write took ${ms.toFixed(1)} ms with a receiver acknowledging after 100 ms`)
  assert.equal(a.stats().busAckTimeouts, 2)
  // the Prometheus series counts the same
  const registry = new prom.Registry()
  registerMetrics(a, registry, { name: 'a' })
  const series = (await registry.getSingleMetric('cache_bus_ack_timeouts_total').get()).values
  assert.deepEqual(series.map((v) => [v.labels.cache, v.value]), [['a', 2]])
})

test('a receiver that acknowledges late is waited for until it does', async (t) => {
  const s = scope(t, { name: 'ack-late' })
  const a = s.cache({ l1: L1, bus: { ackTimeout: 5 } })
  await connected(a)
  const pub = client()
  t.after(() => pub.quit())
  await rawSubscriber(t, s.prefix, (text) => {
    if (text.includes('#')) setTimeout(() => ackFor(pub, s.prefix, text), 150)
  })
  const t0 = performance.now()
  await a.invalidateTag('grp')
  const ms = performance.now() - t0
  assert.ok(ms >= 140, `invalidateTag resolved after ${ms.toFixed(1)} ms, before the late acknowledgement (150 ms)`)
  assert.ok(ms < 2000, `invalidateTag took ${ms.toFixed(1)} ms although the acknowledgement came after 150 ms`)
  assert.equal(a.stats().busAckTimeouts, 0)
})

test('bus.ackTimeout 0: writes do not ask for acknowledgements and do not wait', async (t) => {
  const s = scope(t, { name: 'ack-off' })
  const a = s.cache({ l1: L1, bus: { ackTimeout: 0 } })
  await connected(a)
  const seen = []
  await rawSubscriber(t, s.prefix, (text) => seen.push(text))
  const t0 = performance.now()
  await a.set('k', 'v')
  await a.del('k')
  const ms = performance.now() - t0
  assert.ok(ms < 250, `two writes took ${ms.toFixed(1)} ms`)
  for (let i = 0; i < 100 && seen.length < 2; i++) await new Promise((r) => setTimeout(r, 10))
  assert.equal(seen.length, 2)
  assert.ok(seen.every((m) => !m.slice(0, m.indexOf('|')).includes('#')), `no acknowledgement asked: ${seen.join(', ')}`)
  assert.equal(a.stats().busAckTimeouts, 0)
})

test('loader values do not wait for acknowledgements (they replace nothing another process holds)', async (t) => {
  const s = scope(t, { name: 'ack-fill' })
  const a = s.cache({ l1: L1, bus: { ackTimeout: 2 } })
  await connected(a)
  await rawSubscriber(t, s.prefix, () => {})
  const t0 = performance.now()
  assert.equal(await a.getOrSet('k', () => 'loaded'), 'loaded')
  const ms = performance.now() - t0
  assert.ok(ms < 1000, `getOrSet took ${ms.toFixed(1)} ms: it waited for the silent subscriber`)
  assert.equal(a.stats().busAckTimeouts, 0)
})

test('bus.ackTimeout is validated: TypeError / RangeError naming it, with a stable code', async () => {
  for (const [bad, Cls] of [['1', TypeError], [-0.01, RangeError], [11, RangeError], [Number.NaN, RangeError]]) {
    assert.throws(() => new MultiLevelCache({ bus: { ackTimeout: bad } }), (e) =>
      e instanceof Cls && e.code === codes.INVALID_OPTION && /bus\.ackTimeout/.test(e.message))
  }
  assert.throws(() => new MultiLevelCache({ bus: { ackTimeOut: 1 } }), (e) =>
    e instanceof TypeError && e.code === codes.INVALID_OPTION && /bus\.ackTimeOut/.test(e.message))
  assert.throws(() => new MultiLevelCache({ bus: 5 }), (e) => e instanceof TypeError && /`bus`/.test(e.message))
})
