'use strict'
// A real Redis Cluster on loopback for tests: `primaries * (1 + replicas)` redis-server
// processes on free ports, joined with `redis-cli --cluster create`, with short failure
// detection (cluster-node-timeout 1 s, any replica may take over) so that a SIGKILLed
// primary's replica is promoted within a few seconds. Admin commands go through one plain
// ioredis client per node. Every process is stopped after the test (and on exit). No mocks.
//
//   const cluster = await startCluster(t, { primaries: 3, replicas: 1 })
//   new MultiLevelCache({ cluster: { nodes: cluster.nodes }, ... })
//   const port = (await cluster.primaryOf('some-key')).port
//   await cluster.killPrimary(port); const promoted = await cluster.waitForFailover(port)
//   await cluster.restart(port) // rejoins as a replica of `promoted`
//   await cluster.reshard({ from: a, to: b, slots: 100 }) // while the test runs load

const { spawn, execFile } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const Redis = require('ioredis')
const { freePort } = require('./redis.js')

const HOST = '127.0.0.1'
const SLOTS = 16384
const POLL_MS = 100
/** Bound of every wait for the cluster to settle (generous: a slow 2-core machine). */
const SETTLE_MS = 30000

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// ---- key slots ---------------------------------------------------------------------------

const CRC16_TABLE = (() => {
  const table = new Uint16Array(256)
  for (let i = 0; i < 256; i++) {
    let c = i << 8
    for (let j = 0; j < 8; j++) c = c & 0x8000 ? (c << 1) ^ 0x1021 : c << 1
    table[i] = c & 0xffff
  }
  return table
})()

/** CRC16-CCITT (XMODEM), the checksum of Redis Cluster's key slots. */
function crc16(bytes) {
  let crc = 0
  for (const b of bytes) crc = ((crc << 8) ^ CRC16_TABLE[((crc >> 8) ^ b) & 0xff]) & 0xffff
  return crc
}

/** The slot of `key` as Redis computes it (CLUSTER KEYSLOT), hash tags `{...}` included. */
function keySlot(key) {
  let bytes = Buffer.isBuffer(key) ? key : Buffer.from(String(key))
  const open = bytes.indexOf(0x7b) // '{'
  if (open >= 0) {
    const close = bytes.indexOf(0x7d, open + 1) // '}'
    if (close > open + 1) bytes = bytes.subarray(open + 1, close)
  }
  return crc16(bytes) % SLOTS
}

// ---- parsing -----------------------------------------------------------------------------

/** `INFO` text -> { field: value } (strings). */
function parseInfo(text) {
  const out = {}
  for (const line of String(text).split('\r\n')) {
    const i = line.indexOf(':')
    if (i > 0 && line[0] !== '#') out[line.slice(0, i)] = line.slice(i + 1)
  }
  return out
}

/**
 * `INFO commandstats` text -> { command: calls } (`cmdstat_get:calls=3,...` -> { get: 3 };
 * subcommands as `cluster|slots`).
 */
function parseCommandStats(text) {
  const out = {}
  for (const [k, v] of Object.entries(parseInfo(text))) {
    if (!k.startsWith('cmdstat_')) continue
    const m = /(?:^|,)calls=(\d+)/.exec(v)
    if (m) out[k.slice('cmdstat_'.length)] = Number(m[1])
  }
  return out
}

/** What this helper sends itself (polls, stats): not counted in commandCounts()' `calls`. */
const ADMIN_COMMANDS = new Set(['info', 'config|resetstat', 'config|get', 'config|set', 'role', 'cluster|nodes', 'cluster|info', 'cluster|myid', 'dbsize'])

/** Sum of the calls in `parseCommandStats()` output, ADMIN_COMMANDS left out. */
function clientCalls(byCommand) {
  let calls = 0
  for (const [cmd, n] of Object.entries(byCommand)) if (!ADMIN_COMMANDS.has(cmd)) calls += n
  return calls
}

/**
 * `CLUSTER NODES` text -> [{ id, port, flags, master, myself, failed, slots: [[from, to]] }]
 * (`master` is the primary's id for a replica, null for a primary; slots being migrated,
 * `[n->-id]`, are left out).
 */
function parseClusterNodes(text) {
  const nodes = []
  for (const line of String(text).split('\n')) {
    const f = line.trim().split(' ')
    if (f.length < 8) continue
    const flags = f[2].split(',')
    const slots = []
    for (const s of f.slice(8)) {
      if (s.startsWith('[')) continue
      const [a, b] = s.split('-').map(Number)
      slots.push([a, b === undefined ? a : b])
    }
    nodes.push({
      id: f[0],
      port: Number(f[1].split('@')[0].split(':').pop()),
      flags,
      master: f[3] === '-' ? null : f[3],
      myself: flags.includes('myself'),
      failed: flags.includes('fail') || flags.includes('fail?'),
      slots,
    })
  }
  return nodes
}

/** `CLUSTER SLOTS` reply -> 'from-to@primaryPort ...' sorted (replicas left out: their order and failure flags differ between nodes). */
function slotMapKey(reply) {
  return reply.map((r) => `${r[0]}-${r[1]}@${r[2][1]}`).sort().join(' ')
}

/**
 * Parsed `CLUSTER NODES` -> one string per node, 'id role primary-id failed? slots', sorted: two
 * nodes with the same key agree on every node's role, primary, failure and slots.
 */
function nodesViewKey(nodes) {
  return nodes.map((n) => `${n.id} ${n.master ? 'replica' : 'primary'} ${n.master || '-'} ${n.failed ? 'failed' : 'ok'} ${n.slots.map(([a, b]) => `${a}-${b}`).join(',')}`).sort().join('\n')
}

/** Number of slots in `[[from, to], ...]`. */
function countSlots(ranges) {
  return ranges.reduce((n, [a, b]) => n + b - a + 1, 0)
}

// ---- processes ---------------------------------------------------------------------------

/** Every node process of every cluster of this process, SIGKILLed on exit. */
const running = new Set()
process.on('exit', () => {
  for (const proc of running) {
    try { proc.kill('SIGKILL') } catch {}
  }
})

/** Whether something accepts connections on 127.0.0.1:port. */
function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, HOST)
    s.setTimeout(500)
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('timeout', () => { s.destroy(); resolve(false) })
    s.once('error', () => resolve(false))
  })
}

/** redis-server arguments of a cluster node (the same on every restart: same port, same nodes.conf). */
function nodeArgs(node, dir, extraArgs) {
  return [
    '--port', String(node.port), '--bind', HOST, '--protected-mode', 'yes', '--daemonize', 'no',
    '--cluster-enabled', 'yes', '--cluster-port', String(node.busPort),
    '--cluster-config-file', path.join(dir, `nodes-${node.port}.conf`),
    // failure detection: a primary is flagged after 1 s without an answer; any replica may be
    // promoted however long it was cut off (validity factor 0), and it does not wait for disk
    '--cluster-node-timeout', '1000', '--cluster-replica-validity-factor', '0',
    '--cluster-allow-reads-when-down', 'no', '--cluster-allow-replica-migration', 'no',
    // replication: full syncs start at once (the default waits 5 s for more replicas)
    '--repl-diskless-sync', 'yes', '--repl-diskless-sync-delay', '0',
    '--save', '', '--appendonly', 'no', '--dir', dir, '--dbfilename', `dump-${node.port}.rdb`,
    '--loglevel', 'warning', '--logfile', '',
    ...extraArgs,
  ]
}

/**
 * The pid of the redis-server answering on 127.0.0.1:port (INFO server), or undefined.
 * Tells our node from another process's server on a port that we were handed too.
 */
async function serverPid(port) {
  const c = new Redis({ host: HOST, port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 2000, commandTimeout: 2000, enableOfflineQueue: false })
  c.on('error', () => {})
  try {
    await c.connect()
    return Number(parseInfo(await c.info('server')).process_id)
  } catch {
    return undefined
  } finally {
    c.disconnect()
  }
}

/**
 * Spawns the node's redis-server and resolves once its port answers as this process (a port
 * free when picked may have been taken by another process since: then this server exits and
 * another one answers); rejects (with its output) when it exits first or after `timeoutMs`.
 */
async function spawnNode(node, dir, extraArgs, onSpawn, timeoutMs = 10000) {
  const proc = spawn('redis-server', nodeArgs(node, dir, extraArgs), { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  const keep = (d) => { output = (output + d).slice(-4000) }
  proc.stdout.on('data', keep)
  proc.stderr.on('data', keep)
  proc.on('error', (e) => keep(`spawn error: ${e.message}\n`))
  running.add(proc)
  node.proc = proc
  node.output = () => output
  node.exited = new Promise((resolve) => proc.once('exit', () => { running.delete(proc); resolve() }))
  const stopWatching = onSpawn ? onSpawn(proc) : undefined
  if (stopWatching) node.exited.then(stopWatching)
  const deadline = Date.now() + timeoutMs
  for (let i = 0; i < 1000 && Date.now() < deadline; i++) {
    if (!isAlive(node)) break
    if (await canConnect(node.port)) {
      const pid = await serverPid(node.port)
      if (pid === proc.pid) return
      if (pid !== undefined) { keep(`port ${node.port} is answered by another redis-server (pid ${pid})\n`); break }
    }
    await sleep(20)
  }
  const alive = isAlive(node)
  if (alive) proc.kill('SIGKILL')
  await node.exited
  throw new Error(`redis-server (cluster node) on port ${node.port} did not start${alive ? ` within ${timeoutMs} ms` : ''}: ${output.trim() || '(no output)'}`)
}

/** Whether the node's process is running. */
function isAlive(node) {
  return !!node.proc && node.proc.exitCode === null && node.proc.signalCode === null
}

/** SIGKILLs the node's process (if running) and waits for its exit. */
async function killNode(node) {
  if (isAlive(node)) node.proc.kill('SIGKILL')
  if (node.exited) await node.exited
}

/** Runs a program to completion; resolves { code, stdout, stderr, ms } (never rejects). */
function run(cmd, args, timeoutMs) {
  return new Promise((resolve) => {
    const t0 = Date.now()
    const child = execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      running.delete(child)
      const code = err ? (typeof err.code === 'number' ? err.code : err.signal || err.message) : 0
      resolve({ code, stdout: String(stdout), stderr: String(stderr), ms: Date.now() - t0 })
    })
    running.add(child)
  })
}

/** The last lines of a command's output, for an error message. */
function tail(r, lines = 8) {
  return `${r.stdout}\n${r.stderr}`.trim().split('\n').slice(-lines).join('\n')
}

/**
 * Calls `check()` every POLL_MS until it returns { done: true, value } (bounded in count and
 * by `timeoutMs`) and returns the value; throws with the last reason it gave ({ done: false,
 * why }) or threw.
 */
async function poll(what, timeoutMs, check) {
  const deadline = Date.now() + timeoutMs
  let why = 'not checked yet'
  for (let i = 0; i < 100000 && Date.now() < deadline; i++) {
    try {
      const r = await check()
      if (r.done) return r.value
      why = r.why
    } catch (e) {
      why = e.message
    }
    await sleep(POLL_MS)
  }
  throw new Error(`${what}: not within ${timeoutMs} ms (last: ${why})`)
}

// ---- the cluster -------------------------------------------------------------------------

class TestCluster {
  /**
   * @param {{ primaries: number, replicas: number, extraArgs: string[], onSpawn?: (proc: import('node:child_process').ChildProcess) => (() => void) | void }} opts
   */
  constructor(opts) {
    this.opts = opts
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlc-cluster-'))
    /** @type {Map<number, { port: number, busPort: number, url: string, id?: string, proc?: any, exited?: Promise<void>, output?: () => string }>} */
    this.byPort = new Map()
    /** @type {Map<number, import('ioredis').Redis>} */
    this.admins = new Map()
    /** Last known slots of each port (refreshed by primaries()), for waitForFailover. */
    this.lastSlots = new Map()
    /** Seed URLs of every node (primaries and replicas), as created. */
    this.nodes = []
    this.stopped = false
    this.timings = {}
  }

  /** Picks free ports (client and bus), starts every node, joins them, waits until settled. */
  async start() {
    const t0 = Date.now()
    const count = this.opts.primaries * (1 + this.opts.replicas)
    const taken = new Set()
    const pick = async () => {
      for (let i = 0; i < 100; i++) {
        const p = await freePort()
        if (!taken.has(p)) { taken.add(p); return p }
      }
      throw new Error('no free port')
    }
    const list = []
    for (let i = 0; i < count; i++) list.push({ port: await pick(), busPort: await pick() })
    const spawned = await Promise.allSettled(list.map(async (node) => {
      // a port taken between freePort() and the bind: another pair, at most 3 attempts
      for (let attempt = 0; ; attempt++) {
        try {
          await spawnNode(node, this.dir, this.opts.extraArgs, this.opts.onSpawn)
          node.url = `redis://${HOST}:${node.port}`
          this.byPort.set(node.port, node) // from now on stop() stops it
          return
        } catch (e) {
          if (attempt >= 2 || this.stopped) throw e
          node.port = await pick()
          node.busPort = await pick()
        }
      }
    }))
    const failed = spawned.find((s) => s.status === 'rejected')
    if (failed) throw failed.reason
    for (const node of list) this.nodes.push(node.url)
    this.timings.spawnMs = Date.now() - t0
    const t1 = Date.now()
    const r = await run('redis-cli', ['--cluster', 'create', ...list.map((n) => `${HOST}:${n.port}`),
      '--cluster-replicas', String(this.opts.replicas), '--cluster-yes'], 60000)
    if (r.code !== 0) throw new Error(`redis-cli --cluster create failed (${r.code}):\n${tail(r)}`)
    this.timings.createMs = Date.now() - t1
    const t2 = Date.now()
    await Promise.all(list.map(async (node) => { node.id = await (await this.connectedAdmin(node.port)).call('CLUSTER', 'MYID') }))
    await this.settle('the new cluster to settle', { replicasUp: true })
    await this.primaries()
    this.timings.settleMs = Date.now() - t2
    this.timings.startMs = Date.now() - t0
    return this
  }

  /** The admin client of a node (created once; reconnects by itself after a restart; fails fast while the node is down). */
  admin(port) {
    let c = this.admins.get(port)
    if (!c) {
      c = new Redis({
        host: HOST, port, lazyConnect: false, enableOfflineQueue: false, maxRetriesPerRequest: 0,
        connectTimeout: 2000, commandTimeout: 5000, retryStrategy: () => 100, enableReadyCheck: false,
      })
      c.on('error', () => {})
      this.admins.set(port, c)
    }
    return c
  }

  /** The admin client of a node, once connected (bounded wait: a client created just now). */
  async connectedAdmin(port) {
    const c = this.admin(port)
    if (c.status !== 'ready') {
      await poll(`admin connection to ${port}`, 5000, async () => ({ done: c.status === 'ready', why: c.status }))
    }
    return c
  }

  /** Nodes whose process is running. */
  liveNodes() {
    return [...this.byPort.values()].filter(isAlive)
  }

  /** `INFO <section>` of a node, parsed. */
  async info(port, section) {
    return parseInfo(await (await this.connectedAdmin(port)).info(section))
  }

  /**
   * Polls until every running node says cluster_state:ok with all 16384 slots served, knows
   * every node, and all agree on the slot map (CLUSTER SLOTS: which primary holds which slots)
   * and on every node's role, primary and failure flag (CLUSTER NODES); with `replicasUp`,
   * also until every replica's link to its primary is up. Returns the slot map.
   */
  async settle(what, { replicasUp = false, timeoutMs = SETTLE_MS, extra } = {}) {
    const total = this.byPort.size
    return poll(what, timeoutMs, async () => {
      const live = this.liveNodes()
      if (!live.length) return { done: false, why: 'no node is running' }
      let map
      let view
      for (const node of live) {
        const c = await this.connectedAdmin(node.port)
        const ci = parseInfo(await c.call('CLUSTER', 'INFO'))
        if (ci.cluster_state !== 'ok') return { done: false, why: `${node.port}: cluster_state ${ci.cluster_state}` }
        if (Number(ci.cluster_slots_ok) !== SLOTS) return { done: false, why: `${node.port}: cluster_slots_ok ${ci.cluster_slots_ok}` }
        if (Number(ci.cluster_known_nodes) !== total) return { done: false, why: `${node.port}: knows ${ci.cluster_known_nodes} of ${total} nodes` }
        const m = slotMapKey(await c.call('CLUSTER', 'SLOTS'))
        if (map === undefined) map = m
        else if (m !== map) return { done: false, why: `${node.port} sees another slot map (${m}) than ${live[0].port} (${map})` }
        const v = nodesViewKey(parseClusterNodes(await c.call('CLUSTER', 'NODES')))
        if (view === undefined) view = v
        else if (v !== view) return { done: false, why: `${node.port} sees the nodes' roles or failures differently than ${live[0].port}` }
        if (replicasUp) {
          const repl = parseInfo(await c.info('replication'))
          if (repl.role === 'slave' && repl.master_link_status !== 'up') return { done: false, why: `${node.port}: link to its primary ${repl.master_link_status}` }
        }
      }
      if (extra) {
        const why = await extra()
        if (why) return { done: false, why }
      }
      return { done: true, value: map }
    })
  }

  /** The current primaries, each as it reports itself: { port, url, id, slots: [[from, to], ...] } (by port). */
  async primaries() {
    const out = []
    for (const node of this.liveNodes()) {
      const c = await this.connectedAdmin(node.port)
      const role = await c.call('ROLE')
      if (role[0] !== 'master') continue
      const me = parseClusterNodes(await c.call('CLUSTER', 'NODES')).find((n) => n.myself)
      const slots = me ? me.slots : []
      this.lastSlots.set(node.port, slots)
      out.push({ port: node.port, url: node.url, id: node.id, slots })
    }
    return out.sort((a, b) => a.port - b.port)
  }

  /** Seed URLs of the current primaries. */
  async urls() {
    return (await this.primaries()).map((p) => p.url)
  }

  /** The slot of `key` (CRC16 with hash tags, as CLUSTER KEYSLOT). */
  keySlot(key) {
    return keySlot(key)
  }

  /** The current primary holding `key`'s slot ({ port, url, id, slots }), or undefined. */
  async primaryOf(key) {
    const slot = keySlot(key)
    return (await this.primaries()).find((p) => p.slots.some(([a, b]) => slot >= a && slot <= b))
  }

  /** The replicas' ports of the primary on `port`, as the primary's peers see them. */
  async replicasOf(port) {
    const node = this.byPort.get(port)
    const from = this.liveNodes().find((n) => n.port !== port) || node
    const nodes = parseClusterNodes(await (await this.connectedAdmin(from.port)).call('CLUSTER', 'NODES'))
    return nodes.filter((n) => n.master === node.id).map((n) => n.port)
  }

  /** SIGKILLs the node on `port` (a primary, normally) and waits for the process to exit. */
  async killPrimary(port) {
    const node = this.byPort.get(port)
    if (!node) throw new Error(`no cluster node on port ${port}`)
    if (isAlive(node)) {
      const me = parseClusterNodes(await this.admin(port).call('CLUSTER', 'NODES').catch(() => '')).find((n) => n.myself)
      if (me && me.slots.length) this.lastSlots.set(port, me.slots)
    }
    await killNode(node)
  }

  /**
   * Polls until the slots of the primary that was on `oldPort` are served by another node
   * (a promoted replica) and every running node says cluster_state:ok and agrees on the slot
   * map; returns the new primary's port.
   */
  async waitForFailover(oldPort, { timeoutMs = SETTLE_MS } = {}) {
    const slots = this.lastSlots.get(oldPort)
    if (!slots || !slots.length) throw new Error(`waitForFailover(${oldPort}): no slots known for that node`)
    const slot = slots[0][0]
    let promoted
    await this.settle(`failover of ${oldPort}`, {
      timeoutMs,
      extra: async () => {
        const owner = (await this.primaries()).find((p) => p.slots.some(([a, b]) => slot >= a && slot <= b))
        if (!owner) return `no running primary serves slot ${slot} yet`
        if (owner.port === oldPort) return `${oldPort} still serves slot ${slot}`
        promoted = owner.port
        return undefined
      },
    })
    return promoted
  }

  /**
   * Starts the node on `port` again (same port, same nodes.conf; no data kept) and waits
   * until it rejoined: a former primary whose slots moved comes back as a replica of the
   * promoted node, with its replication link up.
   */
  async restart(port, { timeoutMs = SETTLE_MS, settle = true } = {}) {
    const node = this.byPort.get(port)
    if (!node) throw new Error(`no cluster node on port ${port}`)
    await killNode(node)
    await spawnNode(node, this.dir, this.opts.extraArgs, this.opts.onSpawn)
    // several nodes restarted together settle once the last is up (`settle: false` before)
    if (settle) await this.settle(`${port} to rejoin`, { timeoutMs, replicasUp: true })
  }

  /**
   * Moves `slots` slots from the primary on `from` to the one on `to` (ports or URLs) with
   * `redis-cli --cluster reshard`; resolves once the command succeeded and the nodes agree on
   * the new slot map: { ms } (the command's time). Run load meanwhile.
   */
  async reshard({ from, to, slots, timeoutMs = 120000 }) {
    const portOf = (x) => (typeof x === 'number' ? x : Number(new URL(x).port))
    const src = this.byPort.get(portOf(from))
    const dst = this.byPort.get(portOf(to))
    if (!src || !dst) throw new Error(`reshard: unknown node ${src ? to : from}`)
    const r = await run('redis-cli', ['--cluster', 'reshard', `${HOST}:${dst.port}`, '--cluster-from', src.id,
      '--cluster-to', dst.id, '--cluster-slots', String(slots), '--cluster-yes'], timeoutMs)
    if (r.code !== 0) throw new Error(`redis-cli --cluster reshard failed (${r.code}):\n${tail(r)}`)
    await this.settle(`the slot map after moving ${slots} slots from ${src.port} to ${dst.port}`)
    await this.primaries()
    return { ms: r.ms }
  }

  /**
   * Calls per current primary from INFO commandstats: [{ port, url, calls, byCommand }];
   * `calls` leaves out this helper's own admin commands (ADMIN_COMMANDS); `byCommand` has all.
   */
  async commandCounts() {
    const out = []
    for (const p of await this.primaries()) {
      const byCommand = parseCommandStats(await this.admin(p.port).info('commandstats'))
      out.push({ port: p.port, url: p.url, calls: clientCalls(byCommand), byCommand })
    }
    return out
  }

  /** CONFIG RESETSTAT on every running node (zeroes the command counters). */
  async resetStats() {
    await Promise.all(this.liveNodes().map(async (n) => (await this.connectedAdmin(n.port)).config('RESETSTAT')))
  }

  /** Keys per current primary: [{ port, url, keys }]. */
  async dbsize() {
    const out = []
    for (const p of await this.primaries()) out.push({ port: p.port, url: p.url, keys: await this.admin(p.port).dbsize() })
    return out
  }

  /** FLUSHALL on every current primary (replicas follow). */
  async flushAll() {
    await Promise.all((await this.primaries()).map((p) => this.admin(p.port).flushall()))
  }

  /** Stops every node (SIGKILL: nothing to persist), closes the admin clients, removes the directory. Idempotent. */
  async stop() {
    this.stopped = true
    for (const c of this.admins.values()) c.disconnect()
    this.admins.clear()
    await Promise.all([...this.byPort.values()].map(killNode))
    fs.rmSync(this.dir, { recursive: true, force: true })
  }
}

/**
 * Starts a cluster of `primaries` primaries with `replicas` replicas each and waits until it
 * has settled; stopped after the test `t` (pass null and call `stop()` yourself elsewhere).
 * @param {import('node:test').TestContext | null} t
 * @param {{ primaries?: number, replicas?: number, extraArgs?: string[], onSpawn?: (proc: import('node:child_process').ChildProcess) => (() => void) | void }} [opts]
 *   `extraArgs`: more redis-server arguments for every node; `onSpawn`: called with every
 *   node process started (the benchmark's watchdog), may return a function called on its exit
 */
async function startCluster(t, { primaries = 3, replicas = 1, extraArgs = [], onSpawn } = {}) {
  if (!(Number.isInteger(primaries) && primaries >= 3)) throw new RangeError('a Redis Cluster needs at least 3 primaries')
  if (!(Number.isInteger(replicas) && replicas >= 0)) throw new RangeError('replicas must be an integer >= 0')
  const cluster = new TestCluster({ primaries, replicas, extraArgs, onSpawn })
  if (t) t.after(() => cluster.stop())
  try {
    await cluster.start()
  } catch (e) {
    const outputs = [...cluster.byPort.values()].map((n) => n.output && n.output().trim()).filter(Boolean)
    await cluster.stop()
    if (outputs.length) e.message += `\nnode output:\n${outputs.join('\n').slice(-2000)}`
    throw e
  }
  return cluster
}

module.exports = { startCluster, keySlot, parseInfo, parseCommandStats, clientCalls, parseClusterNodes, countSlots, SLOTS, ADMIN_COMMANDS }
