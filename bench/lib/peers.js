'use strict'
// Extra processes of one measured run (multi-process scenarios). The run's worker forks
// `bench/peer.js` processes, each hosting one instance of the system under test, and talks to
// them over IPC (advanced serialization, so typed arrays travel as they are).
//
// Coordinator side: forkPeers(n, job) -> peers; peer.send(msg); await peer.next(type, ms);
// await closePeers(peers) (waits for their exit, SIGKILL after a bound). Peer side (peer.js):
// the same `send` / `next` on a Mailbox over process.send / 'message'.

const { fork } = require('node:child_process')
const path = require('node:path')
const { onCleanup } = require('./cleanup.js')

const PEER = path.join(__dirname, '..', 'peer.js')

/** Messages by `type`, waited for with a time bound. */
class Mailbox {
  constructor(label) {
    this.label = label
    this.queue = []
    this.waiters = []
    this.closedError = undefined
  }

  push(msg) {
    const i = this.waiters.findIndex((w) => w.type === msg.type || (msg.type === 'error' && w.type !== undefined))
    if (i >= 0) {
      const [w] = this.waiters.splice(i, 1)
      clearTimeout(w.timer)
      if (msg.type === 'error' && w.type !== 'error') w.reject(new Error(`${this.label}: ${msg.error}`))
      else w.resolve(msg)
      return
    }
    this.queue.push(msg)
  }

  close(err) {
    this.closedError = err
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer)
      w.reject(err)
    }
  }

  /** The next message of `type` (or rejects on an 'error' message, on close, or after `timeoutMs`). */
  next(type, timeoutMs) {
    const qi = this.queue.findIndex((m) => m.type === type || m.type === 'error')
    if (qi >= 0) {
      const [m] = this.queue.splice(qi, 1)
      if (m.type === 'error' && type !== 'error') return Promise.reject(new Error(`${this.label}: ${m.error}`))
      return Promise.resolve(m)
    }
    if (this.closedError) return Promise.reject(this.closedError)
    return new Promise((resolve, reject) => {
      const w = { type, resolve, reject, timer: undefined }
      w.timer = setTimeout(() => {
        const i = this.waiters.indexOf(w)
        if (i >= 0) this.waiters.splice(i, 1)
        reject(new Error(`${this.label}: no '${type}' message within ${timeoutMs} ms`))
      }, timeoutMs)
      this.waiters.push(w)
    })
  }
}

/** With `run.js --cpu-prof`, every peer writes a profile too, named after the worker's plus `-peerN`. */
function profileArgs(i) {
  const args = process.execArgv
  if (!args.includes('--cpu-prof')) return []
  const dir = args.find((a) => a.startsWith('--cpu-prof-dir='))
  const name = args.find((a) => a.startsWith('--cpu-prof-name='))
  const out = ['--cpu-prof']
  if (dir) out.push(dir)
  if (name) out.push(name.replace(/\.cpuprofile$/, '') + `-peer${i}.cpuprofile`)
  return out
}

/**
 * Forks `n` peers; each gets `{ ...job, peerIndex, peers: n }` as its first message and runs
 * `scenario.peer(ctx)` (see peer.js).
 * @param {number} n
 * @param {{ scenario: string, system: string, redisUrl: string, prefix: string, cfg: any, caseId?: string, role: string, [k: string]: any }} job
 */
function forkPeers(n, job) {
  const peers = []
  for (let i = 0; i < n; i++) {
    const child = fork(PEER, [], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: ['--expose-gc', ...profileArgs(i)] })
    const box = new Mailbox(`peer ${i} (${job.role})`)
    const exited = new Promise((resolve) => child.once('exit', (code, signal) => {
      box.close(new Error(`peer ${i} (${job.role}) exited (code ${code}, signal ${signal})`))
      resolve({ code, signal })
    }))
    const unregister = onCleanup(() => { try { child.kill('SIGKILL') } catch {} })
    child.on('message', (m) => box.push(m))
    child.on('error', (e) => box.close(e))
    child.send({ ...job, peerIndex: i, peers: n })
    peers.push({
      index: i,
      child,
      exited,
      send: (msg) => { if (child.connected) child.send(msg) },
      next: (type, timeoutMs) => box.next(type, timeoutMs),
      unregister,
    })
  }
  return peers
}

/** Sends `msg` to every peer. */
function broadcast(peers, msg) {
  for (const p of peers) p.send(msg)
}

/** The next message of `type` from every peer (in peer order). */
function gather(peers, type, timeoutMs) {
  return Promise.all(peers.map((p) => p.next(type, timeoutMs)))
}

/** Waits up to `timeoutMs` for every peer to exit, then kills the rest. */
async function closePeers(peers, timeoutMs = 5000) {
  for (const p of peers) if (p.child.connected) { try { p.child.disconnect() } catch {} }
  const bound = new Promise((resolve) => { const t = setTimeout(resolve, timeoutMs); t.unref() })
  await Promise.race([Promise.all(peers.map((p) => p.exited)), bound])
  for (const p of peers) {
    if (p.child.exitCode === null && p.child.signalCode === null) { try { p.child.kill('SIGKILL') } catch {} }
  }
  await Promise.all(peers.map((p) => p.exited))
  for (const p of peers) p.unregister()
}

module.exports = { Mailbox, forkPeers, broadcast, gather, closePeers }
