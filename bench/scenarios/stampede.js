'use strict'
// Stampede: many concurrent calls on one cold key, in one process and spread over four
// processes started together. Counts loader calls (1 is the ideal) and the wall time until
// every call has its value.

const { nowMs, sleep, sleepUntil } = require('../lib/clock.js')
const { forkPeers, broadcast, gather, closePeers } = require('../lib/peers.js')
const { makeValue } = require('./common.js')

/** The article's stampede protection is `getWithLock`; everyone else's is its getOrSet. */
const lockedGetOrSet = (sys) => sys.getOrSetLocked || sys.getOrSet

/**
 * One burst: `calls` concurrent calls on `key` at `startAt` (clock.js); returns when all settled.
 * @returns {Promise<{ loaderCalls: number, errors: number, wrong: number, endAt: number, firstError?: string }>}
 */
async function burst(sys, key, calls, loaderMs, startAt) {
  let loaderCalls = 0
  const value = makeValue(7)
  const loader = async () => {
    loaderCalls++
    await sleep(loaderMs)
    return value
  }
  const call = lockedGetOrSet(sys)
  await sleepUntil(startAt)
  const settled = await Promise.allSettled(Array.from({ length: calls }, () => call(key, loader)))
  const endAt = nowMs()
  let errors = 0
  let wrong = 0
  let firstError
  for (const s of settled) {
    if (s.status === 'rejected') {
      errors++
      if (!firstError) firstError = String((s.reason && s.reason.message) || s.reason)
    } else if (!s.value || s.value.id !== 7) wrong++
  }
  return { loaderCalls, errors, wrong, endAt, firstError }
}

/** A fresh instance with its connections made (one read of an absent key, one getOrSet of a warm key). */
async function warmInstance(system, redisUrl, prefix, nonce) {
  const sys = system.create(redisUrl, prefix)
  await sys.get('bench:absent')
  await lockedGetOrSet(sys)(`stampede-warm:${nonce}:${process.pid}`, async () => makeValue(1))
  return sys
}

module.exports = {
  id: 'stampede',
  title: 'Stampede (one cold key)',

  /** @param {{ quick: boolean }} o */
  config({ quick }) {
    return {
      loaderMs: 50,
      repeats: quick ? 1 : 3,
      readyTimeoutMs: 15000,
      burstTimeoutMs: 20000,
      jobTimeoutMs: 60000,
    }
  },

  cases() {
    return [
      { id: 'p1', label: '1 process x 1,000 calls', procs: 1, calls: 1000 },
      { id: 'p4', label: '4 processes x 250 calls', procs: 4, calls: 250 },
    ]
  },

  method(cfg) {
    return [
      'Each run uses a key nobody has cached. **1 process**: the run\'s process makes 1,000 concurrent calls at once.',
      '**4 processes**: the run\'s process forks 4 processes (same system, each with its own instance); each makes its connections,',
      'reports ready, and all start their 250 concurrent calls at the same instant (a barrier on the machine\'s monotonic clock).',
      `The loader waits ${cfg.loaderMs} ms and returns a 1 KiB object. Wall time: from the start instant until the last call of the last process has its value.`,
      'Calls: mlc `getOrSet`, the article\'s `getWithLock` (SET NX EX 2, losers retry every 50 ms), bentocache `getOrSet`, cacheable `getOrSet`, cache-manager `wrap`.',
      'Target: exactly 1 loader call in every run of both cases.',
    ].join(' ')
  },

  /** @param {{ system: any, redisUrl: string, prefix: string, cfg: any, caseId: string }} job */
  async run({ system, redisUrl, prefix, cfg, caseId }) {
    const c = this.cases().find((x) => x.id === caseId)
    if (!c) throw new Error(`stampede: unknown case ${caseId}`)
    const nonce = `${process.pid}-${Date.now()}`
    const key = `stampede:${nonce}`
    let results
    let startAt
    if (c.procs === 1) {
      const sys = await warmInstance(system, redisUrl, prefix, nonce)
      try {
        startAt = nowMs() + 20
        results = [await burst(sys, key, c.calls, cfg.loaderMs, startAt)]
      } finally {
        await sys.close()
      }
    } else {
      const peers = forkPeers(c.procs, { scenario: this.id, role: 'burst', system: system.name, redisUrl, prefix, cfg, caseId, nonce, key, calls: c.calls })
      try {
        await gather(peers, 'ready', cfg.readyTimeoutMs)
        startAt = nowMs() + 100
        broadcast(peers, { type: 'go', startAt })
        results = (await gather(peers, 'result', cfg.burstTimeoutMs)).map((m) => m.result)
      } finally {
        await closePeers(peers)
      }
    }
    const wallMs = Math.max(...results.map((r) => r.endAt)) - startAt
    const sum = (f) => results.reduce((a, r) => a + r[f], 0)
    const metrics = { wallMs, loaderCalls: sum('loaderCalls'), errors: sum('errors'), wrong: sum('wrong'), perProcessLoaderCalls: results.map((r) => r.loaderCalls) }
    const problems = []
    if (metrics.errors) problems.push(`${metrics.errors} calls rejected (first: ${results.find((r) => r.firstError).firstError})`)
    if (metrics.wrong) problems.push(`${metrics.wrong} calls returned a wrong value`)
    const calls = c.procs * c.calls
    return { ops: calls, ms: wallMs, cpuUserMs: NaN, cpuSystemMs: NaN, mainThreadCpuMs: NaN, redisCpuMs: NaN, truncated: false, problems, metrics }
  },

  /** A forked process of the 4-process case. */
  async peer(ctx) {
    const sys = await warmInstance(ctx.system, ctx.redisUrl, ctx.prefix, ctx.nonce)
    try {
      ctx.send({ type: 'ready' })
      const { startAt } = await ctx.next('go', ctx.cfg.readyTimeoutMs + 5000)
      return await burst(sys, ctx.key, ctx.calls, ctx.cfg.loaderMs, startAt)
    } finally {
      await sys.close()
    }
  },

  runSummary(run) {
    const m = run.metrics || {}
    return `${m.loaderCalls} loader call(s)${m.perProcessLoaderCalls && m.perProcessLoaderCalls.length > 1 ? ` [${m.perProcessLoaderCalls.join('+')}]` : ''}, wall ${m.wallMs.toFixed(1)} ms${m.errors ? `, ${m.errors} errors` : ''}`
  },

  report(s, ctx) {
    const { fmt } = ctx
    const out = ['| Case | System | loader calls per run | wall time, ms (median, min - max) | calls rejected | target (mlc: 1 loader call) |', '|---|---|---|---:|---:|---|']
    for (const c of s.cases) {
      for (const name of ctx.names) {
        const runs = ctx.okRuns(c.id, name)
        const wall = ctx.summary(runs.map((r) => r.metrics.wallMs))
        const loads = runs.map((r) => r.metrics.loaderCalls + (r.metrics.perProcessLoaderCalls.length > 1 ? ` (${r.metrics.perProcessLoaderCalls.join('+')})` : ''))
        const errors = runs.reduce((a, r) => a + r.metrics.errors, 0)
        const target = name === ctx.subject ? fmt.pass(runs.length > 0 && runs.every((r) => r.metrics.loaderCalls === 1)) : ''
        out.push(`| ${c.label} | ${name} | ${loads.join(', ') || 'n/a'} | ${fmt.ms(wall.median)} (${fmt.ms(wall.min)} - ${fmt.ms(wall.max)}) | ${errors} | ${target} |`)
      }
    }
    return out
  },

  targets(s, ctx) {
    return s.cases.map((c) => {
      const runs = ctx.okRuns(c.id, ctx.subject)
      const loads = runs.map((r) => r.metrics.loaderCalls)
      return {
        scenario: s.scenario.title,
        label: c.label,
        required: 'exactly 1 loader call (every run)',
        measured: loads.length ? `${loads.join(', ')} loader call(s) in ${loads.length} run(s)` : 'no run',
        pass: loads.length > 0 && loads.every((n) => n === 1) && runs.every((r) => r.metrics.errors === 0),
      }
    })
  },
}
