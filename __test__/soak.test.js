'use strict'
// A short soak (~40 s): two processes share one private redis-server and prefix and run a
// mixed load against a "database" (a second redis-server, never restarted, holding a version
// number per key: the source of truth). Reads go through getOrSet (loader = read the version)
// or get; updates bump the version in the database, then call del or invalidateTag. The cache's
// redis-server is killed and restarted twice during the run.
//
// Checked:
//  - no call throws (golden rule);
//  - freshness: a read that STARTS after an update of its key to version v completed returns a
//    version >= v. Cross-process, the other process learns of the update through the bus, a
//    few ms later: reads starting within GRACE_MS of the update's completion are not judged.
//    During a Redis outage the other process cannot hear invalidations at all: its L1 copy
//    stays until l1.ttl or until its bus resubscribes (which clears L1) once Redis is back. So
//    cross-process staleness during an outage is bounded by l1.ttl and the reconnect clear, and
//    reads starting between a kill and (restart + OUTAGE_SETTLE_MS) are not judged; neither are
//    reads that start while the reader's bus is disconnected;
//  - nothing lost: after the run, once Redis is back and things settled, getOrSet of every key
//    in every process returns the database's current version.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { startRedis, client, uniquePrefix } = require('./helpers/redis.js')
const { forkWorker } = require('./helpers/workers.js')
const { wallMs } = require('./helpers/measure.js')
const { sleep } = require('./helpers/cache.js')

const RUN_MS = 30000
const KEYS = 20
const LOOPS = 4 // concurrent loops per process
const UPDATE_RATIO = 0.1
const GRACE_MS = 250 // cross-process bus delivery allowance
const OUTAGE_SETTLE_MS = 2000
const OUTAGES = [{ at: 8000, downMs: 1500 }, { at: 18000, downMs: 1500 }]
const SEED = process.env.MLC_SOAK_SEED !== undefined ? Number(process.env.MLC_SOAK_SEED) >>> 0 : (Math.random() * 2 ** 32) >>> 0

const WORKER = path.join(__dirname, 'helpers', 'soak_worker.js')

test(`soak: two processes, Redis restarted twice, no error, no stale read outside outages, nothing lost (seed ${SEED})`, async (t) => {
  t.diagnostic(`seed ${SEED} (MLC_SOAK_SEED=${SEED} reproduces the load pattern, not the timing)`)
  const cacheServer = await startRedis()
  t.after(() => cacheServer.stop())
  const dbServer = await startRedis()
  t.after(() => dbServer.stop())
  const db = client(dbServer.url)
  db.on('error', () => {})
  t.after(() => db.disconnect())

  const prefix = uniquePrefix('soak')
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

  const startAt = wallMs()
  const endAt = startAt + RUN_MS
  const running = workers.map((w, i) => w.call('run', {
    endAt, loops: LOOPS, keys: KEYS, updateRatio: UPDATE_RATIO, seed: (SEED + i * 7919) >>> 0, maxOps: 100000,
  }, { timeoutMs: RUN_MS + 20000 }))

  // the outages: SIGKILL, down for a while, a new server on the same port (data not kept)
  const windows = []
  for (const { at, downMs } of OUTAGES) {
    const wait = startAt + at - wallMs()
    if (wait > 0) await sleep(wait)
    const down = wallMs()
    await cacheServer.stop('SIGKILL')
    await sleep(downMs)
    await cacheServer.restart()
    const up = wallMs()
    windows.push([down, up + OUTAGE_SETTLE_MS])
    t.diagnostic(`outage: Redis down at +${(down - startAt).toFixed(0)} ms, back at +${(up - startAt).toFixed(0)} ms`)
  }
  const results = await Promise.all(running)

  // ---- no call threw
  const errors = results.flatMap((r) => r.errors)
  const described = errors.filter(Boolean).slice(0, 5).map((e) => ({ ...e, at: `+${(e.at - startAt).toFixed(0)} ms` }))
  assert.deepEqual(described, [], `${errors.length} calls threw or returned another key's value`)

  // ---- freshness
  const updatesByKey = Array.from({ length: KEYS }, () => [])
  for (const r of results) for (const [k, v, , done] of r.updates) updatesByKey[k].push({ v, done, worker: r.worker })
  for (const list of updatesByKey) list.sort((a, b) => a.done - b.done)
  const inOutage = (time) => windows.some(([from, to]) => time >= from && time <= to)
  let judged = 0
  let excluded = 0
  let nulls = 0
  const stale = []
  for (const r of results) {
    for (const [k, start, end, version, bus] of r.reads) {
      if (version < 0) { nulls++; continue }
      if (inOutage(start) || bus === 0) { excluded++; continue }
      judged++
      // the newest update of this key the read must have seen
      let must = 0
      let by
      for (const u of updatesByKey[k]) {
        const seenBy = u.done + (u.worker === r.worker ? 0 : GRACE_MS)
        if (seenBy < start && u.v > must) { must = u.v; by = u }
      }
      if (version < must) {
        stale.push({ worker: r.worker, key: k, got: version, must, at: Math.round(start - startAt), startedAfterUpdateMs: +(start - by.done).toFixed(1), updateBy: by.worker, tookMs: +(end - start).toFixed(1) })
      }
    }
  }
  const reads = results.reduce((n, r) => n + r.reads.length, 0)
  const updates = results.reduce((n, r) => n + r.updates.length, 0)
  const st = results.map((r) => r.stats)
  t.diagnostic(`reads ${reads} (judged ${judged}, in outages or bus down ${excluded}, null from get ${nulls}), updates ${updates}, stale ${stale.length}, errors ${errors.length}`)
  t.diagnostic(`loader calls ${results.map((r) => r.loaderCalls).join(' / ')}; busResubscriptions ${st.map((s) => s.busResubscriptions).join(' / ')}; breakerOpened ${st.map((s) => s.breakerOpened).join(' / ')}; replayed ${st.map((s) => s.replayed).join(' / ')}; redisErrors ${st.map((s) => s.redisErrors).join(' / ')}`)
  if (stale.length) {
    // episodes: one per (reader, key, version it should have seen); how long each lasted
    const episodes = new Map()
    for (const x of stale) {
      const id = `${x.worker}:${x.key}:${x.must}`
      const e = episodes.get(id) || { ...x, reads: 0, lastMs: 0 }
      e.reads++
      e.lastMs = Math.max(e.lastMs, x.startedAfterUpdateMs)
      episodes.set(id, e)
    }
    const list = [...episodes.values()]
    const cross = list.filter((e) => e.updateBy !== e.worker).length
    t.diagnostic(`stale episodes ${list.length} (${cross} after an update by the other process), longest lasted ${Math.max(...list.map((e) => e.lastMs)).toFixed(0)} ms after the update completed`)
    t.diagnostic(`first stale reads: ${JSON.stringify(stale.slice(0, 5))}`)
    t.diagnostic(`stale episodes (reader:key:version, first read at +ms): ${list.map((e) => `${e.worker}:${e.key}:${e.must}@${e.at}`).join(' ')}`)
  }
  assert.ok(reads > 1000 && updates > 100, `too little load: ${reads} reads, ${updates} updates`)
  assert.ok(judged > reads / 2, `only ${judged} of ${reads} reads could be judged`)
  assert.ok(st.every((s) => s.busResubscriptions >= OUTAGES.length), 'a process did not resubscribe after each restart')

  // ---- nothing lost: once settled, every key reads the source's current version everywhere
  await sleep(1000)
  const finals = await Promise.all(workers.map((w) => w.call('final', { keys: KEYS })))
  const wrong = []
  for (const [i, f] of finals.entries()) {
    for (const { key, got, before, after } of f.out) {
      if (!(got >= before && got <= after)) wrong.push({ worker: i, key, got, source: after })
    }
  }
  t.diagnostic(`final reads: ${finals.length * KEYS}, not the source's version: ${wrong.length}`)
  assert.deepEqual(wrong, [], 'after the run, some keys did not read the source of truth\'s current version')
  assert.deepEqual(stale, [], `${stale.length} stale reads outside outage windows`)
  await Promise.all(workers.map((w) => w.call('close')))
})
