'use strict'
// Miss + load: getOrSet on keys nobody has cached yet, with a loader that takes 2 ms. Measures
// the whole miss path: L1 miss, Redis miss, loader, write to both layers.

const { concurrent, settle } = require('../lib/measure.js')
const { sleep } = require('../lib/clock.js')
const { makeValue } = require('./common.js')

module.exports = {
  id: 'miss',
  title: 'Miss + load (cold keys)',

  /** @param {{ quick: boolean, args: Record<string, string> }} o */
  config({ quick }) {
    return {
      keys: quick ? 2000 : 20000,
      warmKeys: quick ? 500 : 1000,
      loaderMs: 2,
      repeats: quick ? 1 : 3,
      flushBeforeRun: true,
      maxMs: quick ? 10000 : 30000,
      jobTimeoutMs: quick ? 30000 : 90000,
    }
  },

  cases() {
    return [
      { id: 'c64', label: '`getOrSet`, loader 2 ms, 64 in flight', inflight: 64, targets: [{ vs: 'article', min: 1.5 }] },
    ]
  },

  method(cfg) {
    return [
      `Each run (a fresh process, Redis flushed before it) calls \`getOrSet(key, loader)\` once on each of ${cfg.keys.toLocaleString('en-US')} keys no process has cached, 64 calls in flight;`,
      `the loader waits ${cfg.loaderMs} ms (\`setTimeout\`) and returns a 1 KiB, 20-field object (built before the timed part, parsed from JSON as a database driver's value would be).`,
      `Before the timed part, the same on ${cfg.warmKeys.toLocaleString('en-US')} other cold keys (JIT and connection warm-up) and a GC.`,
      'For the article, `getOrSet` is its cache-aside read path: `get` (L1, then Redis), then the loader, then `set` (L1 and Redis); no lock.',
      'bentocache `getOrSet`, cacheable `getOrSet` and cache-manager `wrap` are their own cache-aside calls.',
      `The lower bound of a run is ${cfg.keys.toLocaleString('en-US')} / 64 x ${cfg.loaderMs} ms = ${((cfg.keys / 64) * cfg.loaderMs).toFixed(0)} ms (at most ~${Math.round(64 / (cfg.loaderMs / 1000)).toLocaleString('en-US')} ops/s), more with the timer's granularity.`,
      'Checked after each run: exactly one loader call per key, every call returned its value, and a sample of keys reads back equal.',
    ].join(' ')
  },

  /**
   * @param {{ system: any, redisUrl: string, prefix: string, cfg: any, caseId: string, probe?: { start(): Promise<void>, stop(): Promise<void> } }} job
   *   `probe`: started right before the timed part and stopped right after it (the cluster
   *   scenario counts each primary's commands with it)
   */
  async run({ system, redisUrl, prefix, cfg, caseId, probe }) {
    const c = this.cases().find((x) => x.id === caseId)
    if (!c) throw new Error(`miss: unknown case ${caseId}`)
    const nonce = `${process.pid}-${Date.now()}`
    const keys = []
    const index = new Map()
    for (let i = 0; i < cfg.keys; i++) {
      const k = `miss:${nonce}:${i}`
      keys.push(k)
      index.set(k, i)
    }
    // flat strings, as a value parsed from a database's answer has (lib/values.js builds its
    // strings a character at a time: V8 ropes, which the first JSON.stringify would flatten)
    const values = keys.map((_, i) => JSON.parse(JSON.stringify(makeValue(i))))
    const warmKeys = []
    for (let i = 0; i < cfg.warmKeys; i++) warmKeys.push(`miss-warm:${nonce}:${i}`)

    let loads = 0
    const loader = async (key) => {
      loads++
      await sleep(cfg.loaderMs)
      const i = index.get(key)
      return i === undefined ? makeValue(0) : values[i]
    }
    const sys = system.create(redisUrl, prefix)
    try {
      await sys.get('bench:absent')
      await concurrent((k) => sys.getOrSet(k, loader), warmKeys, warmKeys.length, c.inflight, cfg.maxMs)
      loads = 0
      let wrong = 0
      const getOrSet = (k) => sys.getOrSet(k, loader).then((v) => {
        if (!v || v.id !== index.get(k)) wrong++
        return v
      })
      if (probe) await probe.start()
      settle()
      const m = await concurrent(getOrSet, keys, keys.length, c.inflight, cfg.maxMs)
      if (probe) await probe.stop()
      const problems = []
      if (loads !== keys.length) problems.push(`${loads} loader calls for ${keys.length} cold keys (expected exactly one per key)`)
      if (m.misses) problems.push(`${m.misses} calls returned nothing`)
      if (wrong) problems.push(`${wrong} calls returned another key's value`)
      const step = Math.max(1, Math.floor(keys.length / 50))
      let differ = 0
      for (let i = 0; i < keys.length; i += step) {
        const got = await sys.get(keys[i])
        if (JSON.stringify(got) !== JSON.stringify(values[i])) differ++
      }
      if (differ) problems.push(`${differ} sampled keys read back different from what the loader returned`)
      return { ...m, problems, metrics: { loaderCalls: loads } }
    } finally {
      await sys.close()
    }
  },
}
