'use strict'
// The machine's limits, measured in the same run as the systems (issue 13): what a cache could
// reach at best on this machine, so every system is also shown as a fraction of them.
//
// - `Map.get` loop: `await map.get(k)` one after the other (what an L1 hit costs at the least:
//   a lookup and an awaited Promise), in a fresh process like every measured run.
// - `JSON.parse` of the benchmark's 1 KiB value: what decoding an L2 hit costs at the least.
// - `redis-benchmark` GET of 1 KiB values with 64 clients, unpipelined and pipelined (-P 16):
//   what Redis on this machine serves at most, over one connection per client.
//
// Run alone: `node bench/limits.js [redis-port]` prints the JSON.

const { execFileSync, fork } = require('node:child_process')
const path = require('node:path')

const MAP_OPS = 2_000_000
const PARSE_OPS = 200_000

/** In a child process: the awaited Map.get loop and JSON.parse of the value, in ops/s. */
async function jsLimits() {
  const { makeValue } = require('./lib/values.js')
  const keys = Array.from({ length: 1000 }, (_, i) => `item:${i}`)
  const map = new Map(keys.map((k, i) => [k, makeValue(i)]))
  const loop = async (n) => {
    let hits = 0
    for (let i = 0; i < n; i++) if ((await map.get(keys[i % 1000])) !== undefined) hits++
    return hits
  }
  await loop(MAP_OPS / 10) // warm-up (JIT)
  let t = process.hrtime.bigint()
  const hits = await loop(MAP_OPS)
  const mapNs = Number(process.hrtime.bigint() - t)
  if (hits !== MAP_OPS) throw new Error('the Map.get loop missed')
  const json = JSON.stringify(makeValue(7))
  let sink = 0
  for (let i = 0; i < PARSE_OPS / 10; i++) sink += JSON.parse(json).id
  t = process.hrtime.bigint()
  for (let i = 0; i < PARSE_OPS; i++) sink += JSON.parse(json).id
  const parseNs = Number(process.hrtime.bigint() - t)
  return {
    mapGetOpsPerSec: MAP_OPS / (mapNs / 1e9),
    jsonParseOpsPerSec: PARSE_OPS / (parseNs / 1e9),
    jsonParseUs: parseNs / 1000 / PARSE_OPS,
    valueBytes: Buffer.byteLength(json),
    sink,
  }
}

/** `redis-benchmark` GET requests per second, or undefined when it is not installed. */
function redisBenchmark(port, pipeline) {
  try {
    // SET first, so that GET reads 1 KiB values (a GET of a missing key reads nothing)
    const out = execFileSync('redis-benchmark', ['-h', '127.0.0.1', '-p', String(port), '-t', 'set,get', '-d', '1024',
      '-n', pipeline > 1 ? '1000000' : '200000', '-c', '64', '-P', String(pipeline), '-q'], { encoding: 'utf8', timeout: 60000 })
    const m = /GET:\s*([\d.]+)\s*requests per second/.exec(out.replace(/\r/g, '\n'))
    return m ? Number(m[1]) : undefined
  } catch {
    return undefined
  }
}

/** Every limit; `port` is the benchmark's private redis-server. */
async function measureLimits(port) {
  const js = await new Promise((resolve, reject) => {
    const child = fork(__filename, ['--child'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error('the limits child did not answer within 60 s')) }, 60000)
    child.once('message', (m) => { clearTimeout(timer); resolve(m) })
    child.once('exit', (code) => { clearTimeout(timer); if (code) reject(new Error(`the limits child exited with ${code}`)) })
  })
  return {
    ...js,
    redisGetOpsPerSec: redisBenchmark(port, 1),
    redisGetPipelinedOpsPerSec: redisBenchmark(port, 16),
  }
}

/** The markdown block: the limits, and each system's best result as a fraction of them. */
function renderLimits(limits, results) {
  if (!limits) return []
  const f = (x) => (x === undefined ? 'n/a' : Math.round(x).toLocaleString('en-US'))
  const out = ['## Limits of this machine', '',
    'Measured in this run, before the scenarios (`bench/limits.js`): what a cache could reach at best here.', '',
    '| Limit | Measured |', '|---|---:|',
    `| awaited \`Map.get\` loop (one after the other) | ${f(limits.mapGetOpsPerSec)} ops/s |`,
    `| \`JSON.parse\` of the ${limits.valueBytes}-byte value | ${f(limits.jsonParseOpsPerSec)} ops/s (${limits.jsonParseUs.toFixed(2)} µs) |`,
    `| \`redis-benchmark\` GET, 1 KiB, 64 clients | ${f(limits.redisGetOpsPerSec)} ops/s |`,
    `| \`redis-benchmark\` GET, 1 KiB, 64 clients, pipelined (-P 16) | ${f(limits.redisGetPipelinedOpsPerSec)} ops/s |`, '']
  const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.floor(s.length / 2)] : undefined }
  const rows = []
  const pick = (scenarioId, caseId, limit, label, metric = 'opsPerSec', invert = false) => {
    const s = results.find((x) => x.scenario.id === scenarioId)
    if (!s || !s.runs[caseId] || limit === undefined) return
    for (const name of s.systems) {
      const v = median((s.runs[caseId][name] || []).filter((x) => !x.error).map((x) => x[metric]))
      if (v === undefined) continue
      const frac = invert ? limit / v : v / limit
      rows.push(`| ${label} | ${name} | ${metric === 'opsPerSec' ? `${f(v)} ops/s` : `${v.toFixed(1)} µs`} | ${(frac * 100).toFixed(frac < 0.1 ? 1 : 0)} % |`)
    }
  }
  pick('l1', 'seq', limits.mapGetOpsPerSec, 'L1 hit, sequential, of the `Map.get` loop')
  pick('l2', 'c64', limits.redisGetOpsPerSec, 'L2 hit, 64 in flight, of `redis-benchmark` GET (64 clients)')
  pick('l2', 'c64', limits.jsonParseUs, 'L2 hit: `JSON.parse` over JS-thread CPU per read', 'mainUsPerOp', true)
  pick('miss', 'c64', limits.redisGetOpsPerSec, 'Miss + load, 64 in flight, of `redis-benchmark` GET (64 clients)')
  if (rows.length) out.push('Each system as a fraction of the limit (medians of this run):', '', '| What | System | Measured | Fraction of the limit |', '|---|---|---:|---:|', ...rows, '')
  return out
}

/** The hot-path issue's targets measured against the limits (for the Targets table). */
function limitTargets(limits, results, subject) {
  if (!limits) return []
  const median = (xs) => { const v = [...xs].sort((a, b) => a - b); return v.length ? v[Math.floor(v.length / 2)] : undefined }
  const of = (id, caseId, metric) => {
    const s = results.find((x) => x.scenario.id === id)
    if (!s || !s.runs[caseId] || !s.runs[caseId][subject]) return undefined
    return median(s.runs[caseId][subject].filter((x) => !x.error).map((x) => x[metric]))
  }
  const rows = []
  for (const [caseId, label] of [['c64', '64 in flight'], ['c256', '256 in flight']]) {
    const us = of('l2', caseId, 'mainUsPerOp')
    if (us === undefined) continue
    rows.push({ scenario: 'L2 hit (fresh instance)', label, required: `${subject} JS-thread CPU per read <= 3x \`JSON.parse\` of the value (${(3 * limits.jsonParseUs).toFixed(2)} µs)`,
      measured: `${us.toFixed(2)} µs (${(us / limits.jsonParseUs).toFixed(1)}x)`, pass: us <= 3 * limits.jsonParseUs })
  }
  const miss = of('miss', 'c64', 'cpuUsPerOp')
  if (miss !== undefined) {
    rows.push({ scenario: 'Miss + load (cold keys)', label: '64 in flight', required: `${subject} process CPU per miss <= 30 µs`, measured: `${miss.toFixed(1)} µs`, pass: miss <= 30 })
  }
  return rows
}

if (require.main === module) {
  if (process.argv[2] === '--child') {
    jsLimits().then((r) => { process.send(r); process.exit(0) }, (e) => { console.error(e); process.exit(1) })
  } else {
    measureLimits(Number(process.argv[2] || 6379)).then((r) => console.log(JSON.stringify(r, null, 2)))
  }
}

module.exports = { measureLimits, renderLimits, limitTargets }
