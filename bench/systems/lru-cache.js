'use strict'
// lru-cache holding the value objects themselves: the memory reference of the memory scenario
// (what keeping N objects in a plain in-process LRU costs).

const { LRUCache } = require('lru-cache')
const { pkgVersion } = require('./util.js')

module.exports = {
  name: 'lru-cache',
  description: `lru-cache ${pkgVersion('lru-cache')} \`new LRUCache({ max })\` holding the value objects (no Redis): the memory reference`,
  scenarios: ['memory'],
  /** Why it is not in the cluster scenario. */
  noCluster: 'no Redis (the memory scenario\'s reference)',
  capabilities: {
    crossProcessL1Invalidation: 'n/a (no L2)',
    tags: 'n/a',
    stampede: 'n/a',
    getOrSet: 'n/a',
  },
  /**
   * @param {string} _redisUrl unused
   * @param {string} _prefix unused
   * @param {{ l1MaxEntries?: number }} [opts]
   */
  create(_redisUrl, _prefix, opts = {}) {
    const lru = new LRUCache({ max: opts.l1MaxEntries || 10000 })
    return {
      get: async (key) => { const v = lru.get(key); return v === undefined ? null : v },
      set: async (key, value) => { lru.set(key, value) },
      del: async (key) => { lru.delete(key) },
      stats: () => ({ l1Entries: lru.size }),
      close: async () => { lru.clear() },
      raw: lru,
    }
  },
}
