'use strict'
// `redis.waitReplicas`: every invalidation (del, invalidateTag, a caller's set) waits (`WAIT`)
// until that many replicas acknowledged it, at most `redis.waitTimeout`, so a failover right
// after it resolves does not bring the old value back. A real master and replica on loopback;
// the replica is frozen (SIGSTOP) to make the wait run out.

const { entryName, markerName } = require('./helpers/layout.js')
const { test } = require('node:test')
const assert = require('node:assert/strict')
const { privateRedis, testClient, uniquePrefix, eventually } = require('./helpers/redis.js')
const { FAST, caches, connected, guardProcess } = require('./helpers/failure.js')
const { codes, MultiLevelCache } = require('./helpers/cache.js')

/** Calls of `WAIT` the server has served (INFO commandstats). */
async function waitCalls(admin) {
  const m = /cmdstat_wait:calls=(\d+)/.exec(await admin.info('commandstats'))
  return m ? Number(m[1]) : 0
}

test('redis.waitReplicas: invalidations wait for a replica; a frozen replica costs waitTimeout and is counted, never an error', async (t) => {
  const guard = guardProcess(t)
  const master = await privateRedis(t)
  const replica = await privateRedis(t, ['--replicaof', '127.0.0.1', String(master.port)])
  t.after(() => replica.thaw())
  const admin = testClient(t, master.url)
  const onReplica = testClient(t, replica.url)
  // the initial sync done: the replica acknowledges offsets from then on
  assert.ok(await eventually(async () => /slave0:.*state=online/.test(await admin.info('replication')) &&
    /master_link_status:up/.test(await onReplica.info('replication')), { timeoutMs: 15000, intervalMs: 50 }), 'the replica did not sync')
  const make = caches(t)
  const prefix = uniquePrefix('wait')
  const c = make({ redisUrl: master.url, prefix, redis: { ...FAST, waitReplicas: 1, waitTimeout: 0.3 } })
  const plain = make({ redisUrl: master.url, prefix, redis: FAST })
  await connected(c, plain)

  // healthy replica: each invalidation is on the replica when the call resolves
  const before = await waitCalls(admin)
  await c.set('k', 'v1', { tags: ['t'] })
  assert.equal(JSON.parse(await onReplica.get(entryName(prefix, 'k'))).d, 'v1')
  await c.invalidateTag('t')
  assert.equal(await onReplica.get(markerName(prefix, 't')), await admin.get(markerName(prefix, 't')))
  await c.del('k')
  assert.equal(await onReplica.get(entryName(prefix, 'k')), null)
  assert.equal(await waitCalls(admin), before + 3, 'each invalidation sent one WAIT')
  assert.equal(c.stats().replicaWaitTimeouts, 0)
  // a loader's value and plain reads do not wait
  await c.getOrSet('loaded', () => 1)
  await c.get('nothing')
  assert.equal(await waitCalls(admin), before + 3)
  // without the option nothing waits
  await plain.del('x')
  assert.equal(await waitCalls(admin), before + 3)

  // frozen replica: the wait runs out, is counted, and the call still resolves
  await replica.freeze()
  await c.del('k2')
  assert.equal(c.stats().replicaWaitTimeouts, 1)
  await c.invalidateTag('t')
  assert.equal(c.stats().replicaWaitTimeouts, 2)
  replica.thaw()
  await guard.assertNone(assert)
})

test('redis.waitReplicas and redis.waitTimeout are checked', () => {
  for (const [redis, Cls] of [[{ waitReplicas: -1 }, RangeError], [{ waitReplicas: 1.5 }, RangeError], [{ waitReplicas: 17 }, RangeError],
    [{ waitReplicas: '1' }, TypeError], [{ waitTimeout: -1 }, RangeError], [{ waitTimeout: 'x' }, TypeError]]) {
    let caught
    try { new MultiLevelCache({ redisUrl: 'redis://127.0.0.1:1', redis }).close() } catch (e) { caught = e }
    assert.ok(caught instanceof Cls, `${JSON.stringify(redis)}: ${caught}`)
    assert.equal(caught.code, codes.INVALID_OPTION)
  }
})
