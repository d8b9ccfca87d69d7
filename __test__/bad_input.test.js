'use strict'
// Bad arguments: each is a rejected Promise (never a synchronous throw) with a stable code and
// class, nothing is written to L1 or Redis, and the cache keeps working. Bad constructor options
// throw, naming the option.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { scope, rejectsWith, codes, sleep, MultiLevelCache, SHARED_URL } = require('./helpers/cache.js')

/** Asserts the cache wrote nothing anywhere, then that it still works. */
async function assertNothingWrittenAndStillWorks(s, cache, keysToCheck = []) {
  await sleep(20) // a stray Redis write would have landed by now
  assert.deepEqual(await s.redisKeys(), [], 'something was written to Redis')
  assert.equal(cache.stats().l1Entries, 0, 'something was written to L1')
  assert.equal(cache.stats().sets, 0)
  for (const k of keysToCheck) {
    assert.equal(await cache.get(k), null, `get(${JSON.stringify(k)}) found something`)
    assert.equal(await s.inRedis(k), false)
  }
  await cache.set('still-works', { ok: true })
  assert.deepEqual(await cache.get('still-works'), { ok: true })
  assert.equal(await s.inRedis('still-works'), true)
}

/** Calls `fn`, asserting it returns a Promise rather than throwing. */
function call(fn) {
  let p
  assert.doesNotThrow(() => { p = fn() }, 'the call threw synchronously instead of rejecting')
  assert.ok(p instanceof Promise, 'the call did not return a Promise')
  return p
}

const BAD_KEYS = [
  ['a number', 42, '42'],
  ['an empty string', '', undefined],
  ['undefined', undefined, 'undefined'],
  ['null', null, 'null'],
  ['an object', { k: 1 }, '[object Object]'],
  ['an array', ['k'], 'k'],
  ['a String object', new String('k'), 'k'], // eslint-disable-line no-new-wrappers
]

for (const [what, key, asString] of BAD_KEYS) {
  test(`key that is ${what}: every method rejects with TypeError ERR_MLC_INVALID_KEY`, async (t) => {
    const s = scope(t, { name: 'bad-key' })
    let loaderCalls = 0
    const a = s.cache()
    await rejectsWith(assert, call(() => a.set(key, 'v')), TypeError, codes.INVALID_KEY)
    await rejectsWith(assert, call(() => a.set(key, 'v', { ttl: 5, tags: ['t'] })), TypeError, codes.INVALID_KEY)
    await rejectsWith(assert, call(() => a.get(key)), TypeError, codes.INVALID_KEY)
    await rejectsWith(assert, call(() => a.del(key)), TypeError, codes.INVALID_KEY)
    await rejectsWith(assert, call(() => a.exists(key)), TypeError, codes.INVALID_KEY)
    await rejectsWith(assert, call(() => a.getOrSet(key, () => { loaderCalls++; return 'v' })), TypeError, codes.INVALID_KEY)
    assert.equal(loaderCalls, 0)
    await assertNothingWrittenAndStillWorks(s, a, asString === undefined ? [] : [asString])
  })
}

test('a bad key rejects get with a constructor loader without calling it', async (t) => {
  const s = scope(t, { name: 'bad-key-loader' })
  let calls = 0
  const a = s.cache({ loader: () => { calls++; return 'v' } })
  await rejectsWith(assert, call(() => a.get(7)), TypeError, codes.INVALID_KEY)
  await rejectsWith(assert, call(() => a.get('')), TypeError, codes.INVALID_KEY)
  assert.equal(calls, 0)
  await sleep(20)
  assert.deepEqual(await s.redisKeys(), [])
  assert.equal(a.stats().l1Entries, 0)
  assert.equal(a.stats().loaderCalls, 0)
  // still working: a good key goes through the loader
  assert.equal(await a.get('7'), 'v')
  assert.equal(calls, 1)
})

test('a key longer than 1024 characters rejects with RangeError ERR_MLC_KEY_TOO_LONG', async (t) => {
  const s = scope(t, { name: 'bad-key-long' })
  const a = s.cache()
  const long = 'k'.repeat(1025)
  const longAstral = '😀'.repeat(513) // 1026 UTF-16 code units
  for (const key of [long, longAstral, 'x'.repeat(100_000)]) {
    await rejectsWith(assert, call(() => a.set(key, 'v')), RangeError, codes.KEY_TOO_LONG)
    await rejectsWith(assert, call(() => a.get(key)), RangeError, codes.KEY_TOO_LONG)
    await rejectsWith(assert, call(() => a.del(key)), RangeError, codes.KEY_TOO_LONG)
    await rejectsWith(assert, call(() => a.exists(key)), RangeError, codes.KEY_TOO_LONG)
    await rejectsWith(assert, call(() => a.getOrSet(key, () => 'v')), RangeError, codes.KEY_TOO_LONG)
  }
  await assertNothingWrittenAndStillWorks(s, a, ['k'.repeat(1024)])
})

test('a key with a lone surrogate rejects with TypeError ERR_MLC_INVALID_KEY', async (t) => {
  const s = scope(t, { name: 'bad-key-surrogate' })
  const a = s.cache()
  for (const key of ['\uD800', 'abc\uD83D', '\uDE00abc', 'a\uDC00\uD800b']) {
    await rejectsWith(assert, call(() => a.set(key, 'v')), TypeError, codes.INVALID_KEY)
    await rejectsWith(assert, call(() => a.get(key)), TypeError, codes.INVALID_KEY)
    await rejectsWith(assert, call(() => a.getOrSet(key, () => 'v')), TypeError, codes.INVALID_KEY)
    await rejectsWith(assert, call(() => a.exists(key)), TypeError, codes.INVALID_KEY)
    await rejectsWith(assert, call(() => a.del(key)), TypeError, codes.INVALID_KEY)
  }
  // the replacement character U+FFFD (what a lossy conversion would produce) was not written
  await assertNothingWrittenAndStillWorks(s, a, ['\uFFFD', 'abc\uFFFD'])
})

const BAD_TTLS = [
  ['negative', -1],
  ['NaN', NaN],
  ['Infinity', Infinity],
  ['-Infinity', -Infinity],
  ['zero', 0],
  ['a string', '5'],
  ['above 1e9', 1e9 + 1],
  ['null', null],
  ['a boolean', true],
]

for (const [what, ttl] of BAD_TTLS) {
  test(`ttl that is ${what} rejects set and getOrSet with RangeError ERR_MLC_INVALID_TTL`, async (t) => {
    const s = scope(t, { name: 'bad-ttl' })
    const a = s.cache()
    let calls = 0
    await rejectsWith(assert, call(() => a.set('k', 'v', { ttl })), RangeError, codes.INVALID_TTL)
    await rejectsWith(assert, call(() => a.getOrSet('k', () => { calls++; return 'v' }, { ttl })), RangeError, codes.INVALID_TTL)
    assert.equal(calls, 0, 'the loader ran despite the bad ttl')
    await assertNothingWrittenAndStillWorks(s, a, ['k'])
  })
}

test('ttl of 1e9 seconds (the documented maximum) is accepted', async (t) => {
  const s = scope(t, { name: 'ttl-max' })
  const a = s.cache()
  await a.set('k', 'v', { ttl: 1e9 })
  assert.equal(await a.get('k'), 'v')
  const pttl = await s.redis.pttl(s.entryKey('k'))
  assert.ok(pttl > 1e9 * 1000 - 60_000, `PTTL ${pttl}`)
})

const BAD_TAGS = [
  ['a string', 'tag', TypeError],
  ['an object', { 0: 'tag' }, TypeError],
  ["containing ''", ['ok', ''], TypeError],
  ['containing a number', ['ok', 1], TypeError],
  ['containing null', [null], TypeError],
  ['containing a lone surrogate', ['\uD800'], TypeError],
  ['with more than 64 tags', Array.from({ length: 65 }, (_, i) => `t${i}`), RangeError],
  ['with a tag longer than 1024 characters', ['t'.repeat(1025)], RangeError],
]

for (const [what, tags, Cls] of BAD_TAGS) {
  test(`tags ${what} reject set and getOrSet with ${Cls.name} ERR_MLC_INVALID_TAGS`, async (t) => {
    const s = scope(t, { name: 'bad-tags' })
    const a = s.cache()
    let calls = 0
    await rejectsWith(assert, call(() => a.set('k', 'v', { tags })), Cls, codes.INVALID_TAGS)
    await rejectsWith(assert, call(() => a.getOrSet('k', () => { calls++; return 'v' }, { tags })), Cls, codes.INVALID_TAGS)
    assert.equal(calls, 0)
    await assertNothingWrittenAndStillWorks(s, a, ['k'])
  })
}

test('64 tags of 1024 characters are accepted', async (t) => {
  const s = scope(t, { name: 'tags-max' })
  const a = s.cache()
  const tags = Array.from({ length: 64 }, (_, i) => String(i).padStart(1024, 't'))
  await a.set('k', 'v', { tags })
  assert.deepEqual((await s.envelope('k')).d, 'v')
  await a.invalidateTag(tags[63])
  assert.equal(await a.get('k'), null)
  assert.equal(await s.inRedis('k'), false)
})

for (const [what, loader] of [['undefined', undefined], ['a string', 'loader'], ['an object', {}], ['null', null], ['a Promise', Promise.resolve(1)]]) {
  test(`getOrSet with a loader that is ${what} rejects with TypeError ERR_MLC_INVALID_LOADER`, async (t) => {
    const s = scope(t, { name: 'bad-loader' })
    const a = s.cache()
    await rejectsWith(assert, call(() => a.getOrSet('k', loader)), TypeError, codes.INVALID_LOADER)
    await assertNothingWrittenAndStillWorks(s, a, ['k'])
  })
}

test('invalidateTag with an empty or non-string tag rejects with TypeError ERR_MLC_INVALID_TAGS', async (t) => {
  const s = scope(t, { name: 'bad-invalidate' })
  const a = s.cache()
  await a.set('k', 'v', { tags: ['t'] })
  for (const tag of ['', undefined, 42, null, ['t'], '\uD800']) {
    await rejectsWith(assert, call(() => a.invalidateTag(tag)), TypeError, codes.INVALID_TAGS)
  }
  await rejectsWith(assert, call(() => a.invalidateTag('t'.repeat(1025))), RangeError, codes.INVALID_TAGS)
  assert.equal(a.stats().tagInvalidations, 0)
  // nothing was invalidated
  assert.equal(await a.get('k'), 'v')
  assert.equal(await s.inRedis('k'), true)
  assert.equal(await s.redis.exists(s.tagKey('t')), 1)
})

test('set with options that are not an object rejects and writes nothing', async (t) => {
  const s = scope(t, { name: 'bad-options' })
  const a = s.cache()
  for (const options of [5, 'ttl', true]) {
    await assert.rejects(call(() => a.set('k', 'v', options)), (err) => {
      assert.ok(err instanceof TypeError)
      assert.equal(typeof err.code, 'string')
      assert.match(err.code, /^ERR_MLC_/)
      return true
    })
  }
  await assertNothingWrittenAndStillWorks(s, a, ['k'])
})

// ---- constructor ---------------------------------------------------------------------------

const BAD_OPTIONS = [
  [{ l1: { maxEntries: -1 } }, RangeError, /maxEntries/],
  [{ l1: { maxEntries: 1.5 } }, RangeError, /maxEntries/],
  [{ l1: { maxEntries: '10' } }, TypeError, /maxEntries/],
  [{ l1: { ttl: 0 } }, RangeError, /ttl/],
  [{ l1: true }, TypeError, /l1/],
  [{ l1: { maxEntrys: 5 } }, TypeError, /maxEntrys/],
  [{ l2: { ttl: -1 } }, RangeError, /ttl/],
  [{ l2: { ttl: NaN } }, RangeError, /ttl/],
  [{ redisUrl: 'http://x' }, null, /redisUrl/],
  [{ redisUrl: 'not a url' }, null, /redisUrl/],
  [{ redisUrl: 42 }, TypeError, /redisUrl/],
  [{ prefix: 'has space' }, null, /prefix/],
  [{ prefix: '' }, null, /prefix/],
  [{ prefix: 'a{b}' }, null, /prefix/],
  [{ prefix: 'p'.repeat(65) }, null, /prefix/],
  [{ prefix: 7 }, TypeError, /prefix/],
  [{ redisURL: 'redis://127.0.0.1:6379' }, TypeError, /redisURL/],
  [{ loader: 'fn' }, TypeError, /loader/],
  [{ lock: { ttl: -5 } }, RangeError, /ttl/],
  [{ redis: { connectTimeout: -1 } }, RangeError, /connectTimeout/],
  [{ limits: { maxValueBytes: 0 } }, RangeError, /maxValueBytes/],
]

for (const [options, Cls, name] of BAD_OPTIONS) {
  test(`constructor throws ERR_MLC_INVALID_OPTION for ${JSON.stringify(options, (k, v) => (Number.isNaN(v) ? 'NaN' : v))}`, () => {
    let caught
    assert.throws(() => {
      const c = new MultiLevelCache({ redisUrl: SHARED_URL, ...options })
      c.close() // not reached when the constructor throws as it must
    }, (err) => {
      caught = err
      return true
    })
    assert.ok(caught instanceof TypeError || caught instanceof RangeError, `got ${caught && caught.constructor.name}`)
    if (Cls) assert.ok(caught instanceof Cls, `expected a ${Cls.name}, got ${caught.constructor.name}`)
    assert.equal(caught.code, codes.INVALID_OPTION)
    assert.match(caught.message, name)
  })
}

test('constructor options that are not an object throw ERR_MLC_INVALID_OPTION', () => {
  for (const options of [null, 42, 'redis://127.0.0.1:6379', []]) {
    assert.throws(() => new MultiLevelCache(options), (err) => err instanceof TypeError && err.code === codes.INVALID_OPTION)
  }
})

test('valid edge options are accepted', async (t) => {
  const s = scope(t, { name: 'good-options' })
  const okPrefix = s.alsoClean('A-z_0.9:' + s.prefix.slice(0, 40))
  const a = s.track(new MultiLevelCache({ redisUrl: SHARED_URL, prefix: okPrefix, l1: { maxEntries: 1, ttl: 0.001 }, l2: { ttl: 1e9 } }))
  assert.equal(a.prefix, okPrefix)
  const b = s.track(new MultiLevelCache({ redisUrl: SHARED_URL, prefix: 'p'.repeat(64) }))
  assert.equal(b.prefix, 'p'.repeat(64))
  const c = s.track(new MultiLevelCache({ redisUrl: SHARED_URL }))
  assert.equal(c.prefix, 'mlc')
  await a.set('k', 1)
  assert.equal(await s.inRedis('k', okPrefix), true)
})
