'use strict'
// bench/charts.js draws the charts of a results file with vega-lite in Node: from a copy of the
// committed bench/RESULTS.md, every chart has its data (each system of the run appears), the SVGs
// are written, and the Charts section is inserted once, however often the charts are rendered.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const charts = require('../bench/charts.js')

const RESULTS = path.join(__dirname, '..', 'bench', 'RESULTS.md')

test('the parsers read the throughput, latency and CPU tables of the results file', () => {
  const results = charts.parseResults(fs.readFileSync(RESULTS, 'utf8'))
  assert.ok(results.cores > 0, 'the machine table gives the cores')
  const tp = charts.throughputRows(results)
  const systems = new Set(tp.map((r) => r.system))
  for (const s of ['mlc', 'article', 'bentocache', 'cacheable']) assert.ok(systems.has(s), `throughput of ${s}`)
  for (const r of tp) {
    assert.ok(r.ops > 0 && r.min <= r.ops && r.ops <= r.max, `${r.scenario} ${r.case} ${r.system}: min <= median <= max`)
  }
  const scenarios = new Set(tp.map((r) => r.scenario))
  assert.ok(scenarios.size >= 4, `throughput of several scenarios (${[...scenarios].join(', ')})`)
  const lat = charts.latencyRows(results)
  assert.ok(lat.some((r) => r.system === 'mlc' && r.percentile === 'p99'), 'p99 of mlc')
  assert.ok(lat.every((r) => Number.isFinite(r.ms) && r.ms >= 0))
  const cpu = charts.machineRows(results)
  assert.ok(cpu.length > 0 && cpu.every((r) => r.share >= 0 && r.share <= 1.5), 'CPU shares are shares')
})

test('renderCharts writes three SVGs and one Charts section into the file', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlc-charts-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'RESULTS.tmp.md')
  fs.copyFileSync(RESULTS, file)
  const logs = []
  const first = await charts.renderCharts(file, (s) => logs.push(s))
  assert.equal(first.length, 3, logs.join('\n'))
  t.after(() => first.forEach((f) => fs.rmSync(f, { force: true })))
  for (const f of first) {
    const svg = fs.readFileSync(f, 'utf8')
    assert.match(svg, /^<svg[^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/)
    for (const s of ['mlc', 'article', 'bentocache']) assert.ok(svg.includes(`>${s}<`), `${path.basename(f)} names ${s}`)
  }
  await charts.renderCharts(file, () => {})
  const md = fs.readFileSync(file, 'utf8')
  assert.equal(md.match(/^## Charts$/gm).length, 1, 'rendering twice leaves one Charts section')
  for (const f of first) assert.ok(md.includes(`](${path.relative(dir, f).split(path.sep).join('/')})`), `the section embeds ${path.basename(f)}`)
  // and the section does not disturb the parser
  assert.deepEqual(charts.throughputRows(charts.parseResults(md)), charts.throughputRows(charts.parseResults(fs.readFileSync(RESULTS, 'utf8'))))
})
