'use strict'
// L1 hit: every read is answered by the in-process layer. Measures the per-call overhead of
// `await cache.get(key)` when no I/O is involved.

const { sequential, concurrent, forEachLimited, settle } = require('../lib/measure.js')
const { keyList, verifySample, statsDelta, describeDelta, makeValue } = require('./common.js')

const SPACE = 'item'

module.exports = {
  id: 'l1',
  title: 'L1 hit',

  /** @param {{ quick: boolean, args: Record<string, string> }} o */
  config({ quick, args }) {
    return {
      keys: 1000,
      // 1 000 000 timed ops: runs of the fastest systems last ~0.2 s (0.1 s varied by 30 % and
      // more with a GC or a late JIT tier)
      ops: Number(args['l1-ops']) || (quick ? 20000 : 1000000),
      warmupOps: quick ? 5000 : 100000,
      idleCheckMs: quick ? 1500 : 2500,
      maxMs: quick ? 5000 : 30000,
      jobTimeoutMs: quick ? 30000 : 90000,
    }
  },

  cases() {
    return [
      { id: 'seq', label: 'sequential `await get()`', inflight: 1, target: { min: 0.8 } },
      { id: 'c64', label: '64 in flight', inflight: 64, target: { min: 0.8 } },
    ]
  },

  method(cfg) {
    return [
      `${cfg.keys.toLocaleString('en-US')} keys (1 KiB JSON objects, 20 fields) are written with \`set\` and read once (warming L1),`,
      `then \`get\` cycles over them: ${cfg.warmupOps.toLocaleString('en-US')} untimed ops (JIT warm-up), a GC, then ${cfg.ops.toLocaleString('en-US')} timed ops,`,
      'either one `await cache.get(k)` after another (**sequential**) or from 64 async workers sharing one counter (**64 in flight**).',
      'Checked after each run: no miss, no L1 miss (counters), and a sample of values equal to what was written.',
      `Checked once per system before the runs (untimed): entries written and read are still L1 hits after ${cfg.idleCheckMs} ms of idle time`,
      '(far below every TTL), so runs longer than that would measure the same thing.',
    ].join(' ')
  },

  /** Untimed retention check: L1 entries must survive a short idle period. */
  async prepare({ system, redisUrl, prefix, cfg }) {
    const keys = keyList(SPACE, cfg.keys)
    const sys = system.create(redisUrl, prefix)
    const problems = []
    try {
      await forEachLimited(keys.length, 64, (i) => sys.set(keys[i], makeValue(i)))
      for (const k of keys) await sys.get(k)
      const before = sys.stats ? sys.stats() : undefined
      await new Promise((resolve) => setTimeout(resolve, cfg.idleCheckMs))
      const s0 = sys.stats ? sys.stats() : undefined
      let misses = 0
      for (const k of keys) if ((await sys.get(k)) == null) misses++
      const after = sys.stats ? sys.stats() : undefined
      const delta = statsDelta(s0, after)
      if (misses) problems.push(`${misses} of ${keys.length} keys unreadable after ${cfg.idleCheckMs} ms idle`)
      if (delta && delta.l1Misses > 0) {
        problems.push(`L1 lost ${delta.l1Misses} of ${keys.length} entries within ${cfg.idleCheckMs} ms of idle time (TTL 60 s; counters over the whole check: ${describeDelta(statsDelta(before, after))})`)
      }
    } finally {
      await sys.close()
    }
    return { problems }
  },

  /**
   * @param {{ system: any, redisUrl: string, prefix: string, cfg: any, caseId: string, log: (s: string) => void }} job
   */
  async run({ system, redisUrl, prefix, cfg, caseId }) {
    const c = this.cases().find((x) => x.id === caseId)
    if (!c) throw new Error(`l1: unknown case ${caseId}`)
    const keys = keyList(SPACE, cfg.keys)
    const sys = system.create(redisUrl, prefix)
    try {
      await forEachLimited(keys.length, 64, (i) => sys.set(keys[i], makeValue(i)))
      for (const k of keys) await sys.get(k)
      const get = sys.get
      const loop = c.inflight === 1
        ? (ops) => sequential(get, keys, ops, cfg.maxMs)
        : (ops) => concurrent(get, keys, ops, c.inflight, cfg.maxMs)
      await loop(cfg.warmupOps)
      settle()
      const s0 = sys.stats ? sys.stats() : undefined
      const m = await loop(cfg.ops)
      const delta = statsDelta(s0, sys.stats ? sys.stats() : undefined)
      const problems = []
      if (m.misses > 0) problems.push(`${m.misses} reads returned nothing`)
      if (delta && delta.l1Misses > 0) problems.push(`${delta.l1Misses} L1 misses during the timed part (expected 0; counters: ${describeDelta(delta)})`)
      problems.push(...await verifySample(sys, SPACE, cfg.keys))
      return { ...m, stats: delta, problems }
    } finally {
      await sys.close()
    }
  },
}
