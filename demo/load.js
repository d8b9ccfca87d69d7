'use strict'
// The load run: autocannon keeps `connections` keep-alive connections busy with a mix of
//   85 % GET /products/:id        (zipf-like popularity, s = 1, over the first 10 000 products)
//   10 % GET /categories/:id/top  (the category of a zipf-picked product)
//    5 % PUT /products/:id        (zipf-picked too: popular products change most)
// and checks every read for staleness while it runs (StaleChecker below).

const autocannon = require('autocannon')
const { CATEGORIES } = require('./db.js')

const HOT_PRODUCTS = 2_000
const ZIPF_S = 1.0
const MIX = { put: 0.05, top: 0.10 } // the rest: product pages

/** Draws 1..n with P(k) proportional to 1 / k^s. */
function zipf(n, s) {
  const cdf = new Float64Array(n)
  let sum = 0
  for (let k = 1; k <= n; k++) cdf[k - 1] = (sum += 1 / k ** s)
  for (let i = 0; i < n; i++) cdf[i] /= sum
  return () => {
    const u = Math.random()
    let lo = 0
    let hi = n - 1
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (cdf[mid] < u) lo = mid + 1
      else hi = mid
    }
    return lo + 1
  }
}

/**
 * A read is stale when it shows a product at a version older than one that a PUT had already
 * *completed* (its response received) before the read was sent. Events are ordered by one
 * counter, all on this thread: a PUT's completion and a read's sending.
 */
class StaleChecker {
  constructor() {
    this.clock = 0
    /** product id -> [[completedAt, highest version so far], ...] in clock order */
    this.completed = new Map()
    this.reads = 0
    this.stale = 0
    this.examples = []
  }

  now() {
    return ++this.clock
  }

  putCompleted(id, version) {
    let list = this.completed.get(id)
    if (list === undefined) this.completed.set(id, (list = []))
    const highest = list.length ? Math.max(list[list.length - 1][1], version) : version
    list.push([this.now(), highest])
  }

  /** The highest version a PUT had completed with before `sentAt`, or 0. */
  required(id, sentAt) {
    const list = this.completed.get(id)
    if (list === undefined) return 0
    for (let i = list.length - 1; i >= 0; i--) if (list[i][0] < sentAt) return list[i][1]
    return 0
  }

  /** Checks one (product, version) a read returned. */
  check(id, version, sentAt, path) {
    this.reads++
    const required = this.required(id, sentAt)
    if (version < required) {
      this.stale++
      if (this.examples.length < 5) {
        this.examples.push(`${path}: product ${id} at version ${version}, but version ${required} was already written`)
      }
    }
  }
}

/**
 * Runs the mix against `urls` (one app instance each) for `duration` seconds: the connections
 * are assigned to the instances round robin, as a TCP load balancer would (10 connections over 3
 * instances: 4, 3, 3), and one StaleChecker sees every request, so a read from one instance is
 * checked against the updates made through the others. `onTick({ second, rps, stale })` is
 * called once a second. Resolves { requests, seconds, rps, p50, p99, errors, non2xx }.
 * @param {{ urls: string[], duration: number, connections: number, checker: StaleChecker, onTick?: Function }} options
 */
function runLoad({ urls, duration, connections, checker, onTick = () => {} }) {
  const product = zipf(HOT_PRODUCTS, ZIPF_S)
  const latencies = []
  let failures = 0 // responses that were not what the route promises
  const request = {
    setupRequest(req, ctx) {
      const u = Math.random()
      const id = product()
      if (u < MIX.put) {
        ctx.kind = 'put'
        ctx.id = id
        req.method = 'PUT'
        req.path = `/products/${id}`
        req.headers = { 'content-type': 'application/json' }
        req.body = JSON.stringify({ price: 100 + Math.floor(Math.random() * 99_900) })
      } else {
        ctx.kind = 'get'
        req.method = 'GET'
        req.path = u < MIX.put + MIX.top ? `/categories/${((id - 1) % CATEGORIES) + 1}/top` : `/products/${id}`
        req.headers = {}
        req.body = undefined
      }
      ctx.path = req.path
      ctx.sentAt = checker.now() // autocannon writes the request right after this returns
      return req
    },
    onResponse(status, body, ctx) {
      if (status !== 200) return
      let data
      try {
        data = JSON.parse(body)
      } catch {
        failures++
        return
      }
      if (ctx.kind === 'put') checker.putCompleted(data.id, data.version)
      else if (Array.isArray(data.top)) for (const p of data.top) checker.check(p.id, p.version, ctx.sentAt, ctx.path)
      else checker.check(data.id, data.version, ctx.sentAt, ctx.path)
    },
  }

  const share = urls.map((_, i) => Math.floor(connections / urls.length) + (i < connections % urls.length ? 1 : 0))
  const targets = urls.map((url, i) => ({ url, connections: share[i] })).filter((t) => t.connections > 0)
  const perSecond = new Map() // second -> [requests so far, instances that reported it]
  const started = performance.now()
  const runs = targets.map((target) => new Promise((resolve, reject) => {
    const instance = autocannon({ url: target.url, connections: target.connections, duration, pipelining: 1, timeout: 10, requests: [request] },
      (err, result) => (err ? reject(err) : resolve(result)))
    instance.on('response', (client, status, bytes, ms) => latencies.push(ms))
    let second = 0
    instance.on('tick', ({ counter }) => {
      second++
      const entry = perSecond.get(second) || [0, 0]
      entry[0] += counter
      entry[1]++
      perSecond.set(second, entry)
      if (entry[1] === targets.length) onTick({ second, rps: entry[0], stale: checker.stale })
    })
  }))
  return Promise.all(runs).then((results) => {
    const seconds = (performance.now() - started) / 1000
    latencies.sort((a, b) => a - b)
    const pct = (p) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] : NaN)
    const sum = (f) => results.reduce((n, r) => n + f(r), 0)
    return {
      requests: latencies.length,
      seconds,
      rps: latencies.length / seconds,
      p50: pct(0.5),
      p99: pct(0.99),
      errors: sum((r) => r.errors + r.timeouts) + failures,
      non2xx: sum((r) => r.non2xx),
    }
  })
}

module.exports = { runLoad, StaleChecker, HOT_PRODUCTS, ZIPF_S, MIX }
