'use strict'
// Timed loops. Every loop is bounded by a count and by a deadline (checked every 256
// operations, so the check costs nothing measurable). They run in the worker process, which
// hosts exactly one system, so V8's type feedback at these call sites is never shared between
// systems.

const fs = require('node:fs')
const { performance } = require('node:perf_hooks')

const CHECK_MASK = 255
const CLK_TCK = 100 // USER_HZ: /proc/<pid>/task/<tid>/stat counts CPU time in 1/100 s

/**
 * CPU time of this process's main (JavaScript) thread in ms, from /proc (Linux), or NaN.
 * Its resolution is 10 ms: only meaningful over runs of a few hundred ms or more.
 */
function mainThreadCpuMs() {
  try {
    const stat = fs.readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK // utime + stime
  } catch {
    return NaN
  }
}

/**
 * @typedef {{ ops: number, ms: number, misses: number, truncated: boolean, cpuUserMs: number, cpuSystemMs: number, mainThreadCpuMs: number }} Measurement
 */

/** Busy and stolen CPU time of the whole machine in ms, from /proc/stat (Linux), or undefined. */
function machineCpuMs() {
  try {
    const line = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]
    const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number)
    return { busy: ((user + nice + system + irq + softirq) * 1000) / CLK_TCK, steal: (steal * 1000) / CLK_TCK }
  } catch {
    return undefined
  }
}

/**
 * CPU time of process `pid` (default: the benchmark's redis-server, BENCH_REDIS_PID) in ms, or
 * 0; a comma-separated list of pids (the nodes of a cluster) gives the sum.
 */
function redisCpuMs(pid = process.env.BENCH_REDIS_PID) {
  if (!pid) return 0
  let sum = 0
  for (const p of String(pid).split(',')) {
    try {
      const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      sum += ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK
    } catch {}
  }
  return sum
}

function start() {
  return { redis: redisCpuMs(), main: mainThreadCpuMs(), cpu: process.cpuUsage(), t0: performance.now() }
}

function finish(s, ops, misses, truncated) {
  const ms = performance.now() - s.t0
  const cpu = process.cpuUsage(s.cpu)
  const main = mainThreadCpuMs() - s.main
  const redis = redisCpuMs() - s.redis
  return {
    ops, ms, misses, truncated,
    cpuUserMs: cpu.user / 1000, cpuSystemMs: cpu.system / 1000, mainThreadCpuMs: main, redisCpuMs: redis,
  }
}

/** Runs a full GC first when the process was started with --expose-gc. */
function settle() {
  if (typeof global.gc === 'function') global.gc()
}

/**
 * `for (i < ops) await get(keys[i % keys.length])`.
 * @param {(key: string) => Promise<unknown>} get
 * @param {string[]} keys
 * @param {number} ops
 * @param {number} maxMs
 * @returns {Promise<Measurement>}
 */
async function sequential(get, keys, ops, maxMs) {
  const n = keys.length
  let misses = 0
  let done = 0
  let truncated = false
  const s = start()
  const deadline = s.t0 + maxMs
  for (let i = 0; i < ops; i++) {
    if ((i & CHECK_MASK) === 0 && performance.now() > deadline) {
      truncated = true
      break
    }
    const v = await get(keys[i % n])
    if (v === null || v === undefined) misses++
    done++
  }
  return finish(s, done, misses, truncated)
}

/**
 * `inflight` async workers share one counter; each awaits `get(keys[i % keys.length])` for
 * the next `i` until `ops` were started (or the deadline passed).
 * @param {(key: string) => Promise<unknown>} get
 * @param {string[]} keys
 * @param {number} ops
 * @param {number} inflight
 * @param {number} maxMs
 * @returns {Promise<Measurement>}
 */
async function concurrent(get, keys, ops, inflight, maxMs) {
  const n = keys.length
  let next = 0
  let misses = 0
  let done = 0
  let truncated = false
  const s = start()
  const deadline = s.t0 + maxMs
  async function worker() {
    while (next < ops && !truncated) {
      const i = next++
      if ((i & CHECK_MASK) === 0 && performance.now() > deadline) {
        truncated = true
        break
      }
      const v = await get(keys[i % n])
      if (v === null || v === undefined) misses++
      done++
    }
  }
  const workers = []
  for (let w = 0; w < inflight; w++) workers.push(worker())
  await Promise.all(workers)
  return finish(s, done, misses, truncated)
}

/**
 * Runs `fn(i)` for i in [0, count) with at most `inflight` at a time (setup work: preloading).
 * @param {number} count
 * @param {number} inflight
 * @param {(i: number) => Promise<unknown>} fn
 */
async function forEachLimited(count, inflight, fn) {
  let next = 0
  async function worker() {
    while (next < count) await fn(next++)
  }
  const workers = []
  for (let w = 0; w < Math.min(inflight, count); w++) workers.push(worker())
  await Promise.all(workers)
}

module.exports = { sequential, concurrent, forEachLimited, settle, mainThreadCpuMs, machineCpuMs, redisCpuMs }
