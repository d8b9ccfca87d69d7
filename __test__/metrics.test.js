'use strict'
// registerMetrics(): prom-client series read from the cache's counters at scrape time.

const test = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const path = require('node:path')
const prom = require('prom-client')
const { registerMetrics, codes } = require('../index.js')
const { scope } = require('./helpers/cache.js')

/** The value of one series (name + exact label set) from a registry, or undefined. */
async function value(registry, name, labels) {
  const metrics = await registry.getMetricsAsJSON()
  for (const m of metrics) {
    for (const v of m.values) {
      const metricName = v.metricName || m.name
      if (metricName !== name) continue
      if (Object.entries(labels).every(([k, want]) => String(v.labels[k]) === String(want))) return v.value
    }
  }
  return undefined
}

test('exact counts after a known sequence: five gets of cached falsy values are five memory hits', async (t) => {
  const s = scope(t, { name: 'metrics-exact' })
  const cache = s.cache()
  const registry = new prom.Registry()
  registerMetrics(cache, registry, { name: 'shop' })

  await cache.set('zero', 0)
  await cache.set('false', false)
  await cache.set('empty', '')
  for (const k of ['zero', 'false', 'empty', 'zero', 'false']) await cache.get(k)
  assert.equal(await value(registry, 'cache_hits_total', { cache: 'shop', layer: 'memory' }), 5)
  assert.equal(await value(registry, 'cache_misses_total', { cache: 'shop', layer: 'memory' }), 0)
  assert.equal(await value(registry, 'cache_hits_total', { cache: 'shop', layer: 'redis' }), 0)
  assert.equal(await value(registry, 'cache_sets_total', { cache: 'shop' }), 3)

  // one Redis hit (a fresh instance reads it), one miss everywhere, one load, one loader error
  const other = s.cache()
  const registry2 = new prom.Registry()
  registerMetrics(other, registry2, { name: 'other' })
  assert.equal(await other.get('zero'), 0)
  assert.equal(await other.get('absent'), null)
  assert.equal(await other.getOrSet('loaded', () => 'v'), 'v')
  await assert.rejects(other.getOrSet('broken', () => { throw new Error('db down') }))
  assert.equal(await value(registry2, 'cache_hits_total', { cache: 'other', layer: 'redis' }), 1)
  assert.equal(await value(registry2, 'cache_misses_total', { cache: 'other', layer: 'memory' }), 4)
  assert.equal(await value(registry2, 'cache_misses_total', { cache: 'other', layer: 'redis' }), 3)
  assert.equal(await value(registry2, 'cache_loader_calls_total', { cache: 'other' }), 2)
  assert.equal(await value(registry2, 'cache_loader_errors_total', { cache: 'other' }), 1)
  assert.equal(await value(registry2, 'cache_lock_acquisitions_total', { cache: 'other' }), 2)
  assert.equal(await value(registry2, 'cache_l1_entries', { cache: 'other' }), 2)
  // latency histogram: one l2 hit, one plain miss, two loads (one failed)
  assert.equal(await value(registry2, 'cache_operation_duration_seconds_count', { cache: 'other', outcome: 'l2_hit' }), 1)
  assert.equal(await value(registry2, 'cache_operation_duration_seconds_count', { cache: 'other', outcome: 'miss' }), 1)
  assert.equal(await value(registry2, 'cache_operation_duration_seconds_count', { cache: 'other', outcome: 'load' }), 2)
  assert.equal(await value(registry2, 'cache_operation_duration_seconds_bucket', { cache: 'other', outcome: 'load', le: '+Inf' }), 2)
  // the first registry did not see the second cache's events
  assert.equal(await value(registry, 'cache_hits_total', { cache: 'shop', layer: 'redis' }), 0)
  assert.equal(await value(registry, 'cache_hits_total', { cache: 'other', layer: 'redis' }), undefined)

  // stats() carries the same counters, with ratios
  const st = other.stats()
  assert.equal(st.l2Hits, 1)
  assert.equal(st.l1Misses, 4)
  assert.equal(st.l2HitRatio, 1 / 4)
})

test('two caches on one registry are told apart by the cache label; a duplicate name is refused', async (t) => {
  const s = scope(t, { name: 'metrics-shared' })
  const a = s.cache()
  const b = s.cache()
  const registry = new prom.Registry()
  registerMetrics(a, registry, { name: 'a' })
  const unregisterB = registerMetrics(b, registry, { name: 'b' })
  assert.throws(() => registerMetrics(b, registry, { name: 'a' }), (e) => e instanceof TypeError && e.code === codes.INVALID_OPTION)
  await a.set('k', 1)
  await a.get('k')
  await a.get('k')
  await b.get('missing')
  assert.equal(await value(registry, 'cache_hits_total', { cache: 'a', layer: 'memory' }), 2)
  assert.equal(await value(registry, 'cache_hits_total', { cache: 'b', layer: 'memory' }), 0)
  assert.equal(await value(registry, 'cache_misses_total', { cache: 'b', layer: 'redis' }), 1)
  unregisterB()
  assert.equal(await value(registry, 'cache_misses_total', { cache: 'b', layer: 'redis' }), undefined)
  const text = await registry.metrics()
  assert.match(text, /# TYPE cache_hits_total counter/)
  assert.match(text, /# TYPE cache_operation_duration_seconds histogram/)
  assert.doesNotMatch(text, /key=/, 'no per-key labels')
})

test('the default registry is used when none is given', async (t) => {
  const s = scope(t, { name: 'metrics-default' })
  const cache = s.cache()
  const unregister = registerMetrics(cache)
  t.after(() => { unregister(); prom.register.clear() })
  await cache.set('k', 'v')
  await cache.get('k')
  assert.equal(await value(prom.register, 'cache_hits_total', { cache: s.prefix, layer: 'memory' }), 1)
})

test('Redis INFO stats are exported and read at most once per interval', async (t) => {
  const s = scope(t, { name: 'metrics-info' })
  const cache = s.cache()
  const registry = new prom.Registry()
  registerMetrics(cache, registry, { redisInfoInterval: 3600 })
  const hits1 = await value(registry, 'cache_redis_keyspace_hits', { cache: s.prefix })
  assert.equal(typeof hits1, 'number')
  await s.redis.set('{' + s.prefix + '}:probe', 'x')
  for (let i = 0; i < 5; i++) await s.redis.get('{' + s.prefix + '}:probe')
  // cached for the interval: the server-side count moved, the exported one did not
  assert.equal(await value(registry, 'cache_redis_keyspace_hits', { cache: s.prefix }), hits1)
  const ratio = await value(registry, 'cache_redis_keyspace_hit_ratio', { cache: s.prefix })
  assert.ok(ratio >= 0 && ratio <= 1)
  await s.redis.del('{' + s.prefix + '}:probe')
})

test('bad arguments and a missing prom-client are reported with codes', async (t) => {
  const s = scope(t, { name: 'metrics-bad' })
  const cache = s.cache({ l2: false })
  assert.throws(() => registerMetrics({}), (e) => e instanceof TypeError && e.code === codes.INVALID_OPTION)
  assert.throws(() => registerMetrics(cache, new prom.Registry(), { redisInfoInterval: -1 }),
    (e) => e instanceof RangeError && e.code === codes.INVALID_OPTION)
  // a process where prom-client cannot be resolved
  const root = path.join(__dirname, '..')
  const script = `
    const Module = require('module')
    const orig = Module._resolveFilename
    Module._resolveFilename = function (req, ...rest) {
      if (req === 'prom-client') { const e = new Error('not found'); e.code = 'MODULE_NOT_FOUND'; throw e }
      return orig.call(this, req, ...rest)
    }
    const { MultiLevelCache, registerMetrics } = require(${JSON.stringify(root)})
    const c = new MultiLevelCache({ l2: false })
    try { registerMetrics(c); console.log('no error') } catch (e) { console.log(e.code) }
    c.close()`
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 10000 })
  assert.equal(r.stdout.trim(), 'ERR_MLC_MISSING_DEPENDENCY', r.stderr)
})
