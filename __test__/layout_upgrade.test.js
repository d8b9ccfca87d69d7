'use strict'
// Rolling upgrade: processes of the previous key layout (0.1/0.2: every name under
// `{<prefix>}:`, bus `{<prefix>}:bus:v1`) and of layout 3 (0.3: `<prefix>:v3:...`, bus v2)
// sharing a prefix never read, overwrite or delete each other's keys. The old process is
// stood in for by its exact Redis writes (its key names, envelope and messages).

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { scope } = require('./helpers/cache.js')
const { entryName, kindOf } = require('./helpers/layout.js')

/** The keys a 0.2 process keeps for key `user` tagged `t`, as it wrote them. */
function oldLayout(prefix) {
  const envelope = JSON.stringify({ v: 2, e: Date.now() + 600000, w: 7, t: ['t'], b: 5, d: 'old-value' })
  return {
    [`{${prefix}}:k:user`]: envelope,
    [`{${prefix}}:m:t`]: '3',
    [`{${prefix}}:l:user`]: 'old-process-token',
    [`{${prefix}}:clock`]: '5',
  }
}

test('a 0.3 process and the previous layout on one prefix leave each other\'s keys alone', async (t) => {
  const s = scope(t, { name: 'upgrade' })
  const r = s.redis
  const old = oldLayout(s.prefix)
  for (const [k, v] of Object.entries(old)) await r.set(k, v, 'PX', 600000)
  const a = s.cache({ l1: { ttl: 60 } })
  const b = s.cache({ l1: false })
  // the old process's entry is not the new layout's: a miss, then a load of its own
  assert.equal(await b.get('user'), null)
  assert.equal(await b.getOrSet('user', () => 'new-value', { tags: ['t'] }), 'new-value')
  await a.set('other', 1, { tags: ['t'] })
  await a.invalidateTag('t')
  assert.equal(await b.get('user'), null)
  await a.set('user', 'newer', { tags: ['t'] })
  assert.equal(await b.get('user'), 'newer')
  await a.del('user')
  // an old process's message on its own channel is not read by the new one (and vice versa)
  await r.publish(`{${s.prefix}}:bus:v1`, 'oldproc|d|other')
  assert.equal(a.stats().busMalformed, 0)
  // every old key is exactly as the old process left it
  for (const [k, v] of Object.entries(old)) assert.equal(await r.get(k), v, `${k} was changed`)
  // and every key the new process wrote is of layout 3
  for (const k of await r.keys(`*${s.prefix}*`)) {
    if (k in old) continue
    assert.notEqual(kindOf(s.prefix, k), null, `${k} is not a layout-3 name`)
  }
  assert.equal(await r.exists(entryName(s.prefix, 'user')), 0)
  await r.del(...Object.keys(old))
})

test('prefixes that extend each other through the layout version (`x` and `x:v3:`) share nothing', async (t) => {
  const s = scope(t, { name: 'ext' })
  const longer = s.alsoClean(`${s.prefix}:v3:`)
  const a = s.cache({ l1: false })
  const b = s.cache({ prefix: longer, l1: false })
  await a.set('{k}', 'a', { tags: ['t'] })
  await b.set('{k}', 'b', { tags: ['t'] })
  await a.set('clock', 'a-clock')
  await b.set('clock', 'b-clock')
  await a.invalidateTag('t')
  assert.equal(await a.get('{k}'), null)
  assert.equal(await b.get('{k}'), 'b')
  await b.del('clock')
  assert.equal(await a.get('clock'), 'a-clock')
  assert.equal(await b.get('clock'), null)
})
