'use strict'
// l1.maxEntries bounds L1 at every moment, and the newest entry is always kept.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { scope } = require('./helpers/cache.js')

test('maxEntries 50: 500 writes never leave more than 50 L1 entries; the key just written is in L1', async (t) => {
  const s = scope(t, { name: 'l1-bound' })
  const a = s.cache({ l1: { maxEntries: 50 } })
  let maxSeen = 0
  for (let i = 0; i < 500; i++) {
    await a.set(`key:${i}`, { i })
    const afterSet = a.stats()
    maxSeen = Math.max(maxSeen, afterSet.l1Entries)
    assert.ok(afterSet.l1Entries <= 50, `after set #${i}: ${afterSet.l1Entries} L1 entries`)
    assert.deepEqual(await a.get(`key:${i}`), { i })
    const afterGet = a.stats()
    assert.equal(afterGet.l1Hits - afterSet.l1Hits, 1, `key:${i} was not in L1 right after its set`)
    assert.equal(afterGet.l2Hits, afterSet.l2Hits)
  }
  const st = a.stats()
  assert.equal(maxSeen, 50, 'L1 never filled up to maxEntries')
  assert.ok(st.l1Entries <= 50)
  assert.ok(st.l1Evictions >= 450, `only ${st.l1Evictions} evictions for 500 entries in 50 slots`)

  // evicted entries are still in Redis and come back from there
  const before = a.stats()
  assert.deepEqual(await a.get('key:0'), { i: 0 })
  assert.equal(a.stats().l2Hits - before.l2Hits, 1)
  assert.ok(a.stats().l1Entries <= 50)
})

test('maxEntries bounds L1 when entries arrive from Redis too', async (t) => {
  const s = scope(t, { name: 'l1-bound-fill' })
  const writer = s.cache()
  for (let i = 0; i < 120; i++) await writer.set(`k${i}`, i)
  const b = s.cache({ l1: { maxEntries: 20 } })
  for (let i = 0; i < 120; i++) {
    assert.equal(await b.get(`k${i}`), i)
    assert.ok(b.stats().l1Entries <= 20, `after get #${i}: ${b.stats().l1Entries} L1 entries`)
    const before = b.stats()
    assert.equal(await b.get(`k${i}`), i)
    assert.equal(b.stats().l1Hits - before.l1Hits, 1, `k${i} was not kept in L1 after its Redis read`)
  }
})

test('without Redis, at most maxEntries values survive and the newest ones are kept', async (t) => {
  const s = scope(t, { name: 'l1-bound-only' })
  const a = s.cache({ l2: false, l1: { maxEntries: 10 } })
  for (let i = 0; i < 100; i++) await a.set(`k${i}`, i)
  let found = 0
  for (let i = 0; i < 100; i++) if ((await a.get(`k${i}`)) !== null) found++
  assert.ok(found <= 10, `${found} values survived in a 10-entry L1`)
  assert.ok(found > 0)
  assert.ok(a.stats().l1Entries <= 10)
  // the last one written was not evicted
  assert.equal(await a.get('k99'), 99)
})

test('maxEntries 1 keeps exactly the last entry', async (t) => {
  const s = scope(t, { name: 'l1-bound-one' })
  const a = s.cache({ l2: false, l1: { maxEntries: 1 } })
  await a.set('first', 1)
  await a.set('second', 2)
  assert.equal(a.stats().l1Entries, 1)
  assert.equal(await a.get('second'), 2)
  assert.equal(await a.get('first'), null)
})

test('overwriting keys does not grow L1', async (t) => {
  const s = scope(t, { name: 'l1-bound-overwrite' })
  const a = s.cache({ l1: { maxEntries: 5 } })
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < 3; i++) await a.set(`k${i}`, { round })
  }
  assert.equal(a.stats().l1Entries, 3)
  for (let i = 0; i < 3; i++) assert.deepEqual(await a.get(`k${i}`), { round: 19 })
})
