'use strict'
// The README's quick start, runnable: `npm run example`.
// Uses REDIS_URL when set (e.g. redis://127.0.0.1:6379); without it the cache runs on L1 alone.

const { MultiLevelCache } = require('..')

// A stand-in for a slow database query.
const db = {
  queries: 0,
  async findUser(id) {
    this.queries++
    await new Promise((r) => setTimeout(r, 50))
    return { id, name: `User ${id}`, visits: 0 }
  },
}

async function main() {
  const cache = new MultiLevelCache({ prefix: 'example' })
  const where = process.env.REDIS_URL ? `Redis at ${process.env.REDIS_URL}` : 'L1 only (set REDIS_URL to use Redis)'
  console.log(`multi-level-cache quick start: ${where}`)
  await Promise.all([cache.del('user:42'), cache.del('user:7'), cache.del('counter')]) // start cold

  const load = (key) => db.findUser(key.split(':')[1])
  let t = process.hrtime.bigint()
  const first = await cache.getOrSet('user:42', load, { ttl: 300, tags: ['user:42'] })
  console.log(`1st read (database): ${JSON.stringify(first)} in ${ms(t)}`)

  t = process.hrtime.bigint()
  await cache.getOrSet('user:42', load, { ttl: 300, tags: ['user:42'] })
  console.log(`2nd read (L1):       same value in ${ms(t)}`)

  // 100 concurrent reads of a cold key: one database query
  const before = db.queries
  await Promise.all(Array.from({ length: 100 }, () => cache.getOrSet('user:7', load, { tags: ['user:7'] })))
  console.log(`100 concurrent cold reads -> ${db.queries - before} database query`)

  // falsy values are values
  await cache.set('counter', 0)
  console.log(`cached 0 reads back as: ${await cache.get('counter')}`)

  // after an update, invalidate everything tagged with the user
  await cache.invalidateTag('user:42')
  console.log(`after invalidateTag('user:42'): ${await cache.get('user:42')}`)

  const s = cache.stats()
  console.log(`stats: L1 hits ${s.l1Hits}, Redis hits ${s.l2Hits}, loader calls ${s.loaderCalls}, Redis errors ${s.redisErrors}`)
  await cache.close()
}

function ms(start) {
  return `${(Number(process.hrtime.bigint() - start) / 1e6).toFixed(2)} ms`
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
