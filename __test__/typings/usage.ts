// Compiled with `tsc --noEmit` by `npm test`: the public typings must accept every documented
// use and reject misuse (each `@ts-expect-error` fails the build if the line compiles).
import { MultiLevelCache, BaseCache, CacheOptions, CacheStats, Loader, Logger, MultiLevelCacheOptions, RedisProblemCode, RedisProblemFields, SentinelOptions,
  ClusterOptions, LoaderContext, codes, registerMetrics } from '../../index'
import { Registry } from 'prom-client'

interface Profile { name: string; age: number }

async function usage(): Promise<void> {
  const options: MultiLevelCacheOptions = {
    redisUrl: process.env.REDIS_URL,
    prefix: 'shop',
    loader: async (key: string) => ({ key }),
    l1: { maxEntries: 10_000, ttl: 60 },
    l2: { ttl: 3600 },
    lock: { ttl: 10, wait: 5 },
    redis: { connectTimeout: 1, commandTimeout: 0.5 },
    bus: { ackTimeout: 0.05 },
    limits: { maxValueBytes: 1024 },
    logger: console,
  }
  const cache = new MultiLevelCache(options)
  const lines: RedisProblemFields[] = []
  const logger: Logger = {
    error: (fields) => lines.push(fields),
    warn: (fields, message: string) => lines.push({ ...fields, detail: message }),
    info: () => {},
    debug: () => {},
  }
  new MultiLevelCache({ logger })
  const sentinel: SentinelOptions = { nodes: ['redis://127.0.0.1:26379'], name: 'mymaster', password: 'pw', db: 1 }
  new MultiLevelCache({ sentinel, prefix: 'shop' })
  // @ts-expect-error: the sentinels and the master's name are required
  new MultiLevelCache({ sentinel: { nodes: ['redis://127.0.0.1:26379'] } })
  const cluster: ClusterOptions = { nodes: ['redis://127.0.0.1:7000', 'redis://127.0.0.1:7001'] }
  new MultiLevelCache({ cluster, prefix: 'shop' })
  // @ts-expect-error: the seed nodes are required
  new MultiLevelCache({ cluster: {} })
  const refusedCode: 'ERR_MLC_REDIS_REFUSED' = codes.REDIS_REFUSED
  const st: CacheStats = cache.stats()
  const counted: number = st.replaysCollapsed + st.redisRefused + st.invalidationsRefused
  const problem: RedisProblemCode = 'MLC_REDIS_NOPERM'
  // @ts-expect-error a logger needs all four levels
  new MultiLevelCache({ logger: { error: () => {}, warn: () => {} } })
  // @ts-expect-error not a code
  const notAProblem: RedisProblemCode = 'MLC_REDIS_FINE'
  const asBase: BaseCache = cache
  const opts: CacheOptions = { ttl: 0.05, tags: ['user:42'] }

  await cache.set<Profile>('user:42', { name: 'Ada', age: 36 }, opts)
  const p: Profile | null = await cache.get<Profile>('user:42')
  const n: number = await cache.getOrSet('n', () => 0, { ttl: 5, loaderTimeout: 2 })
  // the loader's context: options chosen from the value
  const adaptive: number = await cache.getOrSet('a', async (key: string, ctx: LoaderContext) => {
    ctx.setTtl(key.length)
    ctx.setTags(['t'])
    if (key === 'x') ctx.skip()
    return 1
  })
  // @ts-expect-error a ttl is a number of seconds
  await cache.getOrSet('a', (_key, ctx) => { ctx.setTtl('5'); return 1 })
  // freshness: grace, fail-safe backoff, soft timeout, eager refresh, expire
  const fresh = new MultiLevelCache({ grace: 30, graceBackoff: 5, softTimeout: 0.05, eagerRefresh: 0.8 })
  const graced: Profile = await fresh.getOrSet('user:44', async (_key, ctx) => {
    const before = ctx.stale as Profile | undefined
    return before ?? { name: 'y', age: 2 }
  }, { ttl: 60, grace: 600, graceBackoff: 1, softTimeout: 0, eagerRefresh: 0.5 })
  await fresh.set('user:44', graced, { ttl: 60, grace: 600 })
  await fresh.expire('user:44')
  await fresh.invalidateTag('user:44', { mode: 'expire' })
  // @ts-expect-error the modes are 'delete' and 'expire'
  await fresh.invalidateTag('user:44', { mode: 'soft' })
  // @ts-expect-error eagerRefresh is a getOrSet option, not a set option
  await fresh.set('user:44', graced, { eagerRefresh: 0.5 })
  const freshness: number = fresh.stats().staleServed + fresh.stats().softTimeouts + fresh.stats().failSafeActivations +
    fresh.stats().backgroundRefreshes + fresh.stats().backgroundRefreshFailures + fresh.stats().expires
  const loader: Loader<Profile> = async () => ({ name: 'x', age: 1 })
  const q: Profile = await cache.getOrSet('user:43', loader)
  const e: boolean = await asBase.exists('user:42')
  await cache.del('user:42')
  await cache.invalidateTag('user:42')
  const s: CacheStats = cache.stats()
  const hits: number = s.l1Hits + s.l2Hits + s.l1HitRatio
  const code: 'ERR_MLC_INVALID_KEY' = codes.INVALID_KEY
  const prefix: string = cache.prefix
  const unregister: () => void = registerMetrics(cache, new Registry(), { name: 'shop', redisInfoInterval: 5 })
  unregister()
  await cache.close()

  new MultiLevelCache()
  new MultiLevelCache({ l1: false, l2: false })

  // @ts-expect-error ttl is a number of seconds
  await cache.set('k', 1, { ttl: '5' })
  // @ts-expect-error tags are strings
  await cache.set('k', 1, { tags: [1] })
  // @ts-expect-error keys are strings
  await cache.get(42)
  // @ts-expect-error get may resolve null
  const notNull: Profile = await cache.get<Profile>('k')
  // @ts-expect-error l1 is an object or false
  new MultiLevelCache({ l1: true })
  // @ts-expect-error stats are numbers
  const bad: string = cache.stats().l1Hits

  void [p, n, q, e, hits, code, prefix, notNull, bad]
}
void usage
