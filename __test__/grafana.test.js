'use strict'
// The Grafana dashboard (grafana/multi-level-cache.json) queries only what the package exports:
// every series and every label a PromQL query names must appear in the Prometheus text of
// registerMetrics, read from a real cache on the shared Redis after it did some work. Also: the
// JSON is what grafana/dashboard.js builds (never edited by hand), and it is importable (inputs,
// unique ids, panels with a datasource and a position).

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const prom = require('prom-client')
const { MultiLevelCache, registerMetrics } = require('..')
const { SHARED_URL, uniquePrefix } = require('./helpers/redis.js')
const { build, FILE } = require('../grafana/dashboard.js')

const dashboard = JSON.parse(fs.readFileSync(FILE, 'utf8'))

/** Labels Prometheus adds to every scraped series. */
const SCRAPE_LABELS = new Set(['job', 'instance'])
/** PromQL words that are not series names. */
const PROMQL = new Set(['sum', 'min', 'max', 'avg', 'count', 'stddev', 'stdvar', 'topk', 'bottomk', 'quantile', 'group',
  'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset',
  'rate', 'irate', 'increase', 'delta', 'idelta', 'deriv', 'histogram_quantile', 'label_values', 'abs', 'clamp_min', 'clamp_max',
  'vector', 'scalar', 'time', 'sum_over_time', 'avg_over_time', 'max_over_time', 'min_over_time', 'inf', 'nan'])

/** Every PromQL query of the dashboard: panel targets and template variables. */
function queries(d) {
  const out = []
  const walk = (panels) => {
    for (const p of panels || []) {
      for (const t of p.targets || []) out.push({ where: `panel "${p.title}" ${t.refId}`, expr: t.expr })
      walk(p.panels)
    }
  }
  walk(d.panels)
  for (const v of d.templating.list) out.push({ where: `variable $${v.name}`, expr: typeof v.query === 'string' ? v.query : v.query.query })
  return out
}

/** The series and label names one query uses. */
function names(expr) {
  const series = new Set()
  const labels = new Set()
  let rest = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""') // string literals
  rest = rest.replace(/\[[^\]]*\]/g, '') // range selectors
  rest = rest.replace(/\{([^}]*)\}/g, (_, inner) => { // label matchers
    for (const m of inner.matchAll(/([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)/g)) labels.add(m[1])
    return ' '
  })
  rest = rest.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g, (_, kw, inner) => {
    for (const l of inner.split(',').map((s) => s.trim()).filter(Boolean)) labels.add(l)
    return ' '
  })
  const lv = /label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)/.exec(rest)
  if (lv) {
    labels.add(lv[2])
    rest = rest.replace(lv[0], ` ${lv[1]} `)
  }
  for (const m of rest.matchAll(/(?<![\w.$])([A-Za-z_:][A-Za-z0-9_:]*)/g)) {
    if (!PROMQL.has(m[1]) && !m[1].startsWith('$')) series.add(m[1])
  }
  return { series, labels }
}

/** Series name -> label names, from registerMetrics's Prometheus text of a cache that did some work. */
async function exported(t) {
  const registry = new prom.Registry()
  const cache = new MultiLevelCache({ redisUrl: SHARED_URL, prefix: uniquePrefix('grafana') })
  t.after(() => cache.close())
  registerMetrics(cache, registry, { name: 'grafana', redisInfoInterval: 0 })
  await cache.getOrSet('a', async () => 1, { tags: ['t'] }) // load
  await cache.get('a') // L1 hit
  const other = new MultiLevelCache({ redisUrl: SHARED_URL, prefix: cache.prefix })
  t.after(() => other.close())
  await other.get('a') // L2 hit in another instance
  await cache.get('missing') // miss
  await cache.invalidateTag('t')
  const text = await registry.metrics()
  const out = new Map()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s/.exec(line)
    assert.ok(m, `a Prometheus sample line: ${line}`)
    const labels = out.get(m[1]) || new Set()
    for (const l of (m[2] || '').matchAll(/([A-Za-z_][A-Za-z0-9_]*)="/g)) labels.add(l[1])
    out.set(m[1], labels)
  }
  return out
}

test('every query of the dashboard names series and labels that registerMetrics exports', async (t) => {
  const series = await exported(t)
  // the freshness series are there (the dashboard has a row for them)
  for (const s of ['cache_stale_served_total', 'cache_soft_timeouts_total', 'cache_fail_safe_activations_total',
    'cache_background_refreshes_total', 'cache_expires_total', 'cache_operation_duration_seconds_bucket', 'cache_redis_keyspace_hits']) {
    assert.ok(series.has(s), `registerMetrics exports ${s}`)
  }
  const list = queries(dashboard)
  assert.ok(list.length >= 30, `the dashboard has its queries (${list.length})`)
  const used = new Set()
  for (const { where, expr } of list) {
    const n = names(expr)
    assert.ok(n.series.size > 0, `${where} names a series: ${expr}`)
    for (const s of n.series) {
      assert.ok(series.has(s), `${where}: ${s} is not a series the package exports (${expr})`)
      used.add(s)
      for (const l of n.labels) {
        const known = [...n.series].some((x) => series.get(x).has(l)) || SCRAPE_LABELS.has(l)
        assert.ok(known, `${where}: label ${l} is on none of its series (${expr})`)
      }
    }
  }
  // and every exported series is on the dashboard, except the ones summarized by another
  const omitted = new Set(['cache_hit_ratio', 'cache_operation_duration_seconds_sum', 'cache_redis_keyspace_misses'])
  const missing = [...series.keys()].filter((s) => !used.has(s) && !omitted.has(s))
  assert.deepEqual(missing, [], 'exported series that no panel shows')
})

test('the query parser finds series and labels (and so the check above can fail)', () => {
  const n = names('histogram_quantile(0.99, sum by (le, outcome) (rate(cache_operation_duration_seconds_bucket{cache=~"$cache",x="a{b}"}[$__rate_interval]))) / nope_total')
  assert.deepEqual([...n.series].sort(), ['cache_operation_duration_seconds_bucket', 'nope_total'])
  assert.deepEqual([...n.labels].sort(), ['cache', 'le', 'outcome', 'x'])
  assert.deepEqual([...names('label_values(cache_hits_total, cache)').series], ['cache_hits_total'])
})

test('the dashboard JSON is what grafana/dashboard.js builds, and importable', () => {
  assert.deepEqual(dashboard, JSON.parse(JSON.stringify(build())), 'run `node grafana/dashboard.js` after editing it')
  assert.equal(dashboard.__inputs[0].name, 'DS_PROMETHEUS')
  assert.equal(typeof dashboard.uid, 'string')
  const ids = new Set()
  const walk = (panels) => {
    for (const p of panels) {
      assert.ok(!ids.has(p.id), `panel id ${p.id} is unique`)
      ids.add(p.id)
      for (const k of ['h', 'w', 'x', 'y']) assert.ok(Number.isInteger(p.gridPos[k]), `panel "${p.title}" has gridPos.${k}`)
      assert.ok(p.gridPos.x + p.gridPos.w <= 24, `panel "${p.title}" fits the 24-column grid`)
      if (p.type !== 'row') {
        assert.equal(p.datasource.uid, '${DS_PROMETHEUS}', `panel "${p.title}" uses the imported datasource`)
        assert.ok(p.targets.length > 0 && p.targets.every((x) => x.expr && x.refId))
        assert.ok(p.title && p.description, `panel ${p.id} has a title and a description`)
      }
      walk(p.panels || [])
    }
  }
  walk(dashboard.panels)
})
