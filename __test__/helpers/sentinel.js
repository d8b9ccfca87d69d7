'use strict'
// A Redis Sentinel topology on loopback for tests: a master, a replica and three sentinels
// (`redis-server <conf> --sentinel`), with short failover timings (down-after 1 s). Every
// process is stopped after the test.

const { spawn } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { startRedis, freePort, client, eventually } = require('./redis.js')

const NAME = 'mymaster'

/** Reads `SENTINEL MASTER <name>` as an object (or null). */
async function masterInfo(sentinel) {
  try {
    const flat = await sentinel.call('SENTINEL', 'MASTER', NAME)
    const o = {}
    for (let i = 0; i < flat.length; i += 2) o[flat[i]] = flat[i + 1]
    return o
  } catch {
    return null
  }
}

/**
 * Starts the topology; resolves once every sentinel knows the two others and the replica.
 * @param {import('node:test').TestContext} t
 */
async function sentinelTopology(t) {
  const master = await startRedis()
  t.after(() => master.stop())
  const replica = await startRedis(['--replicaof', '127.0.0.1', String(master.port)])
  t.after(() => replica.stop())
  const sentinels = []
  for (let i = 0; i < 3; i++) {
    const port = await freePort()
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlc-sentinel-'))
    const conf = path.join(dir, 'sentinel.conf')
    fs.writeFileSync(conf, [
      `port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, 'sentinel resolve-hostnames no',
      `sentinel monitor ${NAME} 127.0.0.1 ${master.port} 2`,
      `sentinel down-after-milliseconds ${NAME} 1000`,
      `sentinel failover-timeout ${NAME} 3000`,
      `sentinel parallel-syncs ${NAME} 1`, '',
    ].join('\n'))
    const proc = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' })
    const s = { port, proc, url: `redis://127.0.0.1:${port}` }
    t.after(() => new Promise((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return resolve()
      proc.once('exit', resolve)
      proc.kill('SIGKILL')
    }))
    sentinels.push(s)
  }
  const admins = sentinels.map((s) => {
    const c = client(s.url)
    c.on('error', () => {})
    t.after(() => c.disconnect())
    return c
  })
  const ready = await eventually(async () => {
    const infos = await Promise.all(admins.map(masterInfo))
    return infos.every((m) => m && Number(m['num-other-sentinels']) === 2 && Number(m['num-slaves']) >= 1)
  }, { timeoutMs: 20000, intervalMs: 200 })
  if (!ready) throw new Error('the sentinels did not discover each other and the replica within 20 s')
  /** The master's port as the first sentinel says. */
  const masterPort = async () => {
    const addr = await admins[0].call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', NAME).catch(() => null)
    return addr ? Number(addr[1]) : null
  }
  return { name: NAME, master, replica, sentinels, nodes: sentinels.map((s) => s.url), masterPort }
}

module.exports = { sentinelTopology }
