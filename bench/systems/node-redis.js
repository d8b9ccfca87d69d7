'use strict'
// The client-side limit of an L2 read: a bare node-redis `GET` and `JSON.parse`, no cache in
// front. Only meaningful for the L2 scenario.

const { createClient } = require('redis')
const { afterReady, pkgVersion } = require('./util.js')

module.exports = {
  name: 'node-redis',
  description: `bare node-redis ${pkgVersion('redis')} \`JSON.parse(await client.get(key))\` (no cache: the client-side limit of a Redis read)`,
  /** Scenarios this system takes part in (it has no L1, no loader, no invalidation). */
  scenarios: ['l2'],
  /** Why it is not in the cluster scenario. */
  noCluster: 'the single-server L2 scenario\'s client-side limit only',
  capabilities: {
    crossProcessL1Invalidation: 'n/a (no L1)',
    tags: 'n/a',
    stampede: 'n/a',
    getOrSet: 'n/a',
  },
  /**
   * @param {string} redisUrl
   * @param {string} prefix
   */
  create(redisUrl, prefix) {
    const client = createClient({ url: redisUrl })
    client.on('error', () => {})
    const ready = client.connect()
    const k = (key) => `${prefix}:${key}`
    const get = async (key) => {
      const s = await client.get(k(key))
      return s === null ? null : JSON.parse(s)
    }
    const set = async (key, value, o) => { await client.set(k(key), JSON.stringify(value), { EX: (o && o.ttl) || 3600 }) }
    const del = async (key) => { await client.del(k(key)) }
    const api = {
      close: async () => {
        await ready.catch(() => {})
        await client.close()
      },
      raw: client,
    }
    api.get = afterReady(ready, api, 'get', get)
    api.set = afterReady(ready, api, 'set', set)
    api.del = afterReady(ready, api, 'del', del)
    return api
  },
}
