'use strict'
// Memory: what holding 100 000 entries of 1 KiB in L1 costs a process, against lru-cache
// holding the same objects.

const { forEachLimited } = require('../lib/measure.js')
const { sleep } = require('../lib/clock.js')
const { makeValue } = require('./common.js')

const MiB = 1024 * 1024

/**
 * Value i as an application holds it after reading it from a database or JSON: flat strings.
 * (lib/values.js builds its strings a character at a time; V8 keeps such strings as ropes of
 * one node per character until something flattens them, e.g. JSON.stringify. A cache that
 * never serializes, like lru-cache, would otherwise be charged ~20 KB per 1 KiB value.)
 */
const flatValue = (i) => JSON.parse(JSON.stringify(makeValue(i)))

async function fullGc() {
  if (typeof global.gc !== 'function') return
  for (let i = 0; i < 3; i++) {
    global.gc()
    await sleep(50)
  }
}

function snapshot() {
  const m = process.memoryUsage()
  return { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external + m.arrayBuffers }
}

module.exports = {
  id: 'memory',
  title: 'Memory (entries held in L1)',

  /** @param {{ quick: boolean }} o */
  config({ quick }) {
    return {
      entries: quick ? 10000 : 100000,
      inflight: 256,
      settleMs: 300,
      // one repeat: RSS after a fill is nearly deterministic, and a run of the slower systems
      // takes ~15 s (100 000 sets through Redis)
      repeats: 1,
      flushBeforeRun: true,
      jobTimeoutMs: quick ? 60000 : 120000,
    }
  },

  cases(cfg) {
    const n = cfg ? cfg.entries : 100000
    return [{ id: 'n', label: `${n.toLocaleString('en-US')} entries of 1 KiB` }]
  },

  method(cfg) {
    return [
      `Each run (a fresh process started with --expose-gc) creates one instance with room for all entries (\`l1MaxEntries\` ${cfg.entries.toLocaleString('en-US')} + 1,024:`,
      'mlc `l1.maxEntries`, bentocache `maxItems`, cacheable and cache-manager `lruSize`, lru-cache `max`; node-cache has no bound), makes its connection, runs a full GC',
      `three times and records RSS, then \`set\`s ${cfg.entries.toLocaleString('en-US')} distinct 1 KiB, 20-field objects (each parsed from its JSON text for the call, as from a database, and not kept by the benchmark),`,
      `${cfg.inflight} in flight (so the systems with Redis also write them there; Redis is flushed before every run), waits ${cfg.settleMs} ms, runs the GCs again and records RSS again.`,
      'RSS growth / entries = bytes per entry. lru-cache (no Redis) holds the very objects it is given: the reference.',
      'L1 entries are counted with the system\'s own counters where it has them (mlc `stats().l1Entries`, node-cache keys, lru-cache size);',
      'after the measurement a sample of keys is read back and compared.',
      'Target: mlc\'s RSS growth <= 1.15x lru-cache\'s.',
    ].join(' ')
  },

  /** @param {{ system: any, redisUrl: string, prefix: string, cfg: any, log: (s: string) => void }} job */
  async run({ system, redisUrl, prefix, cfg, log }) {
    const sys = system.create(redisUrl, prefix, { l1MaxEntries: cfg.entries + 1024 })
    const key = (i) => `mem:${i}`
    const problems = []
    try {
      await sys.get('bench:absent')
      await sys.set('mem:warm', makeValue(0))
      await sys.get('mem:warm')
      await sys.del('mem:warm')
      await fullGc()
      const before = snapshot()
      const t0 = Date.now()
      await forEachLimited(cfg.entries, cfg.inflight, (i) => sys.set(key(i), flatValue(i)))
      const fillMs = Date.now() - t0
      await sleep(cfg.settleMs)
      await fullGc()
      const after = snapshot()
      const stats = sys.stats ? sys.stats() : {}
      const l1Entries = typeof stats.l1Entries === 'number' ? stats.l1Entries : null
      if (l1Entries !== null && l1Entries < cfg.entries) problems.push(`L1 holds ${l1Entries} of ${cfg.entries} entries`)
      const step = Math.max(1, Math.floor(cfg.entries / 200))
      let differ = 0
      for (let i = 0; i < cfg.entries; i += step) {
        if (JSON.stringify(await sys.get(key(i))) !== JSON.stringify(makeValue(i))) differ++
      }
      if (differ) problems.push(`${differ} sampled keys read back different`)
      const growth = after.rss - before.rss
      log(`RSS ${(before.rss / MiB).toFixed(1)} -> ${(after.rss / MiB).toFixed(1)} MiB, ${(growth / cfg.entries).toFixed(0)} B/entry`)
      const metrics = {
        before, after, fillMs, l1Entries,
        rssGrowth: growth,
        bytesPerEntry: growth / cfg.entries,
        heapGrowth: after.heapUsed - before.heapUsed,
        externalGrowth: after.external - before.external,
      }
      return { ops: cfg.entries, ms: fillMs, cpuUserMs: NaN, cpuSystemMs: NaN, mainThreadCpuMs: NaN, redisCpuMs: NaN, truncated: false, problems, metrics }
    } finally {
      await sys.close()
    }
  },

  runSummary(run) {
    const m = run.metrics
    return `RSS ${(m.before.rss / MiB).toFixed(0)} -> ${(m.after.rss / MiB).toFixed(0)} MiB, ${m.bytesPerEntry.toFixed(0)} B/entry (heap +${(m.heapGrowth / MiB).toFixed(0)} MiB, external +${(m.externalGrowth / MiB).toFixed(0)} MiB)`
  },

  report(s, ctx) {
    const { fmt } = ctx
    const c = s.cases[0]
    const ref = ctx.summary(ctx.okRuns(c.id, 'lru-cache').map((r) => r.metrics.rssGrowth)).median
    const out = ['| System | L1 entries | RSS before -> after, MiB | RSS growth, MiB | bytes per entry | JS heap growth, MiB | external + ArrayBuffer growth, MiB | RSS growth vs lru-cache | target (mlc <= 1.15x) |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---|']
    for (const name of ctx.names) {
      const runs = ctx.okRuns(c.id, name)
      if (!runs.length) { out.push(`| ${name} | failed | | | | | | | |`); continue }
      const med = (f) => ctx.summary(runs.map(f)).median
      const growth = med((r) => r.metrics.rssGrowth)
      const entries = runs.map((r) => (r.metrics.l1Entries === null ? 'n/a' : fmt.int(r.metrics.l1Entries)))[0]
      const ratio = growth / ref
      const target = name === ctx.subject ? fmt.pass(Number.isFinite(ratio) && ratio <= 1.15) : ''
      out.push(`| ${name} | ${entries} | ${(med((r) => r.metrics.before.rss) / MiB).toFixed(0)} -> ${(med((r) => r.metrics.after.rss) / MiB).toFixed(0)} | ${(growth / MiB).toFixed(1)} | ${fmt.int(med((r) => r.metrics.bytesPerEntry))} | ${(med((r) => r.metrics.heapGrowth) / MiB).toFixed(1)} | ${(med((r) => r.metrics.externalGrowth) / MiB).toFixed(1)} | ${fmt.ratio(ratio)} | ${target} |`)
    }
    out.push('', 'Medians over the repeats.')
    return out
  },

  targets(s, ctx) {
    const c = s.cases[0]
    const mine = ctx.summary(ctx.okRuns(c.id, ctx.subject).map((r) => r.metrics.rssGrowth)).median
    const ref = ctx.summary(ctx.okRuns(c.id, 'lru-cache').map((r) => r.metrics.rssGrowth)).median
    const ratio = mine / ref
    return [{
      scenario: s.scenario.title,
      label: c.label,
      required: `${ctx.subject} RSS growth <= 1.15x lru-cache's`,
      measured: `${fmt1(mine / MiB)} vs ${fmt1(ref / MiB)} MiB: ${ctx.fmt.ratio(ratio)}`,
      pass: Number.isFinite(ratio) && ratio <= 1.15,
    }]
  },
}

const fmt1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a')
