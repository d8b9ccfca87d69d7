'use strict'
// Invalidation propagation between two processes: process A changes a key (set, del, or
// invalidateTag), process B polls the key in a tight loop and notes when it stops serving the
// old value from its L1. Delay = B's instant minus the instant A's call resolved.

const { nowMs, percentile, maxOf } = require('../lib/clock.js')
const { forkPeers, closePeers } = require('../lib/peers.js')
const { makeRevision } = require('../lib/workload.js')

const yieldToLoop = () => new Promise((resolve) => setImmediate(resolve))

module.exports = {
  id: 'propagation',
  title: 'Invalidation propagation between two processes',

  /** @param {{ quick: boolean }} o */
  config({ quick }) {
    return {
      iterations: quick ? 10 : 100,
      waitMs: 2000,
      maxTimeouts: 3,
      primeTimeoutMs: 5000,
      repeats: quick ? 1 : 2,
      jobTimeoutMs: quick ? 60000 : 120000,
    }
  },

  cases() {
    return [
      { id: 'set', label: '`set` (new value)' },
      { id: 'del', label: '`del`' },
      { id: 'tag', label: '`invalidateTag`' },
    ]
  },

  method(cfg) {
    return [
      `Two processes, A (the run's process) and B (forked), each with its own instance of the same system. ${cfg.iterations} iterations per run:`,
      'A writes a fresh key (revision 1, tagged with a fresh tag); B reads it with `getOrSet` (as an application would; the loader answers revision 0)',
      'until it returns revision 1 twice in a row (so it is in B\'s L1); B starts polling the key in a tight loop (one `getOrSet`, then `setImmediate`, so I/O',
      'such as bus messages is processed between reads) and says so; A then runs the operation (**set** revision 2, **del**, or **invalidateTag**) and notes the',
      'instant its call resolved; B notes the instant it *started* the first read that returned anything but revision 1 (so the delay excludes that read\'s own',
      'Redis round trip). Delay = B\'s instant - A\'s instant (both on the machine\'s monotonic clock), counted as 0 when B saw it first',
      `(the invalidation reached B before A's call resolved). B gives up after ${cfg.waitMs} ms: a system that never drops B's copy reports`,
      '"never (served stale until L1 TTL)"; a run stops after the first such wait when no iteration of it succeeded, or after',
      `${cfg.maxTimeouts} waits. Percentiles pool every iteration of every repeat. cacheable runs here with \`tags: true\` (its tag versions live in Redis`,
      'and are read on every `get`); cache-manager\'s tags are emulated (see Systems). Target: mlc p99 < 10 ms for each operation, no wait timing out.',
    ].join(' ')
  },

  /** @param {{ system: any, redisUrl: string, prefix: string, cfg: any, caseId: string }} job */
  async run({ system, redisUrl, prefix, cfg, caseId }) {
    const nonce = `${process.pid}-${Date.now()}`
    const sys = system.create(redisUrl, prefix, { tags: true })
    const [b] = forkPeers(1, { scenario: this.id, role: 'watcher', system: system.name, redisUrl, prefix, cfg, caseId, nonce })
    const delays = []
    const raw = []
    let timeouts = 0
    let iterations = 0
    const problems = []
    try {
      await sys.get('bench:absent')
      await b.next('ready', cfg.primeTimeoutMs)
      for (let i = 0; i < cfg.iterations; i++) {
        const key = `prop:${nonce}:${i}`
        const tag = `ptag:${nonce}:${i}`
        await sys.set(key, makeRevision(i, 1), { tags: [tag] })
        b.send({ type: 'cmd', op: 'prime', key })
        const primed = await b.next('primed', cfg.primeTimeoutMs)
        if (!primed.ok) {
          problems.push(`iteration ${i}: B could not read revision 1 (${primed.why})`)
          break
        }
        b.send({ type: 'cmd', op: 'watch', key })
        await b.next('watching', cfg.primeTimeoutMs)
        if (caseId === 'set') await sys.set(key, makeRevision(i, 2), { tags: [tag] })
        else if (caseId === 'del') await sys.del(key)
        else await sys.invalidateTag(tag)
        const tA = nowMs()
        const seen = await b.next('seen', cfg.waitMs + cfg.primeTimeoutMs)
        iterations++
        if (seen.timedOut) {
          timeouts++
          if (delays.length === 0 || timeouts >= cfg.maxTimeouts) break
          continue
        }
        if (caseId === 'set' && seen.rev !== 2) problems.push(`iteration ${i}: B read ${seen.rev === null ? 'nothing' : `revision ${seen.rev}`} after the set of revision 2`)
        raw.push(seen.t - tA)
        delays.push(Math.max(0, seen.t - tA))
      }
    } finally {
      await closePeers([b])
      await sys.close()
    }
    const metrics = { delays, raw, timeouts, iterations, never: delays.length === 0 && timeouts > 0 }
    return { ops: iterations, ms: NaN, cpuUserMs: NaN, cpuSystemMs: NaN, mainThreadCpuMs: NaN, redisCpuMs: NaN, truncated: false, problems, metrics }
  },

  /** Process B. */
  async peer(ctx) {
    const { cfg } = ctx
    const sys = ctx.system.create(ctx.redisUrl, ctx.prefix, { tags: true })
    // B reads as an application does, through getOrSet: every system then copies what it reads
    // into its L1 (cache-manager's plain `get` never fills its memory store from Redis). After
    // a del or a tag invalidation the loader answers revision 0.
    const read = (key) => sys.getOrSet(key, () => makeRevision(0, 0))
    try {
      await sys.get('bench:absent')
      ctx.send({ type: 'ready' })
      for (let iteration = 0; iteration < 1e6; iteration++) {
        const m = await ctx.next('cmd', 600000) // the coordinator ends this process by disconnecting
        if (m.op !== 'prime') throw new Error(`expected prime, got ${m.op}`)
        // read until revision 1 came back twice in a row (the second from L1 where there is one)
        let ok = false
        let why = 'timeout'
        let inRow = 0
        const until = nowMs() + cfg.primeTimeoutMs - 500
        while (nowMs() < until) {
          const v = await read(m.key)
          if (v && v.rev === 1) {
            if (++inRow >= 2) { ok = true; break }
          } else {
            inRow = 0
            why = `read ${v ? `revision ${v.rev}` : 'nothing'}`
            await new Promise((r) => setTimeout(r, 1))
          }
        }
        ctx.send({ type: 'primed', ok, why })
        if (!ok) continue
        const w = await ctx.next('cmd', cfg.primeTimeoutMs)
        if (w.op !== 'watch') throw new Error(`expected watch, got ${w.op}`)
        ctx.send({ type: 'watching' })
        const deadline = nowMs() + cfg.waitMs
        let seen
        for (let n = 0; n < 1e8; n++) {
          const t = nowMs()
          const v = await read(m.key)
          if (!v || v.rev !== 1) { seen = { type: 'seen', t, rev: v ? v.rev : null, timedOut: false }; break }
          if (t > deadline) { seen = { type: 'seen', timedOut: true }; break }
          await yieldToLoop()
        }
        ctx.send(seen || { type: 'seen', timedOut: true })
      }
      return {}
    } finally {
      await sys.close()
    }
  },

  runSummary(run) {
    const m = run.metrics || {}
    if (m.never) return `never (${m.timeouts} wait(s) of 2 s timed out)`
    return `p50 ${percentile(m.delays, 50).toFixed(3)} ms, p99 ${percentile(m.delays, 99).toFixed(3)} ms over ${m.delays.length}${m.timeouts ? `, ${m.timeouts} timed out` : ''}`
  },

  /** Pooled delays of `name` in case `caseId`. */
  pooled(ctx, caseId, name) {
    const runs = ctx.okRuns(caseId, name)
    const delays = [].concat(...runs.map((r) => r.metrics.delays))
    const timeouts = runs.reduce((a, r) => a + r.metrics.timeouts, 0)
    const iterations = runs.reduce((a, r) => a + r.metrics.iterations, 0)
    return { runs, delays, timeouts, iterations, never: runs.length > 0 && delays.length === 0 && timeouts > 0 }
  },

  report(s, ctx) {
    const { fmt } = ctx
    const out = ['| Operation | System | samples | p50, ms | p99, ms | max, ms | waits timed out | target (mlc: p99 < 10 ms) |', '|---|---|---:|---:|---:|---:|---:|---|']
    for (const c of s.cases) {
      for (const name of ctx.names) {
        const p = this.pooled(ctx, c.id, name)
        const target = name === ctx.subject ? fmt.pass(this.passes(p)) : ''
        if (p.runs.length === 0) out.push(`| ${c.label} | ${name} | n/a | | | | | ${target} |`)
        else if (p.never) out.push(`| ${c.label} | ${name} | 0 | never (served stale until L1 TTL) | | | ${p.timeouts} of ${p.iterations} | ${target} |`)
        else out.push(`| ${c.label} | ${name} | ${p.delays.length} | ${fmt.ms(percentile(p.delays, 50))} | ${fmt.ms(percentile(p.delays, 99))} | ${fmt.ms(maxOf(p.delays))} | ${p.timeouts} of ${p.iterations} | ${target} |`)
      }
    }
    return out
  },

  passes(p) {
    return p.runs.length > 0 && !p.never && p.timeouts === 0 && p.delays.length > 0 && percentile(p.delays, 99) < 10
  },

  targets(s, ctx) {
    return s.cases.map((c) => {
      const p = this.pooled(ctx, c.id, ctx.subject)
      const measured = p.runs.length === 0 ? 'no run' : p.never ? 'never' : `p99 ${ctx.fmt.ms(percentile(p.delays, 99))} ms over ${p.delays.length} samples${p.timeouts ? `, ${p.timeouts} timed out` : ''}`
      return { scenario: s.scenario.title, label: c.label, required: 'p99 < 10 ms', measured, pass: this.passes(p) }
    })
  },
}
