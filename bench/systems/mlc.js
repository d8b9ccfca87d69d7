'use strict'
// multi-level-cache, as an application would construct it: defaults except the Redis URL and
// a prefix of its own.

const path = require('node:path')
const { MultiLevelCache } = require(path.join(__dirname, '..', '..'))

module.exports = {
  name: 'mlc',
  description: '`new MultiLevelCache({ redisUrl, prefix })` (this package, defaults: L1 10 000 entries, TTL 60 s in L1 / 1 h in Redis, `set`/`del`/`invalidateTag` resolve once the other processes acknowledged them, `bus.ackTimeout` 0.05 s)',
  capabilities: {
    crossProcessL1Invalidation: 'yes (Redis pub/sub bus)',
    tags: 'native (`invalidateTag`)',
    stampede: 'in-process single flight + Redis lock across processes',
    getOrSet: 'native `getOrSet(key, loader, options)`',
  },
  /** How it runs on a Redis Cluster (the cluster scenario). */
  cluster: '`new MultiLevelCache({ cluster: { nodes }, prefix })` (seed URLs; defaults otherwise)',
  /**
   * @param {string} redisUrl
   * @param {string} prefix
   * @param {{ l1MaxEntries?: number, cluster?: string[] }} [opts] `l1MaxEntries` only where a
   *   scenario needs more than the default (the memory scenario); `cluster`: seed URLs of a
   *   Redis Cluster (then `redisUrl` is unused)
   */
  create(redisUrl, prefix, opts = {}) {
    const options = opts.cluster ? { cluster: { nodes: opts.cluster }, prefix } : { redisUrl, prefix }
    if (opts.l1MaxEntries) options.l1 = { maxEntries: opts.l1MaxEntries }
    const cache = new MultiLevelCache(options)
    return {
      get: (key) => cache.get(key),
      set: (key, value, options) => cache.set(key, value, options),
      getOrSet: (key, loader, options) => cache.getOrSet(key, loader, options),
      del: (key) => cache.del(key),
      invalidateTag: (tag) => cache.invalidateTag(tag),
      stats: () => cache.stats(),
      close: () => cache.close(),
      raw: cache,
    }
  },
}
