#!/usr/bin/env node
'use strict'
// `npm run demo`: the shop API of demo/app.js under load, with the cache off and then on.
//
//   npm run demo                          8 s per run after 3 s of warm-up, about 30 s in all
//   npm run demo -- --quick               2 s per run after 1 s of warm-up
//   npm run demo -- --duration 20 --connections 20
//   npm run demo -- --instances 3         three app processes sharing Redis (and one database),
//                                         the load spread over them round robin
//   npm run demo -- --serve [--port 3000] after the runs, keep the cached app running
//                                         (curl http://127.0.0.1:3000/metrics)
//
//   REDIS_URL     default redis://127.0.0.1:6379; when nothing answers there, the cache runs on
//                 L1 alone (and says so)
//   DATABASE_URL  postgres://user@host:port/db: use PostgreSQL (tables mlc_demo_*) instead of
//                 the embedded SQLite
//
// Each run starts the app in a child process (seeded afresh), so the load generator and the app
// do not share a thread. With --instances N, each run starts N app processes with one key prefix
// (so they share Redis and the bus) and one database: the SQLite in a database process
// (demo/db-server.js) or PostgreSQL from DATABASE_URL. The table goes to stdout and to
// demo/RESULTS.md (demo/RESULTS.quick.md with --quick; RESULTS.N-instances.md with --instances N).

const { fork } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { probeRedis } = require('./app.js')
const { runLoad, StaleChecker, HOT_PRODUCTS, ZIPF_S, MIX } = require('./load.js')

const ARTICLE = { p99Before: 450, p99After: 85, dbLoadDecrease: 0.75 }

/** An error worth its message alone (no stack trace). */
const usage = (message) => Object.assign(new Error(message), { usage: true })

function parseArgs(argv) {
  const args = { quick: false, serve: false, duration: undefined, connections: 10, port: undefined, instances: 1 }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const value = () => {
      const v = Number(argv[++i])
      if (!(v > 0)) throw usage(`${a} needs a positive number`)
      return v
    }
    if (a === '--quick') args.quick = true
    else if (a === '--serve') args.serve = true
    else if (a === '--duration') args.duration = value()
    else if (a === '--connections') args.connections = Math.round(value())
    else if (a === '--port') args.port = Math.round(value())
    else if (a === '--instances') {
      args.instances = value()
      if (!Number.isInteger(args.instances) || args.instances > 16) throw usage('--instances needs an integer from 1 to 16')
    }
    else if (a === '--help' || a === '-h') {
      console.log(fs.readFileSync(__filename, 'utf8').split('\n').slice(2, 20).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'))
      process.exit(0)
    } else throw usage(`unknown argument ${JSON.stringify(a)} (see --help)`)
  }
  if (args.connections < args.instances) throw usage(`--connections (${args.connections}) must be at least --instances (${args.instances})`)
  if (args.duration === undefined) args.duration = args.quick ? 2 : 8
  args.warmup = args.quick ? 1 : 3
  return args
}

/** Starts a child (demo/app.js or demo/db-server.js) that reports { ready, port, info }; resolves { child, port, info, url, stop }. */
function startChild(file, argv, env) {
  const child = fork(path.join(__dirname, file), argv, { env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  return new Promise((resolve, reject) => {
    child.once('message', (m) => {
      if (!m.ready) return reject(usage(`${file} did not start: ${m.error}`))
      const stop = async () => {
        if (child.exitCode === null) child.kill('SIGTERM')
        await exited
      }
      resolve({ child, port: m.port, info: m.info, url: `http://127.0.0.1:${m.port}`, stop })
    })
    exited.then((code) => reject(new Error(`${file} exited (code ${code}) before it was ready`)))
  })
}

/** Starts demo/app.js in a child process; resolves { child, port, info, url, stop }. */
function startApp({ cache, port, env }) {
  return startChild('app.js', [...(cache ? [] : ['--no-cache']), ...(port ? ['--port', String(port)] : [])], env)
}

/**
 * The instances of one run: one app (seeding its own database), or `n` apps sharing a key prefix
 * and a database (`db`: the database process, or DATABASE_URL seeded by the first app only).
 * Resolves { urls, info, stop }.
 */
async function startInstances({ cache, n, env, port, db }) {
  if (n === 1) {
    const app = await startApp({ cache, env, port })
    return { apps: [app], urls: [app.url], info: app.info, stop: () => app.stop() }
  }
  const shared = { ...env, MLC_DEMO_PREFIX: `mlc-demo-${Date.now().toString(36)}-${cache ? 'on' : 'off'}` }
  if (db) shared.MLC_DEMO_DB = db.url
  const apps = []
  const stop = () => Promise.all(apps.map((a) => a.stop()))
  try {
    // with PostgreSQL the first instance (re)creates and seeds the tables, then the others start
    apps.push(await startApp({ cache, env: shared, port }))
    const rest = Array.from({ length: n - 1 }, (_, i) => startApp({ cache, env: { ...shared, MLC_DEMO_SEED: '0' }, port: port && port + i + 1 }))
    for (const r of await Promise.allSettled(rest)) {
      if (r.status === 'fulfilled') apps.push(r.value)
      else throw r.reason
    }
  } catch (e) {
    await stop()
    throw e
  }
  return { apps, urls: apps.map((a) => a.url), info: { ...apps[0].info, seedMs: db ? db.info.seedMs : apps[0].info.seedMs }, stop }
}

/** /stats of every instance, summed (requests, database queries and each numeric cache counter). */
async function stats(urls) {
  const all = await Promise.all(urls.map(async (url) => (await fetch(`${url}/stats`)).json()))
  const sum = { requests: 0, dbQueries: 0, cache: all[0].cache ? {} : null }
  for (const s of all) {
    sum.requests += s.requests
    sum.dbQueries += s.dbQueries
    if (s.cache) for (const [k, v] of Object.entries(s.cache)) if (typeof v === 'number') sum.cache[k] = (sum.cache[k] || 0) + v
  }
  return sum
}

/** One run: warm-up, then the measured load, with /stats read around it. */
async function measure(label, app, args) {
  const checker = new StaleChecker()
  const load = (duration, onTick) => runLoad({ urls: app.urls, duration, connections: args.connections, checker, onTick })
  await load(args.warmup)
  const before = await stats(app.urls)
  const result = await load(args.duration, ({ second, rps, stale }) => {
    if (second > args.duration) return // autocannon's last tick
    const progress = `${String(second).padStart(3)}/${args.duration} s  ${fmtInt(rps).padStart(7)} req/s`
    console.log(`  ${label.padEnd(22)} ${progress}  stale reads so far: ${stale}`)
  })
  const after = await stats(app.urls)
  const d = (f) => f(after) - f(before)
  const requests = d((s) => s.requests)
  const row = {
    label,
    ...result,
    dbPerRequest: requests ? d((s) => s.dbQueries) / requests : NaN,
    stale: checker.stale,
    readsChecked: checker.reads,
    examples: checker.examples,
  }
  if (after.cache) {
    const l1Hits = d((s) => s.cache.l1Hits)
    const l2Hits = d((s) => s.cache.l2Hits)
    row.l1 = ratio(l1Hits, d((s) => s.cache.l1Misses))
    row.l2 = app.info.redis === null ? null : ratio(l2Hits, d((s) => s.cache.l2Misses))
    row.redisErrors = d((s) => s.cache.redisErrors)
    row.l1Clears = d((s) => s.cache.busResubscriptions) // each one empties L1
    row.bus = { sent: d((s) => s.cache.busSent), received: d((s) => s.cache.busReceived), ackTimeouts: d((s) => s.cache.busAckTimeouts) }
  }
  return row
}

function ratio(hits, misses) {
  return hits + misses === 0 ? NaN : hits / (hits + misses)
}

const fmtInt = (n) => Math.round(n).toLocaleString('en-US')
const fmtMs = (n) => (n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : n.toFixed(0))
const fmtPct = (r) => (r === null ? 'off' : r === undefined ? '–' : Number.isNaN(r) ? '–' : `${(r * 100).toFixed(1)} %`)
const change = (before, after) => `${after < before ? '−' : '+'}${Math.abs((1 - after / before) * 100).toFixed(0)} %`

function table(off, on) {
  const rows = [
    ['', 'requests/s', 'p50 latency', 'p99 latency', 'DB queries / request', 'L1 hit ratio', 'Redis hit ratio', 'stale reads'],
    ...[off, on].map((r) => [r.label, fmtInt(r.rps), `${fmtMs(r.p50)} ms`, `${fmtMs(r.p99)} ms`, r.dbPerRequest.toFixed(3),
      fmtPct(r.l1), fmtPct(r.l2), String(r.stale)]),
    ['**this run, off → on**', `×${(on.rps / off.rps).toFixed(1)}`, '', `${fmtMs(off.p99)} → ${fmtMs(on.p99)} ms (${change(off.p99, on.p99)})`,
      `${change(off.dbPerRequest, on.dbPerRequest)} database load`, '', '', ''],
    ['**the article\'s claim**', '', '', `${ARTICLE.p99Before} → ${ARTICLE.p99After} ms (${change(ARTICLE.p99Before, ARTICLE.p99After)})`,
      `−${ARTICLE.dbLoadDecrease * 100} % database load`, '', '', ''],
  ]
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)))
  const line = (r) => `| ${r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ')} |`
  const rule = `|${widths.map((w, i) => (i === 0 ? `${'-'.repeat(w + 2)}|` : `${'-'.repeat(w + 1)}:|`)).join('')}`
  return [line(rows[0]), rule, ...rows.slice(1).map(line)].join('\n')
}

function machine() {
  let cpu = os.cpus()[0]?.model || 'unknown'
  try {
    cpu = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))[1].trim()
  } catch {}
  const memory = `${(os.totalmem() / 2 ** 30).toFixed(0)} GiB`
  return `${cpu}, ${os.cpus().length} cores, ${memory}; ${os.type()} ${os.release()}; Node.js ${process.version}`
}

/** What the table does not show: stale reads (must be 0), errors, L1 emptied by bus reconnections. */
function findings(rows) {
  const notes = []
  const failures = []
  for (const r of rows) {
    if (r.stale > 0) {
      failures.push(`${r.label}: ${r.stale} stale reads`)
      notes.push(`${r.label}: ${r.stale} stale reads (must be 0), for example:\n  ${r.examples.join('\n  ')}`)
    }
    if (r.errors > 0 || r.non2xx > 0) {
      failures.push(`${r.label}: ${r.errors + r.non2xx} failed requests`)
      notes.push(`${r.label}: ${r.errors} errors, ${r.non2xx} non-2xx responses`)
    }
    if (r.redisErrors > 0) notes.push(`${r.label}: ${r.redisErrors} Redis errors (stats().redisErrors)`)
    if (r.l1Clears > 0) {
      notes.push(`${r.label}: L1 was emptied ${r.l1Clears} times during the run by re-subscriptions of the ` +
        'invalidation bus (stats().busResubscriptions); L1 misses then went to Redis')
    }
  }
  return { notes, failures }
}

function report({ args, info, redis, off, on, command, notes }) {
  const pct = (share) => `${Math.round(share * 100)} %`
  return `# multi-level-cache demo: results

${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}, \`${command}\`

- machine: ${machine()} (app and load generator share it)
- database: ${info.database}, ${info.databaseVersion}; 50 000 products, 200 000 order lines
- cache: ${redis === null ? `L1 only (no Redis answered at ${info.redisUrl})` : `L1 + Redis ${redis} at ${info.redisUrl}`}
- instances: ${args.instances === 1 ? '1 app process' : `${args.instances} app processes (one key prefix: they share Redis and the bus; one database${info.database.includes('shared') ? ' process' : ''}), the load's connections spread over them round robin`}
- load: ${args.connections} connections, ${args.duration} s per run after ${args.warmup} s of warm-up;
  ${pct(1 - MIX.put - MIX.top)} \`GET /products/:id\`, ${pct(MIX.top)} \`GET /categories/:id/top\`, ${pct(MIX.put)} \`PUT /products/:id\`;
  zipf-like popularity (s = ${ZIPF_S}) over ${fmtInt(HOT_PRODUCTS)} products

${table(off, on)}
${notes.length ? `\n${notes.map((n) => `- ${n.replace(/\n {2}/g, '\n  - ')}`).join('\n')}\n` : ''}
Latencies are measured by the load generator (autocannon), per request, warm-up excluded.
Database queries are counted in the data layer (\`demo/db.js\`) and divided by the requests the app
served; a product page is 2 queries, a best-seller list and an update 1 each. The Redis hit ratio
is over the lookups that missed L1. A stale read is a response showing a product at a version
older than one a \`PUT\` had already returned before the read was sent
(${fmtInt(off.readsChecked)} + ${fmtInt(on.readsChecked)} product versions checked, warm-up included).

The article's figures come from its own service and database; they are listed for comparison,
not reproduced. See demo/README.md.
`
}

async function main() {
  const args = parseArgs(process.argv.slice(2))
  const redisUrl = process.env.REDIS_URL || 'redis://127.0.0.1:6379'
  const env = { ...process.env, REDIS_URL: redisUrl }
  const redis = await probeRedis(redisUrl)
  console.log('multi-level-cache demo: a shop API (Express) over a real database, with the cache off and then on')
  console.log(`  database: ${process.env.DATABASE_URL
    ? 'PostgreSQL from DATABASE_URL'
    : 'embedded SQLite (sql.js; set DATABASE_URL=postgres://... for PostgreSQL)'}`)
  console.log(redis === null
    ? `  Redis: nothing answers at ${redisUrl}; the cache runs on L1 alone (l2: false)`
    : `  Redis: ${redis} at ${redisUrl}`)

  const n = args.instances
  // several instances need one database: the SQLite in a database process (PostgreSQL is one already)
  const db = n > 1 && !process.env.DATABASE_URL ? await startChild('db-server.js', [], env) : null
  if (n > 1) {
    console.log(`  ${n} app instances sharing ${redis === null ? 'nothing but the database (no Redis)' : 'Redis and the bus'}; ` +
      `the load's connections spread over them round robin${db ? '; the database in its own process (demo/db-server.js)' : ''}`)
  }
  const rows = []
  let serving = null
  try {
    for (const cache of [false, true]) {
      const where = n > 1 ? `, ${n} instances` : ''
      const label = cache ? `cache on (${redis === null ? 'L1 only' : 'L1 + Redis'}${where})` : `cache off${where}`
      const app = await startInstances({ cache, n, env, db, port: cache && args.serve ? args.port || 3000 : undefined })
      if (!cache) {
        console.log(`  seeded ${app.info.database} in ${app.info.seedMs} ms; ${args.connections} connections, ` +
          `${args.warmup} s warm-up + ${args.duration} s per run`)
      }
      try {
        rows.push({ ...(await measure(label, app, args)), info: app.info })
      } finally {
        if (cache && args.serve) serving = app
        else await app.stop()
      }
    }
  } finally {
    if (db && !serving) await db.stop()
  }
  const [off, on] = rows
  const command = `npm run demo${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`
  console.log(`\n${table(off, on)}\n`)

  const busLine = n > 1 && on.bus && redis !== null
    ? `the bus (measured part): ${fmtInt(on.bus.sent)} invalidations published, ${fmtInt(on.bus.received)} received by the other ` +
      `instances; each PUT answered after the other instances acknowledged its invalidations (${on.bus.ackTimeouts} waits ran out at bus.ackTimeout)`
    : null
  if (busLine) console.log(busLine)
  const problems = findings(rows)
  for (const line of problems.notes) console.log(line)
  const ok = problems.failures.length === 0
  if (ok) console.log('stale reads: 0 with the cache off and on; no errors')
  else console.log(`\nFAILED: ${problems.failures.join('; ')}`)
  const out = path.join(__dirname, `RESULTS${args.quick ? '.quick' : ''}${n > 1 ? `.${n}-instances` : ''}.md`)
  fs.writeFileSync(out, report({ args, info: on.info, redis: on.info.redis, off, on, command, notes: [...(busLine ? [busLine] : []), ...problems.notes] }))
  console.log(`written to ${path.relative(process.cwd(), out)}`)

  if (serving) {
    const url = serving.urls[0]
    console.log(`\nServing the cached app at ${serving.urls.join(', ')} (Ctrl-C to stop):`)
    console.log(`  curl ${url}/products/1\n  curl ${url}/categories/1/top\n  curl ${url}/metrics`)
    const stop = () => Promise.all([serving.stop(), db && db.stop()]).then(() => process.exit(ok ? 0 : 1))
    process.on('SIGINT', stop)
    process.on('SIGTERM', stop)
    return
  }
  process.exit(ok ? 0 : 1)
}

main().catch((e) => {
  console.error(e.usage ? e.message : e)
  process.exit(1)
})
