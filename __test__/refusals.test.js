'use strict'
// Redis refusing a command (OOM, BUSY, NOPERM) never loses an invalidation: `del`,
// `invalidateTag` and `set` either resolve with the old value gone from every process, or
// reject with ERR_MLC_REDIS_REFUSED (its `redisCode` names Redis' reply) and are replayed
// until Redis applies them. Never "resolved" with the old value still readable.
//
// Each test starts its own redis-server (maxmemory + noeviction, a short busy-reply-threshold,
// ACL users) and checks with a fresh process (no L1) what every process would now read.

const { entryName } = require('./helpers/layout.js')
const { test } = require('node:test')
const assert = require('node:assert/strict')
const { privateRedis, testClient, uniquePrefix, client, eventually } = require('./helpers/redis.js')
const { FAST, caches, connected, guardProcess } = require('./helpers/failure.js')
const { codes } = require('./helpers/cache.js')

/** Two processes' caches (A writes, B holds L1 copies) and a fresh reader without L1. */
async function scene(t, server, extra = {}) {
  const make = caches(t)
  const prefix = uniquePrefix('refuse')
  const options = { redisUrl: server.url, prefix, redis: FAST, ...extra }
  const a = make(options)
  const b = make(options)
  const fresh = make({ ...options, l1: false })
  await connected(a, b, fresh)
  return { a, b, fresh, prefix, make, options }
}

/**
 * Makes `server` BUSY for `ms`: another client runs a Lua loop that long (the server must run
 * with a short `--busy-reply-threshold`). Resolves once a probe got BUSY, with `{ ended }`: the
 * Promise of the script's end (wrapped: an async function would wait for a Promise it returns).
 */
async function busyFor(t, server, ms) {
  const blocker = client(server.url)
  blocker.on('error', () => {})
  t.after(() => blocker.disconnect())
  const busy = blocker.eval(`local t=redis.call('TIME'); local s=t[1]*1000000+t[2]; while true do local n=redis.call('TIME'); if n[1]*1000000+n[2]-s > ${ms * 1000} then break end end return 1`, 0)
  const probe = testClient(t, server.url)
  const isBusy = async () => { try { await probe.ping(); return false } catch (e) { return /BUSY/.test(String(e.message)) } }
  assert.ok(await eventually(isBusy, { timeoutMs: 3000, intervalMs: 20 }), 'Redis never became BUSY')
  return { ended: busy }
}

/** Fills Redis' memory: maxmemory just under what it uses now, policy noeviction. */
async function runOutOfMemory(admin) {
  await admin.config('SET', 'maxmemory-policy', 'noeviction')
  const used = Number(/used_memory:(\d+)/.exec(await admin.info('memory'))[1])
  await admin.config('SET', 'maxmemory', String(Math.max(1, used - 1024)))
}

test('OOM (noeviction, memory full): del, invalidateTag and set resolve only once the old value is gone everywhere', async (t) => {
  const guard = guardProcess(t)
  const server = await privateRedis(t)
  const admin = testClient(t, server.url)
  const { a, b, fresh, prefix } = await scene(t, server)
  for (const k of ['d', 't1', 't2', 's', 'g']) await a.set(k, `old:${k}`, { tags: k.startsWith('t') ? ['grp'] : [] })
  for (const k of ['d', 't1', 't2', 's', 'g']) assert.equal(await b.get(k), `old:${k}`) // B holds L1 copies
  await runOutOfMemory(admin)
  const refusedBefore = a.stats().redisRefused

  // a plain write is refused by Redis (OOM): proof that memory is full
  await assert.rejects(admin.set('probe', 'x'), /OOM/)

  await a.del('d')
  await a.invalidateTag('grp')
  await a.set('s', 'new:s') // Redis refuses the value: the key is deleted instead
  for (const [k, want] of [['d', null], ['t1', null], ['t2', null], ['s', null]]) {
    assert.equal(await fresh.get(k), want, `a fresh process read ${k}`)
    assert.equal(await b.get(k), want, `the other process read ${k} from its L1`)
  }
  assert.equal(await a.get('s'), null, 'the writer agrees with every other process: a miss (its loader reads the source)')
  assert.ok(a.stats().redisRefused > refusedBefore, 'the refused write was not counted')

  // a loader's value under OOM: served, not cached, no error
  assert.equal(await fresh.getOrSet('fill', () => 'loaded'), 'loaded')
  assert.equal(await admin.exists(entryName(prefix, 'fill')), 0)

  // memory back: writes land again
  await admin.config('SET', 'maxmemory', '0')
  await a.set('s', 'newer:s')
  assert.equal(await fresh.get('s'), 'newer:s')
  await guard.assertNone(assert)
})

test('BUSY shorter than the retry bound: del and invalidateTag wait for Redis and resolve once applied', async (t) => {
  const server = await privateRedis(t, ['--busy-reply-threshold', '50'])
  const { a, b, fresh } = await scene(t, server)
  await a.set('k', 'old', { tags: ['grp'] })
  await a.set('k2', 'old2', { tags: ['grp'] })
  assert.equal(await b.get('k'), 'old')
  // another client's script runs for 600 ms: every other command gets BUSY meanwhile
  const { ended: busy } = await busyFor(t, server, 600)
  const refusedBefore = a.stats().redisRefused
  await a.del('k')
  await a.invalidateTag('grp')
  await busy
  assert.ok(a.stats().redisRefused > refusedBefore, 'Redis never answered BUSY: the test did not exercise it')
  assert.equal(await fresh.get('k'), null)
  assert.equal(await fresh.get('k2'), null)
  assert.equal(await b.get('k'), null)
  assert.equal(await b.get('k2'), null)
})

test('BUSY longer than the retry bound: del rejects with ERR_MLC_REDIS_REFUSED (redisCode BUSY), then is replayed until applied', async (t) => {
  const server = await privateRedis(t, ['--busy-reply-threshold', '50'])
  const { a, fresh } = await scene(t, server)
  await a.set('k', 'old')
  await a.set('j', 'old', { tags: ['grp'] })
  // 4 s: longer than the retry bound of FAST (2 x 0.5 s)
  const { ended: busy } = await busyFor(t, server, 4000)
  for (const [what, call] of [['del', () => a.del('k')], ['invalidateTag', () => a.invalidateTag('grp')]]) {
    let err
    try { await call() } catch (e) { err = e }
    assert.ok(err, `${what} resolved while Redis refused it`)
    assert.equal(err.code, codes.REDIS_REFUSED, `${what}: ${err && err.message}`)
    assert.equal(err.redisCode, 'BUSY')
  }
  assert.ok(a.stats().replaysPending >= 2, 'the refused invalidations are not kept for replay')
  await busy
  assert.ok(await eventually(() => a.stats().replaysPending === 0, { timeoutMs: 10000 }), 'not replayed after the script ended')
  assert.equal(await fresh.get('k'), null)
  assert.equal(await fresh.get('j'), null)
})

test('NOPERM: an ACL user that may not delete gets a rejected del and invalidateTag, never a silent success', async (t) => {
  const server = await privateRedis(t)
  const admin = testClient(t, server.url)
  const prefix = uniquePrefix('noperm')
  // everything the cache needs but UNLINK (shape 1) / INCR (shape 2)
  await admin.acl('SETUSER', 'nounlink', 'on', '>pw1', `~${prefix}:v3:*`, `&{${prefix}}:*`, '+@all', '-unlink')
  await admin.acl('SETUSER', 'noincr', 'on', '>pw2', `~${prefix}:v3:*`, `&{${prefix}}:*`, '+@all', '-incr')
  const make = caches(t)
  const full = make({ redisUrl: server.url, prefix, redis: FAST })
  const url = (user, pw) => server.url.replace('redis://', `redis://${user}:${pw}@`)
  const noUnlink = make({ redisUrl: url('nounlink', 'pw1'), prefix, redis: FAST })
  const noIncr = make({ redisUrl: url('noincr', 'pw2'), prefix, redis: FAST })
  const fresh = make({ redisUrl: server.url, prefix, redis: FAST, l1: false })
  await connected(full, noUnlink, noIncr, fresh)
  await full.set('k', 'old')
  await full.set('j', 'old', { tags: ['grp'] })

  let err
  try { await noUnlink.del('k') } catch (e) { err = e }
  assert.ok(err, 'del resolved although Redis refused it')
  assert.equal(err.code, codes.REDIS_REFUSED)
  assert.equal(err.redisCode, 'NOPERM')
  assert.equal(await fresh.get('k'), 'old', 'nothing was deleted: the rejection is the truth')

  err = undefined
  try { await noIncr.invalidateTag('grp') } catch (e) { err = e }
  assert.ok(err, 'invalidateTag resolved although Redis refused it')
  assert.equal(err.code, codes.REDIS_REFUSED)
  assert.equal(err.redisCode, 'NOPERM')

  // what it may do still works
  await noUnlink.invalidateTag('grp')
  assert.equal(await fresh.get('j'), null)
  await noIncr.del('k')
  assert.equal(await fresh.get('k'), null)
})
