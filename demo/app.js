'use strict'
// The demo's Express app: a small shop API over demo/db.js, with multi-level-cache in front.
//
//   GET  /products/:id          product page       getOrSet('product:<id>')
//   GET  /categories/:id/top    10 best sellers    getOrSet('top:<id>')
//   PUT  /products/:id          {"price": 1234}    update, then invalidateTag product:<id>, category:<c>
//   GET  /metrics               Prometheus (prom-client + registerMetrics)
//   GET  /stats                 JSON counters the load run reads (requests, DB queries, cache)
//
// Tags: a product page is tagged `product:<id>`; a best-seller list `category:<id>`. An update
// invalidates both tags of the product it changed (its category comes back from the UPDATE), in
// L1 and Redis, and in every other process through the bus.
//
// Run alone: `node demo/app.js [--port 3000] [--no-cache]` (REDIS_URL, DATABASE_URL as in run.js).
// Several instances (run.js --instances N) share one key prefix (MLC_DEMO_PREFIX) and one database
// (MLC_DEMO_DB: the URL of demo/db-server.js, or DATABASE_URL seeded by the first instance only:
// MLC_DEMO_SEED=0 for the others).

const net = require('node:net')
const express = require('express')
const prom = require('prom-client')
const { MultiLevelCache, registerMetrics } = require('..')
const { openDb } = require('./db.js')

const TTL = 120 // seconds, both layers

/**
 * Creates the app. `cache` null = every read goes to the database.
 * @param {{ db: Awaited<ReturnType<typeof openDb>>, cache: MultiLevelCache | null }} deps
 */
function createApp({ db, cache }) {
  const app = express()
  const registry = new prom.Registry()
  prom.collectDefaultMetrics({ register: registry })
  registry.registerMetric(new prom.Counter({
    name: 'demo_db_queries_total',
    help: 'Statements sent to the database.',
    collect() { this.reset(); this.inc(db.queries) },
  }))
  if (cache) registerMetrics(cache, registry, { name: 'demo' })

  const counters = { requests: 0 }
  // the read path: through the cache, or straight to the database when it is off
  const cached = (key, tags, load) => (cache ? cache.getOrSet(key, load, { ttl: TTL, tags }) : load())

  const id = (req, res) => {
    const n = Number(req.params.id)
    if (Number.isSafeInteger(n) && n > 0) return n
    res.status(400).json({ error: 'id must be a positive integer' })
    return null
  }

  app.get('/products/:id', async (req, res) => {
    counters.requests++
    const pid = id(req, res)
    if (pid === null) return
    const product = await cached(`product:${pid}`, [`product:${pid}`], () => db.product(pid))
    if (product == null) return res.status(404).json({ error: 'no such product' })
    res.json(product)
  })

  app.get('/categories/:id/top', async (req, res) => {
    counters.requests++
    const cid = id(req, res)
    if (cid === null) return
    const top = await cached(`top:${cid}`, [`category:${cid}`], async () => ({ category: cid, top: await db.topOfCategory(cid) }))
    res.json(top)
  })

  app.put('/products/:id', express.json(), async (req, res) => {
    counters.requests++
    const pid = id(req, res)
    if (pid === null) return
    const price = req.body && req.body.price
    if (!Number.isSafeInteger(price) || price <= 0) return res.status(400).json({ error: 'price must be a positive integer (cents)' })
    const row = await db.updatePrice(pid, price)
    if (row === null) return res.status(404).json({ error: 'no such product' })
    // the database first, then the cache: a read after this response never sees the old price
    if (cache) await Promise.all([cache.invalidateTag(`product:${pid}`), cache.invalidateTag(`category:${row.category_id}`)])
    res.json({ id: row.id, version: row.version })
  })

  app.get('/metrics', async (req, res) => {
    res.set('Content-Type', registry.contentType).send(await registry.metrics())
  })

  app.get('/stats', (req, res) => {
    res.json({ requests: counters.requests, dbQueries: db.queries, cache: cache ? cache.stats() : null })
  })

  app.use((err, req, res, next) => { // eslint-disable-line no-unused-vars
    console.error(err)
    res.status(500).json({ error: String(err.message || err) })
  })
  return app
}

/**
 * Whether a Redis server answers at `url`: one INFO over a plain TCP connection (redis:// and
 * redis+unix:// / unix:// URLs). Resolves its version, or null.
 */
function probeRedis(url, timeoutMs = 500) {
  return new Promise((resolve) => {
    let u
    try {
      u = new URL(url)
    } catch {
      return resolve(null)
    }
    if (u.protocol === 'rediss:') return resolve('unknown (TLS, not probed)')
    const target = u.protocol === 'redis:'
      ? { host: u.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1', port: Number(u.port || 6379) }
      : { path: u.pathname }
    const socket = net.connect(target)
    let reply = ''
    const done = (v) => { socket.destroy(); clearTimeout(timer); resolve(v) }
    const timer = setTimeout(() => done(null), timeoutMs)
    socket.on('error', () => done(null))
    socket.on('connect', () => socket.write('*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n'))
    socket.on('data', (chunk) => {
      reply += chunk
      if (reply.startsWith('-')) return done('unknown') // e.g. NOAUTH: something Redis-like answers
      const m = /redis_version:([^\r\n]+)/.exec(reply)
      if (m) done(m[1])
    })
  })
}

/**
 * Opens the database, probes Redis, builds the cache (unless `cache: false`) and listens on
 * 127.0.0.1. Resolves { server, port, info, close }.
 */
async function start({ port = 0, cache: useCache = true, redisUrl, databaseUrl, seed = true, prefix } = {}) {
  const db = await openDb({ url: databaseUrl, seed })
  const info = { database: db.kind, databaseVersion: db.version, seedMs: Math.round(db.seedMs), redisUrl, redis: null }
  let cache = null
  if (useCache) {
    info.redis = await probeRedis(redisUrl)
    cache = new MultiLevelCache({
      redisUrl,
      // a fresh namespace per start (no entries left from an earlier run), shared by the instances of one run
      prefix: prefix || `mlc-demo-${Date.now().toString(36)}`,
      l1: { maxEntries: 20_000 },
      l2: info.redis === null ? false : {}, // nothing answers: L1 alone
    })
  }
  const app = createApp({ db, cache })
  const server = await new Promise((resolve, reject) => {
    const s = app.listen(port, '127.0.0.1', () => resolve(s)).on('error', reject)
  })
  server.keepAliveTimeout = 60_000
  const close = async () => {
    await new Promise((resolve) => server.close(resolve))
    if (cache) await cache.close()
    await db.close()
  }
  return { server, port: server.address().port, info, close }
}

module.exports = { createApp, start, probeRedis }

if (require.main === module) {
  // as a child of run.js (IPC: report { ready, port, info }) or on its own
  const args = process.argv.slice(2)
  const portArg = args.indexOf('--port')
  const started = start({
    port: portArg >= 0 ? Number(args[portArg + 1]) : 0,
    cache: !args.includes('--no-cache'),
    redisUrl: process.env.REDIS_URL || 'redis://127.0.0.1:6379',
    databaseUrl: process.env.MLC_DEMO_DB || process.env.DATABASE_URL,
    seed: process.env.MLC_DEMO_SEED !== '0',
    prefix: process.env.MLC_DEMO_PREFIX,
  })
  require('./child.js').runAsChild(started, 'listening')
}
