'use strict'
// Redis Sentinel: `new MultiLevelCache({ sentinel: { nodes, name } })` finds the master through
// the sentinels and follows it through a failover, for the data connection and the bus. A real
// topology on loopback (helpers/sentinel.js): master, replica, three sentinels. The master is
// SIGKILLed under load: no call throws, each is bounded, and after the promotion writes reach
// the new master and cross-process invalidation works again.

const { clockName, entryName, markerName } = require('./helpers/layout.js')
const { test } = require('node:test')
const assert = require('node:assert/strict')
const { MultiLevelCache, codes } = require('./helpers/cache.js')
const { uniquePrefix, client, eventually } = require('./helpers/redis.js')
const { FAST, caches, connected, timed, guardProcess } = require('./helpers/failure.js')
const { sentinelTopology } = require('./helpers/sentinel.js')

test('sentinel options: exactly one of redisUrl and sentinel, well-formed, with a clear error', () => {
  const bad = [
    [{ redisUrl: 'redis://127.0.0.1:6379', sentinel: { nodes: ['redis://127.0.0.1:26379'], name: 'm' } }, TypeError],
    [{ sentinel: 'redis://127.0.0.1:26379' }, TypeError],
    [{ sentinel: { nodes: [], name: 'm' } }, TypeError],
    [{ sentinel: { nodes: ['127.0.0.1:26379'], name: 'm' } }, TypeError],
    [{ sentinel: { nodes: ['redis://127.0.0.1:26379', 'rediss://127.0.0.1:26380'], name: 'm' } }, TypeError],
    [{ sentinel: { nodes: ['redis://127.0.0.1:26379'] } }, TypeError],
    [{ sentinel: { nodes: ['redis://127.0.0.1:26379'], name: 'm', port: 1 } }, TypeError],
    [{ sentinel: { nodes: ['redis://127.0.0.1:26379'], name: 'm', password: 5 } }, TypeError],
    [{ sentinel: { nodes: ['redis://127.0.0.1:26379'], name: 'm', db: -1 } }, RangeError],
    [{ sentinel: { nodes: ['redis://127.0.0.1:26379'], name: 'm', db: 1.5 } }, RangeError],
  ]
  for (const [options, Cls] of bad) {
    let caught
    try { new MultiLevelCache(options).close() } catch (e) { caught = e }
    assert.ok(caught instanceof Cls, `${JSON.stringify(options)}: ${caught}`)
    assert.equal(caught.code, codes.INVALID_OPTION, JSON.stringify(options))
  }
  // REDIS_URL only defaults redisUrl: with sentinel it is ignored, not a conflict
  const saved = process.env.REDIS_URL
  process.env.REDIS_URL = 'redis://127.0.0.1:6379'
  try {
    const c = new MultiLevelCache({ sentinel: { nodes: ['redis://127.0.0.1:1'], name: 'm' }, redis: FAST })
    c.close()
  } finally {
    if (saved === undefined) delete process.env.REDIS_URL
    else process.env.REDIS_URL = saved
  }
})

test('Sentinel: the master is found by name and followed through a SIGKILL failover, for data and bus', async (t) => {
  const guard = guardProcess(t)
  const topo = await sentinelTopology(t)
  const make = caches(t)
  const prefix = uniquePrefix('sentinel')
  const options = { sentinel: { nodes: topo.nodes, name: topo.name }, prefix, redis: FAST, lock: { ttl: 1, wait: 0.5 } }
  const a = make(options)
  const b = make(options)
  await connected(a, b)
  await a.set('k', 'v1', { tags: ['t'] })
  assert.equal(await b.get('k'), 'v1', 'the value did not travel through the master')
  const onMaster = client(topo.master.url)
  onMaster.on('error', () => {})
  t.after(() => onMaster.disconnect())
  assert.equal(JSON.parse(await onMaster.get(entryName(prefix, 'k'))).d, 'v1')

  // load on both processes while the master dies
  const thrown = []
  let slowest = 0
  let stop = false
  const loop = async (c, name) => {
    for (let i = 0; !stop && i < 100000; i++) {
      const op = i % 4
      const r = await timed(() => op === 0 ? c.getOrSet(`g:${i % 50}`, () => i)
        : op === 1 ? c.set(`s:${i % 50}`, i, { tags: ['load'] })
          : op === 2 ? c.get(`s:${i % 50}`)
            : c.del(`s:${(i + 7) % 50}`))
      if (!r.ok) thrown.push(`${name} op ${op}: ${r.error && (r.error.code || r.error.message)}`)
      slowest = Math.max(slowest, r.ms)
      if (i % 20 === 0) await new Promise((resolve) => setImmediate(resolve))
    }
  }
  const loops = [loop(a, 'a'), loop(b, 'b')]
  await new Promise((resolve) => setTimeout(resolve, 300))
  await topo.master.stop('SIGKILL')
  const promoted = await eventually(async () => (await topo.masterPort()) === topo.replica.port, { timeoutMs: 20000, intervalMs: 100 })
  assert.ok(promoted, 'the sentinels did not promote the replica within 20 s')
  // L2 and the bus follow: a write reaches the new master and the other process hears of it
  const onNew = client(topo.replica.url)
  onNew.on('error', () => {})
  t.after(() => onNew.disconnect())
  const followed = await eventually(async () => {
    await a.set('k', 'v2', { tags: ['t'] }).catch(() => {})
    const raw = await onNew.get(entryName(prefix, 'k')).catch(() => null)
    return raw !== null && JSON.parse(raw).d === 'v2'
  }, { timeoutMs: 15000, intervalMs: 100 })
  stop = true
  await Promise.all(loops)
  assert.ok(followed, 'writes never reached the promoted master')
  // what failed during the failover is replayed (as deletes) on the new master
  assert.ok(await eventually(() => a.stats().replaysPending === 0 && b.stats().replaysPending === 0, { timeoutMs: 10000 }), 'the replays did not drain on the new master')
  await a.set('k', 'v2', { tags: ['t'] })
  await connected(a, b)
  // b follows too (its own watcher, connection and breaker): L2 again within seconds
  const seen = []
  const bFollowed = await eventually(async () => {
    const v = await b.get('k')
    if (seen[seen.length - 1] !== v) seen.push(v)
    return v === 'v2'
  }, { timeoutMs: 10000, intervalMs: 50 })
  const bs = b.stats()
  const why = bFollowed ? '' : JSON.stringify({ raw: await onNew.get(entryName(prefix, 'k')), marker: await onNew.get(markerName(prefix, 't')), clock: await onNew.get(clockName(prefix)), role: (await onNew.call('ROLE'))[0], exists: await b.exists('k'), aReads: await a.get('k'), fresh: await make({ ...options }).get('k') })
  assert.ok(bFollowed, `the other process never read the new master: ${why} saw ${JSON.stringify(seen)}; ${JSON.stringify({ breakerState: bs.breakerState, breakerOpened: bs.breakerOpened, busConnected: bs.busConnected, busResubscriptions: bs.busResubscriptions, l2Hits: bs.l2Hits, l2Misses: bs.l2Misses, redisErrors: bs.redisErrors, redisSkipped: bs.redisSkipped, l1Entries: bs.l1Entries })}`)
  // acknowledged writes across processes again: when set resolves, b dropped its copy
  await a.set('k', 'v3', { tags: ['t'] })
  assert.equal(await b.get('k'), 'v3')
  await a.invalidateTag('t')
  assert.equal(await b.get('k'), null)
  t.diagnostic(`slowest call during the failover: ${slowest.toFixed(0)} ms; a: breakerOpened ${a.stats().breakerOpened}, busResubscriptions ${a.stats().busResubscriptions}`)
  assert.deepEqual(thrown, [], 'calls threw during the failover')
  assert.ok(slowest < 5000, `a call took ${slowest.toFixed(0)} ms: not bounded`)
  await guard.assertNone(assert)
})

test('redis.waitReplicas with Sentinel: a resolved set / del / invalidateTag is on the replica', async (t) => {
  const topo = await sentinelTopology(t)
  const make = caches(t)
  const prefix = uniquePrefix('sentinel-wait')
  const a = make({ sentinel: { nodes: topo.nodes, name: topo.name }, prefix, redis: { waitReplicas: 1, waitTimeout: 5, commandTimeout: 5, connectTimeout: 5 } })
  await connected(a)
  const onReplica = client(topo.replica.url)
  onReplica.on('error', () => {})
  t.after(() => onReplica.disconnect())
  const onMaster = client(topo.master.url)
  onMaster.on('error', () => {})
  t.after(() => onMaster.disconnect())
  // the replica has finished its first sync (before that WAIT can only wait in vain)
  const synced = await eventually(async () => /master_link_status:up/.test(await onReplica.info('replication')), { timeoutMs: 20000, intervalMs: 100 })
  assert.ok(synced, 'the replica did not finish its first sync')
  for (let i = 0; i < 10; i++) {
    await a.set(`k${i}`, i, { tags: [`t${i}`] })
    const raw = await onReplica.get(entryName(prefix, `k${i}`))
    assert.ok(raw !== null, `round ${i}: the set was not on the replica when it resolved (${JSON.stringify({ waits: a.stats().replicaWaitTimeouts, errors: a.stats().redisErrors })})`)
    assert.equal(JSON.parse(raw).d, i)
    await a.invalidateTag(`t${i}`)
    assert.equal(await onReplica.get(markerName(prefix, `t${i}`)), await onMaster.get(markerName(prefix, `t${i}`)))
    await a.del(`k${i}`)
    assert.equal(await onReplica.get(entryName(prefix, `k${i}`)), null, 'the del was on the replica when it resolved')
  }
  assert.equal(a.stats().replicaWaitTimeouts, 0)
})
