'use strict'
// The systems the benchmark knows, by name. To add one, write `systems/<name>.js` exporting
//   { name, description, capabilities?, scenarios?: [scenario ids it takes part in; default all],
//     create(redisUrl, prefix, opts?) -> { get, set, getOrSet?, del?, invalidateTag?, stats?,
//     close } }
// and list it here. Every call returns a Promise; `get` resolves null on a miss; durations in
// options are seconds ({ ttl, tags }). `opts` may carry { l1MaxEntries, tags } (scenarios that
// need more L1 room, or tag tracking where it costs something) and `cluster` (seed URLs of a
// Redis Cluster, then `redisUrl` is unused): a system that can run on a cluster says how in its
// `cluster` field, one that cannot says why in `noCluster`. `BASELINE` is the denominator of
// the default ratio column.

const SYSTEMS = {
  mlc: './mlc.js',
  article: './article.js',
  bentocache: './bentocache.js',
  cacheable: './cacheable.js',
  'cache-manager': './cache-manager.js',
  'node-redis': './node-redis.js',
  'lru-cache': './lru-cache.js',
  map: './map.js',
}

const BASELINE = 'article'
const SUBJECT = 'mlc'

/** @param {string} name */
function load(name) {
  const p = SYSTEMS[name]
  if (!p) throw new Error(`unknown system ${JSON.stringify(name)} (known: ${Object.keys(SYSTEMS).join(', ')})`)
  return require(p)
}

/**
 * Whether system `name` takes part in scenario `id` (a system may name its scenarios; a
 * scenario on a Redis Cluster, `clustered`, takes only the systems with a `cluster` field).
 */
function appliesTo(name, id, clustered = false) {
  const s = load(name)
  if (clustered) return !!s.cluster
  return !s.scenarios || s.scenarios.includes(id)
}

/** Why system `name` is not in scenario `id` (for the report), or undefined when it is. */
function leftOutReason(name, id, clustered = false) {
  if (appliesTo(name, id, clustered)) return undefined
  const s = load(name)
  if (clustered) return s.noCluster || 'its adapter cannot run on a Redis Cluster'
  return `takes part only in: ${s.scenarios.join(', ')}`
}

/**
 * `system` with every `create` wired to the Redis Cluster whose seed URLs are `nodes`
 * (`opts.cluster`); the worker and peer processes of a cluster scenario's jobs use this.
 */
function onCluster(system, nodes) {
  if (!system.cluster) throw new Error(`system ${system.name} cannot run on a Redis Cluster: ${system.noCluster || 'no cluster support in its adapter'}`)
  return { ...system, create: (redisUrl, prefix, opts = {}) => system.create(redisUrl, prefix, { ...opts, cluster: nodes }) }
}

module.exports = { SYSTEMS, BASELINE, SUBJECT, names: () => Object.keys(SYSTEMS), load, appliesTo, leftOutReason, onCluster }
