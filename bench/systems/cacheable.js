'use strict'
// cacheable 2.x: an in-memory primary (its own LRU `createKeyv`) in front of @keyv/redis.

const { Cacheable, createKeyv } = require('cacheable')
const KeyvRedis = require('@keyv/redis').default
const { createCluster } = require('@keyv/redis')
const { Keyv } = require('keyv')
const { afterReady, pkgVersion } = require('./util.js')

module.exports = {
  name: 'cacheable',
  description: `cacheable ${pkgVersion('cacheable')}: \`new Cacheable({ primary: createKeyv({ lruSize: 10000 }), secondary: new Keyv({ store: new KeyvRedis(url) }), namespace })\` (@keyv/redis ${pkgVersion('@keyv/redis')}), TTL 60 s in memory / 1 h in Redis per entry; \`tags: true\` only in the propagation scenario (it costs a Redis read per \`get\`)`,
  capabilities: {
    crossProcessL1Invalidation: 'no (CacheableSync needs a Qified message provider, not part of memory + @keyv/redis)',
    tags: 'native since 2.5 (`tags: true`: per-tag version counters in the secondary store, checked on every `get`)',
    stampede: 'in-process (getOrSet coalesces concurrent calls); none across processes',
    getOrSet: 'native `getOrSet(key, fn, { ttl })`',
  },
  /** How it runs on a Redis Cluster (the cluster scenario). */
  cluster: 'the secondary store `new KeyvRedis(createCluster({ rootNodes: [{ url }, ...] }))` (@keyv/redis\'s documented way: a node-redis cluster client), connected (`store.getClient()`) before the first call: calls made while it is still connecting fail inside @keyv/redis (TypeError "reading \'master\'"), which Keyv only reports as an `error` event, so those writes are lost',
  /**
   * @param {string} redisUrl
   * @param {string} prefix
   * @param {{ l1MaxEntries?: number, tags?: boolean, cluster?: string[] }} [opts] `cluster`:
   *   seed URLs of a Redis Cluster (then `redisUrl` is unused)
   */
  create(redisUrl, prefix, opts = {}) {
    const store = opts.cluster ? new KeyvRedis(createCluster({ rootNodes: opts.cluster.map((url) => ({ url })) })) : new KeyvRedis(redisUrl)
    const secondary = new Keyv({ store })
    const cache = new Cacheable({
      primary: createKeyv({ lruSize: opts.l1MaxEntries || 10000 }),
      secondary,
      namespace: prefix,
      ttl: '1h',
      tags: !!opts.tags,
    })
    // without a listener an error event (Redis down) would throw
    const errors = { count: 0 }
    cache.on('error', () => { errors.count++ })
    secondary.on('error', () => { errors.count++ })
    store.on('error', () => { errors.count++ })
    const ttlOf = (o) => ({ primary: Math.min(60, (o && o.ttl) || 3600) * 1000, secondary: ((o && o.ttl) || 3600) * 1000 })
    const api = {
      get: async (key) => {
        const v = await cache.get(key)
        return v === undefined ? null : v
      },
      set: async (key, value, o) => { await cache.set(key, value, { ttl: ttlOf(o), tags: o && o.tags }) },
      getOrSet: (key, loader, o) => cache.getOrSet(key, () => loader(key), { ttl: ttlOf(o), tags: o && o.tags }),
      del: async (key) => { await cache.delete(key) },
      invalidateTag: async (tag) => { await cache.tags.invalidateTag(tag) },
      stats: () => ({ errors: errors.count }),
      close: () => cache.disconnect(),
      raw: cache,
    }
    if (opts.cluster) {
      // the cluster client must have its slot map before the first command (see `cluster`)
      const ready = store.getClient().then(() => {}, () => {})
      for (const name of ['get', 'set', 'getOrSet', 'del', 'invalidateTag']) api[name] = afterReady(ready, api, name, api[name])
    }
    return api
  },
}
