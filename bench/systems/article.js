'use strict'
// The article's implementation (bench/article.js): node-cache in front of ioredis.

const Redis = require('ioredis')
const { ArticleCache } = require('../article.js')
const { hostPort } = require('./util.js')

module.exports = {
  name: 'article',
  description: "the article's class (`bench/article.js`): node-cache `{ stdTTL: 60, useClones: false }` (unbounded) + ioredis",
  capabilities: {
    crossProcessL1Invalidation: 'no (invalidation clears only the calling process\'s L1)',
    tags: 'native in the article (Redis set of keys per tag)',
    stampede: 'only in `getWithLock`: `SET lock:<key> 1 NX EX 2`, losers sleep 50 ms and retry',
    getOrSet: 'cache-aside `get` -> loader -> `set` (the article\'s plain read path); the stampede scenario uses `getWithLock`',
  },
  /** How it runs on a Redis Cluster (the cluster scenario). */
  cluster: 'the class given an ioredis `new Redis.Cluster(seeds, { keyPrefix })` instead of its `new Redis(url)` (its `invalidateTag` would fail there with CROSSSLOT: one DEL of many keys; not used by the cluster scenario)',
  /**
   * @param {string} redisUrl
   * @param {string} prefix
   * @param {{ cluster?: string[] }} [opts] `cluster`: seed URLs of a Redis Cluster (then `redisUrl` is unused)
   */
  create(redisUrl, prefix, opts = {}) {
    const keyPrefix = `${prefix}:`
    const redis = opts.cluster ? new Redis.Cluster(opts.cluster.map(hostPort), { keyPrefix }) : undefined
    const cache = new ArticleCache({ redisUrl, keyPrefix, redis })
    // ioredis logs "Unhandled error event" for every failed reconnect without a listener
    let errors = 0
    cache.redis.on('error', () => { errors++ })
    return {
      get: (key) => cache.get(key),
      set: (key, value, options) => cache.set(key, value, options),
      // the article's get-then-load-then-set path (no lock, no single flight)
      getOrSet: async (key, loader, options) => {
        const cached = await cache.get(key)
        if (cached) return cached
        const value = await loader(key)
        await cache.set(key, value, options)
        return value
      },
      // the article's stampede protection
      getOrSetLocked: (key, loader, options) => cache.getWithLock(key, loader, options),
      del: (key) => cache.del(key),
      invalidateTag: (tag) => cache.invalidateTag(tag),
      // node-cache counts its own hits and misses (at no extra cost): the L1 part of the
      // counters mlc reports, so scenarios can check both systems the same way.
      stats: () => {
        const s = cache.l1.getStats()
        return { l1Hits: s.hits, l1Misses: s.misses, l1Entries: s.keys, errors }
      },
      close: () => cache.close(),
      raw: cache,
    }
  },
}
