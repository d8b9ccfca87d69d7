'use strict'
// Slow database: a closed loop of getOrSet calls over Zipf-distributed keys whose loader is a
// simulated database (50 ms per load, 1 % of loads throw), with a ttl short enough (2 s) that
// entries expire several times during the run. Compares freshness off (every system's
// default) with grace + eager refresh (issue 12) and bentocache's grace. Measures throughput,
// read latency, the latency of hot-key reads against L1 hits measured in the same run, loader
// calls, loader errors that reached a caller, and answers older than the ttl.
//
// A case is a freshness setting of the systems it names (`systems` of the case); run.js runs
// a case only for those. Should a run of another system reach `run()` anyway, it answers with
// a skipped run, which the report leaves out.

const { nowMs, sleep, percentile, maxOf } = require('../lib/clock.js')
const { makeRevision, prng, zipfSampler } = require('../lib/workload.js')
const { redisCpuMs } = require('../lib/measure.js')

/** Message of the simulated database's failures: a rejection carrying it is a loader error. */
const DB_ERROR = 'slowdb: simulated database error'

/** Whether `e` (or what it wraps: bentocache's E_FACTORY_ERROR has `cause`) is the database's error. */
function isDbError(e) {
  for (let x = e, depth = 0; x && depth < 4; x = x.cause, depth++) {
    if (x.slowDb === true || x.message === DB_ERROR) return true
  }
  return false
}

/** mlc's freshness counters (issue 12), shown under the table when the build has them. */
const FRESHNESS_COUNTERS = ['staleServed', 'softTimeouts', 'failSafeActivations', 'backgroundRefreshes', 'backgroundRefreshFailures']
const SHOWN_COUNTERS = ['loaderCalls', 'loaderErrors', ...FRESHNESS_COUNTERS, 'l1Hits', 'l1Misses', 'l2Hits', 'l2Misses', 'lockWaits', 'l1Expirations']

/** A run of a system the case does not name (see `cases`). */
function skipped(reason) {
  return {
    ops: 0, ms: NaN, cpuUserMs: NaN, cpuSystemMs: NaN, mainThreadCpuMs: NaN, redisCpuMs: NaN,
    truncated: false, problems: [], metrics: { skipped: reason },
  }
}

/**
 * The call the scenario makes for `variant` of `system`: `(key, loader, ttl) -> Promise`.
 * mlc takes the freshness options per call (`getOrSet(key, loader, { ttl, ...options })`);
 * bentocache's adapter passes only ttl and tags, so its variant calls its own
 * `getOrSet({ key, factory, ttl, ...options })` (ttl in ms).
 */
function callFor(sys, name, variant) {
  const options = variant.options || {}
  if (name === 'bentocache' && Object.keys(options).length) {
    const bento = sys.raw
    return (key, loader, ttl) => bento.getOrSet({ key, factory: () => loader(key), ttl: ttl * 1000, ...options })
  }
  if (name === 'mlc') return (key, loader, ttl) => sys.getOrSet(key, loader, { ttl, ...options })
  return (key, loader, ttl) => sys.getOrSet(key, loader, { ttl })
}

module.exports = {
  id: 'slowdb',
  title: 'Slow database (grace, eager refresh)',

  /** @param {{ quick: boolean }} o */
  config({ quick }) {
    return {
      keys: 10000,
      s: 1.0,
      // the top 1 % of the ranks: about half of the reads with s = 1 over 10 000 keys
      hotKeys: 100,
      // reads of keys cached for an hour and loaded in the warm-up: L1 hits under the same load
      refKeys: 16,
      refShare: 0.05,
      loaderMs: 50,
      failShare: 0.01,
      ttl: 2,
      refTtl: 3600,
      // the grace of the freshness variants: an error on a key served less than ttl + grace
      // before the call started is an error "while a graced value existed", for every row
      grace: 30,
      // an answer older than ttl + this counts as older than the ttl (the write to the cache
      // follows the loader's return by a little)
      ageSlackMs: 100,
      inflight: 64,
      l1MaxEntries: 10000 + 1024,
      warmMs: quick ? 500 : 1000,
      durationMs: quick ? 2500 : 5000,
      maxReads: 2000000,
      repeats: 1,
      flushBeforeRun: true,
      jobTimeoutMs: 60000,
    }
  },

  /**
   * One case per freshness setting; `systems` names the systems it runs and how (the others
   * are skipped). mlc's options are per call (constructor defaults would be the same).
   */
  cases() {
    return [
      {
        id: 'off',
        label: 'freshness off',
        systems: {
          mlc: { text: '`{ ttl: 2 }` (no grace, no eager refresh: today\'s behaviour)' },
          article: { text: 'cache-aside `get`, loader, `set` with `{ ttl: 2 }` (node-cache\'s stdTTL 60 s in L1: the article passes the ttl to Redis only)' },
        },
      },
      {
        id: 'eager',
        label: 'grace + eager refresh',
        freshness: true,
        systems: {
          mlc: { text: '`{ ttl: 2, grace: 30, eagerRefresh: 0.5 }`', options: { grace: 30, eagerRefresh: 0.5 } },
        },
      },
      {
        id: 'swr',
        label: 'grace + stale-while-revalidate',
        freshness: true,
        systems: {
          mlc: { text: '`{ ttl: 2, grace: 30, eagerRefresh: 0.5, softTimeout: 0 }`', options: { grace: 30, eagerRefresh: 0.5, softTimeout: 0 } },
          bentocache: { text: '`getOrSet({ key, factory, ttl: 2000, grace: \'30s\', graceBackoff: \'5s\', timeout: 0 })` (its soft timeout 0 is its default with grace: stale-while-revalidate; it has no eager refresh)', options: { grace: '30s', graceBackoff: '5s', timeout: 0 } },
        },
      },
    ]
  },

  method(cfg) {
    const rows = this.cases().flatMap((c) => Object.entries(c.systems).map(([name, v]) => `**${c.label}**, \`${name}\`: ${v.text}`))
    return [
      `One process per run (Redis flushed before it), ${cfg.inflight} async workers in a closed loop of \`getOrSet\` calls. Keys are drawn from a Zipf distribution (s = ${cfg.s})`,
      `over ${cfg.keys.toLocaleString('en-US')} keys; the loader is a simulated database: it answers after **${cfg.loaderMs} ms** (a timer) with the key's 1 KiB value,`,
      `and **${cfg.failShare * 100} %** of its calls throw after that time instead. Every entry is written with **ttl ${cfg.ttl} s**, so entries expire during the run.`,
      `${cfg.warmMs / 1000} s of warm-up (not counted), then **${cfg.durationMs / 1000} s measured**; one repeat by default (the scenario takes about 35 s), \`--repeats\` for more.`,
      `**Hot keys**: the ${cfg.hotKeys} most popular (the top ${((cfg.hotKeys / cfg.keys) * 100).toFixed(0)} %, about half of the reads).`,
      `**L1-hit reference**: ${(cfg.refShare * 100).toFixed(0)} % of the calls read one of ${cfg.refKeys} other keys, cached for ${cfg.refTtl} s and first read in the warm-up, whose loader never fails:`,
      'L1 hits of the same system in the same process under the same load, the basis of the hot-key target (the L1 hit scenario measures hits without the loads around them).',
      '**Errors seen by callers**: calls that rejected with the database\'s error (over the whole run; one loader error reaches every caller waiting on it);',
      `**with a graced value**: of those, calls on a key some earlier call had been answered for less than ttl + ${cfg.grace} s before (the grace of the freshness variants), i.e. a value a cache with grace could have served.`,
      `**Older than ttl**: answers whose value had been loaded more than ttl + ${cfg.ageSlackMs} ms before (the value carries its load time).`,
      'Loader calls: started in the measured window, per 1,000 reads of it. Latency: every read started in the measured window, the rejected ones included.',
      'Systems and settings:', rows.join('; ') + '.',
      'Targets (mlc, each freshness case): p99 of hot-key reads at most 2x the p99 of the L1-hit reference, and no loader error reaching a caller while a graced value existed.',
    ].join(' ')
  },

  /**
   * @param {{ system: any, redisUrl: string, prefix: string, cfg: any, caseId: string, log: (s: string) => void }} job
   */
  async run({ system, redisUrl, prefix, cfg, caseId, log }) {
    const c = this.cases().find((x) => x.id === caseId)
    if (!c) throw new Error(`slowdb: unknown case ${caseId}`)
    const variant = c.systems[system.name]
    if (!variant) return skipped(`not in the "${c.label}" case`)
    const sys = system.create(redisUrl, prefix, { l1MaxEntries: cfg.l1MaxEntries })
    try {
      await sys.get('bench:absent')
      if (c.freshness && system.name === 'mlc') {
        const st = sys.stats()
        if (!('staleServed' in st)) {
          throw new Error('this build of multi-level-cache has no freshness options (stats() has no staleServed): grace and eagerRefresh would be ignored')
        }
      }
      return await this.measure(sys, callFor(sys, system.name, variant), cfg, log)
    } finally {
      await sys.close()
    }
  },

  async measure(sys, call, cfg, log) {
    const keyRnd = prng(0x51d8)
    const failRnd = prng(0xdb0)
    const zipf = zipfSampler(cfg.keys, cfg.s, keyRnd)
    const cap = cfg.maxReads
    const lat = new Float64Array(cap)
    const hotLat = new Float64Array(cap)
    const refLat = new Float64Array(cap)
    let reads = 0
    let hotReads = 0
    let refReads = 0
    // the last time a call on each key was answered with its value (0: never)
    const lastOkAt = new Float64Array(cfg.keys)
    let loaderCalls = 0
    let loaderCallsMeasured = 0
    let loaderFailures = 0
    let refLoads = 0
    let refLoadsMeasured = 0
    let callerErrors = 0
    let callerErrorsMeasured = 0
    let errorsWithGraced = 0
    let otherErrors = 0
    let firstOtherError
    let wrong = 0
    let olderThanTtl = 0
    let maxAgeMs = 0
    let answered = 0
    let truncated = false
    const graceMs = (cfg.ttl + cfg.grace) * 1000
    const ageLimitMs = cfg.ttl * 1000 + cfg.ageSlackMs

    const t0 = nowMs()
    const measureFrom = t0 + cfg.warmMs
    const endAt = measureFrom + cfg.durationMs
    const load = async (i) => {
      loaderCalls++
      if (nowMs() >= measureFrom) loaderCallsMeasured++
      await sleep(cfg.loaderMs)
      if (failRnd() < cfg.failShare) {
        loaderFailures++
        const e = new Error(DB_ERROR)
        e.slowDb = true
        throw e
      }
      const v = makeRevision(i, 1)
      v.at = nowMs()
      return v
    }
    const loadRef = async (j) => {
      refLoads++
      if (nowMs() >= measureFrom) refLoadsMeasured++
      await sleep(cfg.loaderMs)
      return makeRevision(cfg.keys + j, 1)
    }

    const cpu0 = process.cpuUsage()
    const redis0 = redisCpuMs()
    const worker = async () => {
      for (;;) {
        const start = nowMs()
        if (start >= endAt) break
        if (reads >= cap) { truncated = true; break }
        const measured = start >= measureFrom
        if (keyRnd() < cfg.refShare) {
          const j = Math.floor(keyRnd() * cfg.refKeys)
          try {
            const v = await call(`ref:${j}`, () => loadRef(j), cfg.refTtl)
            if (!v || v.id !== cfg.keys + j) wrong++
          } catch (e) {
            otherErrors++
            if (!firstOtherError) firstOtherError = String((e && e.message) || e).slice(0, 200)
          }
          if (measured) refLat[refReads++] = nowMs() - start
          continue
        }
        const i = zipf()
        // the last answer on this key before this call started (a value a cache with grace holds)
        const okBefore = lastOkAt[i]
        try {
          const v = await call(`db:${i}`, () => load(i), cfg.ttl)
          const end = nowMs()
          if (!v || v.id !== i) wrong++
          else {
            answered++
            lastOkAt[i] = end
            const age = end - v.at
            if (age > ageLimitMs) olderThanTtl++
            if (age > maxAgeMs) maxAgeMs = age
          }
        } catch (e) {
          if (isDbError(e)) {
            callerErrors++
            if (measured) callerErrorsMeasured++
            if (okBefore > 0 && start - okBefore <= graceMs) errorsWithGraced++
          } else {
            otherErrors++
            if (!firstOtherError) firstOtherError = String((e && e.message) || e).slice(0, 200)
          }
        }
        if (measured) {
          const d = nowMs() - start
          lat[reads++] = d
          if (i < cfg.hotKeys) hotLat[hotReads++] = d
        }
      }
    }
    const workers = []
    for (let w = 0; w < cfg.inflight; w++) workers.push(worker())
    await Promise.all(workers)
    const cpu = process.cpuUsage(cpu0)
    const redisCpu = redisCpuMs() - redis0
    // the last loads (and background refreshes) finish within the loader's time
    await sleep(cfg.loaderMs * 2)
    const stats = sys.stats ? sys.stats() : undefined

    const r = lat.subarray(0, reads)
    const h = hotLat.subarray(0, hotReads)
    const ref = refLat.subarray(0, refReads)
    const problems = []
    if (wrong) problems.push(`${wrong} calls returned another key's value`)
    if (otherErrors) problems.push(`${otherErrors} calls rejected with something other than the database's error (first: ${firstOtherError})`)
    if (truncated) problems.push(`stopped at the bound of ${cap} reads`)
    if (refLoadsMeasured) problems.push(`${refLoadsMeasured} loads of the L1-hit reference keys during the measured part (expected none: they are cached for ${cfg.refTtl} s)`)
    const metrics = {
      reads, throughput: reads / (cfg.durationMs / 1000),
      p50: percentile(r, 50), p99: percentile(r, 99),
      hotReads, hotP50: percentile(h, 50), hotP99: percentile(h, 99),
      refReads, refP50: percentile(ref, 50), refP99: percentile(ref, 99),
      loaderCalls: loaderCallsMeasured, loaderCallsAll: loaderCalls, loaderFailures, refLoads,
      loaderPer1000: (loaderCallsMeasured / reads) * 1000,
      callerErrors, callerErrorsMeasured, errorsWithGraced,
      answered, olderThanTtl, maxAgeMs,
      clientCpuUsPerRead: ((cpu.user + cpu.system) / 1000) * 1000 / (reads + refReads),
      // counters of the instance, made for this run: the whole run
      stats: stats ? Object.fromEntries(Object.entries(stats).filter(([k, v]) => typeof v === 'number' && !k.endsWith('Ratio'))) : undefined,
    }
    metrics.hotOverRef = metrics.hotP99 / metrics.refP99
    log(`${reads} reads, ${metrics.throughput.toFixed(0)}/s, p99 ${metrics.p99.toFixed(2)} ms, hot p99 ${metrics.hotP99.toFixed(3)} ms vs L1 ${metrics.refP99.toFixed(3)} ms, ` +
      `loader ${loaderCalls} (${loaderFailures} failed), caller errors ${callerErrors} (${errorsWithGraced} with a graced value), older than ttl ${olderThanTtl}`)
    return {
      ops: reads + refReads,
      ms: cfg.durationMs,
      cpuUserMs: cpu.user / 1000,
      cpuSystemMs: cpu.system / 1000,
      mainThreadCpuMs: NaN,
      redisCpuMs: redisCpu,
      truncated,
      problems,
      metrics,
    }
  },

  runSummary(run) {
    const m = run.metrics
    if (m.skipped) return `skipped (${m.skipped})`
    return `${Math.round(m.throughput).toLocaleString('en-US')} reads/s, p50 ${fmtLat(m.p50)} / p99 ${fmtLat(m.p99)} ms, hot p99 ${fmtLat(m.hotP99)} ms vs L1 hit p99 ${fmtLat(m.refP99)} ms (${m.hotOverRef.toFixed(2)}x), ` +
      `loader ${m.loaderCalls} (${m.loaderPer1000.toFixed(1)}/1000 reads), caller errors ${m.callerErrors} (${m.errorsWithGraced} with a graced value), older than ttl ${m.olderThanTtl}`
  },

  /** The rows of the table: [case, system, runs] for every system a case runs. */
  rows(s, ctx) {
    const out = []
    for (const c of s.cases) {
      for (const name of ctx.names) {
        if (!c.systems[name]) continue
        out.push([c, name, ctx.okRuns(c.id, name).filter((r) => !r.metrics.skipped)])
      }
    }
    return out
  },

  report(s, ctx) {
    const { fmt } = ctx
    const out = ['| Setting | System | reads/s | p50 / p99 of reads, ms | p99 of hot-key reads, ms | p99 of L1 hits (reference), ms | hot / L1 hit | loader calls (per 1,000 reads) | loads failed / errors seen by callers (with a graced value) | answers older than ttl (share; max age, s) | target (mlc) |',
      '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|']
    const med = (runs, f) => ctx.summary(runs.map(f)).median
    const sum = (runs, f) => runs.reduce((a, r) => a + f(r), 0)
    for (const [c, name, runs] of this.rows(s, ctx)) {
      if (!runs.length) { out.push(`| ${c.label} | ${name} | failed | | | | | | | | |`); continue }
      const tp = ctx.summary(runs.map((r) => r.metrics.throughput))
      const range = runs.length > 1 ? ` (${fmt.int(tp.min)} - ${fmt.int(tp.max)})` : ''
      const answered = sum(runs, (r) => r.metrics.answered)
      const older = sum(runs, (r) => r.metrics.olderThanTtl)
      const maxAge = Math.max(...runs.map((r) => r.metrics.maxAgeMs))
      const target = name === ctx.subject && c.freshness
        ? this.targetRows(s, ctx).filter((t) => t.caseId === c.id).map((t) => `${t.short}: ${fmt.pass(t.pass)}`).join('; ')
        : ''
      out.push(`| ${c.label} | ${name} | ${fmt.int(tp.median)}${range} | ${fmtLat(med(runs, (r) => r.metrics.p50))} / ${fmtLat(med(runs, (r) => r.metrics.p99))} | ` +
        `${fmtLat(med(runs, (r) => r.metrics.hotP99))} | ${fmtLat(med(runs, (r) => r.metrics.refP99))} | ${fmt.ratio(med(runs, (r) => r.metrics.hotOverRef))} | ` +
        `${fmt.int(med(runs, (r) => r.metrics.loaderCalls))} (${med(runs, (r) => r.metrics.loaderPer1000).toFixed(1)}) | ` +
        `${fmt.int(sum(runs, (r) => r.metrics.loaderFailures))} / ${fmt.int(sum(runs, (r) => r.metrics.callerErrors))} (${fmt.int(sum(runs, (r) => r.metrics.errorsWithGraced))}) | ` +
        `${fmt.int(older)} (${answered ? ((older / answered) * 100).toFixed(1) : 'n/a'}%; ${(maxAge / 1000).toFixed(1)}) | ${target} |`)
    }
    out.push('', 'Throughput and latency: medians over the repeats; loads failed, errors and old answers: summed over the repeats (the whole run, warm-up included).',
      'Loads failed counts the simulated database\'s failures (background refreshes included); errors seen by callers counts the calls that rejected with one.')
    const leftOut = ctx.names.filter((n) => !s.cases.some((c) => c.systems[n]))
    if (leftOut.length) out.push(`Not in this scenario: ${leftOut.join(', ')} (the issue's peers for it are bentocache and the article).`)
    for (const [c, name, runs] of this.rows(s, ctx)) {
      const st = runs.length && runs[0].metrics.stats
      if (!st || !('loaderCalls' in st)) continue
      out.push('', `${name}, ${c.label}, counters of repeat 1 (warm-up included): ${SHOWN_COUNTERS.filter((k) => k in st).map((k) => `${k} ${fmt.int(st[k])}`).join(', ')}.`)
    }
    return out
  },

  targetRows(s, ctx) {
    const rows = []
    for (const c of s.cases) {
      if (!c.freshness || !c.systems[ctx.subject]) continue
      const runs = ctx.okRuns(c.id, ctx.subject).filter((r) => !r.metrics.skipped)
      const ratio = ctx.summary(runs.map((r) => r.metrics.hotOverRef)).median
      const hot = ctx.summary(runs.map((r) => r.metrics.hotP99)).median
      const ref = ctx.summary(runs.map((r) => r.metrics.refP99)).median
      const graced = runs.reduce((a, r) => a + r.metrics.errorsWithGraced, 0)
      const errors = runs.reduce((a, r) => a + r.metrics.callerErrors, 0)
      rows.push({
        caseId: c.id, label: c.label, short: 'hot p99 <= 2x L1 hit',
        required: 'p99 of hot-key reads <= 2x the p99 of L1 hits in the same run (median over the runs)',
        measured: runs.length
          ? `${ctx.fmt.ratio(ratio)}${runs.length > 1 ? ` (median of the runs' ${runs.map((r) => ctx.fmt.ratio(r.metrics.hotOverRef)).join(', ')})` : ''}; p99 ${fmtLat(hot)} vs ${fmtLat(ref)} ms`
          : 'no run',
        pass: runs.length ? Number.isFinite(ratio) && ratio <= 2 : false,
      })
      rows.push({
        caseId: c.id, label: c.label, short: 'no error with a graced value',
        required: 'no loader error reaches a caller while a graced value exists',
        measured: runs.length ? `${graced} of ${errors} caller errors with a graced value` : 'no run',
        pass: runs.length > 0 && graced === 0,
      })
    }
    return rows
  },

  targets(s, ctx) {
    return this.targetRows(s, ctx).map((t) => ({ scenario: s.scenario.title, label: t.label, required: t.required, measured: t.measured, pass: t.pass }))
  },
}

function fmtLat(x) {
  if (!Number.isFinite(x)) return 'n/a'
  return x < 1 ? x.toFixed(3) : x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : x.toFixed(0)
}
