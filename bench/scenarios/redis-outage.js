'use strict'
// Redis killed mid-run: a closed loop of getOrSet calls runs against a private redis-server,
// which is SIGKILLed, then restarted on the same port. Counts calls served and thrown, the
// latency of calls made while Redis was down, and how long after the restart the system
// writes to Redis again.

const Redis = require('ioredis')
const { nowMs, sleep, percentile, maxOf } = require('../lib/clock.js')
const { startRedis } = require('../lib/redis-server.js')
const { onCleanup } = require('../lib/cleanup.js')
const { makeRevision, prng } = require('../lib/workload.js')

/** Bounded wait for a promise (resolves `fallback` after `ms`). */
function within(p, ms, fallback) {
  let timer
  return Promise.race([
    Promise.resolve(p).catch(() => fallback),
    new Promise((resolve) => { timer = setTimeout(() => resolve(fallback), ms) }),
  ]).finally(() => clearTimeout(timer))
}

module.exports = {
  id: 'outage',
  title: 'Redis killed mid-run',

  /** @param {{ quick: boolean }} o */
  config({ quick }) {
    return {
      keys: 100000,
      inflight: 64,
      loaderMs: 2,
      warmMs: quick ? 1000 : 1500,
      downMs: 2000,
      afterMs: quick ? 1500 : 2500,
      drainMs: 5000,
      maxCalls: 2000000,
      repeats: quick ? 1 : 2,
      jobTimeoutMs: 60000,
    }
  },

  cases() {
    return [{ id: 'kill', label: '64 in flight, SIGKILL, restart after 2 s' }]
  },

  method(cfg) {
    return [
      'Each run starts its **own** redis-server (127.0.0.1, a free port), creates one instance of the system on it and runs a closed loop:',
      `${cfg.inflight} async workers each call \`getOrSet(key, loader)\` on keys drawn uniformly from ${cfg.keys.toLocaleString('en-US')} (so most calls miss L1 and need Redis),`,
      `with a ${cfg.loaderMs} ms loader. After ${cfg.warmMs} ms the redis-server is **SIGKILLed**; ${cfg.downMs} ms later a new one starts on the same port (empty);`,
      `the loop stops starting calls ${cfg.afterMs} ms after the restart, and calls still pending ${cfg.drainMs} ms after that count as hung.`,
      'A call is **served** when it resolves with the key\'s value, **thrown** when it rejects. **While down**: the calls in progress at some instant between the kill and the restart',
      '(started before the restart, not finished before the kill), so a call that blocks across the outage counts with its whole wait; a hung call counts as infinitely slow.',
      '**L2 again**: time from the restart until the new server holds a key (polled every 5 ms with DBSIZE through a separate connection), i.e. until the',
      'system writes to Redis again. Systems run with their defaults (the article\'s and bentocache\'s ioredis queue commands while disconnected and retry;',
      'node-redis under @keyv/redis likewise), only with an error listener so an error event cannot crash the process.',
      'Target: mlc serves every call, throws none, and its p99 latency while Redis is down is under 100 ms.',
    ].join(' ')
  },

  /** @param {{ system: any, cfg: any, caseId: string, log: (s: string) => void }} job */
  async run({ system, cfg, log }) {
    // ioredis (the article's, bentocache's) prints "[ioredis] Unhandled error event" for every
    // failed reconnect of a connection that has no error listener: count them instead
    const consoleError = console.error
    let ioredisUnhandled = 0
    console.error = (...a) => {
      if (typeof a[0] === 'string' && a[0].startsWith('[ioredis] Unhandled error event')) ioredisUnhandled++
      else consoleError(...a)
    }
    try {
      return await this.runOutage({ system, cfg, log, ioredisErrors: () => ioredisUnhandled })
    } finally {
      console.error = consoleError
    }
  },

  async runOutage({ system, cfg, log, ioredisErrors }) {
    let server = await startRedis()
    const port = server.port
    const unregister = onCleanup(() => server.killNow())
    const url = server.url
    const sys = system.create(url, 'bench-outage')
    const starts = new Float64Array(cfg.maxCalls)
    const ends = new Float64Array(cfg.maxCalls)
    const outcome = new Uint8Array(cfg.maxCalls) // 0 pending, 1 served, 2 wrong value, 3 thrown
    let n = 0
    let loaderCalls = 0
    const errorsSeen = new Map()
    const rnd = prng(0xc0ffee)
    const problems = []
    let stopAt = Infinity
    let tKill = NaN
    let tRestart = NaN
    let tL2 = NaN
    try {
      await within(sys.get('bench:absent'), 3000, null)
      const worker = async () => {
        while (n < cfg.maxCalls && nowMs() < stopAt) {
          const id = n++
          const i = Math.floor(rnd() * cfg.keys)
          const key = `outage:${i}`
          starts[id] = nowMs()
          try {
            const v = await sys.getOrSet(key, async () => {
              loaderCalls++
              await sleep(cfg.loaderMs)
              return makeRevision(i, 1)
            })
            outcome[id] = v && v.id === i ? 1 : 2
          } catch (e) {
            outcome[id] = 3
            const msg = String((e && e.message) || e).slice(0, 120)
            errorsSeen.set(msg, (errorsSeen.get(msg) || 0) + 1)
          }
          ends[id] = nowMs()
        }
      }
      const t0 = nowMs()
      stopAt = t0 + cfg.warmMs + cfg.downMs + cfg.afterMs + 10000 // provisional bound, set exactly below
      const workers = []
      for (let w = 0; w < cfg.inflight; w++) workers.push(worker())

      await sleep(cfg.warmMs)
      tKill = nowMs()
      server.killNow()
      await server.exitPromise
      await sleep(Math.max(0, tKill + cfg.downMs - nowMs()))
      server = await startRedis({ port })
      tRestart = nowMs()
      stopAt = tRestart + cfg.afterMs
      // until the system writes to the new server (or the loop stops)
      const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false })
      probe.on('error', () => {})
      try {
        await probe.connect()
        while (nowMs() < stopAt) {
          const size = await probe.dbsize().catch(() => 0)
          if (size > 0) { tL2 = nowMs(); break }
          await sleep(5)
        }
      } finally {
        probe.disconnect()
      }
      await within(Promise.all(workers), Math.max(0, stopAt - nowMs()) + cfg.drainMs, undefined)
    } finally {
      stopAt = 0
      const closed = await within(sys.close().then(() => true), 5000, false)
      if (!closed) problems.push('close() did not resolve within 5 s')
      await server.stop()
      unregister()
    }

    // tally
    let served = 0
    let wrong = 0
    let thrown = 0
    let hung = 0
    const downLat = []
    let downServed = 0
    let downThrown = 0
    let downHung = 0
    for (let id = 0; id < n; id++) {
      const o = outcome[id]
      if (o === 1) served++
      else if (o === 2) wrong++
      else if (o === 3) thrown++
      else hung++
      // in progress at some instant while Redis was down: started before the restart and not
      // finished before the kill (a call blocked across the whole outage counts, with its wait)
      if (starts[id] < tRestart && (o === 0 || ends[id] > tKill)) {
        if (o === 0) downHung++
        else downLat.push(ends[id] - starts[id])
        if (o === 1) downServed++
        if (o === 3) downThrown++
      }
    }
    // a hung call's latency is at least (end of the run - its start): count it as infinite
    const downAll = downLat.concat(new Array(downHung).fill(Infinity))
    if (wrong) problems.push(`${wrong} calls resolved with another key's value`)
    if (errorsSeen.size) problems.push(`errors thrown: ${[...errorsSeen].slice(0, 3).map(([m, c]) => `${c} x "${m}"`).join('; ')}`)
    if (n >= cfg.maxCalls) problems.push(`stopped at the bound of ${cfg.maxCalls} calls`)
    log(`calls ${n}, served ${served}, thrown ${thrown}, hung ${hung}; down: ${downAll.length} calls, p99 ${percentile(downAll, 99).toFixed(1)} ms; L2 again after ${(tL2 - tRestart).toFixed(0)} ms`)
    const metrics = {
      calls: n, served, wrong, thrown, hung, loaderCalls,
      down: { calls: downAll.length, served: downServed, thrown: downThrown, hung: downHung, p50: percentile(downAll, 50), p99: percentile(downAll, 99), max: maxOf(downAll) },
      l2AgainMs: Number.isFinite(tL2) ? tL2 - tRestart : null,
      ioredisUnhandledErrors: ioredisErrors(),
      downMs: tRestart - tKill,
    }
    const total = (tRestart + cfg.afterMs) - (tKill - cfg.warmMs)
    return { ops: n, ms: total, cpuUserMs: NaN, cpuSystemMs: NaN, mainThreadCpuMs: NaN, redisCpuMs: NaN, truncated: false, problems, metrics }
  },

  runSummary(run) {
    const m = run.metrics
    return `${m.calls} calls: ${m.served} served, ${m.thrown} thrown, ${m.hung} hung; while down ${m.down.calls} calls, p99 ${fmtLat(m.down.p99)}; L2 again ${m.l2AgainMs === null ? 'not within the run' : `${m.l2AgainMs.toFixed(0)} ms`} after restart`
  },

  report(s, ctx) {
    const { fmt } = ctx
    const c = s.cases[0]
    const out = ['| System | calls | served | thrown | hung | calls while down | p50 / p99 / max while down, ms | L2 again after restart, ms | target (mlc: all served, none thrown, p99 < 100 ms) |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---|']
    for (const name of ctx.names) {
      const runs = ctx.okRuns(c.id, name)
      if (!runs.length) { out.push(`| ${name} | failed | | | | | | | |`); continue }
      const each = (f) => runs.map(f).join(', ')
      const l2 = runs.map((r) => (r.metrics.l2AgainMs === null ? 'not within the run' : fmt.int(r.metrics.l2AgainMs))).join(', ')
      const target = name === ctx.subject ? fmt.pass(this.passes(runs)) : ''
      out.push(`| ${name} | ${each((r) => fmt.int(r.metrics.calls))} | ${each((r) => fmt.int(r.metrics.served))} | ${each((r) => fmt.int(r.metrics.thrown))} | ${each((r) => fmt.int(r.metrics.hung))} | ${each((r) => fmt.int(r.metrics.down.calls))} | ${each((r) => `${fmtLat(r.metrics.down.p50)} / ${fmtLat(r.metrics.down.p99)} / ${fmtLat(r.metrics.down.max)}`)} | ${l2} | ${target} |`)
    }
    out.push('', 'One value per repeat, in run order.')
    return out
  },

  passes(runs) {
    return runs.length > 0 && runs.every((r) => r.metrics.thrown === 0 && r.metrics.hung === 0 && r.metrics.wrong === 0 &&
      r.metrics.served === r.metrics.calls && r.metrics.down.calls > 0 && r.metrics.down.p99 < 100)
  },

  targets(s, ctx) {
    const runs = ctx.okRuns(s.cases[0].id, ctx.subject)
    const measured = runs.length
      ? runs.map((r) => `${r.metrics.served}/${r.metrics.calls} served, ${r.metrics.thrown} thrown, p99 down ${fmtLat(r.metrics.down.p99)} ms`).join('; ')
      : 'no run'
    return [{ scenario: s.scenario.title, label: s.cases[0].label, required: 'every call served, none thrown, p99 < 100 ms while Redis is down', measured, pass: this.passes(runs) }]
  },
}

function fmtLat(x) {
  if (x === Infinity) return 'hung'
  if (!Number.isFinite(x)) return 'n/a'
  return x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : x.toFixed(0)
}
