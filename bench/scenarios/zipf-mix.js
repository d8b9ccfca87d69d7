'use strict'
// Zipf mix: two processes serve a skewed read/write workload over 100 000 keys against a
// shared "database" (a file of per-key revision counters). Measures throughput, latency,
// loader calls per 1 000 requests, and stale reads: a read that started after an
// update+invalidate of its key had completed (in either process) and returned an older revision.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { nowMs, sleep, sleepUntil, percentile, maxOf } = require('../lib/clock.js')
const { forkPeers, broadcast, gather, closePeers } = require('../lib/peers.js')
const { makeRevision, prng, zipfSampler } = require('../lib/workload.js')
const { redisCpuMs } = require('../lib/measure.js')

/** The "database": one little-endian Int32 revision per key in a file (tmpfs where there is one). */
class RevisionFile {
  constructor(file) {
    this.fd = fs.openSync(file, 'r+')
    this.buf = Buffer.alloc(4)
  }

  read(i) {
    fs.readSync(this.fd, this.buf, 0, 4, i * 4)
    return this.buf.readInt32LE(0)
  }

  /** Increments key i's revision (only the process that owns i writes it) and returns it. */
  bump(i) {
    const next = this.read(i) + 1
    this.buf.writeInt32LE(next, 0)
    fs.writeSync(this.fd, this.buf, 0, 4, i * 4)
    return next
  }

  close() {
    fs.closeSync(this.fd)
  }
}

function dbDir() {
  try {
    fs.accessSync('/dev/shm', fs.constants.W_OK)
    return '/dev/shm'
  } catch {
    return os.tmpdir()
  }
}

/** Sums the numeric counters of several stats() snapshots (whole run, warm-up included). */
function sumStats(list) {
  if (list.some((x) => !x)) return undefined
  const out = {}
  for (const st of list) {
    for (const [k, v] of Object.entries(st)) {
      if (typeof v === 'number' && !k.endsWith('Ratio')) out[k] = (out[k] || 0) + v
    }
  }
  return out
}

const SHOWN_COUNTERS = ['l1Hits', 'l1Misses', 'l2Hits', 'l2Misses', 'loaderCalls', 'loadsDiscarded', 'l1FillsSkipped', 'lockAcquired', 'lockWaits', 'lockWaitHits', 'lockWaitTimeouts', 'busSent', 'busReceived', 'busAcksSent', 'busAckTimeouts', 'busResubscriptions', 'redisErrors', 'l1Evictions']

module.exports = {
  id: 'zipf',
  title: 'Zipf mix (2 processes, reads + update/invalidate)',

  /** @param {{ quick: boolean }} o */
  config({ quick }) {
    return {
      keys: 100000,
      // every system's L1 has room for the whole key space (node-cache, the article's, has no
      // bound): the scenario compares coherence and load handling, not eviction policies
      l1MaxEntries: 100000 + 1024,
      s: 1.0,
      readShare: 0.95,
      loaderMs: 2,
      procs: 2,
      inflight: 64,
      warmMs: quick ? 1000 : 2000,
      durationMs: quick ? 2000 : 10000,
      maxOpsPerProcess: 3000000,
      repeats: quick ? 1 : 2,
      flushBeforeRun: true,
      readyTimeoutMs: 20000,
      jobTimeoutMs: quick ? 60000 : 90000,
    }
  },

  cases() {
    return [{ id: 'mix', label: '2 processes x 64 in flight' }]
  },

  method(cfg) {
    return [
      `Two forked processes, each with its own instance, start together (barrier) and run the workload for ${cfg.warmMs / 1000} s of warm-up (not counted) and then`,
      `**${cfg.durationMs / 1000} s measured** (the issue's 30 s shortened to fit the 15-minute budget of the whole benchmark),`,
      `${cfg.inflight} async workers per process. Keys are drawn from a Zipf distribution (s = ${cfg.s}) over ${cfg.keys.toLocaleString('en-US')} keys.`,
      `Every bounded L1 has room for the whole key space (\`l1MaxEntries\` ${cfg.l1MaxEntries.toLocaleString('en-US')}: mlc \`l1.maxEntries\`, bentocache \`maxItems\`,`,
      'cacheable and cache-manager `lruSize`), as the article\'s unbounded node-cache has: the scenario compares coherence and loads, not eviction policies.',
      `${Math.round(cfg.readShare * 100)}% of operations are reads: \`getOrSet(key, loader)\`, whose loader reads the key's current revision from the "database"`,
      `and returns the 1 KiB value of that revision after ${cfg.loaderMs} ms (a query that saw the database at its start).`,
      `${Math.round((1 - cfg.readShare) * 100)}% are **update+invalidate**: increment the key's revision in the database, then \`del(key)\` in the cache.`,
      'The database is a file of per-key revision counters on tmpfs, shared by both processes; each process updates only the keys of its parity',
      '(single writer per key), both read every key. Redis is flushed before every run.',
      'Throughput: operations (reads and updates) of both processes started in the measured window per second; latency over those operations;',
      'loader calls started in the window per 1,000 of those operations.',
      '**Stale read**: a read that *started* after an update+invalidate of its key had *completed* (in either process) and returned an older revision;',
      'its age is how long after that completion the read started. For the article, `getOrSet` is its cache-aside path (get, load, set).',
      'Target (the hot-path issue\'s): mlc >= 1.5x bentocache\'s throughput (the other coherent cache) with no stale read, and loader calls beyond each key\'s first load <= 0.5x the article\'s.',
    ].join(' ')
  },

  /**
   * @param {{ system: any, redisUrl: string, prefix: string, cfg: any, caseId: string, log: (s: string) => void, probe?: { start(): Promise<void>, stop(): Promise<void> } }} job
   *   `probe`: started when the measured part begins and stopped when it ends (the cluster
   *   scenario counts each primary's commands with it)
   */
  async run({ system, redisUrl, prefix, cfg, caseId, log, probe }) {
    const file = path.join(dbDir(), `mlc-bench-zipf-${process.pid}-${Date.now()}.db`)
    fs.writeFileSync(file, Buffer.alloc(cfg.keys * 4))
    const peers = forkPeers(cfg.procs, { scenario: this.id, role: 'mixer', system: system.name, redisUrl, prefix, cfg, caseId, file })
    let results
    let startAt
    let clientCpuMs = 0
    let redisCpu = 0
    try {
      await gather(peers, 'ready', cfg.readyTimeoutMs)
      const redis0 = redisCpuMs()
      startAt = nowMs() + 200
      broadcast(peers, { type: 'go', startAt })
      let probed
      if (probe) {
        const from = startAt + cfg.warmMs
        probed = sleepUntil(from).then(() => probe.start()).then(() => sleepUntil(from + cfg.durationMs)).then(() => probe.stop())
        probed.catch(() => {}) // awaited below; a failure of the peers comes first
      }
      const msgs = await gather(peers, 'result', cfg.warmMs + cfg.durationMs + 30000)
      if (probed) await probed
      redisCpu = redisCpuMs() - redis0
      results = msgs.map((m) => m.result)
      clientCpuMs = msgs.reduce((a, m) => a + m.cpuMs, 0)
    } finally {
      await closePeers(peers)
      fs.rmSync(file, { force: true })
    }

    const measureFrom = startAt + cfg.warmMs
    // updates of every process (warm-up included), by key, in completion order
    const updates = new Map()
    for (const r of results) {
      for (let j = 0; j < r.uKey.length; j++) {
        const k = r.uKey[j]
        let list = updates.get(k)
        if (!list) updates.set(k, (list = []))
        list.push([r.uDone[j], r.uRev[j]])
      }
    }
    for (const list of updates.values()) list.sort((a, b) => a[0] - b[0])
    let stale = 0
    const staleAges = []
    let reads = 0
    let updatesMeasured = 0
    const lat = []
    for (const r of results) {
      for (let j = 0; j < r.rKey.length; j++) {
        const t = r.rStart[j]
        if (t < measureFrom) continue
        reads++
        lat.push(r.rLat[j])
        const list = updates.get(r.rKey[j])
        if (!list) continue
        const got = r.rRev[j]
        // the first update completed before the read started whose revision the read does not have
        for (let u = 0; u < list.length && list[u][0] < t; u++) {
          if (list[u][1] > got) {
            stale++
            staleAges.push(t - list[u][0])
            break
          }
        }
      }
      for (let j = 0; j < r.uKey.length; j++) {
        if (r.uStart[j] < measureFrom) continue
        updatesMeasured++
        lat.push(r.uDone[j] - r.uStart[j])
      }
    }
    const ops = reads + updatesMeasured
    // loads beyond the first of each key (Redis is flushed before the run, so every key read
    // needs one load): invalidations, lost races, duplicate loads; over the whole run
    const distinct = new Set()
    let opsAll = 0
    for (const r of results) {
      for (let j = 0; j < r.rKey.length; j++) distinct.add(r.rKey[j])
      opsAll += r.rKey.length + r.uKey.length
    }
    const loaderCallsAll = results.reduce((a, r) => a + r.loaderCallsAll, 0)
    const extraLoadsPer1000 = ((loaderCallsAll - distinct.size) / opsAll) * 1000
    const loaderCalls = results.reduce((a, r) => a + r.loaderCallsMeasured, 0)
    const errors = results.reduce((a, r) => a + r.errors, 0)
    const problems = []
    if (errors) problems.push(`${errors} operations rejected (first: ${results.find((r) => r.firstError).firstError})`)
    if (results.some((r) => r.truncated)) problems.push('a process reached its operation bound before the end of the run')
    const metrics = {
      ops, reads, updates: updatesMeasured,
      throughput: ops / (cfg.durationMs / 1000),
      p50: percentile(lat, 50), p99: percentile(lat, 99),
      loaderCalls, loaderPer1000: (loaderCalls / ops) * 1000,
      loaderCallsAll, distinctKeys: distinct.size, opsAll, extraLoadsPer1000,
      // CPU per operation of the whole run (warm-up included): both client processes (every
      // thread, setup included) and redis-server
      clientCpuUsPerOp: (clientCpuMs * 1000) / opsAll, redisCpuUsPerOp: (redisCpu * 1000) / opsAll,
      stale, staleP50AgeMs: percentile(staleAges, 50), staleMaxAgeMs: maxOf(staleAges),
      staleWithin10ms: staleAges.filter((a) => a <= 10).length,
      errors,
      stats: sumStats(results.map((r) => r.stats)),
    }
    log(`${ops} ops, ${metrics.throughput.toFixed(0)} ops/s, loader/1000 ${metrics.loaderPer1000.toFixed(2)}, stale ${stale}`)
    return { ops, ms: cfg.durationMs, cpuUserMs: NaN, cpuSystemMs: NaN, mainThreadCpuMs: NaN, redisCpuMs: NaN, truncated: false, problems, metrics }
  },

  /** One of the two processes. */
  async peer(ctx) {
    const { cfg, peerIndex } = ctx
    const db = new RevisionFile(ctx.file)
    const sys = ctx.system.create(ctx.redisUrl, ctx.prefix, { l1MaxEntries: cfg.l1MaxEntries })
    const rnd = prng(0x5eed + peerIndex * 7919)
    const zipf = zipfSampler(cfg.keys, cfg.s, rnd)
    const cap = cfg.maxOpsPerProcess
    const uCap = cap >> 3
    const rKey = new Int32Array(cap)
    const rStart = new Float64Array(cap)
    const rRev = new Int32Array(cap)
    const rLat = new Float64Array(cap)
    const uKey = new Int32Array(uCap)
    const uStart = new Float64Array(uCap)
    const uDone = new Float64Array(uCap)
    const uRev = new Int32Array(uCap)
    let reads = 0
    let updates = 0
    let loaderCallsMeasured = 0
    let loaderCallsAll = 0
    let errors = 0
    let firstError
    let truncated = false
    let measureFrom = Infinity
    const keyName = (i) => `z:${i}`
    const load = async (i) => {
      loaderCallsAll++
      if (nowMs() >= measureFrom) loaderCallsMeasured++
      const rev = db.read(i)
      await sleep(cfg.loaderMs)
      return makeRevision(i, rev)
    }
    const fail = (e) => {
      errors++
      if (!firstError) firstError = String((e && e.message) || e).slice(0, 200)
    }
    try {
      await sys.get('bench:absent')
      ctx.send({ type: 'ready' })
      const { startAt } = await ctx.next('go', cfg.readyTimeoutMs + 5000)
      measureFrom = startAt + cfg.warmMs
      const endAt = measureFrom + cfg.durationMs
      await sleepUntil(startAt)
      const worker = async () => {
        while (nowMs() < endAt) {
          if (reads >= cap || updates >= uCap) { truncated = true; break }
          if (rnd() < cfg.readShare) {
            const i = zipf()
            const t0 = nowMs()
            try {
              const v = await sys.getOrSet(keyName(i), () => load(i))
              const t1 = nowMs()
              const j = reads++
              rKey[j] = i
              rStart[j] = t0
              rRev[j] = v && v.id === i ? v.rev : -1
              rLat[j] = t1 - t0
            } catch (e) {
              fail(e)
            }
          } else {
            // a Zipf key of this process's parity (single writer per key)
            let i = zipf()
            for (let tries = 0; tries < 64 && (i & 1) !== (peerIndex & 1); tries++) i = zipf()
            if ((i & 1) !== (peerIndex & 1)) i = Math.min(cfg.keys - 1, i ^ 1) // (keys is even: stays in range)
            const t0 = nowMs()
            try {
              const rev = db.bump(i)
              await sys.del(keyName(i))
              const j = updates++
              uKey[j] = i
              uStart[j] = t0
              uDone[j] = nowMs()
              uRev[j] = rev
            } catch (e) {
              fail(e)
            }
          }
        }
      }
      const workers = []
      for (let w = 0; w < cfg.inflight; w++) workers.push(worker())
      await Promise.all(workers)
      return {
        errors, firstError, truncated, loaderCallsMeasured, loaderCallsAll,
        stats: sys.stats ? sys.stats() : undefined,
        rKey: rKey.slice(0, reads), rStart: rStart.slice(0, reads), rRev: rRev.slice(0, reads), rLat: rLat.slice(0, reads),
        uKey: uKey.slice(0, updates), uStart: uStart.slice(0, updates), uDone: uDone.slice(0, updates), uRev: uRev.slice(0, updates),
      }
    } finally {
      await sys.close()
      db.close()
    }
  },

  runSummary(run) {
    const m = run.metrics
    return `${Math.round(m.throughput).toLocaleString('en-US')} ops/s, p50 ${m.p50.toFixed(2)} ms, p99 ${m.p99.toFixed(2)} ms, loader ${m.loaderPer1000.toFixed(2)}/1000, ${m.stale} stale`
  },

  report(s, ctx) {
    const { fmt } = ctx
    const c = s.cases[0]
    const out = ['| System | ops/s (median, min - max) | vs article | p50 / p99 latency, ms | loader calls per 1,000 ops | of which beyond each key\'s first load | CPU µs/op: clients / redis | stale reads (share of reads; within 10 ms of the invalidation; max age) | target (mlc) |',
      '|---|---:|---:|---:|---:|---:|---:|---|---|']
    const base = ctx.summary(ctx.okRuns(c.id, ctx.baseline).map((r) => r.metrics.throughput))
    for (const name of ctx.names) {
      const runs = ctx.okRuns(c.id, name)
      if (!runs.length) { out.push(`| ${name} | failed | | | | | |`); continue }
      const tp = ctx.summary(runs.map((r) => r.metrics.throughput))
      const p50 = ctx.summary(runs.map((r) => r.metrics.p50)).median
      const p99 = ctx.summary(runs.map((r) => r.metrics.p99)).median
      const lpk = ctx.summary(runs.map((r) => r.metrics.loaderPer1000)).median
      const extra = ctx.summary(runs.map((r) => r.metrics.extraLoadsPer1000)).median
      const med = (f) => ctx.summary(runs.map(f)).median
      const stale = runs.reduce((a, r) => a + r.metrics.stale, 0)
      const reads = runs.reduce((a, r) => a + r.metrics.reads, 0)
      const within = runs.reduce((a, r) => a + r.metrics.staleWithin10ms, 0)
      const maxAge = Math.max(...runs.map((r) => (Number.isFinite(r.metrics.staleMaxAgeMs) ? r.metrics.staleMaxAgeMs : 0)))
      const staleText = stale ? `${fmt.int(stale)} (${((stale / reads) * 100).toFixed(3)}%; ${fmt.int(within)} within 10 ms; max ${fmt.ms(maxAge)} ms)` : '0'
      const target = name === ctx.subject ? this.targetRows(s, ctx).map((t) => `${t.short}: ${fmt.pass(t.pass)}`).join('; ') : ''
      out.push(`| ${name} | ${fmt.int(tp.median)} (${fmt.int(tp.min)} - ${fmt.int(tp.max)}) | ${fmt.ratio(tp.median / base.median)} | ${fmt.ms(p50)} / ${fmt.ms(p99)} | ${lpk.toFixed(2)} | ${Number.isFinite(extra) ? extra.toFixed(2) : 'n/a'} | ${fmt.us(med((r) => r.metrics.clientCpuUsPerOp))} / ${fmt.us(med((r) => r.metrics.redisCpuUsPerOp))} | ${staleText} | ${target} |`)
    }
    out.push('', 'Latency and loader columns: medians over the repeats; stale reads: summed over the repeats.',
      '"Beyond each key\'s first load": loader calls of the whole run (warm-up included) minus the number of distinct keys read, per 1,000 operations of',
      'the whole run: every key needs one load after the flush, so this isolates the loads caused by invalidations, lost races and duplicate loads',
      '(most loads of this workload are first loads of keys in the long tail of the Zipf distribution, the same for every system).',
      'CPU µs/op: CPU time of both client processes (every thread, setup included) and of redis-server over the whole run, per operation of the whole run.')
    for (const name of ctx.names) {
      const runs = ctx.okRuns(c.id, name)
      const st = runs.length && runs[0].metrics.stats
      if (!st || !('loaderCalls' in st) || !('busSent' in st)) continue
      out.push('', `${name} counters of repeat 1 (both processes, warm-up included): ${SHOWN_COUNTERS.filter((k) => k in st).map((k) => `${k} ${fmt.int(st[k])}`).join(', ')}.`)
    }
    return out
  },

  targetRows(s, ctx) {
    const c = s.cases[0]
    const mine = ctx.okRuns(c.id, ctx.subject)
    const peer = ctx.okRuns(c.id, 'bentocache')
    const article = ctx.okRuns(c.id, ctx.baseline)
    const median = (runs, f) => ctx.summary(runs.map(f)).median
    const ratio = median(mine, (r) => r.metrics.throughput) / median(peer, (r) => r.metrics.throughput)
    const xA = median(mine, (r) => r.metrics.extraLoadsPer1000)
    const xB = median(article, (r) => r.metrics.extraLoadsPer1000)
    const stale = mine.reduce((a, r) => a + r.metrics.stale, 0)
    const n = (x) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a')
    return [
      { short: '>= 1.5x bentocache ops/s', required: `${ctx.subject} >= 1.5x bentocache throughput`, measured: peer.length ? ctx.fmt.ratio(ratio) : 'not measured (`bentocache` not selected)', pass: peer.length ? Number.isFinite(ratio) && ratio >= 1.5 : null },
      { short: 'extra loads <= 0.5x article', required: `loader calls beyond each key's first load per 1,000 ops <= 0.5x ${ctx.baseline}'s`, measured: `${n(xA)} vs ${n(xB)}`, pass: Number.isFinite(xA) && Number.isFinite(xB) && xA <= 0.5 * xB },
      { short: 'no stale read', required: 'no stale read', measured: mine.length ? `${stale} stale reads` : 'no run', pass: mine.length > 0 && stale === 0 },
    ]
  },

  targets(s, ctx) {
    return this.targetRows(s, ctx).map((t) => ({ scenario: s.scenario.title, label: s.cases[0].label, required: t.required, measured: t.measured, pass: t.pass }))
  },
}
