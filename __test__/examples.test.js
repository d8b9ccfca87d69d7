'use strict'
// The README's runnable commands, run as tests so they cannot drift: the quick-start example
// and `npm run demo -- --quick`, with Redis and with none answering, and with three instances.

const test = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const path = require('node:path')
const { SHARED_URL } = require('./helpers/redis.js')

const ROOT = path.join(__dirname, '..')

function run(args, env, timeoutMs) {
  const r = spawnSync(process.execPath, args, {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: timeoutMs,
    env: { ...process.env, ...env },
  })
  return { code: r.status, signal: r.signal, out: r.stdout + r.stderr }
}

test('examples/quickstart.js runs against Redis and prints what the README shows', () => {
  const r = run(['examples/quickstart.js'], { REDIS_URL: SHARED_URL }, 30000)
  assert.equal(r.code, 0, r.out)
  assert.match(r.out, /Redis at /)
  assert.match(r.out, /100 concurrent cold reads -> 1 database query/)
  assert.match(r.out, /cached 0 reads back as: 0/)
  assert.match(r.out, /after invalidateTag\('user:42'\): null/)
})

test('examples/quickstart.js runs on L1 alone without REDIS_URL', () => {
  const r = run(['examples/quickstart.js'], { REDIS_URL: '' }, 30000)
  assert.equal(r.code, 0, r.out)
  assert.match(r.out, /L1 only/)
  assert.match(r.out, /100 concurrent cold reads -> 1 database query/)
})

test('npm run demo -- --quick: the table, no stale read, with Redis', () => {
  const r = run(['demo/run.js', '--quick'], { REDIS_URL: SHARED_URL }, 90000)
  assert.equal(r.code, 0, r.out)
  assert.match(r.out, /\| cache on \(L1 \+ Redis\)/)
  assert.match(r.out, /the article's claim/)
  assert.match(r.out, /stale reads: 0 with the cache off and on/)
})

test('npm run demo -- --quick: says so and runs on L1 alone when no Redis answers', () => {
  const r = run(['demo/run.js', '--quick'], { REDIS_URL: 'redis://127.0.0.1:1' }, 90000)
  assert.equal(r.code, 0, r.out)
  assert.match(r.out, /nothing answers at redis:\/\/127\.0\.0\.1:1/)
  assert.match(r.out, /stale reads: 0 with the cache off and on/)
})

test('npm run demo -- --quick --instances 3: three instances share Redis and the bus, no stale read across them', () => {
  const r = run(['demo/run.js', '--quick', '--instances', '3'], { REDIS_URL: SHARED_URL, DATABASE_URL: '' }, 120000)
  assert.equal(r.code, 0, r.out)
  assert.match(r.out, /3 app instances sharing Redis and the bus/)
  const row = (label) => {
    const line = r.out.split('\n').find((l) => l.startsWith(`| ${label}`))
    assert.ok(line, `a table row for ${label}:\n${r.out}`)
    const cells = line.split('|').slice(1, -1).map((c) => c.trim())
    return { dbPerRequest: Number(cells[4]), redisHitRatio: parseFloat(cells[6]), stale: Number(cells[7]) }
  }
  const off = row('cache off, 3 instances')
  const on = row('cache on (L1 + Redis, 3 instances)')
  assert.equal(off.stale, 0)
  assert.equal(on.stale, 0)
  // what another instance loaded is found in Redis, and the database sees fewer queries per request
  assert.ok(on.redisHitRatio > 0, `some L1 misses are Redis hits: ${on.redisHitRatio} %`)
  assert.ok(on.dbPerRequest < off.dbPerRequest, `${on.dbPerRequest} < ${off.dbPerRequest} database queries per request`)
  assert.match(r.out, /stale reads: 0 with the cache off and on/)
})
