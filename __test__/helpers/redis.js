'use strict'
// Real redis-server processes for tests: the machine's shared one (REDIS_URL, default
// 127.0.0.1:6379) for ordinary tests, and private ones on free loopback ports for tests that
// stop, freeze, restart or reconfigure Redis. No mocks.

const { spawn, execFileSync } = require('node:child_process')
const net = require('node:net')
const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const Redis = require('ioredis')

/** A process's state letter from /proc (T: stopped), or undefined where /proc is missing. */
function processState(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
  } catch {
    return undefined
  }
}

const SHARED_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379'

/** A prefix no other test uses. */
function uniquePrefix(name = 't') {
  return `${name.replace(/[^A-Za-z0-9_.:-]/g, '_')}-${crypto.randomBytes(4).toString('hex')}`
}

/** A free TCP port on 127.0.0.1. */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

function redisServerPath() {
  try {
    return execFileSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).trim()
  } catch {
    throw new Error('redis-server is not installed: install it (Debian/Ubuntu: apt-get install redis-server) and run the tests again')
  }
}

const started = new Set()
process.on('exit', () => {
  for (const s of started) {
    try { s.proc.kill('SIGCONT'); s.proc.kill('SIGKILL') } catch {}
  }
})

/**
 * Starts a private redis-server on a free loopback port.
 * @param {string[]} [extraArgs] more redis-server arguments (e.g. ['--requirepass', 'x'])
 * @param {{ port?: number, tls?: boolean }} [opts]
 */
async function startRedis(extraArgs = [], opts = {}) {
  const port = opts.port || await freePort()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlc-redis-'))
  const args = ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no',
    '--dir', dir, '--daemonize', 'no', '--loglevel', 'warning', ...extraArgs]
  const proc = spawn(redisServerPath(), args, { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  proc.stderr.on('data', (d) => { stderr += d })
  const server = {
    port,
    proc,
    url: `redis://127.0.0.1:${port}`,
    /** Stops the server (SIGKILL by default) and waits for it to exit. */
    async stop(signal = 'SIGKILL') {
      const p = server.proc
      started.delete(server)
      if (p.exitCode !== null || p.signalCode !== null) return
      const exited = new Promise((resolve) => p.once('exit', resolve))
      p.kill('SIGCONT') // a frozen process must run to die of SIGTERM
      p.kill(signal)
      await exited
    },
    /**
     * Freezes the process (SIGSTOP) and resolves once it is stopped: kill() returns before the
     * kernel has stopped a process running on another core, and a command sent in between
     * would still be answered.
     */
    async freeze() {
      server.proc.kill('SIGSTOP')
      for (let i = 0; i < 200; i++) {
        const state = processState(server.proc.pid)
        if (state === 'T' || state === 't' || state === undefined) return
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
      throw new Error('redis-server did not stop within 1 s of SIGSTOP')
    },
    /** Thaws a frozen process (SIGCONT). */
    thaw() { server.proc.kill('SIGCONT') },
    /** Starts a new server on the same port with the same arguments (data is not kept). */
    async restart() {
      await server.stop()
      const again = await startRedis(extraArgs, { ...opts, port })
      started.delete(again)
      server.proc = again.proc
      started.add(server)
      return server
    },
  }
  started.add(server)
  await waitForPort(port, 5000, () => stderr)
  return server
}

async function waitForPort(port, timeoutMs, stderr) {
  const deadline = Date.now() + timeoutMs
  for (let i = 0; i < 500 && Date.now() < deadline; i++) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1')
      s.once('connect', () => { s.destroy(); resolve(true) })
      s.once('error', () => resolve(false))
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 20))
  }
  throw new Error(`redis-server on port ${port} did not start: ${stderr()}`)
}

/** A plain ioredis client, to look at what the cache wrote. Close it with `.quit()`. */
function client(url = SHARED_URL) {
  return new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 1, enableOfflineQueue: true })
}

/** A private redis-server (see `startRedis`), stopped after the test `t`. */
async function privateRedis(t, args = [], opts = {}) {
  const server = await startRedis(args, opts)
  t.after(() => server.stop())
  return server
}

/**
 * A `client` disconnected after the test `t`; its errors are ignored (tests kill, freeze and
 * misconfigure the servers it talks to).
 */
function testClient(t, url) {
  const r = client(url)
  r.on('error', () => {})
  t.after(() => r.disconnect())
  return r
}

/** Waits until `check()` is truthy (bounded). */
async function eventually(check, { timeoutMs = 3000, intervalMs = 10 } = {}) {
  const deadline = Date.now() + timeoutMs
  let last
  for (let i = 0; i < 10000 && Date.now() < deadline; i++) {
    last = await check()
    if (last) return last
    await new Promise((r) => setTimeout(r, intervalMs))
  }
  return last
}

module.exports = { SHARED_URL, uniquePrefix, freePort, startRedis, privateRedis, client, testClient, eventually }
