'use strict'
// What the results were measured on.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { execFileSync } = require('node:child_process')

function cpuModel() {
  try {
    const text = fs.readFileSync('/proc/cpuinfo', 'utf8')
    const m = /^model name\s*:\s*(.+)$/m.exec(text)
    if (m) return m[1].trim()
  } catch {}
  const cpus = os.cpus()
  return cpus.length ? cpus[0].model : 'unknown'
}

function gitCommit() {
  try {
    const root = path.join(__dirname, '..', '..')
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    return dirty ? `${sha} (uncommitted changes)` : sha
  } catch {
    return 'unknown'
  }
}

function pkgVersion(name) {
  try {
    // read the file: some packages (bentocache) do not export their package.json
    return JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'node_modules', name, 'package.json'), 'utf8')).version
  } catch {
    return 'not installed'
  }
}

/** The other systems' packages. */
const PACKAGES = ['bentocache', 'cacheable', 'cache-manager', 'keyv', '@keyv/redis', 'redis', 'lru-cache']

/** @param {string} redisVersion */
function machineInfo(redisVersion) {
  return {
    cpu: cpuModel(),
    cores: typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length,
    memGiB: (os.totalmem() / 2 ** 30).toFixed(1),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    redis: redisVersion,
    ioredis: pkgVersion('ioredis'),
    nodeCache: pkgVersion('node-cache'),
    mlc: `${require('../../package.json').version}, commit ${gitCommit()}`,
    packages: Object.fromEntries(PACKAGES.map((p) => [p, pkgVersion(p)])),
    loadavg: os.loadavg().map((x) => x.toFixed(2)).join(' '),
    date: new Date().toISOString(),
  }
}

module.exports = { machineInfo }
