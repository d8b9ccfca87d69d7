'use strict'
// Misconfiguration must be visible (issue 10, item 6): a wrong password, a missing ACL
// permission, a db that does not exist, an unreachable, out-of-memory or read-only Redis each
// produce their MLC_REDIS_* code: once per cache as a process warning, or through the `logger`
// option (rate-limited per code, recovery as info). Passwords never appear. Every Redis here is
// a real redis-server started for the test.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const { MultiLevelCache, codes } = require('..')
const { scope, SHARED_URL } = require('./helpers/cache.js')
const { privateRedis, testClient, freePort, uniquePrefix, eventually } = require('./helpers/redis.js')

/** Process warnings with an MLC_ code emitted while the test runs. */
function collectWarnings(t) {
  const got = []
  const on = (w) => { if (typeof w.code === 'string' && w.code.startsWith('MLC_')) got.push(w) }
  process.on('warning', on)
  t.after(() => process.off('warning', on))
  return got
}

/** A pino-compatible logger that records every call. */
function recordingLogger() {
  const lines = []
  const at = (level) => (fields, msg) => { lines.push({ level, fields, msg }) }
  return { lines, error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') }
}

/** Every public operation a few times; none of them may reject because of Redis. */
async function work(c, rounds = 3) {
  // a write or invalidation Redis refuses (NOPERM, READONLY...) rejects with
  // ERR_MLC_REDIS_REFUSED: Redis did not apply it. Anything else must resolve.
  const refusedOk = (e) => { if (e.code !== 'ERR_MLC_REDIS_REFUSED') throw e }
  for (let i = 0; i < rounds; i++) {
    await c.set(`k${i}`, { i }, { tags: ['t'] }).catch(refusedOk)
    await c.get(`miss${i}`)
    await c.getOrSet(`g${i}`, () => i)
    await c.exists(`k${i}`)
    await c.del(`k${i}`).catch(refusedOk)
    await c.invalidateTag('t').catch(refusedOk)
  }
}

/** Codes of warnings, counted. */
function counts(warnings) {
  const out = {}
  for (const w of warnings) out[w.code] = (out[w.code] || 0) + 1
  return out
}

/** A cache on `url` run through `work`, closed; its warnings (close() drains the last ones). */
async function warningsOf(t, url, { rounds = 3, extra = {} } = {}) {
  const warnings = collectWarnings(t)
  const c = new MultiLevelCache({ redisUrl: url, prefix: uniquePrefix('log'), ...extra })
  try {
    await work(c, rounds)
    // a problem of the bus alone (an idle subscriber) shows up on the maintenance tick: wait
    // for the first warning, bounded, when one is expected
    await eventually(() => warnings.length > 0, { timeoutMs: 5000 })
  } finally {
    await c.close()
  }
  await new Promise((resolve) => setImmediate(resolve)) // warnings are emitted on nextTick
  return warnings
}

function secret(name) {
  return `${name}-${crypto.randomBytes(6).toString('hex')}`
}

function assertNoSecret(things, ...secrets) {
  const text = JSON.stringify(things.map((w) => w instanceof Error ? { message: w.message, code: w.code, stack: w.stack } : w))
  for (const s of secrets) assert.ok(!text.includes(s), `a password appears in: ${text}`)
}

test('a healthy cache emits no warning and logs nothing', async (t) => {
  const warnings = collectWarnings(t)
  const logger = recordingLogger()
  const s = scope(t, { name: 'log-healthy' })
  const quiet = s.cache()
  const logged = s.cache({ logger })
  await work(quiet)
  await work(logged)
  await quiet.close()
  await logged.close()
  await new Promise((resolve) => setImmediate(resolve))
  assert.deepEqual(warnings.map((w) => w.code), [])
  assert.deepEqual(logger.lines, [])
})

test('no password while Redis requires one: MLC_REDIS_AUTH, once', async (t) => {
  const password = secret('pw')
  const server = await privateRedis(t, ['--requirepass', password])
  const warnings = await warningsOf(t, server.url)
  const { MLC_REDIS_AUTH, ...others } = counts(warnings)
  assert.equal(MLC_REDIS_AUTH, 1)
  // Redis drops an unauthenticated client that sends a large command (its MGET): the
  // connection loss may be reported too, once
  assert.ok(Object.keys(others).every((c) => c === 'MLC_REDIS_UNREACHABLE') && Object.values(others).every((n) => n === 1), JSON.stringify(others))
  assertNoSecret(warnings, password)
})

test('a wrong password: MLC_REDIS_AUTH, once, and neither password appears anywhere', async (t) => {
  const password = secret('pw')
  const wrong = secret('wrong')
  const server = await privateRedis(t, ['--requirepass', password])
  const url = `redis://:${wrong}@127.0.0.1:${server.port}`
  const warnings = await warningsOf(t, url)
  assert.deepEqual(counts(warnings), { MLC_REDIS_AUTH: 1 })
  assertNoSecret(warnings, password, wrong)
  // the same through a logger: every field and message
  const logger = recordingLogger()
  const c = new MultiLevelCache({ redisUrl: `redis://app:${wrong}@127.0.0.1:${server.port}`, prefix: uniquePrefix('log-auth'), logger })
  await work(c)
  await c.close()
  assert.ok(logger.lines.some((l) => l.fields.code === 'MLC_REDIS_AUTH' && l.level === 'error'), JSON.stringify(logger.lines))
  assertNoSecret(logger.lines, password, wrong)
})

test('an ACL user without +evalsha: MLC_REDIS_NOPERM, once, naming what Redis refused', async (t) => {
  const server = await privateRedis(t)
  const admin = testClient(t, server.url)
  const password = secret('acl')
  await admin.call('ACL', 'SETUSER', 'app', 'on', `>${password}`, '~*', '&*', '+@all', '-evalsha', '-eval')
  const url = `redis://app:${password}@127.0.0.1:${server.port}`
  const warnings = await warningsOf(t, url)
  assert.deepEqual(counts(warnings), { MLC_REDIS_NOPERM: 1 })
  assertNoSecret(warnings, password)
  const logger = recordingLogger()
  const c = new MultiLevelCache({ redisUrl: url, prefix: uniquePrefix('log-noperm'), logger })
  await work(c)
  await c.close()
  const line = logger.lines.find((l) => l.fields.code === 'MLC_REDIS_NOPERM')
  assert.ok(line, JSON.stringify(logger.lines))
  assert.equal(line.level, 'error')
  assert.equal(line.fields.redisCode, 'NOPERM')
  assert.equal(line.fields.context, 'command')
  assertNoSecret(logger.lines, password)
})

test('an ACL user without channel permissions: the bus cannot subscribe, MLC_REDIS_NOPERM, once', async (t) => {
  const server = await privateRedis(t)
  const admin = testClient(t, server.url)
  const password = secret('acl')
  // no &* : SUBSCRIBE (and the PUBLISH inside the scripts) are refused
  await admin.call('ACL', 'SETUSER', 'app', 'on', `>${password}`, '~*', 'resetchannels', '+@all')
  const logger = recordingLogger()
  const c = new MultiLevelCache({ redisUrl: `redis://app:${password}@127.0.0.1:${server.port}`, prefix: uniquePrefix('log-chan'), logger })
  try {
    // idle: only the subscriber talks to Redis; its refusal arrives on the maintenance tick
    const line = await eventually(() => logger.lines.find((l) => l.fields.code === 'MLC_REDIS_NOPERM'), { timeoutMs: 10000 })
    assert.ok(line, JSON.stringify(logger.lines))
    assert.equal(line.fields.context, 'subscribe')
  } finally {
    await c.close()
  }
  assertNoSecret(logger.lines, password)
  const warnings = await warningsOf(t, `redis://app:${password}@127.0.0.1:${server.port}`)
  assert.deepEqual(counts(warnings), { MLC_REDIS_NOPERM: 1 })
})

test('a db that does not exist (databases 2, /5): MLC_REDIS_DB, once', async (t) => {
  const server = await privateRedis(t, ['--databases', '2'])
  const warnings = await warningsOf(t, `${server.url}/5`)
  assert.deepEqual(counts(warnings), { MLC_REDIS_DB: 1 })
})

test('an unreachable Redis: MLC_REDIS_UNREACHABLE, once per cache however many calls fail', async (t) => {
  const port = await freePort() // freshly freed: nothing listens there
  const warnings = await warningsOf(t, `redis://127.0.0.1:${port}`, { rounds: 20 })
  assert.deepEqual(counts(warnings), { MLC_REDIS_UNREACHABLE: 1 })
})

test('Redis at maxmemory (noeviction): MLC_REDIS_OOM, once', async (t) => {
  const server = await privateRedis(t, ['--maxmemory-policy', 'noeviction'])
  const admin = testClient(t, server.url)
  await admin.config('SET', 'maxmemory', '1')
  const warnings = await warningsOf(t, server.url)
  assert.deepEqual(counts(warnings), { MLC_REDIS_OOM: 1 })
})

test('a read-only replica: MLC_REDIS_READONLY, once', async (t) => {
  const primary = await privateRedis(t)
  const replica = await privateRedis(t, ['--replicaof', '127.0.0.1', String(primary.port)])
  const r = testClient(t, replica.url)
  // the replica has synced (else it could answer MASTERDOWN-like errors instead)
  assert.ok(await eventually(async () => /master_link_status:up/.test(await r.info('replication')), { timeoutMs: 10000 }))
  const warnings = await warningsOf(t, replica.url)
  assert.deepEqual(counts(warnings), { MLC_REDIS_READONLY: 1 })
})

test('with a logger: no process warning, repeats rate-limited per code, recovery logged as info', async (t) => {
  const warnings = collectWarnings(t)
  const server = await privateRedis(t)
  const logger = recordingLogger()
  const c = new MultiLevelCache({ redisUrl: server.url, prefix: uniquePrefix('log-recover'), logger })
  try {
    await work(c, 1)
    assert.deepEqual(logger.lines, [])
    await server.stop()
    // a dead Redis under load: many failing calls, one log line for the code
    for (let i = 0; i < 10; i++) await work(c, 5)
    // (an empty list is truthy: wait for a line, then count)
    await eventually(() => logger.lines.some((l) => l.fields.code === 'MLC_REDIS_UNREACHABLE'), { timeoutMs: 5000 })
    const down = logger.lines.filter((l) => l.fields.code === 'MLC_REDIS_UNREACHABLE')
    assert.equal(down.length, 1, JSON.stringify(logger.lines))
    assert.equal(down[0].level, 'warn')
    assert.ok(down[0].fields.occurrences >= 1)
    assert.equal(typeof down[0].msg, 'string')
    await server.restart()
    const up = await eventually(async () => {
      await work(c, 1)
      return logger.lines.find((l) => l.fields.code === 'MLC_REDIS_RECOVERED')
    }, { timeoutMs: 15000, intervalMs: 100 })
    assert.ok(up, JSON.stringify(logger.lines))
    assert.equal(up.level, 'info')
  } finally {
    await c.close()
  }
  await new Promise((resolve) => setImmediate(resolve))
  assert.deepEqual(warnings.map((w) => w.code), [], 'a cache with a logger emitted process warnings')
})

test('a logger that throws does not break the cache', async (t) => {
  const port = await freePort()
  const boom = () => { throw new Error('logger down') }
  const c = new MultiLevelCache({ redisUrl: `redis://127.0.0.1:${port}`, prefix: uniquePrefix('log-boom'), logger: { error: boom, warn: boom, info: boom, debug: boom } })
  try {
    await c.set('k', 1)
    assert.equal(await c.get('k'), 1)
    assert.equal(await c.getOrSet('g', () => 2), 2)
  } finally {
    await c.close()
  }
})

test('logger must have error, warn, info and debug methods: TypeError ERR_MLC_INVALID_OPTION', () => {
  const fn = () => {}
  for (const logger of [null, 'console', 42, {}, { error: fn, warn: fn, info: fn }, { error: fn, warn: fn, info: fn, debug: 'x' }]) {
    assert.throws(() => new MultiLevelCache({ l2: false, logger }),
      (e) => e instanceof TypeError && e.code === codes.INVALID_OPTION, JSON.stringify(logger))
  }
  // console is pino-compatible enough: (fields, message)
  const c = new MultiLevelCache({ l2: false, logger: console })
  return c.close()
})
