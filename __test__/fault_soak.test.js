'use strict'
// A fault-injection soak (~40 s, issue 10): two processes share one private cache
// redis-server and prefix and run a mixed load against a "database" (a second redis-server,
// never touched by the faults, holding a version number per key: the source of truth). Reads
// go through getOrSet (loader = read the version) or get; updates bump the version in the
// database, then call del or invalidateTag (see helpers/fault_soak_worker.js). Meanwhile the
// cache's redis-server is, in turn:
//  1. evicting: allkeys-lru with a maxmemory 1 MB above what it uses, while a filler writes
//     32 KB keys: Redis evicts entries, tag markers, locks and the clock (the server's
//     evicted_keys minus the filler's keys that are gone = the cache's keys evicted; keyspace
//     notifications tell which kinds); then maxmemory 0 again;
//  2. OOM: noeviction with maxmemory 256 KB below used_memory: Redis refuses writes (OOM);
//     one key in four is cached without tags, so that loader writes are refused (see
//     `untagged` in the worker); then maxmemory 0 again;
//  3. BUSY: another client runs a 1.5 s Lua loop (the server runs with
//     --busy-reply-threshold 50): every other command gets BUSY, longer than the cache's retry
//     bound for invalidations (2 x (commandTimeout + connectTimeout) = 1 s here), so some
//     del/invalidateTag calls reject with ERR_MLC_REDIS_REFUSED;
//  4. frozen: SIGSTOP for 1.5 s, then SIGCONT;
//  5. restarted: SIGKILL, 1 s down, a new server on the same port (data lost).
// Between phases Redis answers normally for 2 to 4 s; the test's own clients send nothing to
// the cache server while it is BUSY, frozen or down.
//
// Checked (one subtest each, after the run):
//  - the faults happened: cache keys evicted, redisRefused grew in the OOM and BUSY phases,
//    the bus resubscribed after the freeze and the restart, enough reads judged per phase;
//  - no call throws, except del/invalidateTag rejecting with ERR_MLC_REDIS_REFUSED (Redis
//    refused the invalidation past the retry bound). Such an update did NOT complete: the
//    worker takes the first moment it later sees `stats().replaysPending === 0` (its replay
//    landed in Redis, was announced and settled in its L1) as the update's completion, and it
//    is judged from then on like any other update;
//  - freshness: a read that STARTS after an update of its key to version v completed returns a
//    version >= v (reads starting within GRACE_MS of another process's update are not judged:
//    bus delivery). Not judged, by design: reads starting while Redis is
//    frozen or down and OUTAGE_SETTLE_MS after (other processes cannot hear invalidations),
//    and reads starting while the reader's bus is disconnected. Reads during the evicting, OOM
//    and BUSY phases ARE judged: Redis answers there, and eviction or refusals must never
//    produce a stale read;
//  - nothing lost: after the run, once settled, every key reads the source's current version
//    in every process;
//  - every ERR_MLC_REDIS_REFUSED a worker saw is counted in its `invalidationsRefused` (equal),
//    and `replaysPending` is 0 at the end;
//  - the counters account for every failed command: per phase, every OOM and BUSY reply the
//    server counted (INFO errorstats; read between phases, the last time just before the
//    restart, which resets them) is counted in a worker's `redisRefused` or was received by
//    one of the test's own clients (see ACCOUNTING below).

const { kindOf } = require('./helpers/layout.js')
const { test } = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { startRedis, client, uniquePrefix } = require('./helpers/redis.js')
const { forkWorker } = require('./helpers/workers.js')
const { wallMs } = require('./helpers/measure.js')
const { sleep } = require('./helpers/cache.js')

const RUN_MS = 40000
const KEYS = 20
const LOOPS = 4 // concurrent loops per process
const UPDATE_RATIO = 0.1
const GRACE_MS = 250 // cross-process bus delivery allowance
const OUTAGE_SETTLE_MS = 2000
const FILL_VALUE = 'x'.repeat(32 * 1024)
// start of each phase (ms after the run began) and how long its fault lasts; a phase's reads
// are those starting from its start to the next phase's start (its recovery included)
const PHASES = [
  { name: 'evicting', at: 3000, ms: 5000 },
  { name: 'oom', at: 10000, ms: 4000 },
  { name: 'busy', at: 16500, ms: 1500 },
  { name: 'frozen', at: 21000, ms: 1500 },
  { name: 'restarted', at: 27000, ms: 1000 },
]
const SEED = process.env.MLC_SOAK_SEED !== undefined ? Number(process.env.MLC_SOAK_SEED) >>> 0 : (Math.random() * 2 ** 32) >>> 0

const WORKER = path.join(__dirname, 'helpers', 'fault_soak_worker.js')
const COUNTERS = ['redisErrors', 'redisRefused', 'invalidationsRefused', 'replayed', 'replaysPending', 'replaysCollapsed', 'breakerOpened', 'busResubscriptions', 'busAckTimeouts', 'loadsDiscarded', 'l1FillsSkipped']

/** `errorstat_OOM:count=3` lines of INFO errorstats, as { OOM: 3, ... } */
function errorstats(text) {
  const out = {}
  for (const m of text.matchAll(/^errorstat_([^:]+):count=(\d+)/gm)) out[m[1]] = Number(m[2])
  return out
}

function infoField(text, field) {
  const m = new RegExp(`^${field}:(\\d+)`, 'm').exec(text)
  return m ? Number(m[1]) : 0
}

/** The first word of a Redis error reply (OOM, BUSY, ...), or the client's error name. */
function errorCode(e) {
  const m = /^([A-Z]+)\b/.exec(String(e && e.message))
  return m ? m[1] : String((e && (e.code || e.name)) || 'unknown')
}

const sub = (a, b) => Object.fromEntries([...new Set([...Object.keys(a), ...Object.keys(b)])].map((k) => [k, (a[k] || 0) - (b[k] || 0)]))

test(`fault soak: two processes while Redis evicts, is OOM, BUSY, frozen and restarted; no stale read, counters account for every refusal (seed ${SEED})`, async (t) => {
  t.diagnostic(`seed ${SEED} (MLC_SOAK_SEED=${SEED} reproduces the load pattern, not the timing)`)
  const cacheServer = await startRedis(['--busy-reply-threshold', '50'])
  t.after(() => cacheServer.stop())
  const dbServer = await startRedis()
  t.after(() => dbServer.stop())
  const db = client(dbServer.url)
  db.on('error', () => {})
  t.after(() => db.disconnect())

  // the test's own clients of the cache server; every error reply they get is counted, per
  // phase and code, since the server counts them in INFO errorstats too
  const external = {}
  let phaseNow = 'warmup'
  const noteExternal = (who, e) => {
    const code = errorCode(e)
    const k = `${phaseNow}:${who}:${code}`
    external[k] = (external[k] || 0) + 1
    return code
  }
  const admin = client(cacheServer.url)
  admin.on('error', () => {})
  t.after(() => admin.disconnect())
  const blocker = client(cacheServer.url) // runs the busy script
  blocker.on('error', () => {})
  t.after(() => blocker.disconnect())
  await Promise.all([admin.ping(), blocker.ping()])
  const adminDo = async (what, fn) => {
    try { return await fn() } catch (e) { noteExternal(`admin ${what}`, e); throw e }
  }

  const prefix = uniquePrefix('fsoak')
  const cacheOptions = {
    redisUrl: cacheServer.url,
    prefix,
    l1: { ttl: 5 },
    l2: { ttl: 120 },
    lock: { ttl: 2, wait: 1 },
    redis: { commandTimeout: 0.2, connectTimeout: 0.3, breakerCooldown: 0.5 },
  }
  const workers = await Promise.all([forkWorker(t, WORKER), forkWorker(t, WORKER)])
  const inits = await Promise.all(workers.map((w, i) => w.call('init', { cacheOptions, dbUrl: dbServer.url, workerId: i })))
  assert.ok(inits.every((x) => x.connected), 'a worker did not subscribe to the bus')

  /** Server error counts and the workers' counters at one moment (taken while Redis answers). */
  const snapshot = async (label) => {
    const [es, st, ws] = await Promise.all([
      adminDo('info', () => admin.info('errorstats')),
      adminDo('info', () => admin.info('stats')),
      Promise.all(workers.map((w) => w.call('stats'))),
    ])
    return { label, at: wallMs(), server: errorstats(es), errorReplies: infoField(st, 'total_error_replies'), evicted: infoField(st, 'evicted_keys'), workers: ws }
  }

  const startAt = wallMs()
  const endAt = startAt + RUN_MS
  const running = workers.map((w, i) => w.call('run', {
    endAt, loops: LOOPS, keys: KEYS, updateRatio: UPDATE_RATIO, seed: (SEED + i * 7919) >>> 0, maxOps: 100000,
  }, { timeoutMs: RUN_MS + 30000 }))
  // a worker that fails early must not leave the phases below waiting on nothing
  running.forEach((p) => p.catch(() => {}))

  const rel = (time) => `+${(time - startAt).toFixed(0)} ms`
  const snaps = []
  const windows = [] // [from, to]: reads starting inside are not judged (Redis frozen or down)
  const phaseLog = {}
  const evictions = { entry: 0, marker: 0, lock: 0, clock: 0, filler: 0, other: 0 }
  let fillerWrites = 0

  for (const phase of PHASES) {
    const wait = startAt + phase.at - wallMs()
    if (wait > 0) await sleep(wait)
    snaps.push(await snapshot(`before ${phase.name}`))
    phaseNow = phase.name
    const from = wallMs()
    if (phase.name === 'evicting') {
      // keyspace notifications tell which keys Redis evicted (diagnostics); the server's
      // evicted_keys minus the filler's own keys that are gone is the exact count of the
      // cache's keys evicted
      const notes = client(cacheServer.url)
      notes.on('error', () => {})
      try {
        await adminDo('config', () => admin.config('SET', 'notify-keyspace-events', 'Ee'))
        notes.on('message', (_channel, key) => {
          const kind = kindOf(prefix, key)
          if (kind !== null) evictions[kind]++
          else if (key.startsWith('filler:')) evictions.filler++
          else evictions.other++
        })
        await notes.subscribe('__keyevent@0__:evicted')
        const used = infoField(await adminDo('info', () => admin.info('memory')), 'used_memory')
        const evictedBefore = infoField(await adminDo('info', () => admin.info('stats')), 'evicted_keys')
        await adminDo('config', () => admin.config('SET', 'maxmemory-policy', 'allkeys-lru'))
        await adminDo('config', () => admin.config('SET', 'maxmemory', String(used + 1024 * 1024)))
        phaseLog.evicting = { usedBefore: used, maxmemory: used + 1024 * 1024 }
        const until = from + phase.ms
        let tried = 0
        for (let i = 0; i < 5000 && wallMs() < until; i++) {
          tried++
          try { await admin.set(`filler:${i}`, FILL_VALUE); fillerWrites++ } catch (e) { noteExternal('filler', e) }
          await sleep(10)
        }
        await adminDo('config', () => admin.config('SET', 'maxmemory', '0'))
        await adminDo('config', () => admin.config('SET', 'notify-keyspace-events', ''))
        const evicted = infoField(await adminDo('info', () => admin.info('stats')), 'evicted_keys') - evictedBefore
        let fillerLeft = 0
        for (let i = 0; i < tried; i += 500) {
          const names = Array.from({ length: Math.min(500, tried - i) }, (_, j) => `filler:${i + j}`)
          fillerLeft += await adminDo('unlink', () => admin.unlink(...names))
        }
        evictions.cacheKeys = evicted - (fillerWrites - fillerLeft)
        evictions.allKeys = evicted
      } finally {
        notes.disconnect()
      }
    } else if (phase.name === 'oom') {
      await adminDo('config', () => admin.config('SET', 'maxmemory-policy', 'noeviction'))
      const used = infoField(await adminDo('info', () => admin.info('memory')), 'used_memory')
      const limit = Math.max(1, used - 256 * 1024)
      await adminDo('config', () => admin.config('SET', 'maxmemory', String(limit)))
      phaseLog.oom = { usedBefore: used, maxmemory: limit }
      await sleep(Math.max(0, from + phase.ms - wallMs()))
      phaseLog.oom.usedAfter = infoField(await adminDo('info', () => admin.info('memory')), 'used_memory')
      await adminDo('config', () => admin.config('SET', 'maxmemory', '0'))
    } else if (phase.name === 'busy') {
      // the test's other clients send nothing while the script runs (they would get BUSY)
      const script = `local t=redis.call('TIME'); local s=t[1]*1000000+t[2]; while true do local n=redis.call('TIME'); if n[1]*1000000+n[2]-s > ${phase.ms * 1000} then break end end return 1`
      try { await blocker.eval(script, 0) } catch (e) { noteExternal('blocker', e) }
    } else if (phase.name === 'frozen') {
      await cacheServer.freeze()
      await sleep(phase.ms)
      cacheServer.thaw()
      windows.push([from, wallMs() + OUTAGE_SETTLE_MS])
    } else if (phase.name === 'restarted') {
      await cacheServer.stop('SIGKILL')
      await sleep(phase.ms)
      await cacheServer.restart()
      windows.push([from, wallMs() + OUTAGE_SETTLE_MS])
    }
    phaseLog[phase.name] = { ...phaseLog[phase.name], from: rel(from), to: rel(wallMs()) }
  }
  phaseNow = 'after'
  const results = await Promise.all(running)
  const settled = await Promise.all(workers.map((w) => w.call('settle', { timeoutMs: 10000 }, { timeoutMs: 15000 })))
  t.diagnostic(`phases: ${JSON.stringify(phaseLog)}`)

  // ---- no call threw (but for the ERR_MLC_REDIS_REFUSED rejections, recorded apart)
  const errors = results.flatMap((r) => r.errors)
  const described = errors.filter(Boolean).slice(0, 5).map((e) => ({ ...e, at: rel(e.at) }))

  // ---- freshness
  const phaseOf = (time) => {
    let name = 'warmup'
    for (const p of PHASES) if (time >= startAt + p.at) name = p.name
    return name
  }
  const rejectionsOf = (r) => settled[r.worker].rejections
  const updatesByKey = Array.from({ length: KEYS }, () => [])
  for (const r of results) {
    for (const [k, v, , done] of r.updates) updatesByKey[k].push({ v, done, worker: r.worker })
    // a rejected update completes when its replay was seen landed (done -1: never during the run)
    for (const [k, v, , , , , done] of rejectionsOf(r)) {
      if (done >= 0) updatesByKey[k].push({ v, done, worker: r.worker, rejected: true })
    }
  }
  const inOutage = (time) => windows.some(([from, to]) => time >= from && time <= to)
  const perPhase = Object.fromEntries(['warmup', ...PHASES.map((p) => p.name)].map((n) => [n, { reads: 0, judged: 0, outage: 0, busDown: 0, nulls: 0, stale: 0, updates: 0, rejected: {} }]))
  const stale = []
  for (const r of results) {
    for (const [k, start, end, version, bus] of r.reads) {
      const ph = perPhase[phaseOf(start)]
      ph.reads++
      if (version < 0) { ph.nulls++; continue }
      if (inOutage(start)) { ph.outage++; continue }
      if (bus === 0) { ph.busDown++; continue }
      ph.judged++
      // the newest update of this key the read must have seen
      let must = 0
      let by
      for (const u of updatesByKey[k]) {
        const seenBy = u.done + (u.worker === r.worker ? 0 : GRACE_MS)
        if (seenBy < start && u.v > must) { must = u.v; by = u }
      }
      if (version < must) {
        ph.stale++
        stale.push({ phase: phaseOf(start), worker: r.worker, key: k, got: version, must, at: Math.round(start - startAt), startedAfterUpdateMs: +(start - by.done).toFixed(1), updateBy: by.worker, updateRejected: !!by.rejected, tookMs: +(end - start).toFixed(1) })
      }
    }
    for (const [, , start] of r.updates) perPhase[phaseOf(start)].updates++
    for (const [, , start, , code] of rejectionsOf(r)) {
      const rej = perPhase[phaseOf(start)].rejected
      rej[code] = (rej[code] || 0) + 1
    }
  }

  // ---- counters, per phase: the workers' deltas and the server's error replies
  const finalStats = settled.map((s) => s.stats)
  const last = { label: 'end', at: wallMs(), workers: finalStats.map((stats) => ({ stats })) }
  const workerSum = (snap, field) => snap.workers.reduce((n, w) => n + w.stats[field], 0)
  for (const [i, p] of PHASES.entries()) {
    const before = snaps[i]
    const after = snaps[i + 1] || last
    const d = Object.fromEntries(COUNTERS.map((c) => [c, after.workers.map((w, j) => w.stats[c] - before.workers[j].stats[c]).join('/')]))
    const ph = perPhase[p.name]
    const server = snaps[i + 1] ? ` server errorstats +${JSON.stringify(sub(snaps[i + 1].server, before.server))} evicted_keys +${snaps[i + 1].evicted - before.evicted}` : ' (server counters reset by the restart)'
    t.diagnostic(`${p.name}: reads ${ph.reads} (judged ${ph.judged}, outage ${ph.outage}, bus down ${ph.busDown}, null ${ph.nulls}), stale ${ph.stale}, updates ${ph.updates}, rejected ${JSON.stringify(ph.rejected)}; worker deltas ${JSON.stringify(d)};${server}`)
  }
  const w = perPhase.warmup
  t.diagnostic(`warmup: reads ${w.reads} (judged ${w.judged}), stale ${w.stale}, updates ${w.updates}`)
  t.diagnostic(`evictions during the evicting phase: ${evictions.allKeys} keys, ${evictions.cacheKeys} of them the cache's (evicted_keys minus the filler's keys gone); by keyspace notifications: ${JSON.stringify(evictions)}; filler writes ${fillerWrites}`)
  t.diagnostic(`errors of the test's own clients (phase:client:code): ${JSON.stringify(external)}`)
  t.diagnostic(`final stats: ${JSON.stringify(finalStats.map((s) => Object.fromEntries(COUNTERS.map((c) => [c, s[c]]))))}`)
  t.diagnostic(`problems logged: ${JSON.stringify(settled.map((s) => s.problems))}; loader calls ${results.map((r) => r.loaderCalls).join(' / ')}`)
  const rejectionList = results.flatMap((r) => rejectionsOf(r).map(([k, v, start, at, code, byTag, done]) => ({ worker: r.worker, key: k, v, code, byTag, at: rel(at), tookMs: Math.round(at - start), replayedAfterMs: done >= 0 ? Math.round(done - at) : null })))
  t.diagnostic(`ERR_MLC_REDIS_REFUSED rejections: ${rejectionList.length} ${JSON.stringify(rejectionList.slice(0, 12))}`)

  // ACCOUNTING, per phase until the restart (which resets INFO errorstats). The snapshots are
  // taken in the quiet gaps between faults (Redis answers everything there), so each phase's
  // deltas are exact. During a phase the server answered OOM or BUSY to: the workers' caches
  // (each reply counted once in their redisRefused: an error inside a script is counted once
  // by the server too) and the test's own clients (`external`). So for each phase
  //   server OOM+BUSY - external OOM+BUSY - allowance <= workers' redisRefused
  //     <= server total_error_replies - external errors (every refusal is an error reply).
  // A reply the server counted and no counter did is a failed command the counters miss. The
  // only allowance: the bus's heartbeat PING (once a second per process) gets BUSY as well; it
  // is not a cache command (a BUSY reply proves Redis alive, the bus stays subscribed and no
  // message is lost: PUBLISH is refused as well).
  const externalIn = (phase, codes) => Object.entries(external)
    .filter(([k]) => k.startsWith(`${phase}:`) && (!codes || codes.includes(k.slice(k.lastIndexOf(':') + 1))))
    .reduce((n, [, v]) => n + v, 0)
  const accounting = []
  for (const [i, p] of PHASES.entries()) {
    if (!snaps[i + 1]) continue
    const server = sub(snaps[i + 1].server, snaps[i].server)
    const row = {
      phase: p.name,
      serverRefusals: (server.OOM || 0) + (server.BUSY || 0),
      serverErrorReplies: snaps[i + 1].errorReplies - snaps[i].errorReplies,
      externalRefusals: externalIn(p.name, ['OOM', 'BUSY']),
      externalErrors: externalIn(p.name),
      workersRefused: workerSum(snaps[i + 1], 'redisRefused') - workerSum(snaps[i], 'redisRefused'),
      allowance: p.name === 'busy' ? workers.length * (Math.ceil(p.ms / 1000) + 1) : 0,
    }
    row.unaccounted = row.serverRefusals - row.externalRefusals - row.workersRefused
    accounting.push(row)
  }
  t.diagnostic(`accounting per phase: ${JSON.stringify(accounting)}`)
  const beforeRestart = snaps[snaps.length - 1]
  const serverRefusals = (beforeRestart.server.OOM || 0) + (beforeRestart.server.BUSY || 0)
  const workersRefused = workerSum(beforeRestart, 'redisRefused')
  const externalRefused = Object.entries(external).filter(([k]) => /:(OOM|BUSY)$/.test(k)).reduce((n, [, v]) => n + v, 0)
  t.diagnostic(`accounting before the restart: server errorstats ${JSON.stringify(beforeRestart.server)} (OOM+BUSY ${serverRefusals}, total_error_replies ${beforeRestart.errorReplies}); workers redisRefused ${workersRefused} (${beforeRestart.workers.map((x) => x.stats.redisRefused).join(' / ')}), redisErrors ${workerSum(beforeRestart, 'redisErrors')}; the test's clients got OOM/BUSY ${externalRefused}`)

  if (stale.length) {
    const episodes = new Map()
    for (const x of stale) {
      const id = `${x.worker}:${x.key}:${x.must}`
      const e = episodes.get(id) || { ...x, reads: 0, lastMs: 0 }
      e.reads++
      e.lastMs = Math.max(e.lastMs, x.startedAfterUpdateMs)
      episodes.set(id, e)
    }
    const list = [...episodes.values()]
    t.diagnostic(`stale episodes ${list.length} (${list.filter((e) => e.updateBy !== e.worker).length} after an update by the other process), longest lasted ${Math.max(...list.map((e) => e.lastMs)).toFixed(0)} ms after the update completed`)
    t.diagnostic(`first stale reads: ${JSON.stringify(stale.slice(0, 8))}`)
    t.diagnostic(`stale episodes (phase reader:key:version@+ms): ${list.map((e) => `${e.phase} ${e.worker}:${e.key}:${e.must}@${e.at}`).join(' ')}`)
  }

  // ---- nothing lost: once settled, every key reads the source's current version everywhere
  await sleep(1000)
  const finals = await Promise.all(workers.map((wk) => wk.call('final', { keys: KEYS })))
  const wrong = []
  for (const [i, f] of finals.entries()) {
    for (const { key, got, before, after } of f.out) {
      if (!(got >= before && got <= after)) wrong.push({ worker: i, key, got, source: after })
    }
  }
  t.diagnostic(`final reads: ${finals.length * KEYS}, not the source's version: ${wrong.length}`)

  await Promise.all(workers.map((wk) => wk.call('close')))

  // ---- assertions, one subtest per promise (each reports on its own)
  const reads = results.reduce((n, r) => n + r.reads.length, 0)
  const updates = results.reduce((n, r) => n + r.updates.length, 0)
  await t.test('the faults happened under load', () => {
    assert.ok(reads > 1000 && updates > 100, `too little load: ${reads} reads, ${updates} updates`)
    for (const name of ['evicting', 'oom', 'busy']) {
      assert.ok(perPhase[name].judged > 100, `only ${perPhase[name].judged} reads judged in the ${name} phase`)
    }
    assert.ok(evictions.cacheKeys > 0, `the evicting phase evicted none of the cache's keys: ${JSON.stringify(evictions)}`)
    const notified = evictions.entry + evictions.marker + evictions.lock + evictions.clock + evictions.filler + evictions.other
    if (notified > 0) assert.ok(evictions.entry > 0 && evictions.marker > 0, `the evicting phase evicted no entry or no tag marker: ${JSON.stringify(evictions)}`)
    for (const [i, name] of PHASES.map((p) => p.name).entries()) {
      if (name !== 'oom' && name !== 'busy') continue
      const refused = workerSum(snaps[i + 1], 'redisRefused') - workerSum(snaps[i], 'redisRefused')
      assert.ok(refused > 0, `no Redis refusal counted during the ${name} phase: it did not happen`)
    }
    for (const [i, s] of finalStats.entries()) {
      assert.ok(s.busResubscriptions >= 2, `worker ${i}: the bus did not resubscribe after the freeze and the restart`)
    }
  })
  await t.test('no call threw but for ERR_MLC_REDIS_REFUSED', () => {
    assert.deepEqual(described, [], `${errors.length} calls threw (other than ERR_MLC_REDIS_REFUSED) or returned another key's value`)
  })
  await t.test('no stale read outside the outage windows (evicting, OOM and BUSY included)', () => {
    assert.deepEqual(stale, [], `${stale.length} stale reads outside the outage windows`)
  })
  await t.test('nothing lost: every key reads the source\'s current version in every process', () => {
    assert.deepEqual(wrong, [], 'after the run, some keys did not read the source of truth\'s current version')
  })
  await t.test('every ERR_MLC_REDIS_REFUSED is counted, every replay landed', () => {
    for (const [i, r] of results.entries()) {
      assert.equal(finalStats[i].invalidationsRefused, rejectionsOf(r).length, `worker ${i}: ERR_MLC_REDIS_REFUSED rejections seen vs invalidationsRefused`)
      assert.equal(finalStats[i].replaysPending, 0, `worker ${i}: replays still pending at the end`)
      assert.ok(finalStats[i].redisErrors >= finalStats[i].redisRefused, `worker ${i}: redisRefused not counted in redisErrors`)
    }
    assert.ok(settled.every((s) => s.ok), 'a worker still had replays pending 10 s after the run')
  })
  await t.test('the counters account for every OOM and BUSY reply of the server', () => {
    for (const row of accounting) {
      assert.ok(row.workersRefused + row.externalErrors <= row.serverErrorReplies,
        `${row.phase}: the workers counted ${row.workersRefused} refusals, the test's clients got ${row.externalErrors} errors, but Redis sent only ${row.serverErrorReplies} error replies`)
      assert.ok(row.unaccounted <= row.allowance,
        `${row.phase}: Redis answered OOM/BUSY ${row.serverRefusals} times, the workers counted ${row.workersRefused} (redisRefused), the test's clients got ${row.externalRefusals}: ${row.unaccounted} failed commands are not counted (allowance for bus heartbeats: ${row.allowance})`)
    }
  })
})
