#!/usr/bin/env node
'use strict'
// Charts of a benchmark run, rendered from the results file bench/run.js writes (RESULTS.md):
// SVG files drawn by vega-lite + vega in Node (no browser, no canvas), and a "Charts" section
// with them inserted into the results file. bench/run.js calls `renderCharts(out)` at its end;
// alone: `node bench/charts.js [bench/RESULTS.md]`.
//
//   throughput.svg  operations per second per scenario, case and system (median, min - max)
//   latency.svg     latency percentiles: invalidation propagation, the Zipf mix, Redis killed
//   machine.svg     each system's CPU (client process + redis-server) as a share of the machine's cores
//
// The SVGs go to bench/charts/ for bench/RESULTS.md, to bench/charts.tmp/ for any other file.

const fs = require('node:fs')
const path = require('node:path')

const SUBJECT = 'mlc'
const BEGIN = '<!-- charts: written by bench/charts.js -->'
const END = '<!-- /charts -->'

// ---- the results file --------------------------------------------------------------------------

/** Sections (`## title`) of a markdown file, each with its tables as arrays of row objects. */
function parseResults(md) {
  const sections = []
  let current = { title: '', tables: [] }
  let table = null
  const body = md.replace(new RegExp(`${escape(BEGIN)}[\\s\\S]*?${escape(END)}\\n?`), '')
  for (const line of body.split('\n')) {
    const h = /^## (.+)$/.exec(line)
    if (h) {
      sections.push((current = { title: h[1].trim(), tables: [] }))
      table = null
      continue
    }
    if (!line.startsWith('|')) {
      table = null
      continue
    }
    const cells = line.slice(1, line.endsWith('|') ? -1 : undefined).split('|').map((c) => c.trim())
    if (table === null) {
      table = { header: cells, rows: [] }
      current.tables.push(table)
    } else if (!cells.every((c) => /^:?-+:?$/.test(c))) {
      table.rows.push(Object.fromEntries(table.header.map((h, i) => [h, cells[i] ?? ''])))
    }
  }
  const cores = /\| Cores \| (\d+) \|/.exec(md)
  return { sections, cores: cores ? Number(cores[1]) : null }
}

function escape(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

/** The numbers of a cell, in order ("33,965 (32,192 - 35,738)" -> [33965, 32192, 35738]). */
function numbers(cell) {
  return [...String(cell).matchAll(/-?\d[\d,]*(?:\.\d+)?/g)].map((m) => Number(m[0].replace(/,/g, '')))
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const column = (header, re) => header.find((h) => re.test(h))
const plain = (s) => s.replace(/`/g, '').replace(/\*\*/g, '')

/** { scenario, case, system, ops, min, max } of every throughput table. */
function throughputRows({ sections }) {
  const out = []
  for (const s of sections) {
    for (const t of s.tables) {
      const ops = column(t.header, /^ops\/s/)
      if (!ops || !t.header.includes('System')) continue
      const range = column(t.header, /^min - max$/)
      for (const r of t.rows) {
        const [value, lo, hi] = numbers(r[ops])
        if (!(value > 0)) continue
        const [min, max] = range ? numbers(r[range]) : [lo, hi]
        const scenario = r.Case ? s.title.replace(/:.*$/, '') : s.title
        out.push({ scenario, case: plain(r.Case || ''), system: r.System, ops: value, min: min ?? value, max: max ?? value })
      }
    }
  }
  return out
}

/** { group, system, percentile, ms } from the tables that report latency percentiles. */
function latencyRows({ sections }) {
  const out = []
  const push = (group, system, percentile, ms) => {
    if (Number.isFinite(ms)) out.push({ group, system, percentile, ms })
  }
  for (const s of sections) {
    for (const t of s.tables) {
      const p50 = column(t.header, /^p50, ms$/)
      if (p50) { // invalidation propagation: one row per operation and system
        for (const r of t.rows) {
          const [a] = numbers(r[p50])
          if (a === undefined || /never/.test(r[p50])) continue
          const group = `${s.title}: ${plain(r.Operation || r.Case || '')}`
          push(group, r.System, 'p50', a)
          push(group, r.System, 'p99', numbers(r[column(t.header, /^p99, ms$/)])[0])
          push(group, r.System, 'max', numbers(r[column(t.header, /^max, ms$/)])[0])
        }
      }
      const mixed = column(t.header, /^p50 \/ p99 latency, ms$/)
      if (mixed) { // the Zipf mix: "p50 / p99"
        for (const r of t.rows) {
          const [a, b] = numbers(r[mixed])
          push(s.title, r.System, 'p50', a)
          push(s.title, r.System, 'p99', b)
        }
      }
      const down = column(t.header, /^p50 \/ p99 \/ max while down, ms$/)
      if (down) { // Redis killed: "p50 / p99 / max" per repeat, comma-separated; the median over the repeats
        for (const r of t.rows) {
          const reps = r[down].split(/,\s*/).map((x) => numbers(x)).filter((x) => x.length === 3)
          if (!reps.length) continue
          const group = `${s.title} (while down)`
          push(group, r.System, 'p50', median(reps.map((x) => x[0])))
          push(group, r.System, 'p99', median(reps.map((x) => x[1])))
          push(group, r.System, 'max', median(reps.map((x) => x[2])))
        }
      }
    }
  }
  return out
}

/** { case, system, part, share } : CPU of the client process and of redis-server per second of run, over the machine's cores. */
function machineRows(results) {
  const out = []
  const cores = results.cores || 1
  for (const s of results.sections) {
    for (const t of s.tables) {
      const ops = column(t.header, /^ops\/s/)
      const cpu = column(t.header, /^CPU µs\/op/)
      if (!ops || !cpu || !t.header.includes('System')) continue
      // only "JS thread / process / redis" (the Zipf mix's "clients / redis" is CPU over the whole run, setup
      // included, per operation: not comparable with the ops/s of its timed part)
      if (!/JS thread \/ process \/ redis/.test(cpu)) continue
      for (const r of t.rows) {
        const [rate] = numbers(r[ops])
        const us = numbers(r[cpu])
        if (!(rate > 0) || us.length < 2) continue
        const [, client, redis] = us
        const label = `${s.title}${r.Case ? `: ${plain(r.Case)}` : ''}`
        out.push({ case: label, system: r.System, part: 'client process', share: (rate * client) / 1e6 / cores })
        out.push({ case: label, system: r.System, part: 'redis-server', share: (rate * (redis || 0)) / 1e6 / cores })
      }
    }
  }
  return out
}

// ---- the charts --------------------------------------------------------------------------------

const CONFIG = {
  font: 'Helvetica, Arial, sans-serif',
  background: 'white',
  view: { stroke: null },
  axis: { labelFontSize: 11, titleFontSize: 11, gridColor: '#e6e6e6' },
  header: { labelFontSize: 12, labelFontWeight: 'bold', labelAnchor: 'start', labelAngle: 0, labelAlign: 'left', labelOrient: 'top' },
  legend: { orient: 'top', labelFontSize: 11, titleFontSize: 11 },
}

/** Where the throughput bars start (the log scale has no zero). */
const FLOOR = 1000

const subjectColor = {
  condition: { test: `datum.system === '${SUBJECT}'`, value: '#d62728' },
  value: '#7f7f7f',
}

function throughputSpec(rows) {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: 'Throughput per scenario and system (median over repeats; bar: min - max)', anchor: 'start', fontSize: 14 },
    data: { values: rows.map((r, order) => ({ ...r, order, panel: r.case ? `${r.scenario}: ${r.case}` : r.scenario })) },
    facet: { row: { field: 'panel', type: 'nominal', sort: { field: 'order', op: 'min' }, title: null } },
    spec: {
      width: 520,
      layer: [
        {
          mark: { type: 'bar', height: { band: 0.7 } },
          encoding: {
            y: { field: 'system', type: 'nominal', sort: null, title: null },
            x: { field: 'ops', type: 'quantitative', scale: { type: 'log', domain: [FLOOR, 1e7] }, title: 'operations / s (log scale)', axis: { format: '~s' } },
            x2: { datum: FLOOR },
            color: subjectColor,
            tooltip: [{ field: 'system' }, { field: 'ops', format: ',.0f' }],
          },
        },
        {
          mark: { type: 'rule', color: 'black', opacity: 0.6 },
          encoding: { y: { field: 'system', type: 'nominal', sort: null }, x: { field: 'min', type: 'quantitative' }, x2: { field: 'max' } },
        },
        {
          mark: { type: 'text', align: 'left', dx: 4, fontSize: 10 },
          encoding: { y: { field: 'system', type: 'nominal', sort: null }, x: { field: 'max', type: 'quantitative' }, text: { field: 'ops', type: 'quantitative', format: ',.0f' } },
        },
      ],
    },
    resolve: { scale: { y: 'independent' } },
    config: CONFIG,
  }
}

function latencySpec(rows) {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: 'Latency percentiles, ms (symmetric log scale; lower is better)',
      subtitle: 'Invalidation propagation: systems that never propagated (stale until their L1 TTL) are not drawn; see the tables',
      anchor: 'start', fontSize: 14,
    },
    data: { values: rows.map((r, order) => ({ ...r, order })) },
    facet: { row: { field: 'group', type: 'nominal', sort: { field: 'order', op: 'min' }, title: null } },
    spec: {
      width: 520,
      layer: [
        {
          mark: { type: 'rule', color: '#bbbbbb' },
          encoding: { y: { field: 'system', type: 'nominal', sort: null, title: null }, x: { aggregate: 'min', field: 'ms' }, x2: { aggregate: 'max', field: 'ms' } },
        },
        {
          mark: { type: 'point', filled: true, size: 70 },
          encoding: {
            y: { field: 'system', type: 'nominal', sort: null, title: null },
            x: { field: 'ms', type: 'quantitative', scale: { type: 'symlog', constant: 0.1 }, title: 'ms', axis: { values: [0, 0.1, 0.3, 1, 3, 10, 30, 100, 300, 1000, 3000], format: ',~r' } },
            color: { field: 'percentile', type: 'nominal', sort: ['p50', 'p99', 'max'], scale: { range: ['#1f77b4', '#ff7f0e', '#2ca02c'] }, title: null },
            shape: { field: 'percentile', type: 'nominal', sort: ['p50', 'p99', 'max'], title: null },
            tooltip: [{ field: 'system' }, { field: 'percentile' }, { field: 'ms', format: '.3~f' }],
          },
        },
      ],
    },
    resolve: { scale: { y: 'independent' } },
    config: CONFIG,
  }
}

function machineSpec(rows, cores) {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: `Share of the machine's CPU (${cores || '?'} cores) each system used while running flat out`,
      subtitle: 'CPU per operation x operations per second, client process and redis-server; dashed: one core (the limit of one JavaScript thread)',
      anchor: 'start', fontSize: 14,
    },
    data: { values: rows.map((r, order) => ({ ...r, order })) },
    facet: { row: { field: 'case', type: 'nominal', sort: { field: 'order', op: 'min' }, title: null } },
    spec: {
      width: 520,
      layer: [
        {
          mark: { type: 'bar', height: { band: 0.7 } },
          encoding: {
            y: { field: 'system', type: 'nominal', sort: null, title: null },
            x: { field: 'share', type: 'quantitative', stack: 'zero', scale: { domain: [0, 1] }, axis: { format: '%' }, title: 'of the machine' },
            color: { field: 'part', type: 'nominal', scale: { domain: ['client process', 'redis-server'], range: ['#4c78a8', '#f58518'] }, title: null },
            opacity: { condition: { test: `datum.system === '${SUBJECT}'`, value: 1 }, value: 0.55 },
            tooltip: [{ field: 'system' }, { field: 'part' }, { field: 'share', format: '.0%' }],
          },
        },
        { mark: { type: 'rule', strokeDash: [4, 3], color: 'black' }, encoding: { x: { datum: 1 / (cores || 1) } } },
      ],
    },
    resolve: { scale: { y: 'independent' } },
    config: CONFIG,
  }
}

async function toSvg(spec) {
  const vega = await import('vega')
  const { compile } = await import('vega-lite')
  // errors only: vega-lite warns about every faceted chart with independent y scales, which these are on purpose
  const view = new vega.View(vega.parse(compile(spec, { logger: vega.logger(vega.Error) }).spec), { renderer: 'none' })
  const svg = await view.toSVG()
  view.finalize()
  return svg
}

/**
 * Renders the charts of `resultsFile` and inserts (or replaces) its "Charts" section.
 * Resolves the written SVG paths. Never throws: a failure is logged, the run stays as it was.
 */
async function renderCharts(resultsFile, log = (s) => process.stderr.write(`${s}\n`)) {
  try {
    const md = fs.readFileSync(resultsFile, 'utf8')
    const results = parseResults(md)
    const full = path.basename(resultsFile) === 'RESULTS.md' && path.dirname(path.resolve(resultsFile)) === __dirname
    const dir = path.join(__dirname, full ? 'charts' : 'charts.tmp')
    fs.mkdirSync(dir, { recursive: true })
    const charts = [
      ['throughput', 'Throughput', throughputSpec, throughputRows(results)],
      ['latency', 'Latency percentiles', latencySpec, latencyRows(results)],
      ['machine', 'Share of the machine', (rows) => machineSpec(rows, results.cores), machineRows(results)],
    ]
    const written = []
    for (const [name, title, spec, rows] of charts) {
      if (rows.length === 0) continue // e.g. --only memory: nothing to draw
      const file = path.join(dir, `${name}.svg`)
      fs.writeFileSync(file, await toSvg(spec(rows)))
      written.push({ file, title })
    }
    const rel = (f) => path.relative(path.dirname(resultsFile), f).split(path.sep).join('/')
    const section = `${BEGIN}\n## Charts\n\n${written.map((w) => `![${w.title}](${rel(w.file)})`).join('\n\n')}\n\n${END}\n`
    const stripped = md.replace(new RegExp(`${escape(BEGIN)}[\\s\\S]*?${escape(END)}\\n?\\n?`), '')
    // after the title paragraph and the machine table: before the first "## " heading
    const at = stripped.search(/^## /m)
    const next = written.length === 0 ? stripped
      : at < 0 ? `${stripped}\n${section}` : `${stripped.slice(0, at)}${section}\n${stripped.slice(at)}`
    fs.writeFileSync(resultsFile, next)
    log(`charts: ${written.map((w) => path.relative(process.cwd(), w.file)).join(', ') || 'none (no table to draw)'}`)
    return written.map((w) => w.file)
  } catch (e) {
    log(`warning: the charts were not rendered: ${e.stack || e.message}`)
    return []
  }
}

module.exports = { renderCharts, parseResults, throughputRows, latencyRows, machineRows, toSvg }

if (require.main === module) {
  const file = path.resolve(process.argv[2] || path.join(__dirname, 'RESULTS.md'))
  renderCharts(file, console.log).then((files) => process.exit(files.length ? 0 : 1))
}
