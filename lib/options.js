'use strict'
// Turns the public constructor options into the flat, type-checked object the native side
// validates for ranges. Type errors are thrown here, range errors by mlc-core; both name the option.

const { codes, mlcError } = require('./errors.js')
const { describe, checkDuration, checkFraction } = require('./validate.js')

const TOP_LEVEL = new Set(['redisUrl', 'sentinel', 'cluster', 'prefix', 'loader', 'loaderTimeout', 'grace', 'graceBackoff', 'softTimeout', 'eagerRefresh', 'l1', 'l2', 'lock', 'redis', 'bus', 'limits', 'logger'])
/** The longest duration option, in seconds (mlc-core's MAX_TTL_SECS). */
const MAX_DURATION = 1e9

function optionError(name, expected, got) {
  return mlcError(TypeError, codes.INVALID_OPTION, `option \`${name}\` must be ${expected}, got ${describe(got)}`)
}

function section(options, name, allowFalse, fields, objects = []) {
  const v = options[name]
  if (v === undefined) return {}
  if (v === false && allowFalse) return false
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw optionError(name, allowFalse ? 'an object or false' : 'an object', v)
  }
  for (const k of Object.keys(v)) {
    if (!fields.includes(k) && !objects.includes(k)) {
      throw mlcError(TypeError, codes.INVALID_OPTION, `unknown option \`${name}.${k}\` (known: ${[...fields, ...objects].join(', ')})`)
    }
  }
  for (const k of fields) {
    if (v[k] !== undefined && typeof v[k] !== 'number') throw optionError(`${name}.${k}`, 'a number', v[k])
  }
  return v
}

/** `redis.tls`: file paths of PEM material. */
function tlsSection(v) {
  if (v === undefined) return {}
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw optionError('redis.tls', 'an object', v)
  const fields = ['caFile', 'certFile', 'keyFile']
  for (const k of Object.keys(v)) {
    if (!fields.includes(k)) throw mlcError(TypeError, codes.INVALID_OPTION, `unknown option \`redis.tls.${k}\` (known: ${fields.join(', ')})`)
    if (typeof v[k] !== 'string' && v[k] !== undefined) throw optionError(`redis.tls.${k}`, 'a file path', v[k])
  }
  return v
}

/** `sentinel`: `{ nodes, name, username?, password?, db? }` (URLs and ranges checked natively). */
function sentinelSection(v) {
  if (v === undefined) return undefined
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw optionError('sentinel', 'an object { nodes, name }', v)
  const fields = ['nodes', 'name', 'username', 'password', 'db']
  for (const k of Object.keys(v)) {
    if (!fields.includes(k)) throw mlcError(TypeError, codes.INVALID_OPTION, `unknown option \`sentinel.${k}\` (known: ${fields.join(', ')})`)
  }
  if (!Array.isArray(v.nodes) || v.nodes.length === 0 || !v.nodes.every((n) => typeof n === 'string' && n !== '')) {
    throw optionError('sentinel.nodes', 'a non-empty array of sentinel URLs (redis:// or rediss://)', v.nodes)
  }
  if (typeof v.name !== 'string' || v.name === '') throw optionError('sentinel.name', 'the name of the monitored master (a non-empty string)', v.name)
  for (const k of ['username', 'password']) {
    if (v[k] !== undefined && typeof v[k] !== 'string') throw optionError(`sentinel.${k}`, 'a string', v[k])
  }
  if (v.db !== undefined && typeof v.db !== 'number') throw optionError('sentinel.db', 'a number', v.db)
  return v
}

/** `cluster`: `{ nodes }`, the seed nodes (URLs checked natively). */
function clusterSection(v) {
  if (v === undefined) return undefined
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw optionError('cluster', 'an object { nodes }', v)
  for (const k of Object.keys(v)) {
    if (k !== 'nodes') throw mlcError(TypeError, codes.INVALID_OPTION, `unknown option \`cluster.${k}\` (known: nodes)`)
  }
  if (!Array.isArray(v.nodes) || v.nodes.length === 0 || !v.nodes.every((n) => typeof n === 'string' && n !== '')) {
    throw optionError('cluster.nodes', 'a non-empty array of seed node URLs (redis:// or rediss://)', v.nodes)
  }
  return v
}

/**
 * The freshness defaults (seconds; `eagerRefresh` a fraction of the ttl), each overridable per
 * call: `grace` 0 (off), `graceBackoff` 5, `softTimeout` and `eagerRefresh` off.
 */
function freshnessOptions(options) {
  const { INVALID_OPTION } = codes
  const err = checkDuration(options.grace, 'option `grace`', MAX_DURATION, TypeError, INVALID_OPTION) ||
    checkDuration(options.graceBackoff, 'option `graceBackoff`', MAX_DURATION, TypeError, INVALID_OPTION) ||
    checkDuration(options.softTimeout, 'option `softTimeout`', MAX_DURATION, TypeError, INVALID_OPTION) ||
    checkFraction(options.eagerRefresh, 'option `eagerRefresh`', TypeError, INVALID_OPTION)
  if (err !== undefined) throw err
  return {
    grace: options.grace === undefined ? 0 : options.grace,
    graceBackoff: options.graceBackoff === undefined ? 5 : options.graceBackoff,
    softTimeout: options.softTimeout,
    eagerRefresh: options.eagerRefresh,
  }
}

/**
 * @param {unknown} options the constructor argument
 * @returns {{ native: object, loader: Function | undefined, logger: object | undefined }}
 */
function normalizeOptions(options) {
  if (options === undefined) options = {}
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw mlcError(TypeError, codes.INVALID_OPTION, `options must be an object, got ${describe(options)}`)
  }
  for (const k of Object.keys(options)) {
    if (!TOP_LEVEL.has(k)) throw mlcError(TypeError, codes.INVALID_OPTION, `unknown option \`${k}\` (known: ${[...TOP_LEVEL].join(', ')})`)
  }
  const sentinel = sentinelSection(options.sentinel)
  const cluster = clusterSection(options.cluster)
  const given = ['redisUrl', 'sentinel', 'cluster'].filter((k) => options[k] !== undefined)
  if (given.length > 1) {
    throw mlcError(TypeError, codes.INVALID_OPTION,
      `options ${given.map((k) => `\`${k}\``).join(' and ')} exclude each other: give exactly one of redisUrl, sentinel, cluster`)
  }
  let redisUrl = options.redisUrl
  // an empty REDIS_URL counts as unset (the shell convention); an explicit '' is a mistake (an
  // empty variable passed through?) that would otherwise run without Redis, silently. REDIS_URL
  // only defaults `redisUrl`: it is ignored when `sentinel` or `cluster` is given
  if (redisUrl === undefined) redisUrl = sentinel === undefined && cluster === undefined ? process.env.REDIS_URL || undefined : undefined
  else if (typeof redisUrl !== 'string') throw optionError('redisUrl', 'a string', redisUrl)
  else if (redisUrl === '') {
    throw mlcError(TypeError, codes.INVALID_OPTION,
      'option `redisUrl` is an empty string: pass a Redis URL, or omit it (or set `l2: false`) to run on L1 alone')
  }
  if (options.prefix !== undefined && typeof options.prefix !== 'string') throw optionError('prefix', 'a string', options.prefix)
  if (options.loader !== undefined && typeof options.loader !== 'function') throw optionError('loader', 'a function', options.loader)
  if (options.loaderTimeout !== undefined && typeof options.loaderTimeout !== 'number') throw optionError('loaderTimeout', 'a number of seconds', options.loaderTimeout)

  const logger = options.logger
  if (logger !== undefined) {
    if (logger === null || (typeof logger !== 'object' && typeof logger !== 'function')) {
      throw optionError('logger', 'an object with error, warn, info and debug methods (pino-compatible)', logger)
    }
    for (const level of ['error', 'warn', 'info', 'debug']) {
      if (typeof logger[level] !== 'function') {
        throw mlcError(TypeError, codes.INVALID_OPTION,
          `option \`logger\` must have error, warn, info and debug methods (pino-compatible); \`logger.${level}\` is ${describe(logger[level])}`)
      }
    }
  }

  const freshness = freshnessOptions(options)
  const l1 = section(options, 'l1', true, ['maxEntries', 'ttl'])
  const l2 = section(options, 'l2', true, ['ttl'])
  const lock = section(options, 'lock', false, ['ttl', 'wait'])
  const redis = section(options, 'redis', false, ['connectTimeout', 'commandTimeout', 'breakerThreshold', 'breakerCooldown', 'waitReplicas', 'waitTimeout'], ['tls'])
  const tls = tlsSection(redis.tls)
  const limits = section(options, 'limits', false, ['maxValueBytes'])
  const bus = section(options, 'bus', false, ['ackTimeout'])

  return {
    loader: options.loader,
    logger,
    freshness,
    native: {
      redisUrl: redisUrl || undefined,
      prefix: options.prefix,
      l1Disabled: l1 === false,
      l1MaxEntries: l1 ? l1.maxEntries : undefined,
      l1Ttl: l1 ? l1.ttl : undefined,
      l2Disabled: l2 === false,
      l2Ttl: l2 ? l2.ttl : undefined,
      lockTtl: lock.ttl,
      lockWait: lock.wait,
      loaderTimeout: options.loaderTimeout,
      connectTimeout: redis.connectTimeout,
      commandTimeout: redis.commandTimeout,
      breakerThreshold: redis.breakerThreshold,
      breakerCooldown: redis.breakerCooldown,
      tlsCaFile: tls.caFile,
      tlsCertFile: tls.certFile,
      tlsKeyFile: tls.keyFile,
      maxValueBytes: limits.maxValueBytes,
      busAckTimeout: bus.ackTimeout,
      waitReplicas: redis.waitReplicas,
      waitTimeout: redis.waitTimeout,
      sentinelNodes: sentinel && sentinel.nodes,
      sentinelName: sentinel && sentinel.name,
      sentinelUsername: sentinel && sentinel.username,
      sentinelPassword: sentinel && sentinel.password,
      sentinelDb: sentinel && sentinel.db,
      clusterNodes: cluster && cluster.nodes,
    },
  }
}

module.exports = { normalizeOptions, TOP_LEVEL }
