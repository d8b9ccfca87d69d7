'use strict'
// Redis Cluster: real clusters of redis-server processes on loopback (helpers/cluster.js), 3
// primaries, with or without a replica each. Every promise of the README, on a cluster: the
// prefix spreads over every shard (no hot key), acknowledged writes counted exactly (the bus is
// a shard channel), tags whose entries live on different shards, one loader call across
// processes, and the golden rule through a primary's failover and a live reshard.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { performance } = require('node:perf_hooks')
const { startCluster, keySlot } = require('./helpers/cluster.js')
const { startWorkers } = require('./helpers/workers.js')
const { eventually, uniquePrefix } = require('./helpers/redis.js')
const { entryName, markerName, kindOf } = require('./helpers/layout.js')
const { MultiLevelCache, codes } = require('../index.js')

const L1 = { ttl: 60, maxEntries: 100000 }

/** A cache on `cluster`, closed after the test. */
function on(t, cluster, prefix, options = {}) {
  const c = new MultiLevelCache({ prefix, cluster: { nodes: cluster.nodes.slice(0, 2) }, l1: L1, ...options })
  t.after(() => c.close())
  return c
}

/** Waits (bounded) until every cache's bus is subscribed. */
async function connected(...caches) {
  const ok = await eventually(() => caches.every((c) => c.stats().busConnected), { timeoutMs: 10000 })
  assert.ok(ok, 'the bus did not subscribe on the cluster within 10 s')
}

/** Share (0..1) of each primary in `counts` ({ port: n }). */
function shares(counts) {
  const total = Object.values(counts).reduce((a, b) => a + b, 0)
  return Object.fromEntries(Object.entries(counts).map(([port, n]) => [port, total ? n / total : 0]))
}

/** Per-primary command counts between two `commandCounts()` snapshots. */
function countsDelta(before, after) {
  const out = {}
  for (const a of after) {
    const b = before.find((x) => x.port === a.port)
    out[a.port] = a.calls - (b ? b.calls : 0)
  }
  return out
}

test('cluster options: exactly one of redisUrl, sentinel, cluster; well-formed seeds; clear errors', () => {
  const bad = [
    [{ redisUrl: 'redis://127.0.0.1:6379', cluster: { nodes: ['redis://127.0.0.1:7000'] } }, TypeError],
    [{ sentinel: { nodes: ['redis://127.0.0.1:26379'], name: 'm' }, cluster: { nodes: ['redis://127.0.0.1:7000'] } }, TypeError],
    [{ cluster: null }, TypeError],
    [{ cluster: [] }, TypeError],
    [{ cluster: {} }, TypeError],
    [{ cluster: { nodes: [] } }, TypeError],
    [{ cluster: { nodes: [''] } }, TypeError],
    [{ cluster: { nodes: [7000] } }, TypeError],
    [{ cluster: { nodes: ['http://127.0.0.1:7000'] } }, TypeError],
    [{ cluster: { nodes: ['redis://127.0.0.1:7000', 'rediss://127.0.0.1:7001'] } }, TypeError],
    [{ cluster: { nodes: ['redis://127.0.0.1:7000'], extra: 1 } }, TypeError],
  ]
  for (const [options, type] of bad) {
    assert.throws(() => new MultiLevelCache(options), (e) => e instanceof type && e.code === codes.INVALID_OPTION,
      `no ${type.name} for ${JSON.stringify(options)}`)
  }
  // REDIS_URL only defaults redisUrl: with cluster it is ignored, not a conflict
  const saved = process.env.REDIS_URL
  process.env.REDIS_URL = 'redis://127.0.0.1:6379'
  try {
    const c = new MultiLevelCache({ cluster: { nodes: ['redis://127.0.0.1:1'] }, redis: { connectTimeout: 0.2 } })
    return c.close()
  } finally {
    if (saved === undefined) delete process.env.REDIS_URL
    else process.env.REDIS_URL = saved
  }
})

test('a prefix spreads over every primary: entries, and the commands of reads, misses with tags, writes and invalidations', async (t) => {
  const cluster = await startCluster(t, { primaries: 3, replicas: 0 })
  const prefix = uniquePrefix('spread')
  const writer = on(t, cluster, prefix)
  await connected(writer)
  const N = 3000
  for (let i = 0; i < N; i += 100) {
    await Promise.all(Array.from({ length: 100 }, (_, j) => writer.set(`item:${i + j}`, { i: i + j }, { tags: [`grp:${(i + j) % 10}`] })))
  }
  const sizes = await cluster.dbsize()
  const entries = sizes.map((s) => s.keys)
  t.diagnostic(`keys per primary after ${N} sets: ${entries.join(' / ')}`)
  for (const s of sizes) assert.ok(s.keys / N >= 0.2, `primary ${s.port} holds ${s.keys} of ${N} entries (under 20 %)`)

  // the commands of a mixed load: fresh-instance reads, tagged misses, writes, invalidations
  const reader = on(t, cluster, prefix)
  await connected(reader)
  const before = await cluster.commandCounts()
  for (let i = 0; i < N; i += 100) {
    await Promise.all(Array.from({ length: 100 }, (_, j) => reader.get(`item:${i + j}`)))
  }
  let loads = 0
  for (let i = 0; i < 1000; i += 100) {
    await Promise.all(Array.from({ length: 100 }, (_, j) => reader.getOrSet(`cold:${i + j}`, () => { loads++; return i + j }, { tags: [`grp:${(i + j) % 10}`] })))
  }
  for (let i = 0; i < 20; i++) await writer.invalidateTag(`grp:${i % 10}`)
  const after = await cluster.commandCounts()
  const share = shares(countsDelta(before, after))
  t.diagnostic(`command share per primary: ${Object.entries(share).map(([p, s]) => `${p}: ${(s * 100).toFixed(1)} %`).join(', ')}`)
  assert.equal(loads, 1000)
  for (const [port, s] of Object.entries(share)) assert.ok(s >= 0.2, `primary ${port} took ${(s * 100).toFixed(1)} % of the commands`)
})

test('every promise on a cluster: acknowledged set/del/invalidateTag (counted exactly), tags across shards, nothing stale', async (t) => {
  const cluster = await startCluster(t, { primaries: 3, replicas: 0 })
  const prefix = uniquePrefix('promises')
  const [a, b, c] = [on(t, cluster, prefix), on(t, cluster, prefix), on(t, cluster, prefix)]
  await connected(a, b, c)
  // keys on every shard, all tagged `grp`
  const keys = ['k0', 'k1', 'k2', 'k3', 'k4', 'k5']
  const owners = new Set(await Promise.all(keys.map(async (k) => (await cluster.primaryOf(entryName(prefix, k))).port)))
  assert.equal(owners.size, 3, 'the test keys should live on all three primaries')
  const ops = {
    set: (i) => a.set('k0', `new-${i}`, { tags: ['grp'] }),
    del: () => a.del('k0'),
    invalidateTag: () => a.invalidateTag('grp'),
  }
  for (const [op, write] of Object.entries(ops)) {
    const late = []
    for (let i = 0; i < 30; i++) {
      await Promise.all(keys.map((k) => a.set(k, `old-${i}`, { tags: ['grp'] })))
      for (const x of [b, c]) {
        for (const k of keys) {
          for (let tries = 0; tries < 200 && (await x.get(k)) !== `old-${i}`; tries++) await new Promise((r) => setImmediate(r))
          assert.equal(await x.get(k), `old-${i}`)
        }
      }
      await write(i)
      // checked synchronously, before this thread runs anything else
      const held = op === 'invalidateTag' ? keys.length : 1
      if (b.stats().l1Entries > keys.length - held || c.stats().l1Entries > keys.length - held) late.push(i)
      // and through Redis: no instance reads an old value
      for (const x of [b, c]) {
        for (const k of op === 'invalidateTag' ? keys : ['k0']) {
          const v = await x.get(k)
          assert.ok(v === null || v === `new-${i}`, `${op} round ${i}: ${k} read ${JSON.stringify(v)}`)
        }
      }
    }
    assert.deepEqual(late, [], `${op}: rounds resolved before another instance dropped its copy`)
  }
  assert.equal(a.stats().busAckTimeouts, 0, 'every acknowledgement arrived: SPUBLISH counted exactly the subscribers')
  assert.ok(b.stats().busAcksSent >= 90 && c.stats().busAcksSent >= 90)
  // a fresh process reads no invalidated entry, on any shard
  const fresh = on(t, cluster, prefix)
  for (const k of keys) assert.equal(await fresh.get(k), null)
})

test('one loader call for a key across processes on a cluster (4 processes x 25 callers)', async (t) => {
  const cluster = await startCluster(t, { primaries: 3, replicas: 0 })
  const prefix = uniquePrefix('stampede')
  const workers = await startWorkers(t, 4, { prefix, cluster: { nodes: cluster.nodes }, l1: L1 })
  for (const key of ['cold:a', 'cold:b', 'cold:c']) {
    const startAt = Date.now() + 300
    const results = await Promise.all(workers.map((w) => w.call('burst', { key, n: 25, loader: { delayMs: 100 }, startAt, options: { tags: ['t'] } }, { timeoutMs: 20000 })))
    const stats = await Promise.all(workers.map((w) => w.call('stats')))
    t.diagnostic(`${key}: loader calls per process ${stats.map((s) => s.ownLoaderCalls).join('/')}`)
    for (const r of results) assert.equal(r.rejected, 0)
    assert.equal(new Set(results.flatMap((r) => r.values)).size, 1, 'every caller got the same value')
  }
  const total = (await Promise.all(workers.map((w) => w.call('stats')))).reduce((n, s) => n + s.ownLoaderCalls, 0)
  assert.equal(total, 3, 'one loader call per key across the four processes')
})

/**
 * Runs get/getOrSet/set/del on keys of every shard from each cache until `stop()` resolves;
 * returns latencies and errors. Every call is awaited; the loop is bounded in count.
 */
function load(caches, { keys = 60, until }) {
  const latencies = []
  const errors = []
  let ops = 0
  const run = async (cache, w) => {
    for (let i = 0; i < 200000 && !until.done; i++) {
      const key = `load:${(i * 7 + w * 13) % keys}`
      const t0 = performance.now()
      try {
        switch (i % 4) {
          case 0: await cache.get(key); break
          case 1: await cache.getOrSet(key, () => ({ w, i }), { tags: [`tag:${i % 5}`] }); break
          case 2: await cache.set(key, { w, i }, { tags: [`tag:${i % 5}`] }); break
          default: await cache.del(key)
        }
      } catch (e) {
        errors.push(`${e.code || ''} ${e.message}`)
      }
      latencies.push(performance.now() - t0)
      ops++
      if (i % 20 === 0) await new Promise((r) => setTimeout(r, 1))
    }
  }
  const done = Promise.all(caches.flatMap((c, i) => [run(c, i * 2), run(c, i * 2 + 1)]))
  return { latencies, errors, done, ops: () => ops }
}

function p(latencies, q) {
  const s = [...latencies].sort((x, y) => x - y)
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))] : 0
}

test('a primary SIGKILLed under load (one holding bus channels): no call throws, each is bounded, L2 and the bus come back', async (t) => {
  const cluster = await startCluster(t, { primaries: 3, replicas: 1 })
  const prefix = uniquePrefix('failover')
  const options = { redis: { commandTimeout: 0.25, connectTimeout: 0.25 } }
  const a = on(t, cluster, prefix, options)
  const b = on(t, cluster, prefix, options)
  await connected(a, b)
  const victim = await cluster.primaryOf(`{${prefix}#0}:bus:v2`)
  const until = { done: false }
  const run = load([a, b], { until })
  await eventually(() => run.ops() > 500, { timeoutMs: 10000 })
  const before = run.latencies.length
  const killedAt = performance.now()
  await cluster.killPrimary(victim.port)
  const promoted = await cluster.waitForFailover(victim.port)
  // L2 is used again: a write reaches the new primary, read there directly
  const probeKey = 'after-failover'
  const admin = cluster.admin(promoted)
  let reached = false
  for (let i = 0; i < 200 && !reached; i++) {
    await a.set(`${probeKey}`, i)
    const owner = await cluster.primaryOf(entryName(prefix, probeKey))
    const raw = await cluster.admin(owner.port).get(entryName(prefix, probeKey)).catch(() => null)
    reached = raw !== null && JSON.parse(raw).d === i
    if (!reached) await new Promise((r) => setTimeout(r, 50))
  }
  const l2BackMs = performance.now() - killedAt
  await new Promise((r) => setTimeout(r, 300))
  until.done = true
  await run.done
  const during = run.latencies.slice(before)
  t.diagnostic(`${run.ops()} calls, ${during.length} after the kill; p50 ${p(during, 0.5).toFixed(1)} ms, p99 ${p(during, 0.99).toFixed(1)} ms, max ${Math.max(...during).toFixed(1)} ms; L2 written again ${l2BackMs.toFixed(0)} ms after the kill`)
  assert.deepEqual(run.errors, [], 'a call threw during the failover')
  assert.ok(reached, 'no write reached the promoted primary')
  assert.ok(await admin.ping())

  // the bus follows: b's L1 copy goes when a deletes, and a resolved del is seen at once
  const followed = await eventually(async () => {
    await a.set('bus-probe', 'v1')
    if ((await b.get('bus-probe')) !== 'v1') return false
    await a.del('bus-probe')
    return b.stats().l1Entries === 0 || (await b.get('bus-probe')) === null
  }, { timeoutMs: 15000, intervalMs: 100 })
  assert.ok(followed, 'cross-process invalidation did not work again after the failover')
  for (let i = 0; i < 20; i++) {
    await a.set('bus-probe', `v${i}`)
    assert.equal(await b.get('bus-probe'), `v${i}`)
    await a.del('bus-probe')
    assert.equal(await b.get('bus-probe'), null, `round ${i}: b served the deleted value`)
  }
  assert.ok(a.stats().busConnected && b.stats().busConnected)
})

test('slots migrating under load (redis-cli --cluster reshard: MOVED and ASK): no call throws, values stay right', async (t) => {
  const cluster = await startCluster(t, { primaries: 3, replicas: 0 })
  const prefix = uniquePrefix('reshard')
  const a = on(t, cluster, prefix)
  const b = on(t, cluster, prefix)
  await connected(a, b)
  const until = { done: false }
  const run = load([a, b], { until, keys: 200 })
  await eventually(() => run.ops() > 500, { timeoutMs: 10000 })
  const [from, to] = await cluster.primaries()
  // some bus channels' slots move too (16 channels spread over the slots)
  const busSlots = Array.from({ length: 16 }, (_, i) => keySlot(`{${prefix}#${i}}:bus:v2`))
  const moving = busSlots.filter((slot) => from.slots.some(([lo, hi]) => slot >= lo && slot < lo + 2000 && slot <= hi)).length
  t.diagnostic(`moving 2000 slots ${from.port} -> ${to.port}; about ${moving} of the 16 bus channels' slots among them`)
  await cluster.reshard({ from: from.port, to: to.port, slots: 2000 })
  until.done = true
  await run.done
  t.diagnostic(`${run.ops()} calls; p99 ${p(run.latencies, 0.99).toFixed(1)} ms, max ${Math.max(...run.latencies).toFixed(1)} ms; redisErrors a ${a.stats().redisErrors}, b ${b.stats().redisErrors}`)
  assert.deepEqual(run.errors, [])
  // after the move: every key written now reads back right from the other instance
  const ok = await eventually(() => a.stats().busConnected && b.stats().busConnected, { timeoutMs: 10000 })
  assert.ok(ok)
  for (let i = 0; i < 200; i++) await a.set(`load:${i}`, `final-${i}`, { tags: ['fin'] })
  for (let i = 0; i < 200; i++) assert.equal(await b.get(`load:${i}`), `final-${i}`)
  await a.invalidateTag('fin')
  for (let i = 0; i < 200; i += 7) assert.equal(await b.get(`load:${i}`), null)
})

test('redis.waitReplicas on a cluster: a resolved del / invalidateTag is on the primary\'s replica', async (t) => {
  const cluster = await startCluster(t, { primaries: 3, replicas: 1 })
  const prefix = uniquePrefix('wait')
  // generous bounds: on a loaded machine a command past the default bound would fall back
  // (the golden rule) and this test is about WAIT, not about the bound
  const a = on(t, cluster, prefix, { redis: { waitReplicas: 1, waitTimeout: 5, commandTimeout: 5, connectTimeout: 5 } })
  await connected(a)
  const replicaOf = async (name) => {
    const primary = await cluster.primaryOf(name)
    const [port] = await cluster.replicasOf(primary.port)
    const r = cluster.admin(port)
    await r.call('READONLY')
    return r
  }
  for (let i = 0; i < 10; i++) {
    const key = `w${i}`
    await a.set(key, i, { tags: [`t${i}`] })
    assert.equal(a.stats().redisErrors, 0, 'every command reached Redis')
    const replica = await replicaOf(entryName(prefix, key))
    assert.equal(JSON.parse(await replica.get(entryName(prefix, key))).d, i, 'the set was on the replica when it resolved')
    await a.invalidateTag(`t${i}`)
    const markerReplica = await replicaOf(markerName(prefix, `t${i}`))
    const primary = cluster.admin((await cluster.primaryOf(markerName(prefix, `t${i}`))).port)
    assert.equal(await markerReplica.get(markerName(prefix, `t${i}`)), await primary.get(markerName(prefix, `t${i}`)))
    await a.del(key)
    assert.equal(await replica.get(entryName(prefix, key)), null, 'the del was on the replica when it resolved')
  }
  assert.equal(a.stats().replicaWaitTimeouts, 0)
})

test('the golden rule on a cluster: every node down means loader values and nulls, bounded; back, the cache is again shared', async (t) => {
  const cluster = await startCluster(t, { primaries: 3, replicas: 0 })
  const prefix = uniquePrefix('down')
  const options = { redis: { commandTimeout: 0.2, connectTimeout: 0.2 } }
  const a = on(t, cluster, prefix, options)
  const b = on(t, cluster, prefix, options)
  await connected(a, b)
  await a.set('k', 'v1')
  const primaries = await cluster.primaries()
  for (const pr of primaries) await cluster.killPrimary(pr.port)
  const t0 = performance.now()
  let slowest = 0
  for (let i = 0; i < 30; i++) {
    const s0 = performance.now()
    assert.equal(await b.getOrSet(`down:${i}`, () => `loaded-${i}`), `loaded-${i}`)
    assert.equal(await b.get(`absent:${i}`), null)
    slowest = Math.max(slowest, performance.now() - s0)
  }
  t.diagnostic(`60 calls with every node down in ${(performance.now() - t0).toFixed(0)} ms, slowest pair ${slowest.toFixed(0)} ms; breaker opened ${b.stats().breakerOpened}x`)
  // a cache made while no node answers works from its loaders, and finds the cluster later
  const late = on(t, cluster, prefix, options)
  assert.equal(await late.getOrSet('late:k', () => 'from-loader'), 'from-loader')
  assert.equal(await late.get('absent'), null)
  for (const [i, pr] of primaries.entries()) await cluster.restart(pr.port, { settle: i === primaries.length - 1 })
  // back: a write of one instance is read by the other through Redis
  const back = await eventually(async () => {
    await a.set('k', 'v2')
    const fresh = new MultiLevelCache({ prefix, cluster: { nodes: cluster.nodes }, l1: false, ...options })
    try { return (await fresh.get('k')) === 'v2' } finally { await fresh.close() }
  }, { timeoutMs: 20000, intervalMs: 200 })
  assert.ok(back, 'the cache did not use the cluster again after it came back')
  const lateBack = await eventually(async () => (await late.get('k')) === 'v2', { timeoutMs: 20000, intervalMs: 200 })
  assert.ok(lateBack, 'a cache made while the cluster was down never connected to it')
  const keys = await cluster.admin(primaries[0].port).keys(`${prefix}:*`).catch(() => [])
  assert.ok(keys.every((k) => kindOf(prefix, k) !== null))
})

test('least privilege on a cluster: the README\'s ACL line, channels &{<prefix>#*}:*, plus +spublish +ssubscribe +cluster|slots is enough', async (t) => {
  const cluster = await startCluster(t, { primaries: 3, replicas: 0 })
  const prefix = uniquePrefix('acl')
  // the README's line (security.test.js checks each command of it on one server)
  const line = ['+get', '+mget', '+set', '+incr', '+unlink', '+del', '+pttl', '+pexpire', '+evalsha', '+script|load',
    '+publish', '+subscribe', '+ping', '+spublish', '+ssubscribe', '+cluster|slots']
  for (const url of cluster.nodes) {
    const admin = cluster.admin(Number(new URL(url).port))
    await admin.call('ACL', 'SETUSER', 'cache', 'reset', 'on', '>pw', `~${prefix}:v3:*`, `&{${prefix}#*}:*`, '-@all', ...line)
  }
  const nodes = cluster.nodes.slice(0, 2).map((u) => u.replace('redis://', 'redis://cache:pw@'))
  const mk = () => {
    const c = new MultiLevelCache({ prefix, cluster: { nodes }, l1: L1 })
    t.after(() => c.close())
    return c
  }
  const a = mk()
  const b = mk()
  await connected(a, b)
  for (let i = 0; i < 30; i++) await a.set(`k${i}`, i, { tags: [`t${i % 3}`] })
  for (let i = 0; i < 30; i++) assert.equal(await b.get(`k${i}`), i)
  await a.invalidateTag('t1')
  assert.equal(b.stats().l1Entries, 20, 'the acknowledged invalidation reached b')
  assert.equal(await b.get('k1'), null)
  await a.del('k0')
  assert.equal(await b.get('k0'), null)
  let calls = 0
  assert.equal(await b.getOrSet('cold', () => { calls++; return 'v' }, { tags: ['t0'] }), 'v')
  assert.equal(await a.get('cold'), 'v')
  assert.equal(calls, 1)
  for (const c of [a, b]) {
    assert.equal(c.stats().redisErrors, 0)
    assert.equal(c.stats().busAckTimeouts, 0)
  }
})

test('after the bus was lost, a process learns the invalidation clock again: its loads of a tag invalidated meanwhile are cached', async (t) => {
  const cluster = await startCluster(t, { primaries: 3, replicas: 0 })
  const prefix = uniquePrefix('clock')
  const a = on(t, cluster, prefix)
  const b = on(t, cluster, prefix)
  await connected(a, b)
  await a.invalidateTag('t') // b learns this clock value from the bus
  assert.equal(await b.getOrSet('k0', () => 'v0', { tags: ['t'] }), 'v0')
  // b's bus connections are cut; a invalidates the tag meanwhile (b misses the announcements)
  const resubscribed = b.stats().busResubscriptions
  for (const url of cluster.nodes) await cluster.admin(Number(new URL(url).port)).call('CLIENT', 'KILL', 'TYPE', 'pubsub').catch(() => {})
  for (let i = 0; i < 3; i++) await a.invalidateTag('t')
  const back = await eventually(() => b.stats().busResubscriptions > resubscribed && b.stats().busConnected, { timeoutMs: 15000 })
  assert.ok(back, 'b did not subscribe again')
  // b loads a value of the tag: it must be born after those invalidations, so others read it
  assert.equal(await b.getOrSet('k1', () => 'v1', { tags: ['t'] }), 'v1')
  const fresh = on(t, cluster, prefix, { l1: false })
  let loads = 0
  assert.equal(await fresh.getOrSet('k1', () => { loads++; return 'reloaded' }, { tags: ['t'] }), 'v1')
  assert.equal(loads, 0, 'the value b loaded was dead on arrival (born at a clock b had not updated)')
})

test('freshness on a cluster: grace and its fail-safe, expire, stale-while-revalidate with one loader call, eager refresh', async (t) => {
  const cluster = await startCluster(t, { primaries: 3, replicas: 0 })
  const prefix = uniquePrefix('fresh')
  const a = on(t, cluster, prefix, { grace: 600, softTimeout: 0 })
  const b = on(t, cluster, prefix, { grace: 600, softTimeout: 0 })
  await connected(a, b)
  const keys = Array.from({ length: 12 }, (_, i) => `fresh:${i}`)
  for (const k of keys) await a.set(k, `old-${k}`, { ttl: 0.2 })
  assert.ok(await eventually(async () => !(await b.exists(keys[0])) && !(await b.exists(keys[11])), { timeoutMs: 5000 }))
  // stale on every shard: answered at once, one background load per key across both processes
  let calls = 0
  let release
  const gate = new Promise((resolve) => { release = resolve })
  const loader = async (key) => { calls++; await gate; return `new-${key}` }
  const answers = await Promise.all(keys.flatMap((k) => [a.getOrSet(k, loader, { ttl: 60 }), b.getOrSet(k, loader, { ttl: 60 })]))
  assert.deepEqual(answers, keys.flatMap((k) => [`old-${k}`, `old-${k}`]))
  release()
  assert.ok(await eventually(async () => (await Promise.all(keys.map((k) => b.get(k)))).every((v, i) => v === `new-${keys[i]}`), { timeoutMs: 10000 }))
  assert.equal(calls, keys.length, `one load per key across both processes (a: ${JSON.stringify(pickLocks(a))}, b: ${JSON.stringify(pickLocks(b))})`)
  // expire: stale everywhere, the fail-safe copy stays on its shard
  await a.expire(keys[3])
  assert.equal(await b.get(keys[3]), null)
  const failing = () => { throw Object.assign(new Error('database down'), { code: 'TEST_DB_DOWN' }) }
  const isDown = (e) => e.code === 'TEST_DB_DOWN'
  assert.equal(await b.getOrSet(keys[3], failing), `new-${keys[3]}`)
  // del keeps its meaning
  await a.del(keys[4])
  await assert.rejects(b.getOrSet(keys[4], failing), isDown)
  // a tag invalidated in expire mode, its entries on every shard: stale, kept as fail-safe copies
  const tagged = Array.from({ length: 9 }, (_, i) => `tagged:${i}`)
  for (const k of tagged) await a.set(k, `t-${k}`, { ttl: 600, tags: ['shared', `own:${k}`] })
  await b.invalidateTag('shared', { mode: 'expire' })
  for (const k of tagged) assert.equal(await a.get(k), null)
  for (const k of tagged) assert.equal(await b.getOrSet(k, failing), `t-${k}`)
  await a.invalidateTag('shared')
  const late = on(t, cluster, prefix)
  for (const k of tagged.slice(0, 3)) await assert.rejects(late.getOrSet(k, failing), isDown)
  // eager refresh: one refresh across both processes
  let eager = 0
  const refresh = async () => { eager++; return `e${eager}` }
  assert.equal(await a.getOrSet('hot', refresh, { ttl: 1, eagerRefresh: 0.3 }), 'e1')
  assert.equal(await b.getOrSet('hot', refresh, { ttl: 1, eagerRefresh: 0.3 }), 'e1')
  const env = JSON.parse(await cluster.admin((await cluster.primaryOf(entryName(prefix, 'hot'))).port).get(entryName(prefix, 'hot')))
  assert.ok(await eventually(() => Date.now() >= env.r + 20, { timeoutMs: 5000 }))
  for (let i = 0; i < 20; i++) {
    await a.getOrSet('hot', refresh, { ttl: 1, eagerRefresh: 0.3 })
    await b.getOrSet('hot', refresh, { ttl: 1, eagerRefresh: 0.3 })
  }
  assert.ok(await eventually(async () => (await a.getOrSet('hot', refresh)) === 'e2' && (await b.getOrSet('hot', refresh)) === 'e2', { timeoutMs: 5000 }))
  assert.equal(eager, 2)
})

function pickLocks(c) {
  const s = c.stats()
  return { lockAcquired: s.lockAcquired, lockWaits: s.lockWaits, lockWaitHits: s.lockWaitHits, lockWaitTimeouts: s.lockWaitTimeouts, loaderCalls: s.loaderCalls, redisErrors: s.redisErrors }
}
