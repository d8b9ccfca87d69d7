#!/usr/bin/env node
'use strict'
// Builds grafana/multi-level-cache.json, the Grafana dashboard over the Prometheus series that
// registerMetrics (lib/metrics.js) exports. Edit this file, not the JSON, then run
// `node grafana/dashboard.js`; __test__/grafana.test.js fails when the two differ or when a query
// names a series or a label the package does not export.

const fs = require('node:fs')
const path = require('node:path')

const DS = { type: 'prometheus', uid: '${DS_PROMETHEUS}' }
const SEL = 'cache=~"$cache"'
const RATE = '$__rate_interval'

let nextId = 1
const panels = []
let y = 0

function row(title) {
  panels.push({ type: 'row', id: nextId++, title, collapsed: false, gridPos: { h: 1, w: 24, x: 0, y }, panels: [] })
  y += 1
}

/** One line of panels: each [width, panel]; widths add up to 24. */
function line(height, ...items) {
  let x = 0
  for (const [w, p] of items) {
    panels.push({ ...p, id: nextId++, datasource: DS, gridPos: { h: height, w, x, y } })
    x += w
  }
  y += height
}

const target = (expr, legendFormat, refId) => ({ datasource: DS, expr, legendFormat, refId, range: true })
const targets = (...list) => list.map(([expr, legend], i) => target(expr, legend, String.fromCharCode(65 + i)))

function timeseries(title, description, unit, list, extra = {}) {
  return {
    type: 'timeseries',
    title,
    description,
    fieldConfig: { defaults: { unit, custom: { lineWidth: 1, fillOpacity: 10, showPoints: 'never' }, ...extra.defaults }, overrides: [] },
    options: { legend: { displayMode: 'table', placement: 'bottom', calcs: ['lastNotNull', 'max'] }, tooltip: { mode: 'multi', sort: 'desc' } },
    targets: targets(...list),
  }
}

function stat(title, description, unit, list, extra = {}) {
  return {
    type: 'stat',
    title,
    description,
    fieldConfig: { defaults: { unit, ...extra.defaults }, overrides: [] },
    options: { reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false }, colorMode: 'background', graphMode: 'area', textMode: 'auto' },
    targets: targets(...list),
  }
}

const thresholds = (steps) => ({ mode: 'absolute', steps: steps.map(([value, color]) => ({ value, color })) })
/** sum [by (...)] (rate(series{cache=~"$cache"[,match]}[$__rate_interval])) */
const rate = (series, by = '', match = '') => `sum${by ? ` by (${by})` : ''} (rate(${series}{${SEL}${match ? `,${match}` : ''}}[${RATE}]))`
const layerRatio = (layer) => {
  const m = `layer="${layer}"`
  return `${rate('cache_hits_total', '', m)} / (${rate('cache_hits_total', '', m)} + ${rate('cache_misses_total', '', m)})`
}

row('Hits and loads')
line(6,
  [6, stat('L1 hit ratio', 'Share of lookups answered by this process\'s memory (L1), over the time range.', 'percentunit',
    [[layerRatio('memory'), 'L1']],
    { defaults: { thresholds: thresholds([[null, 'red'], [0.5, 'orange'], [0.8, 'green']]), min: 0, max: 1 } })],
  [6, stat('Redis hit ratio', 'Share of L1 misses that Redis (L2) answered: what the shared layer saves the database.', 'percentunit',
    [[layerRatio('redis'), 'L2']],
    { defaults: { thresholds: thresholds([[null, 'red'], [0.3, 'orange'], [0.7, 'green']]), min: 0, max: 1 } })],
  [6, stat('Loader calls / s', 'Values loaded from the source of truth (cache misses in every layer).', 'ops',
    [[rate('cache_loader_calls_total'), 'loads']])],
  [6, stat('Bus connected', 'Processes whose invalidation bus is subscribed, of those reporting. Below the count of instances: some L1s do not hear invalidations.', 'none',
    [[`sum(cache_bus_connected{${SEL}})`, 'connected'], [`count(cache_bus_connected{${SEL}})`, 'processes']])],
)
line(8,
  [12, timeseries('Hit ratio per layer', 'hits / (hits + misses) per layer: memory = L1 (this process), redis = L2 (shared).', 'percentunit',
    [[`${rate('cache_hits_total', 'layer')} / (${rate('cache_hits_total', 'layer')} + ${rate('cache_misses_total', 'layer')})`, '{{layer}}']],
    { defaults: { min: 0, max: 1 } })],
  [12, timeseries('Lookups per second', 'Hits and misses per layer.', 'ops',
    [[rate('cache_hits_total', 'layer'), 'hit {{layer}}'], [rate('cache_misses_total', 'layer'), 'miss {{layer}}']])],
)
line(8,
  [12, timeseries('Lookup latency (not L1 hits)', 'p50 and p99 of get/getOrSet lookups that were not L1 hits, by outcome (l2_hit, miss, load). L1 hits take about a microsecond.', 's',
    [[`histogram_quantile(0.5, ${rate('cache_operation_duration_seconds_bucket', 'le, outcome')})`, 'p50 {{outcome}}'],
      [`histogram_quantile(0.99, ${rate('cache_operation_duration_seconds_bucket', 'le, outcome')})`, 'p99 {{outcome}}']])],
  [12, timeseries('Loader calls and errors', 'Loader calls, and those that threw, rejected or timed out.', 'ops',
    [[rate('cache_loader_calls_total'), 'calls'], [rate('cache_loader_errors_total'), 'errors'],
      [`${rate('cache_operation_duration_seconds_count', 'outcome')}`, 'lookups {{outcome}}']])],
)

row('Freshness (grace, soft timeout, eager refresh)')
line(8,
  [12, timeseries('Stale answers', 'Answers with a value past its ttl, kept for its grace: soft timeouts and fail-safe activations are the reasons.', 'ops',
    [[rate('cache_stale_served_total'), 'stale served'], [rate('cache_soft_timeouts_total'), 'soft timeouts'],
      [rate('cache_fail_safe_activations_total'), 'fail-safe activations']])],
  [12, timeseries('Background refreshes and expires', 'Lookups that went on after their callers were answered, by result; expire(key) and invalidateTag(tag, { mode: \'expire\' }) calls.', 'ops',
    [[rate('cache_background_refreshes_total', 'result'), 'refresh {{result}}'], [rate('cache_expires_total'), 'expire calls']])],
)

row('Writes, invalidations and the bus')
line(8,
  [8, timeseries('Writes and invalidations', 'set (and loader results), del and invalidateTag calls.', 'ops',
    [[rate('cache_sets_total'), 'sets'], [rate('cache_deletes_total'), 'deletes'], [rate('cache_tag_invalidations_total'), 'tag invalidations']])],
  [8, timeseries('Bus messages', 'Invalidation messages published and received from other processes; re-subscriptions (each clears L1); writes that stopped waiting for acknowledgements.', 'ops',
    [[rate('cache_bus_messages_sent_total'), 'sent'], [rate('cache_bus_messages_received_total'), 'received'],
      [rate('cache_bus_resubscriptions_total'), 're-subscriptions'], [rate('cache_bus_ack_timeouts_total'), 'ack timeouts']])],
  [8, timeseries('Stampede locks', 'Locks taken by these processes, misses that waited for another process\'s loader, and waits that ran out.', 'ops',
    [[rate('cache_lock_acquisitions_total'), 'acquired'], [rate('cache_lock_waits_total'), 'waits'], [rate('cache_lock_wait_timeouts_total'), 'wait timeouts']])],
)

row('Redis')
line(8,
  [8, timeseries('Redis errors', 'Failed or timed-out commands, error replies (OOM, BUSY, NOPERM, ...), commands skipped while the breaker was open, unreadable values.', 'ops',
    [[rate('cache_redis_errors_total'), 'errors'], [rate('cache_redis_refused_total'), 'refused'], [rate('cache_redis_skipped_total'), 'skipped (breaker open)'],
      [rate('cache_redis_corrupt_values_total'), 'corrupt values'], [rate('cache_invalidations_refused_total'), 'invalidations refused'],
      [rate('cache_replica_wait_timeouts_total'), 'replica WAIT timeouts']])],
  [8, timeseries('Circuit breaker', 'State per process: 0 closed, 1 open, 2 half-open; and how often it opened.', 'none',
    [[`max by (cache) (cache_circuit_breaker_state{${SEL}})`, 'state {{cache}}'], [`sum by (cache) (increase(cache_circuit_breaker_opened_total{${SEL}}[${RATE}]))`, 'opened {{cache}}']])],
  [8, timeseries('Redis server keyspace hit ratio', 'keyspace_hits / (hits + misses) of Redis INFO (the whole server, every client).', 'percentunit',
    [[`max by (cache) (cache_redis_keyspace_hit_ratio{${SEL}})`, '{{cache}}'],
      [`max by (cache) (rate(cache_redis_keyspace_hits{${SEL}}[${RATE}])) / (max by (cache) (rate(cache_redis_keyspace_hits{${SEL}}[${RATE}])) + max by (cache) (rate(cache_redis_keyspace_misses{${SEL}}[${RATE}])))`, 'over the range {{cache}}']],
    { defaults: { min: 0, max: 1 } })],
)

row('L1 (memory)')
line(8,
  [12, timeseries('L1 entries', 'Entries held in each process\'s L1.', 'short',
    [[`sum by (instance) (cache_l1_entries{${SEL}})`, '{{instance}}']])],
  [12, timeseries('L1 evictions and expirations', 'Entries evicted to stay within l1.maxEntries, and dropped when their TTL ran out.', 'ops',
    [[rate('cache_l1_evictions_total'), 'evictions'], [rate('cache_l1_expirations_total'), 'expirations']])],
)

function build() {
  return {
    __inputs: [{ name: 'DS_PROMETHEUS', label: 'Prometheus', description: 'The Prometheus that scrapes your app\'s /metrics', type: 'datasource', pluginId: 'prometheus', pluginName: 'Prometheus' }],
    __requires: [
      { type: 'grafana', id: 'grafana', name: 'Grafana', version: '10.0.0' },
      { type: 'datasource', id: 'prometheus', name: 'Prometheus', version: '1.0.0' },
      { type: 'panel', id: 'timeseries', name: 'Time series', version: '' },
      { type: 'panel', id: 'stat', name: 'Stat', version: '' },
    ],
    title: 'multi-level-cache',
    uid: 'multi-level-cache',
    description: 'Hit ratios per layer, loads, freshness, invalidations and the bus, Redis health and L1 of multi-level-cache (registerMetrics).',
    tags: ['cache', 'redis', 'multi-level-cache'],
    editable: true,
    graphTooltip: 1,
    schemaVersion: 39,
    version: 1,
    time: { from: 'now-1h', to: 'now' },
    refresh: '10s',
    timezone: '',
    annotations: { list: [] },
    links: [],
    templating: {
      list: [{
        name: 'cache',
        label: 'cache',
        type: 'query',
        datasource: DS,
        query: { query: 'label_values(cache_hits_total, cache)', refId: 'PrometheusVariableQueryEditor-VariableQuery' },
        definition: 'label_values(cache_hits_total, cache)',
        refresh: 2,
        includeAll: true,
        multi: true,
        allValue: '.+',
        current: {},
        options: [],
        sort: 1,
      }],
    },
    panels,
  }
}

const FILE = path.join(__dirname, 'multi-level-cache.json')

module.exports = { build, FILE }

if (require.main === module) {
  fs.writeFileSync(FILE, `${JSON.stringify(build(), null, 2)}\n`)
  console.log(`wrote ${path.relative(process.cwd(), FILE)}`)
}
