'use strict'
// Redis Cluster: the L2 hit, miss + load and Zipf mix workloads against a private 3-primary
// cluster (run.js starts it before this scenario and stops it after), for the systems that can
// run on one. Each case is the single-server scenario's own code (l2-hit.js, miss-load.js,
// zipf-mix.js) with every instance created on the cluster (`opts.cluster`: seed URLs; see
// systems/index.js `onCluster`). Besides throughput it reports how the commands of the timed
// part spread over the primaries (INFO commandstats deltas): a cache whose keys share one hash
// tag sends everything to one primary.

const l2 = require('./l2-hit.js')
const miss = require('./miss-load.js')
const zipf = require('./zipf-mix.js')
const { commandProbe } = require('../lib/cluster.js')

const SUB = { l2, miss, zipf }

/** Per-primary percentages of `calls` (summed over runs), in the order of `urls`. */
function shares(runs, urls) {
  const sums = urls.map(() => 0)
  for (const r of runs) {
    const per = r.metrics && r.metrics.perPrimary
    if (!per) continue
    for (const { url, calls } of per) {
      const i = urls.indexOf(url)
      if (i >= 0) sums[i] += calls
    }
  }
  const total = sums.reduce((a, b) => a + b, 0)
  return { total, pct: sums.map((x) => (total ? (x / total) * 100 : NaN)) }
}

/** The primaries' URLs seen in a set of runs, in first-seen order. */
function primaryUrls(runs) {
  const urls = []
  for (const r of runs) for (const { url } of (r.metrics && r.metrics.perPrimary) || []) if (!urls.includes(url)) urls.push(url)
  return urls
}

const pctText = (pct) => pct.map((x) => (Number.isFinite(x) ? x.toFixed(0) : 'n/a')).join(' / ') + ' %'

module.exports = {
  id: 'cluster',
  title: 'Redis Cluster (3 primaries): L2 hit, miss + load, Zipf mix',
  /** run.js starts such a cluster (no replicas) for this scenario and passes its seed URLs as `cfg.cluster`. */
  cluster: { primaries: 3 },

  /** @param {{ quick: boolean, args: Record<string, string> }} o */
  config({ quick, args }) {
    return {
      l2: l2.config({ quick, args }),
      miss: miss.config({ quick, args }),
      // shorter than the single-server Zipf run (2 s + 10 s) to keep this scenario at ~3 minutes
      zipf: { ...zipf.config({ quick, args }), warmMs: quick ? 1000 : 2000, durationMs: quick ? 2000 : 6000 },
      repeats: quick ? 1 : 2,
      // every run starts on an empty cluster (FLUSHALL on each primary): the L2 case writes its
      // keys in the run itself, before its fresh reader instance
      flushBeforeRun: true,
      jobTimeoutMs: quick ? 60000 : 120000,
    }
  },

  cases() {
    return [
      { id: 'l2', label: 'L2 hit (fresh instance), 64 in flight', scenario: 'l2', subCase: 'c64' },
      { id: 'miss', label: 'miss + load (`getOrSet`, loader 2 ms), 64 in flight', scenario: 'miss', subCase: 'c64' },
      { id: 'zipf', label: 'Zipf mix, 2 processes x 64 in flight', scenario: 'zipf', subCase: 'mix' },
    ]
  },

  method(cfg) {
    return [
      'A private Redis Cluster of 3 primaries and no replicas (redis-server processes on 127.0.0.1, joined with `redis-cli --cluster create`; `bench/lib/cluster.js`),',
      'started for this scenario only and flushed before every run; each system connects with its own cluster client given the seed URLs of the three nodes.',
      `L2 hit: each run writes ${cfg.l2.keys.toLocaleString('en-US')} keys (and ${cfg.l2.warmKeys.toLocaleString('en-US')} warm-up keys) with one instance, closes it, then runs the \`l2\` scenario's 64-in-flight case (fresh instance, every key read once).`,
      `Miss + load: the \`miss\` scenario (${cfg.miss.keys.toLocaleString('en-US')} cold keys, loader ${cfg.miss.loaderMs} ms, 64 in flight).`,
      `Zipf mix: the \`zipf\` scenario with ${cfg.zipf.warmMs / 1000} s of warm-up and **${cfg.zipf.durationMs / 1000} s measured** (shortened for the time budget).`,
      '"Per-primary share": the commands each primary executed during the timed part (INFO commandstats before and after it, summed over the repeats; the INFO reads left out), in percent of all of them;',
      'an even spread is about 33 / 33 / 33 %. "Commands per op": all of them over the operations of the timed part.',
      '"vs best peer": median throughput over the median of the fastest other system in that case.',
    ].join(' ')
  },

  /**
   * @param {{ system: any, redisUrl: string, prefix: string, cfg: any, caseId: string, log: (s: string) => void }} job
   *   `system` is already wired to the cluster (worker.js, from `cfg.cluster`)
   */
  async run({ system, redisUrl, prefix, cfg, caseId, log }) {
    const c = this.cases().find((x) => x.id === caseId)
    if (!c) throw new Error(`cluster: unknown case ${caseId}`)
    if (!cfg.cluster) throw new Error('cluster: no cluster (cfg.cluster) given by run.js')
    const sub = SUB[c.scenario]
    const subCfg = { ...cfg[c.scenario], cluster: cfg.cluster }
    const probe = commandProbe(cfg.cluster)
    try {
      if (c.scenario === 'l2') await sub.prepare({ system, redisUrl, prefix, cfg: subCfg })
      const result = await sub.run({ system, redisUrl, prefix, cfg: subCfg, caseId: c.subCase, log, probe })
      const perPrimary = probe.result()
      const problems = [...(result.problems || [])]
      if (!perPrimary) problems.push('the per-primary command counters were not read')
      return { ...result, problems, metrics: { ...(result.metrics || {}), perPrimary } }
    } finally {
      probe.close()
    }
  },

  runSummary(run) {
    const per = run.metrics && run.metrics.perPrimary
    const sh = per ? shares([run], per.map((p) => p.url)) : undefined
    const z = run.metrics && Number.isFinite(run.metrics.stale) ? `, ${run.metrics.stale} stale` : ''
    return `${Math.round(run.opsPerSec).toLocaleString('en-US')} ops/s, primaries ${sh ? pctText(sh.pct) : 'n/a'}${sh ? `, ${(sh.total / run.ops).toFixed(2)} cmd/op` : ''}${z}`
  },

  report(s, ctx) {
    const { fmt } = ctx
    const out = []
    const all = []
    for (const c of s.cases) for (const name of ctx.names) all.push(...ctx.okRuns(c.id, name))
    const urls = primaryUrls(all)
    const ports = urls.map((u) => new URL(u).port).join(' / ')
    out.push(`| Case | System | ops/s (median, min - max) | vs best peer | per-primary share of commands${ports ? ` (${ports})` : ''} | commands per op | notes |`,
      '|---|---|---:|---:|---:|---:|---|')
    for (const c of s.cases) {
      const median = (name) => ctx.summary(ctx.okRuns(c.id, name).map((r) => r.opsPerSec)).median
      let best
      for (const name of ctx.names) {
        if (name === ctx.subject) continue
        const m = median(name)
        if (Number.isFinite(m) && (!best || m > best.m)) best = { name, m }
      }
      for (const name of ctx.names) {
        const runs = ctx.okRuns(c.id, name)
        const failedRuns = ((s.runs[c.id] || {})[name] || []).filter((r) => r.error)
        if (!runs.length) {
          const why = failedRuns.length ? failedRuns[0].error.split('\n')[0].slice(0, 200) : 'no run'
          out.push(`| ${c.label} | ${name} | failed | | | | ${why.replace(/\|/g, '\\|')} |`)
          continue
        }
        const tp = ctx.summary(runs.map((r) => r.opsPerSec))
        const vs = best ? (name === best.name ? '1.00x (best peer)' : `${fmt.ratio(tp.median / best.m)} ${best.name}`) : 'n/a'
        const sh = shares(runs, urls)
        const ops = runs.reduce((a, r) => a + r.ops, 0)
        const notes = []
        if (failedRuns.length) notes.push(`${failedRuns.length} run(s) failed`)
        if (c.scenario === 'zipf') {
          const stale = runs.reduce((a, r) => a + (r.metrics.stale || 0), 0)
          notes.push(`loader calls per 1,000 ops ${ctx.summary(runs.map((r) => r.metrics.loaderPer1000)).median.toFixed(2)}`, `stale reads ${fmt.int(stale)}`)
        }
        out.push(`| ${c.label} | ${name} | ${fmt.int(tp.median)} (${fmt.int(tp.min)} - ${fmt.int(tp.max)}) | ${vs} | ${pctText(sh.pct)} | ${sh.total ? (sh.total / ops).toFixed(2) : 'n/a'} | ${notes.join('; ')} |`)
      }
    }
    out.push('')
    const left = (s.leftOut || []).filter((x) => x.reason)
    if (left.length) {
      out.push('Not run on the cluster:', '')
      for (const x of left) out.push(`- \`${x.name}\`: ${x.reason}`)
      out.push('')
    }
    const how = (s.clusterHow || []).filter((x) => x.how)
    if (how.length) {
      out.push('How each system connects to the cluster:', '')
      for (const x of how) out.push(`- \`${x.name}\`: ${x.how}`)
    }
    return out
  },
}
