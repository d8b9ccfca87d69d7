'use strict'
// bentocache 1.x: memory driver (L1) + redis driver (L2) + redis bus (cross-process L1
// invalidation), as its documentation sets up a multi-tier store.

const Redis = require('ioredis')
const { BentoCache, bentostore } = require('bentocache')
const { memoryDriver } = require('bentocache/drivers/memory')
const { redisDriver, redisBusDriver } = require('bentocache/drivers/redis')
const { hostPort, pkgVersion } = require('./util.js')

module.exports = {
  name: 'bentocache',
  description: 'bentocache ' + pkgVersion('bentocache') + ': `bentostore().useL1Layer(memoryDriver({ maxItems: 10000 })).useL2Layer(redisDriver(..)).useBus(redisBusDriver(..))`, ttl 1 h; other options default (L1 entries serialized, no grace, no circuit breaker)',
  capabilities: {
    crossProcessL1Invalidation: 'yes (redis bus)',
    tags: 'native (`deleteByTag`)',
    stampede: 'in-process lock per key (async-mutex); none across processes',
    getOrSet: 'native `getOrSet({ key, factory })`',
  },
  /** How it runs on a Redis Cluster (the cluster scenario). */
  cluster: 'one ioredis `new Redis.Cluster(seeds)` as the `connection` of both `redisDriver` and `redisBusDriver` (its documented option: the bus duplicates it for publish and subscribe)',
  /**
   * @param {string} redisUrl
   * @param {string} prefix
   * @param {{ l1MaxEntries?: number, cluster?: string[] }} [opts] `cluster`: seed URLs of a
   *   Redis Cluster (then `redisUrl` is unused)
   */
  create(redisUrl, prefix, opts = {}) {
    let connection
    if (opts.cluster) {
      connection = new Redis.Cluster(opts.cluster.map(hostPort))
      connection.on('error', () => {}) // no "Unhandled error event" logs; bentocache reports its own failures
    } else {
      connection = { ...hostPort(redisUrl) }
    }
    const bento = new BentoCache({
      default: 'cache',
      prefix,
      stores: {
        cache: bentostore()
          .useL1Layer(memoryDriver({ maxItems: opts.l1MaxEntries || 10000 }))
          .useL2Layer(redisDriver({ connection }))
          .useBus(redisBusDriver({ connection })),
      },
    })
    const ttlOf = (o) => (o && o.ttl ? o.ttl * 1000 : 3600 * 1000)
    return {
      get: async (key) => {
        const v = await bento.get({ key })
        return v === undefined ? null : v
      },
      set: async (key, value, o) => { await bento.set({ key, value, ttl: ttlOf(o), tags: o && o.tags }) },
      getOrSet: (key, loader, o) => bento.getOrSet({ key, factory: () => loader(key), ttl: ttlOf(o), tags: o && o.tags }),
      del: async (key) => { await bento.delete({ key }) },
      invalidateTag: async (tag) => { await bento.deleteByTag({ tags: [tag] }) },
      close: () => bento.disconnectAll(),
      raw: bento,
    }
  },
}
