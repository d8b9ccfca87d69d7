'use strict'
// Security: Redis AUTH and ACL users, TLS (server verification and mutual TLS), values read
// from Redis treated as untrusted input, and size limits.
//
// Least-privilege ACL under which every operation works (set with tags, get, getOrSet with the
// stampede lock, del, invalidateTag, exists, the invalidation bus between processes), found by
// removing each command in turn (the test below asserts it is sufficient, that each command in
// it is needed, and that the user cannot touch another prefix):
//
//   ACL SETUSER <user> reset on ><password> ~<prefix>:v3:* &{<prefix>}:* -@all
//     +get +mget +set +incr +unlink +del +pttl +pexpire +evalsha +script|load +publish
//     +subscribe +ping
//
// (the Lua scripts run SET, INCR, PTTL, PEXPIRE, UNLINK, DEL, GET and PUBLISH under the
// caller's permissions; EVAL is not needed: scripts go by EVALSHA, loaded with SCRIPT LOAD).
// `-@all` also denies KEYS, SCAN, FLUSHALL and FLUSHDB: ordinary operation never uses them. The
// one exception is the replay queue's overflow fallback (more than 10 000 distinct failed
// invalidations in one outage): it deletes the prefix's entries with SCAN, so the README's line
// adds +scan. registerMetrics() reads `INFO stats`: add `+info` if you use it.

const { busChannel, lockName } = require('./helpers/layout.js')
const { test, after } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { execFileSync } = require('node:child_process')
const { scope, rejectsWith, codes, sleep, eventually, MultiLevelCache } = require('./helpers/cache.js')
const { privateRedis, testClient: admin, freePort, uniquePrefix } = require('./helpers/redis.js')
const { FAST, guardProcess, within, caches, busUp } = require('./helpers/failure.js')

const ACL_COMMANDS = ['+get', '+mget', '+set', '+incr', '+unlink', '+del', '+pttl', '+pexpire',
  '+evalsha', '+script|load', '+publish', '+subscribe', '+ping']

/** Every key of `prefix` on a server (bounded SCAN). */
async function keysOf(r, prefix) {
  const out = []
  let cursor = '0'
  for (let i = 0; i < 1000; i++) {
    const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}:v3:*`, 'COUNT', 1000)
    out.push(...keys)
    cursor = next
    if (cursor === '0') break
  }
  return out.sort()
}

// ---- AUTH --------------------------------------------------------------------------------------

test('AUTH: a password in the URL works; a wrong or missing password leaves every call resolving but nothing reaches Redis', async (t) => {
  const guard = guardProcess(t)
  const server = await privateRedis(t, ['--requirepass', 'secret'])
  const good = `redis://:secret@127.0.0.1:${server.port}`
  const r = admin(t, good)
  const make = caches(t)
  const prefix = uniquePrefix('sec-auth')
  const a = make({ redisUrl: good, prefix })
  const b = make({ redisUrl: good, prefix })
  assert.ok(await busUp(a, b), 'the bus did not subscribe with the password')
  await a.set('k', { v: 1 }, { tags: ['t'] })
  assert.deepEqual(await b.get('k'), { v: 1 }, 'the value did not travel through Redis')
  assert.equal(b.stats().l2Hits, 1)
  assert.equal(a.stats().redisErrors + b.stats().redisErrors, 0)
  await b.set('k', { v: 2 })
  assert.ok(await eventually(async () => JSON.stringify(await a.get('k')) === '{"v":2}', { timeoutMs: 2000 }), 'the bus did not carry the invalidation')

  for (const [name, url] of [['wrong password', `redis://:nope@127.0.0.1:${server.port}`], ['no password', server.url]]) {
    const wp = uniquePrefix('sec-auth-bad')
    const c = make({ redisUrl: url, prefix: wp, redis: FAST })
    assert.equal(await within(c.get('x'), 2000, `${name}: get`), null)
    await within(c.set('k', 1, { tags: ['t'] }), 2000, `${name}: set`)
    assert.equal(await within(c.get('k'), 2000, `${name}: get`), 1) // from L1
    assert.equal(await within(c.getOrSet('l', () => 'loaded'), 2000, `${name}: getOrSet`), 'loaded')
    assert.equal(await within(c.exists('y'), 2000, `${name}: exists`), false)
    await within(c.del('k'), 2000, `${name}: del`)
    await within(c.invalidateTag('t'), 2000, `${name}: invalidateTag`)
    const st = c.stats()
    assert.ok(st.redisErrors + st.redisSkipped > 0, `${name}: no Redis failure counted`)
    assert.equal(st.busConnected, false, `${name}: the bus subscribed`)
    assert.deepEqual(await keysOf(r, wp), [], `${name}: something reached Redis`)
  }
  await guard.assertNone(assert)
})

// ---- ACL ---------------------------------------------------------------------------------------

/** Creates `user` restricted to `prefix` with `commands`. */
async function aclUser(r, user, prefix, commands) {
  await r.call('ACL', 'SETUSER', user, 'reset', 'on', '>pw', `~${prefix}:v3:*`, `&{${prefix}}:*`, '-@all', ...commands)
}

/**
 * Every operation, between two caches (a, b) of one prefix. Returns the list of what did not
 * work ([] when everything did).
 */
async function exercise(a, b, { heartbeat = true } = {}) {
  const wrong = []
  const check = (ok, what) => { if (!ok) wrong.push(what) }
  // a write Redis refuses (a missing permission) rejects: record it as what did not work
  const op = (promise, what) => promise.catch((e) => { wrong.push(`${what}: ${e.code} ${e.redisCode || ''}`) })
  check(await busUp(a, b), 'bus subscription')
  await op(a.set('k', 1, { tags: ['t'] }), 'set with tags')
  await op(a.set('k2', 2), 'set')
  check(await b.get('k') === 1, 'set with tags / get through Redis')
  check(await b.exists('k2') === true, 'exists')
  await op(b.set('k', 3), 'set')
  check(await eventually(async () => (await a.get('k')) === 3, { timeoutMs: 1000 }), 'bus (set in b drops a\'s L1 copy)')
  // getOrSet with the lock, held across an extension (lock.ttl / 3)
  check(await a.getOrSet('g', async () => { await sleep(250); return 'loaded' }) === 'loaded', 'getOrSet')
  check(await b.get('g') === 'loaded', 'getOrSet wrote to Redis')
  check(await a.getOrSet('n', () => null) === null, 'getOrSet returning null (lock released without a value)')
  await op(a.del('k2'), 'del')
  check(await b.exists('k2') === false, 'del')
  await op(a.set('x', 1, { tags: ['t'] }), 'set with tags')
  check(await b.get('x') === 1, 'tagged value in b')
  await op(a.invalidateTag('t'), 'invalidateTag')
  check(await eventually(async () => (await b.get('x')) === null, { timeoutMs: 1000 }), 'invalidateTag')
  if (heartbeat) await sleep(1200) // a bus heartbeat (PING) runs under the user too
  const errors = a.stats().redisErrors + b.stats().redisErrors
  check(errors === 0, `redisErrors ${errors}`)
  return wrong
}

/** ACL LOG entries (denials) as { reason, object, username }. */
async function aclLog(r) {
  const log = await r.call('ACL', 'LOG')
  return log.map((e) => {
    const o = {}
    for (let i = 0; i < e.length; i += 2) o[e[i]] = e[i + 1]
    return { reason: o.reason, object: o.object, username: o.username }
  })
}

test('ACL: every operation works under the least-privilege user; the user cannot touch another prefix', async (t) => {
  const guard = guardProcess(t)
  const server = await privateRedis(t)
  const r = admin(t, server.url)
  const prefix = uniquePrefix('sec-acl')
  // KEYS / FLUSHALL / FLUSHDB are denied explicitly too: the package must never need them
  await aclUser(r, 'cache', prefix, [...ACL_COMMANDS, '-keys', '-flushall', '-flushdb', '-scan'])
  await r.call('ACL', 'LOG', 'RESET')
  const url = `redis://cache:pw@127.0.0.1:${server.port}`
  const make = caches(t)
  const a = make({ redisUrl: url, prefix, lock: { ttl: 0.3 } })
  const b = make({ redisUrl: url, prefix })
  assert.deepEqual(await exercise(a, b), [])
  assert.deepEqual(await aclLog(r), [], 'some command was denied')
  t.diagnostic(`ACL: ~<prefix>:v3:* &{<prefix>}:* -@all ${ACL_COMMANDS.join(' ')}`)

  // the same user, another prefix: every command is refused, nothing is written; reads resolve,
  // writes and invalidations reject (Redis did not apply them: never "resolved")
  const other = uniquePrefix('sec-acl-other')
  const c = make({ redisUrl: url, prefix: other, redis: FAST })
  for (const [what, call] of [['set', () => c.set('k', 1, { tags: ['t'] })], ['del', () => c.del('k')], ['invalidateTag', () => c.invalidateTag('t')]]) {
    const err = await within(call().then(() => null, (e) => e), 4000, what)
    assert.ok(err, `${what} resolved although Redis refused it`)
    assert.equal(err.code, codes.REDIS_REFUSED, what)
    assert.equal(err.redisCode, 'NOPERM', what)
  }
  assert.equal(await within(c.getOrSet('g', () => 'loaded'), 2000, 'getOrSet'), 'loaded')
  assert.equal(await within(c.get('zz'), 2000, 'get'), null)
  assert.ok(c.stats().redisErrors > 0, `redisErrors ${c.stats().redisErrors}`)
  assert.equal(c.stats().busConnected, false)
  assert.deepEqual(await keysOf(r, other), [], 'the user wrote under another prefix')
  const denied = await aclLog(r)
  assert.ok(denied.length > 0 && denied.every((e) => e.username === 'cache'), 'the refusals were not ACL denials')
  assert.ok(denied.some((e) => e.reason === 'key' || e.reason === 'channel'), JSON.stringify(denied))
  await guard.assertNone(assert)
})

test('ACL: each command of the least-privilege line is needed', async (t) => {
  // one private server per command left out (the script cache is per server: a script loaded
  // by an earlier run would hide a missing +script|load), four at a time
  const unneeded = []
  const queue = [...ACL_COMMANDS]
  const worker = async () => {
    for (let cmd = queue.shift(); cmd !== undefined; cmd = queue.shift()) {
      const server = await privateRedis(t)
      const r = admin(t, server.url)
      const prefix = uniquePrefix('sec-acl-min')
      await aclUser(r, 'cache', prefix, ACL_COMMANDS.filter((c) => c !== cmd))
      const url = `redis://cache:pw@127.0.0.1:${server.port}`
      const a = new MultiLevelCache({ redisUrl: url, prefix, lock: { ttl: 0.3 }, redis: FAST })
      const b = new MultiLevelCache({ redisUrl: url, prefix, redis: FAST })
      try {
        // the startup PING is denied at once when +ping is missing (ACL LOG), no need to wait
        const wrong = await exercise(a, b, { heartbeat: false })
        const denied = await aclLog(r)
        if (wrong.length === 0 && denied.length === 0) unneeded.push(cmd)
      } finally {
        await Promise.all([a.close(), b.close()])
        await server.stop()
      }
    }
  }
  await Promise.all([worker(), worker(), worker(), worker()])
  assert.deepEqual(unneeded, [], 'commands the cache works without')
})

test('ordinary operation never sends KEYS, SCAN, FLUSHALL or FLUSHDB (MONITOR during a workload)', async (t) => {
  const server = await privateRedis(t)
  const r = admin(t, server.url)
  const monitor = await r.monitor()
  t.after(() => monitor.disconnect())
  const seen = new Map()
  monitor.on('monitor', (time, args) => {
    const name = String(args[0]).toLowerCase()
    seen.set(name, (seen.get(name) || 0) + 1)
  })
  const prefix = uniquePrefix('sec-monitor')
  const make = caches(t)
  const a = make({ redisUrl: server.url, prefix, lock: { ttl: 0.3 } })
  const b = make({ redisUrl: server.url, prefix })
  assert.deepEqual(await exercise(a, b), [])
  await Promise.all([a.close(), b.close()])
  await sleep(100)
  t.diagnostic(`commands seen: ${[...seen.keys()].sort().join(' ')}`)
  assert.ok(seen.size > 5, 'MONITOR saw nothing')
  for (const bad of ['keys', 'scan', 'flushall', 'flushdb']) assert.equal(seen.get(bad), undefined, `the package sent ${bad.toUpperCase()}`)
})

// ---- TLS ---------------------------------------------------------------------------------------

let certsMade
after(() => { if (certsMade) fs.rmSync(certsMade.dir, { recursive: true, force: true }) })

/**
 * A CA, a server certificate for IP:127.0.0.1 and a client certificate (RSA 2048, valid two
 * days), in a tmp dir made once per file and removed after it.
 */
function makeCerts() {
  if (certsMade === undefined) certsMade = generateCerts()
  return certsMade
}

function generateCerts() {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' })
  } catch {
    throw new Error('openssl is not installed: the TLS tests need it to make certificates (Debian/Ubuntu: apt-get install openssl)')
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlc-tls-'))
  const f = (name) => path.join(dir, name)
  const ssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] })
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '2', '-subj', '/CN=mlc test CA')
  fs.writeFileSync(f('server.ext'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n')
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=127.0.0.1')
  ssl('x509', '-req', '-in', f('server.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.crt'), '-days', '2', '-extfile', f('server.ext'))
  fs.writeFileSync(f('client.ext'), 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n')
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('client.key'), '-out', f('client.csr'), '-subj', '/CN=mlc client')
  ssl('x509', '-req', '-in', f('client.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('client.crt'), '-days', '2', '-extfile', f('client.ext'))
  return { dir, ca: f('ca.crt'), cert: f('client.crt'), key: f('client.key'), serverCert: f('server.crt'), serverKey: f('server.key') }
}

/** A redis-server listening with TLS only, on a free port. */
async function tlsRedis(t, certs, { authClients = false } = {}) {
  const port = await freePort()
  // startRedis passes --port <port> first; these later arguments override it (plain TCP off)
  const server = await privateRedis(t, ['--port', '0', '--tls-port', String(port),
    '--tls-cert-file', certs.serverCert, '--tls-key-file', certs.serverKey, '--tls-ca-cert-file', certs.ca,
    '--tls-auth-clients', authClients ? 'yes' : 'no'], { port })
  return { server, url: `rediss://127.0.0.1:${port}` }
}

test('TLS: rediss:// with redis.tls.caFile works across instances; without the CA the handshake fails but calls resolve', async (t) => {
  const guard = guardProcess(t)
  const certs = makeCerts()
  const { url } = await tlsRedis(t, certs)
  const prefix = uniquePrefix('sec-tls')
  const make = caches(t)
  const a = make({ redisUrl: url, prefix, redis: { tls: { caFile: certs.ca } } })
  const b = make({ redisUrl: url, prefix, redis: { tls: { caFile: certs.ca } } })
  assert.ok(await busUp(a, b), 'the bus did not subscribe over TLS')
  await a.set('k', { over: 'tls' }, { tags: ['t'] })
  assert.deepEqual(await b.get('k'), { over: 'tls' })
  assert.equal(b.stats().l2Hits, 1)
  await b.invalidateTag('t')
  assert.ok(await eventually(async () => (await a.get('k')) === null, { timeoutMs: 2000 }), 'the invalidation did not travel over TLS')
  assert.equal(a.stats().redisErrors + b.stats().redisErrors, 0)

  // the system trust store does not know the test CA
  const c = make({ redisUrl: url, prefix, redis: FAST })
  await within(c.set('c', 1), 2000, 'set')
  assert.equal(await within(c.get('zz'), 2000, 'get'), null)
  assert.equal(await within(c.getOrSet('l', () => 'loaded'), 2000, 'getOrSet'), 'loaded')
  const st = c.stats()
  assert.ok(st.redisErrors + st.redisSkipped > 0, 'no failure counted without the CA')
  assert.equal(st.busConnected, false)
  assert.equal(await b.get('c'), null, 'a write without the CA reached Redis')

  // a caFile that is not a certificate: refused at construction, or every call still resolves
  const junk = path.join(certs.dir, 'junk.pem')
  fs.writeFileSync(junk, 'not a certificate\n')
  let d
  try {
    d = make({ redisUrl: url, prefix, redis: { ...FAST, tls: { caFile: junk } } })
  } catch (e) {
    assert.ok(e instanceof TypeError, `a junk caFile threw ${e}`)
    assert.equal(e.code, codes.INVALID_OPTION)
  }
  if (d !== undefined) {
    await within(d.set('d', 1), 2000, 'set with a junk caFile')
    assert.equal(await within(d.getOrSet('l', () => 'loaded'), 2000, 'getOrSet with a junk caFile'), 'loaded')
    assert.ok(d.stats().redisErrors + d.stats().redisSkipped > 0)
    assert.equal(await b.get('d'), null)
  }
  await guard.assertNone(assert)
})

test('mutual TLS: with certFile and keyFile the client is accepted; without them calls resolve but nothing reaches Redis', async (t) => {
  const guard = guardProcess(t)
  const certs = makeCerts()
  const { url } = await tlsRedis(t, certs, { authClients: true })
  const prefix = uniquePrefix('sec-mtls')
  const make = caches(t)
  const tls = { caFile: certs.ca, certFile: certs.cert, keyFile: certs.key }
  const a = make({ redisUrl: url, prefix, redis: { tls } })
  const b = make({ redisUrl: url, prefix, redis: { tls } })
  assert.ok(await busUp(a, b))
  await a.set('k', 'mtls')
  assert.equal(await b.get('k'), 'mtls')
  const c = make({ redisUrl: url, prefix, redis: { ...FAST, tls: { caFile: certs.ca } } })
  await within(c.set('c', 1), 2000, 'set')
  assert.ok(c.stats().redisErrors + c.stats().redisSkipped > 0)
  assert.equal(await b.get('c'), null)
  await guard.assertNone(assert)
})

test('TLS options: unreadable files, cert without key, or redis.tls with a redis:// URL throw TypeError ERR_MLC_INVALID_OPTION', async (t) => {
  const certs = makeCerts()
  const bad = [
    { redisUrl: 'rediss://127.0.0.1:6390', redis: { tls: { caFile: path.join(certs.dir, 'missing.crt') } } },
    { redisUrl: 'rediss://127.0.0.1:6390', redis: { tls: { caFile: certs.dir } } }, // a directory
    { redisUrl: 'rediss://127.0.0.1:6390', redis: { tls: { caFile: certs.ca, certFile: certs.cert } } },
    { redisUrl: 'rediss://127.0.0.1:6390', redis: { tls: { caFile: certs.ca, keyFile: certs.key } } },
    { redisUrl: 'rediss://127.0.0.1:6390', redis: { tls: { caFile: 42 } } },
    { redisUrl: 'redis://127.0.0.1:6390', redis: { tls: { caFile: certs.ca } } },
    { redisUrl: '', redis: { tls: { caFile: certs.ca } } },
  ]
  for (const options of bad) {
    let caught
    try {
      const c = new MultiLevelCache({ prefix: uniquePrefix('sec-tlsopt'), ...options })
      await c.close()
    } catch (e) {
      caught = e
    }
    assert.ok(caught instanceof TypeError, `no TypeError for ${JSON.stringify(options)}: ${caught}`)
    assert.equal(caught.code, codes.INVALID_OPTION, JSON.stringify(options))
  }
})

// ---- untrusted values in Redis -----------------------------------------------------------------

test('garbage under {prefix}:k:<key> is a counted miss: get resolves null, getOrSet loads and repairs it', async (t) => {
  const guard = guardProcess(t)
  const s = scope(t, { name: 'sec-garbage' })
  const c = s.cache({ l1: { ttl: 60 } })
  const future = Date.now() + 3600_000
  const valid = JSON.stringify({ v: 2, e: future, t: [], d: { ok: true } })
  const cases = [
    ['not JSON', 'hello world'],
    ['empty string', ''],
    ['JSON of another shape', '{"a":1}'],
    ['a JSON array', '[1,2,3]'],
    ['a JSON string', '"just a string"'],
    ['a JSON number', '42'],
    ['envelope version 4 (unknown to this build)', JSON.stringify({ v: 4, e: future, t: [], d: 1 })],
    ['envelope version 1 (before tag markers)', JSON.stringify({ v: 1, e: future, t: [], d: 1 })],
    ['envelope with a negative b', JSON.stringify({ v: 2, e: future, t: [], b: -1, d: 1 })],
    ['envelope version 0', JSON.stringify({ v: 0, e: future, t: [], d: 1 })],
    ['truncated envelope', valid.slice(0, -5)],
    ['envelope without d', JSON.stringify({ v: 2, e: future, t: [] })],
    ['envelope with a string e', JSON.stringify({ v: 2, e: 'soon', t: [], d: 1 })],
    ['envelope with a negative e', JSON.stringify({ v: 2, e: -5, t: [], d: 1 })],
    ['envelope with an empty tag', JSON.stringify({ v: 2, e: future, t: [''], d: 1 })],
    ['envelope with a numeric tag', JSON.stringify({ v: 2, e: future, t: [1], d: 1 })],
    ['envelope followed by junk', `${valid} trailing`],
    ['d not JSON', `{"v":2,"e":${future},"t":[],"d":undefined}`],
    ['unclosed nesting 100000 deep', `{"v":2,"e":${future},"t":[],"d":${'['.repeat(100000)}}`],
    ['not UTF-8', Buffer.from([0x7b, 0xff, 0xfe, 0x00, 0x7d])],
    ['4 MiB of junk', Buffer.alloc(4 * 1024 * 1024, 'x{[\\"\u0000')],
  ]
  for (let i = 0; i < cases.length; i++) {
    await s.redis.set(s.entryKey(`bad:${i}`), cases[i][1])
    await s.redis.set(s.entryKey(`bad2:${i}`), cases[i][1])
  }
  for (let i = 0; i < cases.length; i++) {
    const [name] = cases[i]
    const before = c.stats().redisCorruptValues
    const got = await within(c.get(`bad:${i}`), 2000, name)
    assert.ok(got === null, `${name}: get returned ${String(JSON.stringify(got)).slice(0, 80)}, not null`)
    assert.equal(c.stats().redisCorruptValues, before + 1, `${name}: not counted as corrupt`)
    assert.equal(await within(c.getOrSet(`bad2:${i}`, () => ({ loaded: i })), 2000, name).then(JSON.stringify), JSON.stringify({ loaded: i }), `${name}: getOrSet`)
    assert.equal(c.stats().redisCorruptValues, before + 2, `${name}: getOrSet's read not counted as corrupt`)
    assert.deepEqual((await s.envelope(`bad2:${i}`)).d, { loaded: i }, `${name}: the loader's value did not replace the garbage`)
  }
  // a valid envelope around a deeply nested value is not garbage: it is returned, nothing crashes
  const depth = 100000
  await s.redis.set(s.entryKey('deep'), `{"v":2,"e":${future},"t":[],"d":${'['.repeat(depth)}${']'.repeat(depth)}}`)
  let deep = await within(c.get('deep'), 5000, 'deep value')
  let levels = 0
  for (; Array.isArray(deep) && levels <= depth; levels++) deep = deep[0]
  assert.equal(levels, depth, 'the deeply nested value did not come back whole')
  // a key of another Redis type is a Redis error (WRONGTYPE), not an availability failure
  await s.redis.hset(s.entryKey('hash'), 'f', 'v')
  assert.equal(await c.get('hash'), null)
  assert.equal(await c.exists('hash'), false, 'exists agrees with get: not a cache entry')
  assert.equal(await c.getOrSet('hash', () => 'loaded'), 'loaded')
  assert.equal(c.stats().breakerState, 0, 'a Redis-side error opened the breaker')
  assert.equal(c.stats().breakerOpened, 0)
  // still healthy
  await c.set('after', { fine: true })
  const after = await s.envelope('after')
  assert.deepEqual(after, { v: 2, e: after.e, w: after.w, t: [], b: 0, d: { fine: true } })
  assert.equal(c.stats().redisCorruptValues, 2 * cases.length)
  await guard.assertNone(assert)
})

test('a value {"__proto__": ...} read from Redis does not pollute Object.prototype', async (t) => {
  const s = scope(t, { name: 'sec-proto' })
  const c = s.cache()
  const future = Date.now() + 3600_000
  const payload = '{"__proto__":{"polluted":1},"constructor":{"prototype":{"polluted2":1}},"nested":{"__proto__":{"polluted3":1}}}'
  await s.redis.set(s.tagKey('__proto__'), '1') // the tag's marker: the entry (born at 1) is valid
  await s.redis.set(s.entryKey('p'), `{"v":2,"e":${future},"t":["__proto__"],"b":1,"d":${payload}}`)
  await s.redis.set(s.entryKey('p2'), `{"v":2,"e":${future},"t":[],"d":${payload}}`)
  try {
    const fromRedis = await c.get('p')
    const fromL1 = await c.get('p')
    const viaGetOrSet = await c.getOrSet('p2', () => 'loaded')
    for (const v of [fromRedis, fromL1, viaGetOrSet]) {
      assert.equal(typeof v, 'object')
      assert.equal(Object.getPrototypeOf(v), Object.prototype)
      assert.ok(Object.hasOwn(v, '__proto__'), 'the "__proto__" key was not kept as a plain own property')
      assert.deepEqual(Object.keys(v), ['__proto__', 'constructor', 'nested'])
    }
    assert.equal(c.stats().l1Hits, 1)
    assert.equal(({}).polluted, undefined)
    assert.equal(Object.prototype.polluted, undefined)
    assert.equal(({}).polluted2, undefined)
    assert.equal(({}).polluted3, undefined)
    // the "__proto__" tag (carried by the envelope) works like any other in L1
    const entries = c.stats().l1Entries
    await c.invalidateTag('__proto__')
    assert.equal(c.stats().l1Entries, entries - 1, 'the L1 copy tagged "__proto__" was not dropped')
    assert.equal(({}).polluted, undefined)
  } finally {
    delete Object.prototype.polluted
    delete Object.prototype.polluted2
    delete Object.prototype.polluted3
  }
})

test('malformed bus messages are counted and ignored', async (t) => {
  const guard = guardProcess(t)
  const s = scope(t, { name: 'sec-bus' })
  const c = s.cache({ l1: { ttl: 60 } })
  assert.ok(await busUp(c))
  await c.set('k', 'v')
  const channel = busChannel(s.prefix)
  const junk = ['', 'x', '|s|k', 'abc|s|', 'abc|?|k', 'abc', Buffer.from([0xff, 0x7c, 0x73, 0x7c, 0x6b]), 'a'.repeat(100000)]
  for (const m of junk) await s.redis.publish(channel, m)
  assert.ok(await eventually(() => c.stats().busMalformed === junk.length, { timeoutMs: 2000 }), `busMalformed ${c.stats().busMalformed}`)
  assert.equal(c.stats().l1Entries, 1, 'a malformed message dropped an L1 entry')
  assert.equal(await c.get('k'), 'v')
  await guard.assertNone(assert)
})

// ---- limits ------------------------------------------------------------------------------------

test('values over limits.maxValueBytes and keys over 1024 characters reject with RangeError (a loader value over the limit is served uncached); nothing is written', async (t) => {
  const s = scope(t, { name: 'sec-limits' })
  const c = s.cache({ limits: { maxValueBytes: 1000 } })
  await rejectsWith(assert, c.set('big', 'x'.repeat(1000)), RangeError, codes.VALUE_TOO_LARGE) // 1002 bytes of JSON
  await rejectsWith(assert, c.set('big', 'é'.repeat(600)), RangeError, codes.VALUE_TOO_LARGE) // 602 chars, 1202 bytes
  await rejectsWith(assert, c.set('big', { a: 'x'.repeat(2000) }), RangeError, codes.VALUE_TOO_LARGE)
  // a loader value over the limit is served, not cached (README: "returned and not cached")
  let loads = 0
  const huge = 'y'.repeat(5000)
  assert.equal(await c.getOrSet('big', () => { loads++; return huge }), huge)
  assert.equal(loads, 1)
  assert.equal(await c.getOrSet('big', () => { loads++; return huge }), huge)
  assert.equal(loads, 2, 'the value over the limit was cached')
  assert.equal(await c.get('big'), null)
  assert.equal(await s.inRedis('big'), false)
  assert.ok(await eventually(async () => (await s.redis.exists(lockName(s.prefix, 'big'))) === 0, { timeoutMs: 1000 }), 'the stampede lock was kept')
  await c.set('fits', 'x'.repeat(990))
  assert.equal(await s.inRedis('fits'), true)

  const long = 'k'.repeat(1025)
  for (const call of [() => c.get(long), () => c.set(long, 1), () => c.getOrSet(long, () => 1), () => c.del(long), () => c.exists(long)]) {
    await rejectsWith(assert, call(), RangeError, codes.KEY_TOO_LONG)
  }
  await rejectsWith(assert, c.set('k', 1, { tags: ['t'.repeat(1025)] }), RangeError, codes.INVALID_TAGS)
  await rejectsWith(assert, c.invalidateTag('t'.repeat(1025)), RangeError, codes.INVALID_TAGS)
  const edge = 'k'.repeat(1024)
  await c.set(edge, 'edge')
  assert.equal(await s.inRedis(edge), true)
  assert.deepEqual((await s.redisKeys()).filter((k) => k !== s.clockKey()), [s.entryKey('fits'), s.entryKey(edge)].sort())
})
