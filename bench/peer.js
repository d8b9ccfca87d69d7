'use strict'
// One extra process of a multi-process run (see lib/peers.js). The first message names the
// scenario, the role, the system and its configuration; the scenario's `peer(ctx)` runs with
// ctx = { ...job, system (module), send, next, log } and its return value is sent back as
// { type: 'result', result, cpuMs }. The process exits when the coordinator disconnects.

const systems = require('./systems/index.js')
const scenarios = require('./scenarios/index.js')
const { Mailbox } = require('./lib/peers.js')

const box = new Mailbox('coordinator')
let job

function send(msg) {
  // with a callback, a send racing the coordinator's disconnect (it closes the peers when one
  // fails) is dropped instead of crashing this process with an unhandled EPIPE 'error' event
  if (process.connected) process.send(msg, () => {})
}

process.on('message', (m) => {
  if (job) return box.push(m)
  job = m
  const scenario = scenarios.load(job.scenario)
  const system = job.cfg && job.cfg.cluster ? systems.onCluster(systems.load(job.system), job.cfg.cluster) : systems.load(job.system)
  const log = (s) => process.stderr.write(`  [peer ${job.peerIndex} ${job.scenario}/${job.system}] ${s}\n`)
  const ctx = { ...job, system, send, next: (type, ms) => box.next(type, ms), log }
  Promise.resolve()
    .then(() => scenario.peer(ctx))
    .then(
      (result) => {
        const cpu = process.cpuUsage()
        send({ type: 'result', result, cpuMs: (cpu.user + cpu.system) / 1000 })
      },
      (err) => send({ type: 'error', error: (err && err.stack) || String(err) }),
    )
})

process.on('disconnect', () => process.exit(0))
