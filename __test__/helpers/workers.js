'use strict'
// Child Node processes, each holding one MultiLevelCache (cache_worker.js, or the soak test's
// soak_worker.js), driven over IPC.
// Each one stands for another application process sharing Redis. Every call is bounded in
// time; every child is killed after its test (t.after) and when this process exits.

const path = require('node:path')
const { fork } = require('node:child_process')

const WORKER = path.join(__dirname, 'cache_worker.js')
const alive = new Set()

process.on('exit', () => {
  for (const child of alive) {
    try { child.kill('SIGKILL') } catch {}
  }
})

/**
 * Forks `script` (a child that calls `serve` of ipc_child.js) and waits until it is ready
 * (bounded). The worker is killed when the test ends.
 * @param {import('node:test').TestContext} t
 * @param {string} script
 * @param {{ readyTimeoutMs?: number }} [opts]
 */
async function forkWorker(t, script, { readyTimeoutMs = 10000 } = {}) {
  const child = fork(script, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: process.env })
  alive.add(child)
  let nextId = 1
  const waiting = new Map()
  let exited = false
  const exitedP = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      exited = true
      alive.delete(child)
      for (const [, w] of waiting) w.reject(new Error(`worker ${child.pid} exited (code ${code}, signal ${signal}) before answering ${w.cmd}`))
      waiting.clear()
      resolve()
    })
  })
  let onReady
  const ready = new Promise((resolve) => { onReady = resolve })
  child.on('message', (msg) => {
    if (msg && msg.ready) return onReady()
    const w = msg && waiting.get(msg.id)
    if (!w) return
    waiting.delete(msg.id)
    clearTimeout(w.timer)
    if (msg.ok) w.resolve(msg.result)
    else {
      const e = new Error(`worker ${cmdName(w.cmd)} failed: ${msg.error.message}`)
      e.code = msg.error.code
      w.reject(e)
    }
  })
  const worker = {
    pid: child.pid,
    child,
    /** Sends a command; rejects if no answer comes within `timeoutMs`. */
    call(cmd, args = {}, { timeoutMs = 10000 } = {}) {
      if (exited) return Promise.reject(new Error(`worker ${child.pid} has exited`))
      const id = nextId++
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(id)
          reject(new Error(`worker ${child.pid} did not answer ${cmd} within ${timeoutMs} ms`))
        }, timeoutMs)
        waiting.set(id, { cmd, resolve, reject, timer })
        child.send({ id, cmd, args })
      })
    },
    /** Kills the worker (SIGKILL) and waits (bounded) for it to exit. */
    async kill() {
      for (const [, w] of waiting) clearTimeout(w.timer)
      if (!exited) {
        try { child.kill('SIGKILL') } catch {}
        await Promise.race([exitedP, new Promise((r) => setTimeout(r, 3000).unref())])
      }
    },
  }
  t.after(() => worker.kill())
  const readyOk = await Promise.race([
    ready.then(() => true),
    exitedP.then(() => false),
    new Promise((r) => setTimeout(() => r(false), readyTimeoutMs).unref()),
  ])
  if (!readyOk) {
    await worker.kill()
    throw new Error(`worker did not start within ${readyTimeoutMs} ms`)
  }
  return worker
}

/**
 * Forks a cache worker (cache_worker.js), waits until it is ready (bounded) and creates its
 * cache with `options`. The worker is killed when the test ends.
 * @param {import('node:test').TestContext} t
 * @param {object} options MultiLevelCache options (plain data: no loader)
 * @param {{ readyTimeoutMs?: number }} [opts]
 */
async function startWorker(t, options, opts) {
  const worker = await forkWorker(t, WORKER, opts)
  const init = await worker.call('init', { options })
  if (!init.connected) throw new Error('the worker\'s cache did not subscribe to the bus within 5 s')
  return worker
}

function cmdName(cmd) {
  return JSON.stringify(cmd)
}

/** Starts `n` workers in parallel. */
function startWorkers(t, n, options) {
  return Promise.all(Array.from({ length: n }, () => startWorker(t, options)))
}

module.exports = { forkWorker, startWorker, startWorkers }
