'use strict'
// The options are one list (issue 13): mlc-core's `Options` is what the binding deserializes
// (unknown names refused), lib/options.js maps the public options onto it, and index.d.ts
// declares the public ones. These tests keep the three from drifting apart.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { MultiLevelCache } = require('..')
const { normalizeOptions, TOP_LEVEL } = require('../lib/options.js')

test('every top-level option lib/options.js accepts is declared in index.d.ts, and nothing else is', () => {
  const dts = fs.readFileSync(path.join(__dirname, '..', 'index.d.ts'), 'utf8')
  const body = /export interface MultiLevelCacheOptions \{([\s\S]*?)\n\}/.exec(dts)
  assert.ok(body, 'index.d.ts declares MultiLevelCacheOptions')
  const declared = [...body[1].matchAll(/^ {2}(\w+)\?:/gm)].map((m) => m[1]).sort()
  assert.deepEqual(declared, [...TOP_LEVEL].sort())
})

test('every native option lib/options.js produces is one mlc-core knows (the binding refuses any other)', async () => {
  const every = {
    redisUrl: 'redis://127.0.0.1:1', prefix: 'shape', loader: () => 1, loaderTimeout: 5,
    grace: 1, graceBackoff: 1, softTimeout: 0, eagerRefresh: 0.5,
    l1: { maxEntries: 10, ttl: 1 }, l2: { ttl: 1 }, lock: { ttl: 1, wait: 1 },
    redis: { connectTimeout: 0.1, commandTimeout: 0.1, breakerThreshold: 3, breakerCooldown: 1, waitReplicas: 0, waitTimeout: 0.1 },
    bus: { ackTimeout: 0 }, limits: { maxValueBytes: 1000 },
    logger: { error() {}, warn() {}, info() {}, debug() {} },
  }
  const native = normalizeOptions(every).native
  // the whole list: every native name, set (TLS and topology options are checked by their own tests)
  assert.ok(Object.keys(native).length >= 27, `${Object.keys(native).length} native options`)
  const c = new MultiLevelCache(every)
  assert.equal(c.prefix, 'shape')
  await c.close()
})
