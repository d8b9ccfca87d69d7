#!/usr/bin/env node
'use strict'
// Benchmark of multi-level-cache against the article's node-cache + ioredis class, bentocache,
// cacheable, cache-manager, a bare node-redis GET loop and lru-cache. `npm run bench`.
//
//   node bench/run.js                     full run (every scenario, ~8-12 minutes)
//   node bench/run.js --quick             smoke test of everything in ~2-3 minutes (numbers not meaningful)
//   node bench/run.js --only l1,l2        pick scenarios (l1 l2 miss stampede propagation outage zipf slowdb cluster memory)
//   node bench/run.js --systems mlc,article
//   node bench/run.js --repeats 9         repeats of every scenario (default: per scenario, see README)
//   node bench/run.js --l1-ops 500000 --l2-keys 50000 --l2-warm 10000
//   node bench/run.js --out path.md       where the markdown goes (default bench/RESULTS.md; bench/RESULTS.tmp.md
//                                         with --quick, --only, --systems or --repeats, so a partial run never
//                                         replaces the full results)
//   node bench/run.js --cpu-prof          every worker writes a V8 CPU profile to bench/profiles/
//                                         (summarize one with `node bench/profile-summary.js FILE`)
//   node bench/run.js --check             exit 1 when a target fails or a check finds a problem
//
// This process owns a private redis-server (127.0.0.1, a free port, no persistence) for the
// whole run, a private 3-primary Redis Cluster for the cluster scenario only, and starts one
// worker process (bench/worker.js) per measured run. Progress goes to stderr, the markdown
// report to stdout and to the --out file.

const { fork } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const Redis = require('ioredis')

const systemsRegistry = require('./systems/index.js')
const scenariosRegistry = require('./scenarios/index.js')
const { startRedis, redisServerVersion } = require('./lib/redis-server.js')
const { startBenchCluster } = require('./lib/cluster.js')
const { machineInfo } = require('./lib/machine.js')
const { render, targetRows, fmtInt } = require('./lib/report.js')
const plan = require('./plan.js')
const { machineCpuMs, redisCpuMs } = require('./lib/measure.js')
const { measureLimits } = require('./limits.js')

const WORKER = path.join(__dirname, 'worker.js')
/** A run during which other processes used more than this share of a core is flagged. */
const OTHER_LOAD_WARN_PCT = 25
const PROFILE_DIR = path.join(__dirname, 'profiles')

const log = (s) => process.stderr.write(`${s}\n`)

function usage() {
  return fs.readFileSync(__filename, 'utf8').split("\n").slice(5, 18).map((l) => l.replace(/^\/\/ ?/, '')).join('\n')
}

function parseArgs(argv) {
  const flags = new Set(['quick', 'cpu-prof', 'check', 'help'])
  const values = new Set(['repeats', 'only', 'systems', 'out', 'l1-ops', 'l2-keys', 'l2-warm'])
  const args = {}
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${JSON.stringify(a)}`)
    let [name, value] = a.slice(2).split(/=(.*)/s, 2)
    if (flags.has(name)) {
      if (value !== undefined) throw new Error(`--${name} takes no value`)
      args[name] = true
    } else if (values.has(name)) {
      if (value === undefined) value = argv[++i]
      if (value === undefined || value.startsWith('--')) throw new Error(`--${name} needs a value`)
      args[name] = value
    } else {
      throw new Error(`unknown option --${name} (try --help)`)
    }
  }
  for (const k of ['repeats', 'l1-ops', 'l2-keys', 'l2-warm']) {
    if (args[k] !== undefined && !(Number.isInteger(Number(args[k])) && Number(args[k]) > 0 && Number(args[k]) <= 1e8)) {
      throw new Error(`--${k} must be a positive integer, got ${JSON.stringify(args[k])}`)
    }
  }
  return args
}

const list = (s) => s.split(',').map((x) => x.trim()).filter(Boolean)

// ---- cleanup ---------------------------------------------------------------------------------

/** @type {Awaited<ReturnType<typeof startRedis>> | undefined} */
let redis
/** The cluster of the scenario that runs on one (started for it, stopped after it). */
let cluster
/** @type {import('node:child_process').ChildProcess | undefined} */
let currentChild

/** Pids of the Redis servers of this run (CPU accounting: redis-server, and the cluster's nodes while it runs). */
function serverPids() {
  const pids = redis ? [redis.pid] : []
  if (cluster) pids.push(...cluster.pids())
  return pids.join(',')
}

/** SIGTERM (the worker then kills its peers and private redis-servers), SIGKILL 1.5 s later. */
function killChild() {
  const c = currentChild
  if (c && c.exitCode === null && c.signalCode === null) {
    try { c.kill('SIGTERM') } catch {}
    const t = setTimeout(() => {
      if (c.exitCode === null && c.signalCode === null) { try { c.kill('SIGKILL') } catch {} }
    }, 1500)
    t.unref()
  }
}

function killChildNow() {
  const c = currentChild
  if (c && c.exitCode === null && c.signalCode === null) {
    try { c.kill('SIGKILL') } catch {}
  }
}

process.on('exit', () => {
  killChildNow()
  if (redis) redis.killNow()
  if (cluster) cluster.killNow()
})

let interrupted = false
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    if (interrupted) process.exit(130)
    interrupted = true
    log(`\n${sig}: stopping the worker and redis-server`)
    killChild()
    const done = () => process.exit(130)
    const t = setTimeout(done, 3000)
    t.unref()
    Promise.all([redis && redis.stop(), cluster && cluster.stop()]).then(done, done)
  })
}

// ---- jobs ------------------------------------------------------------------------------------

/**
 * Runs one job in a fresh worker process; never rejects.
 * @param {object} job
 * @param {number} timeoutMs
 * @param {string[]} execArgv
 * @returns {Promise<{ ok: boolean, result?: any, error?: string }>}
 */
function runJob(job, timeoutMs, execArgv) {
  return new Promise((resolve) => {
    if (interrupted) return resolve({ ok: false, error: 'interrupted' })
    const env = { ...process.env, BENCH_REDIS_PID: serverPids() }
    const child = fork(WORKER, [], { execArgv, env, stdio: ['ignore', 'pipe', 'inherit', 'ipc'] })
    currentChild = child
    child.stdout.pipe(process.stderr, { end: false })
    let reply
    let timedOut = false
    let spawnError
    const timer = setTimeout(() => {
      timedOut = true
      killChild()
    }, timeoutMs)
    // noise estimate: CPU the rest of the machine used during the job (not this process,
    // the worker or redis-server), from /proc/stat
    const pids = serverPids()
    const m0 = { machine: machineCpuMs(), redis: redisCpuMs(pids), self: process.cpuUsage(), t: Date.now() }
    child.on('message', (m) => {
      reply = m
      const m1 = machineCpuMs()
      const wall = Date.now() - m0.t
      if (m0.machine && m1 && typeof m.jobCpuMs === 'number' && wall >= 100) {
        const self = process.cpuUsage(m0.self)
        const ours = m.jobCpuMs + (redisCpuMs(pids) - m0.redis) + (self.user + self.system) / 1000
        m.otherLoadPct = Math.max(0, ((m1.busy - m0.machine.busy - ours) / wall) * 100)
        m.stealPct = ((m1.steal - m0.machine.steal) / wall) * 100
      }
    })
    child.on('error', (e) => { spawnError = e })
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      if (currentChild === child) currentChild = undefined
      if (reply) resolve(reply)
      else if (timedOut) resolve({ ok: false, error: `worker killed after the job's time bound (${timeoutMs} ms)` })
      else resolve({ ok: false, error: `worker exited without a result (code ${code}, signal ${signal})${spawnError ? `: ${spawnError.message}` : ''}` })
    })
    child.send(job)
  })
}

function profileArgs(enabled, name) {
  if (!enabled) return []
  return ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`, `--cpu-prof-name=${name}.cpuprofile`]
}

async function flushRedis(url) {
  const c = new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: true })
  try {
    await c.connect()
    await c.flushall()
  } finally {
    c.disconnect()
  }
}

/** Empties where the scenario's data lives: its cluster (every primary) or the redis-server. */
function flushScenario(clustered) {
  return clustered ? cluster.flushAll() : flushRedis(redis.url)
}

// ---- main ------------------------------------------------------------------------------------

async function main() {
  const argv = process.argv.slice(2)
  let args
  let scenarioMods
  let systemNames
  let systemMods
  try {
    args = parseArgs(argv)
    scenarioMods = (args.only ? list(args.only) : scenariosRegistry.ids()).map((id) => scenariosRegistry.load(id))
    systemNames = args.systems ? list(args.systems) : systemsRegistry.names()
    systemMods = systemNames.map((n) => systemsRegistry.load(n))
  } catch (e) {
    log(`${e.message}\n\n${usage()}`)
    return 2
  }
  if (args.help) {
    process.stdout.write(`${usage()}\n`)
    return 0
  }
  const quick = !!args.quick
  const partial = quick || !!(args.only || args.systems || args.repeats || args['l1-ops'] || args['l2-keys'] || args['l2-warm'])
  const out = path.resolve(args.out || path.join(__dirname, partial ? 'RESULTS.tmp.md' : 'RESULTS.md'))
  const baseline = systemsRegistry.BASELINE
  const subject = systemsRegistry.SUBJECT
  if (!systemNames.includes(baseline)) log(`note: the baseline system \`${baseline}\` is not selected: no ratios`)
  if (args['cpu-prof']) fs.mkdirSync(PROFILE_DIR, { recursive: true })

  /** Repeats of a scenario: --repeats, else the scenario's cfg.repeats, else bench/plan.js, else 3 (quick: 1). */
  const repeatsOf = (scenario, cfg) => {
    if (args.repeats) return Number(args.repeats)
    if (cfg.repeats) return cfg.repeats
    const p = plan[scenario.id] && plan[scenario.id].repeats
    if (p) return quick ? p.quick : p.full
    return quick ? 1 : 3
  }

  const t0 = Date.now()
  log(`starting redis-server ...`)
  redis = await startRedis()
  log(`redis-server ${redis.url} (pid ${redis.pid})`)
  const info = machineInfo(redisServerVersion())
  log(`${info.cpu}, ${info.cores} cores, Node ${info.node}, redis ${info.redis}${quick ? ' (quick)' : ''}`)

  // the machine's limits, in the same run (bench/limits.js): every system is also shown as a
  // fraction of them
  let limits
  try {
    limits = await measureLimits(Number(new URL(redis.url).port))
    log(`limits: Map.get loop ${fmtInt(limits.mapGetOpsPerSec)} ops/s, JSON.parse ${limits.jsonParseUs.toFixed(2)} µs, ` +
      `redis-benchmark GET ${fmtInt(limits.redisGetOpsPerSec || 0)} ops/s (pipelined ${fmtInt(limits.redisGetPipelinedOpsPerSec || 0)})`)
    await flushRedis(redis.url)
  } catch (e) {
    log(`warning: the limits were not measured: ${e.message}`)
  }

  const results = []
  let failures = 0
  for (const scenario of scenarioMods) {
    if (interrupted) break
    const cfg = scenario.config({ quick, args })
    const cases = scenario.cases(cfg)
    const repeats = repeatsOf(scenario, cfg)
    // a scenario on a Redis Cluster (`scenario.cluster`) takes the systems that can run on one
    const clustered = !!scenario.cluster
    const names = systemNames.filter((n) => systemsRegistry.appliesTo(n, scenario.id, clustered))
    const prefixOf = (name) => `bench-${scenario.id}-${name}`
    const res = { scenario, cfg, cases, repeats, systems: names, runs: {}, prepareProblems: [] }
    res.leftOut = systemNames.filter((n) => !names.includes(n)).map((n) => ({ name: n, reason: systemsRegistry.leftOutReason(n, scenario.id, clustered) }))
    if (clustered) res.clusterHow = names.map((n) => ({ name: n, how: systemsRegistry.load(n).cluster }))
    for (const c of cases) {
      res.runs[c.id] = {}
      for (const name of names) res.runs[c.id][name] = []
    }
    // per-system overrides of the configuration (bench/plan.js), not with --quick or --l1-ops
    const systemCfg = (!quick && !args['l1-ops'] && plan[scenario.id] && plan[scenario.id].systemCfg) || {}
    const cfgFor = (name) => (systemCfg[name] ? { ...cfg, ...systemCfg[name] } : cfg)
    res.note = Object.keys(systemCfg).length ? plan[scenario.id].note : undefined
    const ts = Date.now()
    log(`\n== ${scenario.title} (${scenario.id}): ${names.join(', ')}; ${repeats} repeat(s) ==`)
    for (const x of res.leftOut) if (clustered) log(`[${scenario.id}] ${x.name}: left out: ${x.reason}`)
    if (clustered && names.length && !interrupted) {
      const tc = Date.now()
      try {
        cluster = await startBenchCluster(scenario.cluster)
        log(`[${scenario.id}] cluster of ${cluster.nodes.length} primaries (${cluster.nodes.join(' ')}) up in ${Date.now() - tc} ms`)
      } catch (e) {
        failures++
        res.prepareProblems.push(`the Redis Cluster did not start: ${e.message.split('\n')[0]}`)
        log(`[${scenario.id}] the Redis Cluster did not start: ${e.message}`)
        res.seconds = (Date.now() - ts) / 1000
        results.push(res)
        continue
      }
    }
    // the cluster's seed URLs go to every job (worker.js and peer.js wire the system to them)
    const onCluster = (c) => (clustered ? { ...c, cluster: cluster.nodes } : c)
    try {
      if (scenario.prepare) {
        for (const name of names) {
          const t = Date.now()
          const r = await runJob({ kind: 'prepare', scenario: scenario.id, system: name, redisUrl: redis.url, prefix: prefixOf(name), cfg: onCluster(cfg) },
            cfg.jobTimeoutMs, profileArgs(false))
          if (!r.ok) {
            failures++
            res.prepareProblems.push(`${name}: prepare failed: ${r.error}`)
            log(`[${scenario.id} prepare] ${name}: FAILED: ${r.error}`)
          } else {
            const problems = r.result.problems || []
            for (const p of problems) res.prepareProblems.push(`${name}: ${p}`)
            log(`[${scenario.id} prepare] ${name}: done in ${Date.now() - t} ms${problems.length ? ` PROBLEMS: ${problems.join('; ')}` : ''}`)
          }
        }
      }

      for (let rep = 0; rep < repeats && !interrupted; rep++) {
        for (const c of cases) {
          const order = rep % 2 === 0 ? names : [...names].reverse()
          for (const name of order) {
            if (interrupted) break
            // a case that names its systems (`case.systems`, keyed by name) runs only those
            if (c.systems && !Object.prototype.hasOwnProperty.call(c.systems, name)) continue
            if (cfg.flushBeforeRun) {
              try {
                await flushScenario(clustered)
              } catch (e) {
                log(`warning: FLUSHALL before a ${scenario.id} run failed: ${e.message}`)
              }
            }
            const job = { kind: 'run', scenario: scenario.id, system: name, redisUrl: redis.url, prefix: prefixOf(name), cfg: onCluster(cfgFor(name)), caseId: c.id, repeat: rep }
            const execArgv = ['--expose-gc', ...profileArgs(args['cpu-prof'], `${scenario.id}-${c.id}-${name}-r${rep + 1}`)]
            const r = await runJob(job, cfg.jobTimeoutMs, execArgv)
            const tag = `[${scenario.id} ${rep + 1}/${repeats}] ${c.id.padEnd(5)} ${name.padEnd(13)}`
            if (!r.ok) {
              failures++
              res.runs[c.id][name].push({ repeat: rep, error: r.error, problems: [] })
              log(`${tag}: FAILED: ${r.error}`)
              continue
            }
            const m = r.result
            const run = {
              repeat: rep,
              ops: m.ops,
              ms: m.ms,
              opsPerSec: m.ops / (m.ms / 1000),
              cpuUsPerOp: ((m.cpuUserMs + m.cpuSystemMs) * 1000) / m.ops,
              mainUsPerOp: (m.mainThreadCpuMs * 1000) / m.ops,
              redisUsPerOp: (m.redisCpuMs * 1000) / m.ops,
              otherLoadPct: r.otherLoadPct,
              stealPct: r.stealPct,
              truncated: m.truncated,
              problems: m.problems || [],
              stats: m.stats,
              metrics: m.metrics,
            }
            res.runs[c.id][name].push(run)
            if (run.otherLoadPct > OTHER_LOAD_WARN_PCT) {
              run.problems.push(`other processes used ${run.otherLoadPct.toFixed(0)}% of a core during this run's process (noise)`)
            }
            const warn = (run.truncated ? ' TRUNCATED' : '') + (run.problems.length ? ` PROBLEMS: ${run.problems.join('; ')}` : '')
            const load = `other load ${Number.isFinite(run.otherLoadPct) ? run.otherLoadPct.toFixed(0) : '?'}%`
            if (scenario.runSummary) {
              log(`${tag}: ${scenario.runSummary(run)} (${load})${warn}`)
            } else {
              log(`${tag}: ${fmtInt(run.opsPerSec).padStart(11)} ops/s  (${fmtInt(run.ops)} ops in ${run.ms.toFixed(0)} ms; CPU µs/op: ` +
                `${run.cpuUsPerOp.toFixed(2)} process, ${run.redisUsPerOp.toFixed(2)} redis; ${load})${warn}`)
            }
          }
        }
      }
    } finally {
      if (clustered && cluster) {
        const c = cluster
        await c.stop().catch((e) => log(`warning: stopping the Redis Cluster failed: ${e.message}`))
        cluster = undefined
      }
    }
    res.seconds = (Date.now() - ts) / 1000
    log(`(${scenario.id} took ${res.seconds.toFixed(0)} s)`)
    results.push(res)
    try {
      await flushRedis(redis.url)
    } catch (e) {
      log(`warning: FLUSHALL after ${scenario.id} failed: ${e.message}`)
    }
  }

  info.loadavgEnd = require('node:os').loadavg().map((x) => x.toFixed(2)).join(' ')
  const report = {
    info, argv, quick, baseline, subject, limits,
    systems: systemMods.map((s) => ({ name: s.name, description: s.description, capabilities: s.capabilities })),
    results,
    totalSeconds: (Date.now() - t0) / 1000,
  }
  const md = render(report)
  process.stdout.write(`${md}\n`)
  fs.writeFileSync(out, `${md}\n`)
  await require('./charts.js').renderCharts(out, log) // SVG charts of the file, and a Charts section in it
  log(`\nwrote ${path.relative(process.cwd(), out) || out} in ${((Date.now() - t0) / 1000).toFixed(1)} s total`)

  const targets = targetRows(report)
  for (const t of targets) log(`target ${t.scenario} / ${t.label}: ${t.required}: ${t.measured} ${t.pass === null ? 'n/a' : t.pass ? 'PASS' : 'FAIL'}`)
  const problems = results.some((s) => s.prepareProblems.length || Object.values(s.runs).some((byName) =>
    Object.values(byName).some((runs) => runs.some((x) => x.truncated || (x.problems && x.problems.length)))))

  await redis.stop()
  redis = undefined
  if (interrupted) return 130
  if (failures) return 1
  if (args.check && (problems || targets.some((t) => t.pass === false))) return 1
  return 0
}

main().then(
  (code) => { process.exitCode = code },
  async (err) => {
    log(`bench failed: ${(err && err.stack) || err}`)
    killChild()
    if (cluster) await cluster.stop().catch(() => cluster.killNow())
    if (redis) await redis.stop().catch(() => redis.killNow())
    process.exitCode = 1
  },
)
