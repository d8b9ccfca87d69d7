'use strict'
// cache-manager 7: two Keyv stores, memory (CacheableMemory with an LRU bound, as its README
// shows) and @keyv/redis. It has no tags: they are emulated (see invalidateTag).

const { createCache } = require('cache-manager')
const { Keyv } = require('keyv')
const { CacheableMemory } = require('cacheable')
const { createKeyv } = require('@keyv/redis')
const { pkgVersion } = require('./util.js')

module.exports = {
  name: 'cache-manager',
  description: `cache-manager ${pkgVersion('cache-manager')}: \`createCache({ stores: [new Keyv({ store: new CacheableMemory({ ttl: 60000, lruSize: 10000 }) }), createKeyv(url)] })\` (keyv ${pkgVersion('keyv')}, @keyv/redis ${pkgVersion('@keyv/redis')}), entries written with ttl 1 h`,
  capabilities: {
    crossProcessL1Invalidation: 'no',
    tags: 'none: emulated here like the article (a Redis set of keys per tag: SADD on set; SMEMBERS + `mdel` + DEL on invalidate), so only this process\'s memory store is cleared',
    stampede: 'in-process (`wrap` coalesces concurrent calls); none across processes',
    getOrSet: 'native `wrap(key, fn, ttl)`',
  },
  /** Why it is not in the cluster scenario. */
  noCluster: 'not one of the issue\'s Cluster peers (its @keyv/redis store could take `createCluster` like cacheable\'s; left out to keep the cluster scenario within its time budget)',
  /**
   * @param {string} redisUrl
   * @param {string} prefix
   * @param {{ l1MaxEntries?: number }} [opts]
   */
  create(redisUrl, prefix, opts = {}) {
    const memory = new Keyv({ store: new CacheableMemory({ ttl: 60000, lruSize: opts.l1MaxEntries || 10000 }), namespace: prefix })
    const redisKeyv = createKeyv(redisUrl, { namespace: prefix })
    const cache = createCache({ stores: [memory, redisKeyv] })
    const errors = { count: 0 }
    // without listeners an error event (Redis down) would throw
    memory.on('error', () => { errors.count++ })
    redisKeyv.on('error', () => { errors.count++ })
    if (redisKeyv.store && typeof redisKeyv.store.on === 'function') redisKeyv.store.on('error', () => { errors.count++ })
    const ttlOf = (o) => ((o && o.ttl) || 3600) * 1000
    const tagKey = (tag) => `${prefix}:bench-tag:${tag}`
    const client = () => redisKeyv.store.getClient()
    return {
      get: async (key) => {
        const v = await cache.get(key)
        return v === undefined ? null : v
      },
      set: async (key, value, o) => {
        await cache.set(key, value, ttlOf(o))
        if (o && o.tags) {
          const c = await client()
          for (const tag of o.tags) await c.sAdd(tagKey(tag), key)
        }
      },
      getOrSet: (key, loader, o) => {
        if (o && o.tags) throw new Error('cache-manager adapter: getOrSet with tags is not emulated')
        return cache.wrap(key, () => loader(key), ttlOf(o))
      },
      del: async (key) => { await cache.del(key) },
      invalidateTag: async (tag) => {
        const c = await client()
        const keys = await c.sMembers(tagKey(tag))
        if (keys.length) await cache.mdel(keys)
        await c.del(tagKey(tag))
      },
      stats: () => ({ errors: errors.count }),
      close: () => cache.disconnect(),
      raw: cache,
    }
  },
}
