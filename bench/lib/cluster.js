'use strict'
// A private Redis Cluster for the benchmark's cluster scenario: the test suite's harness
// (__test__/helpers/cluster.js: redis-server processes on free 127.0.0.1 ports joined with
// `redis-cli --cluster create`), here with no replicas (the benchmark kills nothing), every node
// under the same watchdog as the single redis-server (killed when this process is gone), and
// the per-primary command counters the scenario reports.

const Redis = require('ioredis')
const { startCluster, parseCommandStats, clientCalls } = require('../../__test__/helpers/cluster.js')
const { watchdog } = require('./redis-server.js')

/**
 * Starts a cluster of `primaries` primaries (no replicas) and waits until it has settled.
 * @param {{ primaries?: number }} [opts]
 * @returns {Promise<{ nodes: string[], pids: () => number[], flushAll: () => Promise<void>, stop: () => Promise<void>, killNow: () => void, timings: object }>}
 */
async function startBenchCluster({ primaries = 3 } = {}) {
  const cluster = await startCluster(null, { primaries, replicas: 0, onSpawn: (proc) => watchdog(proc.pid) })
  const nodeList = () => [...cluster.byPort.values()]
  return {
    nodes: cluster.nodes,
    timings: cluster.timings,
    /** Pids of the running node processes (CPU accounting). */
    pids: () => nodeList().filter((n) => n.proc && n.proc.exitCode === null && n.proc.signalCode === null).map((n) => n.proc.pid),
    /** FLUSHALL on every primary. */
    flushAll: () => cluster.flushAll(),
    /** Stops every node. Idempotent. */
    stop: () => cluster.stop(),
    /** Synchronous last resort (process 'exit' handler). */
    killNow: () => {
      for (const n of nodeList()) {
        try { if (n.proc) n.proc.kill('SIGKILL') } catch {}
      }
    },
  }
}

/**
 * Counts the commands each primary executed between `start()` and `stop()` (INFO
 * commandstats deltas; the INFO calls themselves are left out). `urls` are the primaries.
 * @param {string[]} urls
 */
function commandProbe(urls) {
  const clients = urls.map((url) => {
    const c = new Redis(url, { maxRetriesPerRequest: 1, connectTimeout: 2000, commandTimeout: 5000 })
    c.on('error', () => {})
    return c
  })
  const read = () => Promise.all(clients.map(async (c) => clientCalls(parseCommandStats(await c.info('commandstats')))))
  let before
  let after
  return {
    async start() { before = await read() },
    async stop() { after = await read() },
    /** [{ url, calls }] per primary over the window, or undefined when it was not closed. */
    result() {
      if (!before || !after) return undefined
      return urls.map((url, i) => ({ url, calls: after[i] - before[i] }))
    },
    close() { for (const c of clients) c.disconnect() },
  }
}

module.exports = { startBenchCluster, commandProbe }
