'use strict'
// Small helpers shared by the system adapters.

/** `redis://host:port` -> { host, port } (the benchmark only uses 127.0.0.1 URLs). */
function hostPort(redisUrl) {
  const u = new URL(redisUrl)
  return { host: u.hostname, port: Number(u.port) || 6379 }
}

/**
 * Wraps `fn` (which needs `ready` to have resolved) so that the first calls await `ready`
 * and, once it has resolved, `holder[name]` is replaced by `fn` itself (no extra await on the
 * hot path of later calls).
 */
function afterReady(ready, holder, name, fn) {
  ready.then(() => { holder[name] = fn }, () => {})
  return async (...args) => {
    await ready
    return fn(...args)
  }
}

module.exports = { hostPort, afterReady }

/** Installed version of an npm package (read from node_modules: some packages do not export package.json). */
function pkgVersion(name) {
  const fs = require('node:fs')
  const path = require('node:path')
  try {
    return JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'node_modules', name, 'package.json'), 'utf8')).version
  } catch {
    return 'not installed'
  }
}

module.exports.pkgVersion = pkgVersion
