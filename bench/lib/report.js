'use strict'
// Markdown for the results: machine, systems, method, targets, one section per scenario,
// checks, raw runs. Throughput scenarios (l1, l2, miss) share one table layout; scenarios
// with other measurements (stampede, propagation, outage, zipf, memory) render their own
// table (`scenario.report(res, ctx)`) and targets (`scenario.targets(res, ctx)`).

const { renderLimits, limitTargets } = require('../limits.js')
const { summary } = require('./stats.js')
const plan = require('../plan.js')

const fmtInt = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : 'n/a')
const fmtRatio = (x) => (Number.isFinite(x) ? (x >= 100 ? `${x.toFixed(0)}x` : `${x.toFixed(2)}x`) : 'n/a')
const fmtPct = (x) => (Number.isFinite(x) ? `${(x * 100).toFixed(0)}%` : 'n/a')
const fmtUs = (x) => (Number.isFinite(x) ? (x < 10 ? x.toFixed(2) : x.toFixed(1)) : 'n/a')
const fmtMs = (x) => (Number.isFinite(x) ? (x < 1 ? x.toFixed(3) : x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : x.toFixed(0)) : 'n/a')
/** PASS, FAIL, or n/a (null: the target could not be measured in this run, e.g. a system not selected). */
const passText = (pass) => (pass === null || pass === undefined ? 'n/a' : pass ? 'PASS' : '**FAIL**')

/**
 * @typedef {{ opsPerSec: number, cpuUsPerOp: number, ops: number, ms: number, truncated: boolean, problems: string[], error?: string, metrics?: any }} Run
 * @typedef {{ scenario: any, cfg: any, cases: any[], systems: string[], repeats: number, runs: Record<string, Record<string, Run[]>>, prepareProblems: string[] }} ScenarioResult
 * @typedef {{ scenario: string, label: string, required: string, measured: string, pass: boolean }} TargetRow
 */

/** Runs of `name` in case `caseId` that completed. */
function okRuns(s, caseId, name) {
  return ((s.runs[caseId] || {})[name] || []).filter((r) => !r.error)
}

/** Ratio of median throughputs (a over b) and the paired ratios (same repeat). */
function ratioOf(caseRuns, a, b) {
  const ra = (caseRuns[a] || []).filter((r) => !r.error && Number.isFinite(r.opsPerSec))
  const rb = (caseRuns[b] || []).filter((r) => !r.error && Number.isFinite(r.opsPerSec))
  const sa = summary(ra.map((r) => r.opsPerSec))
  const sb = summary(rb.map((r) => r.opsPerSec))
  const paired = []
  const byRepeatB = new Map(rb.map((r) => [r.repeat, r.opsPerSec]))
  for (const r of ra) if (byRepeatB.has(r.repeat)) paired.push(r.opsPerSec / byRepeatB.get(r.repeat))
  return { ratio: sa.median / sb.median, paired: summary(paired) }
}

/** Throughput targets of a case: bench/plan.js, else the case's `targets`, else its legacy `target.min` against the baseline. */
function throughputTargets(s, c, baseline) {
  const fromPlan = plan[s.scenario.id] && plan[s.scenario.id].targets && plan[s.scenario.id].targets[c.id]
  if (fromPlan) return fromPlan
  if (c.targets) return c.targets
  if (c.target) return [{ vs: baseline, min: c.target.min }]
  return []
}

/**
 * @param {{ results: ScenarioResult[], subject: string, baseline: string }} r
 * @returns {TargetRow[]}
 */
function targetRows(r) {
  const rows = []
  for (const s of r.results) {
    if (s.scenario.targets) {
      rows.push(...s.scenario.targets(s, ctxOf(r, s)))
      continue
    }
    for (const c of s.cases) {
      for (const t of throughputTargets(s, c, r.baseline)) {
        const required = `${r.subject} >= ${t.min}x ${t.vs} (ops/s)`
        if (!s.systems.includes(t.vs) || !s.systems.includes(r.subject)) {
          rows.push({ scenario: s.scenario.title, label: c.label, required, measured: `not measured (\`${s.systems.includes(t.vs) ? r.subject : t.vs}\` not selected)`, pass: null })
          continue
        }
        const { ratio, paired } = ratioOf(s.runs[c.id], r.subject, t.vs)
        const pass = Number.isFinite(ratio) && ratio >= t.min
        rows.push({
          scenario: s.scenario.title,
          label: c.label,
          required,
          measured: `${fmtRatio(ratio)} (paired runs ${fmtRatio(paired.min)} - ${fmtRatio(paired.max)})`,
          pass,
        })
      }
    }
  }
  rows.push(...limitTargets(r.limits, r.results, r.subject))
  return rows
}

/** What a scenario's own report/targets functions get. */
function ctxOf(r, s) {
  return {
    subject: r.subject,
    baseline: r.baseline,
    names: s.systems,
    okRuns: (caseId, name) => okRuns(s, caseId, name),
    fmt: { int: fmtInt, ratio: fmtRatio, pct: fmtPct, ms: fmtMs, us: fmtUs, pass: passText },
    summary,
  }
}

function throughputTable(r, s) {
  const out = []
  out.push(`| Case | System | ops/s (median) | min - max | spread | CPU µs/op: JS thread / process / redis | vs ${r.baseline} | targets (${r.subject}) |`,
    '|---|---|---:|---:|---:|---:|---:|---|')
  for (const c of s.cases) {
    const caseRuns = s.runs[c.id]
    const targets = throughputTargets(s, c, r.baseline)
    for (const name of s.systems) {
      const runs = (caseRuns[name] || []).filter((x) => !x.error)
      const failed = (caseRuns[name] || []).length - runs.length
      const st = summary(runs.map((x) => x.opsPerSec))
      const cpu = summary(runs.map((x) => x.cpuUsPerOp))
      const main = summary(runs.map((x) => x.mainUsPerOp))
      const rcpu = summary(runs.map((x) => x.redisUsPerOp))
      const vs = name === r.baseline ? '1.00x' : fmtRatio(ratioOf(caseRuns, name, r.baseline).ratio)
      let target = ''
      if (name === r.subject) {
        target = targets.filter((t) => s.systems.includes(t.vs)).map((t) => {
          const { ratio } = ratioOf(caseRuns, r.subject, t.vs)
          return `>= ${t.min}x ${t.vs}: ${fmtRatio(ratio)} ${passText(Number.isFinite(ratio) && ratio >= t.min)}`
        }).join('; ')
      }
      const failNote = failed ? ` (${failed} failed)` : ''
      out.push(`| ${c.label} | ${name}${failNote} | ${fmtInt(st.median)} | ${fmtInt(st.min)} - ${fmtInt(st.max)} | ${fmtPct(st.spread)} | ${fmtUs(main.median)} / ${fmtUs(cpu.median)} / ${fmtUs(rcpu.median)} | ${vs} | ${target} |`)
    }
  }
  return out
}

function render(r) {
  const { info } = r
  const out = []
  out.push('# multi-level-cache benchmark', '')
  out.push(`Measured ${info.date} with \`node bench/run.js${r.argv.length ? ' ' + r.argv.join(' ') : ''}\`${r.quick ? ' (**quick smoke run: too short to trust the numbers**)' : ''}` +
    `${Number.isFinite(r.totalSeconds) ? `; the whole run took ${(r.totalSeconds / 60).toFixed(1)} min (${r.totalSeconds.toFixed(0)} s)` : ''}.`, '')
  out.push('| Machine | |', '|---|---|')
  out.push(`| CPU | ${info.cpu} |`)
  out.push(`| Cores | ${info.cores} |`)
  out.push(`| Memory | ${info.memGiB} GiB |`)
  out.push(`| OS | ${info.os} |`)
  out.push(`| Node | ${info.node} |`)
  out.push(`| redis-server | ${info.redis} (private instance on 127.0.0.1, no persistence) |`)
  out.push(`| multi-level-cache | ${info.mlc} |`)
  out.push(`| ioredis / node-cache | ${info.ioredis} / ${info.nodeCache} |`)
  if (info.packages) out.push(`| Other packages | ${Object.entries(info.packages).map(([k, v]) => `${k} ${v}`).join(', ')} |`)
  out.push(`| Load average at start / end | ${info.loadavg} / ${info.loadavgEnd || 'n/a'} |`)
  out.push(`| Repeats | ${r.results.map((s) => `${s.scenario.id} ${s.repeats}`).join(', ')} |`)
  out.push('')
  out.push('Systems:', '')
  for (const s of r.systems) out.push(`- \`${s.name}\`: ${s.description}`)
  out.push('')
  const withCaps = r.systems.filter((s) => s.capabilities)
  if (withCaps.length) {
    out.push('What each system can do, and how the benchmark maps its common interface (`get`, `set`, `getOrSet`, `del`, `invalidateTag`, `close`) onto it:', '')
    out.push('| System | getOrSet | tags | stampede protection | cross-process L1 invalidation |', '|---|---|---|---|---|')
    for (const s of withCaps) {
      const c = s.capabilities
      out.push(`| ${s.name} | ${c.getOrSet || ''} | ${c.tags || ''} | ${c.stampede || ''} | ${c.crossProcessL1Invalidation || ''} |`)
    }
    out.push('')
  }
  out.push('Method: every measured run is a fresh Node process (`bench/worker.js`) hosting one system, so systems never share',
    'JIT type feedback, heap or event loop (multi-process scenarios fork more processes of the same system from it). Runs are',
    'interleaved: for each repeat, each case, every system once, the order alternating between repeats (A B, B A, ...).',
    'Throughput is operations per second of wall time over the timed part; throughput tables give the median over the repeats',
    'with min - max, the spread ((max - min) / median), CPU time per operation (medians; user + system) of the client\'s',
    'JavaScript thread, of the whole client process (every thread) and of redis-server, and the ratio to the baseline (median',
    'over median). The JavaScript-thread figure comes from /proc in 10 ms ticks, so it is coarse for runs under a few hundred',
    'ms. Redis runs on the same machine and competes for the same 2 cores. Noise: /proc/stat gives the CPU the rest of the',
    'machine (not this benchmark, its worker and the processes it started, or redis-server) used during each run\'s worker',
    'process; a run during which that exceeded a quarter of a core is listed under Checks (other engineers may be running',
    'tests on this machine at the same time).', '')

  const targets = targetRows(r)
  if (targets.length) {
    out.push(`## Targets (${r.subject})`, '')
    out.push('Ratios are median over median of the repeats of one run of the benchmark. n/a: not measured in this run (a system not selected).', '')
    out.push('| Scenario | Case | Required | Measured | Result |', '|---|---|---|---|---|')
    for (const t of targets) out.push(`| ${t.scenario} | ${t.label} | ${t.required} | ${t.measured} | ${passText(t.pass)} |`)
    out.push('')
  }

  out.push(...renderLimits(r.limits, r.results))

  for (const s of r.results) {
    out.push(`## ${s.scenario.title}`, '')
    out.push(s.scenario.method(s.cfg), '')
    if (s.note) out.push(`Note: ${s.note}`, '')
    if (s.scenario.report) out.push(...[].concat(s.scenario.report(s, ctxOf(r, s))))
    else out.push(...throughputTable(r, s))
    out.push('')
  }

  const notes = []
  for (const s of r.results) {
    for (const p of s.prepareProblems || []) notes.push(`${s.scenario.id} prepare: ${p}`)
    for (const c of s.cases) {
      for (const name of s.systems) {
        for (const run of s.runs[c.id][name] || []) {
          const where = `${s.scenario.id}/${c.id}/${name} repeat ${run.repeat + 1}`
          if (run.error) notes.push(`${where}: run failed: ${run.error.split('\n')[0]}`)
          if (run.truncated) notes.push(`${where}: stopped at the time bound after ${run.ops} ops`)
          for (const p of run.problems || []) notes.push(`${where}: ${p}`)
        }
      }
    }
  }
  out.push('## Checks', '')
  if (notes.length === 0) out.push('Every run completed within its bounds; no miss, no unexpected L1 hit/miss, sampled values equal to those written.')
  else for (const n of notes) out.push(`- ${n}`)
  out.push('')

  out.push('<details><summary>Every run (in run order; other load in % of a core)</summary>', '')
  out.push('| Scenario | Case | System | per repeat |', '|---|---|---|---|')
  for (const s of r.results) {
    for (const c of s.cases) {
      for (const name of s.systems) {
        if (c.systems && !Object.prototype.hasOwnProperty.call(c.systems, name)) continue // not in this case
        const runs = s.runs[c.id][name] || []
        const cell = (x) => {
          if (x.error) return 'failed'
          const load = Number.isFinite(x.otherLoadPct) ? x.otherLoadPct.toFixed(0) : '?'
          const what = s.scenario.runSummary ? s.scenario.runSummary(x) : `${fmtInt(x.opsPerSec)} ops/s`
          return `${what} (${load}%)`
        }
        out.push(`| ${s.scenario.id} | ${c.id} | ${name} | ${runs.map(cell).join(', ')} |`)
      }
    }
  }
  out.push('', '</details>', '')
  return out.join('\n')
}

module.exports = { render, targetRows, fmtInt, fmtRatio, fmtMs }
