'use strict'
// A private redis-server for one benchmark run: loopback only, a free port, no persistence,
// its own temporary directory. `stop()` is idempotent; `killNow()` is for exit handlers.

const { spawn, execFileSync } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')

const HOST = '127.0.0.1'

function redisServerPath() {
  try {
    return execFileSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).trim()
  } catch {
    throw new Error('redis-server is not installed (Debian/Ubuntu: apt-get install redis-server)')
  }
}

function redisServerVersion() {
  try {
    const out = execFileSync(redisServerPath(), ['--version'], { encoding: 'utf8' })
    const m = /v=([0-9.]+)/.exec(out)
    return m ? m[1] : out.trim()
  } catch {
    return 'unknown'
  }
}

/** A free TCP port on 127.0.0.1 (asks the OS for one). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, HOST, () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, HOST)
    s.setTimeout(500)
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('timeout', () => { s.destroy(); resolve(false) })
    s.once('error', () => resolve(false))
  })
}

/**
 * A watchdog shell that SIGKILLs `pid` once this process is gone (even after a SIGKILL of this
 * process, when no exit handler runs), so no redis-server outlives the benchmark. It polls
 * every half second and ends with this process; `stop()` ends it earlier.
 */
function watchdog(pid) {
  const sh = spawn('sh', ['-c', `while kill -0 ${process.pid} 2>/dev/null && kill -0 ${pid} 2>/dev/null; do sleep 0.5; done; kill -9 ${pid} 2>/dev/null`], { stdio: 'ignore' })
  sh.unref()
  sh.on('error', () => {})
  return () => { try { sh.kill('SIGKILL') } catch {} }
}

/**
 * @param {{ startTimeoutMs?: number, port?: number }} [opts] `port`: start on exactly this
 *   port (a restart after a kill); otherwise a free one is picked
 */
async function startRedis({ startTimeoutMs = 5000, port: fixedPort } = {}) {
  const bin = redisServerPath()
  let lastErr
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = fixedPort || await freePort()
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlc-bench-redis-'))
    const args = ['--bind', HOST, '--port', String(port), '--save', '', '--appendonly', 'no',
      '--dir', dir, '--daemonize', 'no', '--loglevel', 'warning', '--protected-mode', 'yes']
    const proc = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    proc.stderr.on('data', (d) => { stderr += d })
    let exited = false
    const stopWatchdog = watchdog(proc.pid)
    const exitPromise = new Promise((resolve) => proc.once('exit', () => { exited = true; stopWatchdog(); resolve() }))
    const server = {
      port,
      pid: proc.pid,
      url: `redis://${HOST}:${port}`,
      /** Stops the server (SIGTERM, then SIGKILL after 2 s) and removes its directory. */
      async stop() {
        if (!exited) {
          proc.kill('SIGTERM')
          const timer = setTimeout(() => { if (!exited) proc.kill('SIGKILL') }, 2000)
          await exitPromise
          clearTimeout(timer)
        }
        fs.rmSync(dir, { recursive: true, force: true })
      },
      /** Whether the process has exited. */
      get exited() { return exited },
      /** Resolves when the process has exited. */
      exitPromise,
      /** Synchronous last resort (process 'exit' handler); also the benchmark's "Redis dies". */
      killNow() {
        if (!exited) {
          try { proc.kill('SIGKILL') } catch {}
        }
        try { fs.rmSync(dir, { recursive: true, force: true }) } catch {}
      },
    }
    const deadline = Date.now() + startTimeoutMs
    for (let i = 0; i < 250 && Date.now() < deadline && !exited; i++) {
      if (await canConnect(port)) return server
      await new Promise((r) => setTimeout(r, 20))
    }
    lastErr = new Error(`redis-server on port ${port} did not start: ${stderr.trim() || '(no output)'}`)
    server.killNow()
    if (fixedPort) await new Promise((r) => setTimeout(r, 100))
  }
  throw lastErr
}

module.exports = { startRedis, redisServerVersion, watchdog, HOST }
