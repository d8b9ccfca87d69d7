'use strict'
// Acknowledged invalidations (`bus.ackTimeout`): `set`, `del` and `invalidateTag` resolve once
// every other subscribed process has confirmed on the bus that it dropped its L1 copy, or after
// `bus.ackTimeout`, never with an error. A plain Redis subscriber on the bus channel stands in
// for a process that is slow, paused or of an older version: it counts among PUBLISH's receivers
// and acknowledges only when (and if) the test says so.
//
// No assertion reads elapsed milliseconds: each checks counters (`busAckTimeouts`,
// `busAcksSent`) and the order of events, namely whether a write resolved before or after the
// acknowledgement it needed was sent, or before or after a timer set to half its
// `bus.ackTimeout`. Half, so that the waits the test tells apart (a few ms, or the whole bound)
// are far on either side of the timer.

const { ackChannel, busChannel } = require('./helpers/layout.js')
const { test } = require('node:test')
const assert = require('node:assert/strict')
const { scope, MultiLevelCache, codes, eventually } = require('./helpers/cache.js')
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

/**
 * A flag that becomes true `ms` from now (a timer on this thread), to order an operation's
 * end against it: `flag.passed` read when the operation resolved says whether it resolved
 * after that point. The timer is cleared when the test ends.
 */
function passesIn(t, ms) {
  const flag = { passed: false }
  const timer = setTimeout(() => { flag.passed = true }, ms)
  t.after(() => clearTimeout(timer))
  return flag
}

/**
 * Resolves `p`'s outcome together with `flag.passed` read the moment `p` resolved, so that the
 * caller's own await adds nothing to the order.
 */
async function passedWhenResolved(p, flag) {
  await p
  return flag.passed
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
  const ACK_TIMEOUT_MS = 1000
  const s = scope(t, { name: 'ack-silent' })
  const a = s.cache({ l1: L1, bus: { ackTimeout: ACK_TIMEOUT_MS / 1000 } })
  const b = s.cache({ l1: L1, bus: { ackTimeout: ACK_TIMEOUT_MS / 1000 } })
  await connected(a, b)
  const seen = []
  const silent = await rawSubscriber(t, s.prefix, (text) => seen.push(text))
  // the first write waits the whole bound: it cannot resolve before half of it has passed
  assert.equal(await passedWhenResolved(a.set('k', 'v'), passesIn(t, ACK_TIMEOUT_MS / 2)), true,
    'the first write resolved before half of bus.ackTimeout: it did not wait for the silent subscriber')
  assert.equal(a.stats().busAckTimeouts, 1, 'the silent subscriber was waited for until bus.ackTimeout')
  // acknowledgements are missing: the next write waits 5 ms, not the bound
  assert.equal(await passedWhenResolved(a.del('k'), passesIn(t, ACK_TIMEOUT_MS / 2)), false,
    'the second write waited (half of) bus.ackTimeout although acknowledgements were known to be missing')
  assert.equal(a.stats().busAckTimeouts, 2, 'the second write stopped waiting at its (short) bound')
  assert.equal(await a.get('k'), null)
  assert.ok(seen.some((m) => /#\d+\|d\|k$/.test(m)), `the delete asked for acknowledgements: ${seen.join(', ')}`)
  assert.ok(b.stats().busAcksSent >= 2, 'b acknowledged both writes')

  // the silent receiver goes away: a write gets every acknowledgement, the full wait is back
  // (while acknowledgements are missing the bound is 5 ms, which b may miss on a loaded
  // machine: a few writes are allowed until one gets them all)
  await silent.unsubscribe()
  let timeouts = a.stats().busAckTimeouts
  let allAcked = false
  for (let i = 0; i < 20 && !allAcked; i++) {
    await a.set('k', `v2-${i}`)
    allAcked = a.stats().busAckTimeouts === timeouts
    timeouts = a.stats().busAckTimeouts
  }
  assert.ok(allAcked, `every write timed out with only acknowledging receivers (${timeouts} timeouts)`)
  const pub = client()
  t.after(() => pub.quit())
  let lateAckSent = false
  await rawSubscriber(t, s.prefix, (text) => {
    if (!text.includes('#')) return
    setTimeout(() => {
      lateAckSent = true // before the PUBLISH: the cache cannot see the acknowledgement earlier
      ackFor(pub, s.prefix, text)
    }, 100)
  })
  await a.del('k')
  assert.equal(lateAckSent, true, 'the write resolved before the late acknowledgement was sent: it waited 5 ms, not the bound')
  assert.equal(a.stats().busAckTimeouts, timeouts, 'the write stopped waiting before the late acknowledgement came')
  // the Prometheus series counts the same
  const registry = new prom.Registry()
  registerMetrics(a, registry, { name: 'a' })
  const series = (await registry.getSingleMetric('cache_bus_ack_timeouts_total').get()).values
  assert.deepEqual(series.map((v) => [v.labels.cache, v.value]), [['a', timeouts]])
})

test('a receiver that acknowledges late is waited for until it does', async (t) => {
  const ACK_TIMEOUT_MS = 5000
  const s = scope(t, { name: 'ack-late' })
  const a = s.cache({ l1: L1, bus: { ackTimeout: ACK_TIMEOUT_MS / 1000 } })
  await connected(a)
  const pub = client()
  t.after(() => pub.quit())
  let ackSent = false
  await rawSubscriber(t, s.prefix, (text) => {
    if (!text.includes('#')) return
    setTimeout(() => {
      ackSent = true // before the PUBLISH: the cache cannot see the acknowledgement earlier
      ackFor(pub, s.prefix, text)
    }, 150)
  })
  const halfBound = passesIn(t, ACK_TIMEOUT_MS / 2)
  await a.invalidateTag('grp')
  assert.equal(ackSent, true, 'invalidateTag resolved before the late acknowledgement was sent')
  assert.equal(halfBound.passed, false, 'invalidateTag kept waiting after the acknowledgement came (up to bus.ackTimeout)')
  assert.equal(a.stats().busAckTimeouts, 0, 'invalidateTag stopped waiting at bus.ackTimeout, not at the acknowledgement')
})

test('bus.ackTimeout 0: writes do not ask for acknowledgements and do not wait', async (t) => {
  const s = scope(t, { name: 'ack-off' })
  const a = s.cache({ l1: L1, bus: { ackTimeout: 0 } })
  await connected(a)
  const seen = []
  await rawSubscriber(t, s.prefix, (text) => seen.push(text))
  await a.set('k', 'v')
  await a.del('k')
  for (let i = 0; i < 300 && seen.length < 2; i++) await new Promise((r) => setTimeout(r, 10))
  assert.equal(seen.length, 2)
  // nothing asked, nothing waited for: the silent subscriber would have cost a timeout each
  assert.ok(seen.every((m) => !m.slice(0, m.indexOf('|')).includes('#')), `no acknowledgement asked: ${seen.join(', ')}`)
  assert.equal(a.stats().busAckTimeouts, 0)
})

test('loader values do not wait for acknowledgements (they replace nothing another process holds)', async (t) => {
  const ACK_TIMEOUT_MS = 4000
  const s = scope(t, { name: 'ack-fill' })
  const a = s.cache({ l1: L1, bus: { ackTimeout: ACK_TIMEOUT_MS / 1000 } })
  await connected(a)
  const seen = []
  await rawSubscriber(t, s.prefix, (text) => seen.push(text))
  let value
  const waited = await passedWhenResolved(a.getOrSet('k', () => 'loaded').then((v) => { value = v }), passesIn(t, ACK_TIMEOUT_MS / 2))
  assert.equal(value, 'loaded')
  assert.equal(waited, false, 'getOrSet resolved after half of bus.ackTimeout: it waited for the silent subscriber')
  assert.equal(a.stats().busAckTimeouts, 0)
  await eventually(() => seen.length >= 1, { timeoutMs: 3000 })
  assert.ok(seen.length >= 1 && seen.every((m) => !m.slice(0, m.indexOf('|')).includes('#')), `the fill asked for acknowledgements: ${seen.join(', ')}`)
})

test('bus.ackTimeout is validated: TypeError / RangeError naming it, with a stable code', async () => {
  for (const [bad, Cls] of [['1', TypeError], [-0.01, RangeError], [11, RangeError], [Number.NaN, RangeError]]) {
    assert.throws(() => new MultiLevelCache({ bus: { ackTimeout: bad } }), (e) =>
      e instanceof Cls && e.code === codes.INVALID_OPTION && /bus\.ackTimeout/.test(e.message))
  }
  assert.throws(() => new MultiLevelCache({ bus: { ackTimeOut: 1 } }), (e) =>
    e instanceof TypeError && e.code === codes.INVALID_OPTION && /bus\.ackTimeOut/.test(e.message))
  assert.throws(() => new MultiLevelCache({ bus: 5 }), (e) =>
    e instanceof TypeError && e.code === codes.INVALID_OPTION && /`bus`/.test(e.message))
})
