'use strict'
// One benchmark job in a process of its own, started by run.js over IPC: either a scenario's
// `prepare` or one measured `run`, for one system. A process per run keeps systems from
// sharing V8 type feedback, heap state or event-loop backlog, and makes every instance fresh.
//
// Protocol: the parent sends one message { kind: 'prepare' | 'run', scenario, system,
// redisUrl, prefix, cfg, caseId }; the worker answers { ok: true, result } or
// { ok: false, error } and exits. Anything printed goes to the parent's stderr.

const fs = require('node:fs')
const systems = require('./systems/index.js')
const scenarios = require('./scenarios/index.js')
const { onCleanup } = require('./lib/cleanup.js')

// kill forked peers and private redis-servers on exit and on the parent's SIGTERM
onCleanup(() => {})

/** CPU time (ms) of this process's exited children (peers, private redis-servers), from /proc. */
function childrenCpuMs() {
  try {
    const stat = fs.readFileSync('/proc/self/stat', 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return ((Number(fields[13]) + Number(fields[14])) * 1000) / 100 // cutime + cstime, USER_HZ
  } catch {
    return 0
  }
}

function reply(msg, code) {
  if (typeof process.send !== 'function') {
    console.log(JSON.stringify(msg))
    process.exit(code)
  }
  process.send(msg, () => process.exit(code))
}

async function handle(job) {
  const scenario = scenarios.load(job.scenario)
  // a cluster scenario's job: every instance of the system goes to the cluster (cfg.cluster: seed URLs)
  const system = job.cfg && job.cfg.cluster ? systems.onCluster(systems.load(job.system), job.cfg.cluster) : systems.load(job.system)
  const log = (s) => process.stderr.write(`  [worker ${job.scenario}/${job.system}] ${s}\n`)
  const args = { system, redisUrl: job.redisUrl, prefix: job.prefix, cfg: job.cfg, caseId: job.caseId, log }
  if (job.kind === 'prepare') return scenario.prepare ? scenario.prepare(args) : { problems: [] }
  if (job.kind === 'run') return scenario.run(args)
  throw new Error(`unknown job kind ${job.kind}`)
}

let started = false
process.on('message', (job) => {
  if (started) return
  started = true
  handle(job).then(
    (result) => {
      // the whole job (with the peers and private redis-servers it started and waited for),
      // for the parent's noise estimate
      const cpu = process.cpuUsage()
      reply({ ok: true, result, jobCpuMs: (cpu.user + cpu.system) / 1000 + childrenCpuMs() }, 0)
    },
    (err) => reply({ ok: false, error: (err && err.stack) || String(err) }, 1),
  )
})

process.on('disconnect', () => process.exit(1))
