'use strict'
// The limit of an L1 hit: a bare `Map` read through the same harness as every system
// (`await system.get(key)`), no cache around it. Only meaningful for the L1 scenario.

module.exports = {
  name: 'map',
  description: 'a bare `Map`, `await map.get(key)` (no cache: the limit of an in-process read)',
  scenarios: ['l1'],
  /** Why it is not in the cluster scenario. */
  noCluster: 'no Redis (the L1 scenario\'s limit)',
  capabilities: {
    crossProcessL1Invalidation: 'n/a (no L2)',
    tags: 'n/a',
    stampede: 'n/a',
    getOrSet: 'n/a',
  },
  create() {
    const map = new Map()
    return {
      // not async: what the harness awaits is the value itself, the cheapest await there is
      get: (key) => { const v = map.get(key); return v === undefined ? null : v },
      set: async (key, value) => { map.set(key, value) },
      del: async (key) => { map.delete(key) },
      close: async () => { map.clear() },
    }
  },
}
