'use strict'
// L2 hit: a fresh instance (empty L1) reads keys another instance wrote to Redis. Measures the
// Redis read path: the command, the round trip, JSON.parse and the copy into L1.

const { concurrent, forEachLimited, settle } = require('../lib/measure.js')
const { keyList, verifySample, statsDelta, describeDelta, makeValue } = require('./common.js')

const SPACE = 'item'
const WARM_SPACE = 'warm'
const ABSENT_KEY = 'bench:absent'

module.exports = {
  id: 'l2',
  title: 'L2 hit (fresh instance)',

  /** @param {{ quick: boolean, args: Record<string, string> }} o */
  config({ quick, args }) {
    return {
      keys: Number(args['l2-keys']) || (quick ? 2000 : 20000),
      warmKeys: Number(args['l2-warm']) || (quick ? 500 : 2000),
      maxMs: quick ? 10000 : 30000,
      jobTimeoutMs: quick ? 30000 : 120000,
    }
  },

  cases() {
    return [
      { id: 'c64', label: '64 in flight', inflight: 64, target: { min: 1.5 } },
      { id: 'c256', label: '256 in flight', inflight: 256 },
    ]
  },

  method(cfg) {
    return [
      `Once per system, one instance writes ${cfg.keys.toLocaleString('en-US')} keys (1 KiB JSON objects, 20 fields) plus ${cfg.warmKeys.toLocaleString('en-US')} warm-up keys to Redis and is closed.`,
      'Each run (a fresh process) first reads the warm-up keys through a throw-away instance (JIT and connection code warm-up), then creates a **fresh instance** (empty L1),',
      'waits for its connection with one `get` of an absent key, runs a GC, and times reading every key exactly once with N async workers in flight; the instance is closed after the run.',
      'mlc keeps its default `l1.maxEntries` (10 000), so L1 evicts during the larger runs; node-cache has no bound.',
      'Checked after each run: no miss, no L1 hit during the timed part (counters), and a sample of values equal to what was written.',
    ].join(' ')
  },

  /** Writes the keys once per system (the "writer" instance). */
  async prepare({ system, redisUrl, prefix, cfg }) {
    const sys = system.create(redisUrl, prefix)
    try {
      const keys = keyList(SPACE, cfg.keys)
      const warm = keyList(WARM_SPACE, cfg.warmKeys)
      await forEachLimited(keys.length, 64, (i) => sys.set(keys[i], makeValue(i)))
      await forEachLimited(warm.length, 64, (i) => sys.set(warm[i], makeValue(i)))
    } finally {
      await sys.close()
    }
    return { problems: [] }
  },

  /**
   * @param {{ system: any, redisUrl: string, prefix: string, cfg: any, caseId: string, probe?: { start(): Promise<void>, stop(): Promise<void> } }} job
   *   `probe`: started right before the timed part and stopped right after it (the cluster
   *   scenario counts each primary's commands with it)
   */
  async run({ system, redisUrl, prefix, cfg, caseId, probe }) {
    const c = this.cases().find((x) => x.id === caseId)
    if (!c) throw new Error(`l2: unknown case ${caseId}`)
    const keys = keyList(SPACE, cfg.keys)

    const warm = system.create(redisUrl, prefix)
    try {
      await warm.get(ABSENT_KEY)
      await concurrent(warm.get, keyList(WARM_SPACE, cfg.warmKeys), cfg.warmKeys, c.inflight, cfg.maxMs)
    } finally {
      await warm.close()
    }

    const sys = system.create(redisUrl, prefix)
    try {
      await sys.get(ABSENT_KEY)
      if (probe) await probe.start()
      settle()
      const s0 = sys.stats ? sys.stats() : undefined
      const m = await concurrent(sys.get, keys, keys.length, c.inflight, cfg.maxMs)
      if (probe) await probe.stop()
      const delta = statsDelta(s0, sys.stats ? sys.stats() : undefined)
      const problems = []
      if (m.misses > 0) problems.push(`${m.misses} reads returned nothing`)
      if (delta && delta.l1Hits > 0) problems.push(`${delta.l1Hits} L1 hits during the timed part (expected 0: every key is read once by a fresh instance; counters: ${describeDelta(delta)})`)
      problems.push(...await verifySample(sys, SPACE, cfg.keys))
      return { ...m, stats: delta, problems }
    } finally {
      await sys.close()
    }
  },
}
