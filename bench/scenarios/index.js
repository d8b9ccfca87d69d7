'use strict'
// The scenarios, in report order. To add one, write `scenarios/<name>.js` exporting
//   { id, title, config({ quick, args }) -> cfg (JSON, includes jobTimeoutMs),
//     cases(cfg) -> [{ id, label, target?: { min }, systems? }], method(cfg) -> markdown,
//     prepare?(job) -> { problems }   (once per system, in a worker process)
//     run(job) -> { ops, ms, misses, truncated, cpuUserMs, cpuSystemMs, stats?, problems } }
// and list it here. `job` is { system, redisUrl, prefix, cfg, caseId, repeat, log }.
// Throughput scenarios get the common table; their targets come from bench/plan.js or a case's
// `targets: [{ vs, min }]` (lowest acceptable ratio SUBJECT/vs of median throughputs). Others
// add `report(res, ctx) -> markdown lines`, `targets(res, ctx) -> rows`, `runSummary(run)`, and
// put what they measured in `run()`'s `metrics`. `cfg.repeats` and `cfg.flushBeforeRun` are
// honoured by run.js, and so is a case's `systems` (an object keyed by system name: the case
// runs only those; slowdb's cases are settings of some systems each); multi-process scenarios
// fork peers (lib/peers.js) that run `peer(ctx)`.
// A scenario with `cluster: { primaries }` runs on a private Redis Cluster that run.js starts
// for it (its seed URLs reach the jobs as `cfg.cluster`) and takes only the systems that can.

const SCENARIOS = {
  l1: './l1-hit.js',
  l2: './l2-hit.js',
  miss: './miss-load.js',
  stampede: './stampede.js',
  propagation: './propagation.js',
  outage: './redis-outage.js',
  zipf: './zipf-mix.js',
  slowdb: './slow-db.js',
  cluster: './cluster.js',
  memory: './memory.js',
}

/** @param {string} id */
function load(id) {
  const p = SCENARIOS[id]
  if (!p) throw new Error(`unknown scenario ${JSON.stringify(id)} (known: ${Object.keys(SCENARIOS).join(', ')})`)
  return require(p)
}

module.exports = { SCENARIOS, ids: () => Object.keys(SCENARIOS), load }
