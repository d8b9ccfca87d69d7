'use strict'
// registerMetrics(): exposes a cache's counters to Prometheus through prom-client.
//
// Every value is read from the cache's counters (Rust's, and the freshness counters JS keeps) at scrape time (a custom collector's
// get()), so a cache operation pays nothing for metrics. Redis' own view (INFO stats) is read
// at most once per `redisInfoInterval`.

const { codes, mlcError } = require('./errors.js')
const { kLatencies, kKeyspaceStats } = require('./internal.js')

/** registry -> { caches: Map<name, { cache, info }> } */
const registries = new WeakMap()

const counter = (name, help, pick) => ({ name, help, type: 'counter', pick })
const gauge = (name, help, pick) => ({ name, help, type: 'gauge', pick })

/** Each `pick(stats)` returns [extraLabels, value] pairs. */
const DEFINITIONS = [
  counter('cache_hits_total', 'Lookups answered by a layer (memory = L1, redis = L2).',
    (s) => [[{ layer: 'memory' }, s.l1Hits], [{ layer: 'redis' }, s.l2Hits + s.lockWaitHits]]),
  counter('cache_misses_total', 'Lookups a layer could not answer.',
    (s) => [[{ layer: 'memory' }, s.l1Misses], [{ layer: 'redis' }, s.l2Misses]]),
  gauge('cache_hit_ratio', 'Hits / (hits + misses) per layer since the cache started.',
    (s) => [[{ layer: 'memory' }, s.l1HitRatio], [{ layer: 'redis' }, s.l2HitRatio]]),
  counter('cache_loader_calls_total', 'Loader calls.', (s) => [[{}, s.loaderCalls]]),
  counter('cache_loader_errors_total', 'Loader calls that threw, rejected or timed out.', (s) => [[{}, s.loaderErrors]]),
  counter('cache_sets_total', 'Values written (set and loader results).', (s) => [[{}, s.sets]]),
  counter('cache_deletes_total', 'del calls.', (s) => [[{}, s.deletes]]),
  counter('cache_tag_invalidations_total', 'invalidateTag calls.', (s) => [[{}, s.tagInvalidations]]),
  counter('cache_expires_total', 'expire calls.', (s) => [[{}, s.expires]]),
  counter('cache_stale_served_total', 'Answers with a value kept past its ttl for its grace (soft timeout, fail-safe, graceBackoff).', (s) => [[{}, s.staleServed]]),
  counter('cache_soft_timeouts_total', 'Callers answered with the stale value because the lookup took longer than softTimeout.', (s) => [[{}, s.softTimeouts]]),
  counter('cache_fail_safe_activations_total', 'Loader failures answered with the value kept for its grace.', (s) => [[{}, s.failSafeActivations]]),
  counter('cache_background_refreshes_total', 'Lookups that went on after their callers were answered (soft timeouts, eager refreshes), by result.',
    (s) => [[{ result: 'ok' }, s.backgroundRefreshes], [{ result: 'error' }, s.backgroundRefreshFailures]]),
  counter('cache_lock_acquisitions_total', 'Stampede locks taken by this process.', (s) => [[{}, s.lockAcquired]]),
  counter('cache_lock_waits_total', 'Misses that waited for another process\'s loader.', (s) => [[{}, s.lockWaits]]),
  counter('cache_lock_wait_timeouts_total', 'Lock waits that ran out and loaded anyway.', (s) => [[{}, s.lockWaitTimeouts]]),
  counter('cache_bus_messages_sent_total', 'Invalidation messages published.', (s) => [[{}, s.busSent]]),
  counter('cache_bus_messages_received_total', 'Invalidation messages received from other processes.', (s) => [[{}, s.busReceived]]),
  counter('cache_bus_resubscriptions_total', 'Bus re-subscriptions after a lost connection (each clears L1).', (s) => [[{}, s.busResubscriptions]]),
  counter('cache_bus_ack_timeouts_total', 'Writes and invalidations that stopped waiting for the other processes\' acknowledgements at bus.ackTimeout.', (s) => [[{}, s.busAckTimeouts]]),
  gauge('cache_bus_connected', '1 when the invalidation bus is subscribed.', (s) => [[{}, s.busConnected ? 1 : 0]]),
  counter('cache_redis_errors_total', 'Redis commands that failed or timed out.', (s) => [[{}, s.redisErrors]]),
  counter('cache_redis_refused_total', 'Redis error replies (OOM, BUSY, NOPERM, ...), also counted in cache_redis_errors_total.', (s) => [[{}, s.redisRefused]]),
  counter('cache_replica_wait_timeouts_total', 'Invalidations that waited for redis.waitReplicas replicas in vain (WAIT timed out or fewer acknowledged).', (s) => [[{}, s.replicaWaitTimeouts]]),
  counter('cache_invalidations_refused_total', 'set/del/invalidateTag calls rejected because Redis refused the invalidation (kept for replay).', (s) => [[{}, s.invalidationsRefused]]),
  counter('cache_redis_skipped_total', 'Redis commands skipped while the circuit breaker was open.', (s) => [[{}, s.redisSkipped]]),
  counter('cache_redis_corrupt_values_total', 'Unreadable values found under the prefix (served as misses).', (s) => [[{}, s.redisCorruptValues]]),
  gauge('cache_circuit_breaker_state', 'Circuit breaker in front of Redis: 0 closed, 1 open, 2 half-open.', (s) => [[{}, s.breakerState]]),
  counter('cache_circuit_breaker_opened_total', 'Times the circuit breaker opened.', (s) => [[{}, s.breakerOpened]]),
  gauge('cache_l1_entries', 'Entries in L1.', (s) => [[{}, s.l1Entries]]),
  counter('cache_l1_evictions_total', 'L1 entries evicted to stay within l1.maxEntries.', (s) => [[{}, s.l1Evictions]]),
  counter('cache_l1_expirations_total', 'L1 entries dropped when their TTL ran out.', (s) => [[{}, s.l1Expirations]]),
]

const INFO_DEFINITIONS = [
  gauge('cache_redis_keyspace_hits', 'keyspace_hits of Redis INFO stats (whole server).', (i) => i.hits),
  gauge('cache_redis_keyspace_misses', 'keyspace_misses of Redis INFO stats (whole server).', (i) => i.misses),
  gauge('cache_redis_keyspace_hit_ratio', 'keyspace_hits / (hits + misses) of Redis INFO stats (whole server).',
    (i) => (i.hits + i.misses === 0 ? 0 : i.hits / (i.hits + i.misses))),
]

const LATENCY = 'cache_operation_duration_seconds'

/**
 * Registers prom-client collectors for `cache` on `registry` (prom-client's default registry
 * when omitted). Returns a function that unregisters this cache.
 * @param {import('../index').MultiLevelCache} cache
 * @param {import('prom-client').Registry} [registry]
 * @param {{ name?: string, redisInfoInterval?: number }} [options]
 */
function registerMetrics(cache, registry, options = {}) {
  let prom
  try {
    prom = require('prom-client')
  } catch (cause) {
    throw mlcError(Error, codes.MISSING_DEPENDENCY,
      'registerMetrics needs the optional peer dependency prom-client: npm install prom-client', { cause })
  }
  if (cache === null || typeof cache !== 'object' || typeof cache[kLatencies] !== 'function') {
    throw mlcError(TypeError, codes.INVALID_OPTION, 'registerMetrics expects a MultiLevelCache as its first argument')
  }
  if (options === null || typeof options !== 'object') {
    throw mlcError(TypeError, codes.INVALID_OPTION, 'registerMetrics options must be an object')
  }
  const name = options.name === undefined ? cache.prefix : options.name
  if (typeof name !== 'string' || name === '') {
    throw mlcError(TypeError, codes.INVALID_OPTION, 'option `name` of registerMetrics must be a non-empty string')
  }
  const interval = options.redisInfoInterval === undefined ? 10 : options.redisInfoInterval
  if (typeof interval !== 'number' || !(interval >= 0) || interval === Infinity) {
    throw mlcError(RangeError, codes.INVALID_OPTION, 'option `redisInfoInterval` of registerMetrics must be a finite number of seconds >= 0')
  }
  const target = registry === undefined ? prom.register : registry
  let state = registries.get(target)
  if (state === undefined) {
    state = { caches: new Map() }
    registries.set(target, state)
    for (const metric of collectors(state)) target.registerMetric(metric)
  }
  if (state.caches.has(name)) {
    throw mlcError(TypeError, codes.INVALID_OPTION,
      `a cache named ${JSON.stringify(name)} is already registered on this registry: pass a distinct { name }`)
  }
  state.caches.set(name, { cache, intervalMs: interval * 1000, info: null, readAt: -Infinity, reading: null })
  return () => { state.caches.delete(name) }
}

function collectors(state) {
  const metrics = DEFINITIONS.map((d) => custom(d, () => {
    const values = []
    for (const [name, entry] of state.caches) {
      const stats = entry.cache.stats()
      for (const [labels, value] of d.pick(stats)) values.push({ labels: { cache: name, ...labels }, value })
    }
    return values
  }))
  for (const d of INFO_DEFINITIONS) {
    metrics.push(custom(d, async () => {
      const values = []
      for (const [name, entry] of state.caches) {
        const info = await redisInfo(entry)
        if (info !== null) values.push({ labels: { cache: name }, value: d.pick(info) })
      }
      return values
    }))
  }
  metrics.push(custom({
    name: LATENCY,
    type: 'histogram',
    help: 'Duration of get/getOrSet lookups that were not L1 hits, by outcome (l2_hit, miss, load). ' +
      'L1 hits are synchronous lookups of about a microsecond and are counted by cache_hits_total{layer="memory"} instead.',
  }, () => {
    const values = []
    for (const [name, entry] of state.caches) {
      const { bounds, outcomes } = entry.cache[kLatencies]()
      for (const h of outcomes) {
        let cumulative = 0
        bounds.forEach((le, i) => {
          cumulative += h.buckets[i]
          values.push({ metricName: `${LATENCY}_bucket`, labels: { cache: name, outcome: h.outcome, le }, value: cumulative })
        })
        values.push({ metricName: `${LATENCY}_bucket`, labels: { cache: name, outcome: h.outcome, le: '+Inf' }, value: h.count })
        values.push({ metricName: `${LATENCY}_sum`, labels: { cache: name, outcome: h.outcome }, value: h.sum })
        values.push({ metricName: `${LATENCY}_count`, labels: { cache: name, outcome: h.outcome }, value: h.count })
      }
    }
    return values
  }))
  return metrics
}

/** A prom-client-compatible metric whose values are computed at scrape time. */
function custom({ name, help, type }, values) {
  return {
    name,
    help,
    type,
    aggregator: 'sum',
    async get() {
      return { name, help, type, aggregator: 'sum', values: await values() }
    },
    reset() {},
  }
}

/** INFO stats of a cache's Redis, read at most once per interval (one read at a time). */
async function redisInfo(entry) {
  const now = Date.now()
  if (now - entry.readAt < entry.intervalMs) return entry.info
  if (entry.reading === null) {
    entry.reading = entry.cache[kKeyspaceStats]().then((info) => {
      entry.info = info
      entry.readAt = Date.now()
      entry.reading = null
      return info
    })
  }
  return entry.reading
}

module.exports = { registerMetrics }
