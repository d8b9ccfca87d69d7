'use strict'
// The article's two-level cache, reproduced as the baseline of the benchmark: node-cache (L1,
// in process) in front of ioredis (L2). Kept deliberately close to the article's code, flaws
// included (each flaw is noted where it is); the only additions are `close()` and bounds on
// the lock's retry loop (the benchmark's rule: every loop bounded).
//
// `keyPrefix` (an ioredis option) only namespaces this instance's Redis keys so that several
// systems can share the benchmark's redis-server; it adds nothing on the L1 path.

const NodeCache = require('node-cache')
const Redis = require('ioredis')

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

class ArticleCache {
  /**
   * @param {{ redisUrl?: string, keyPrefix?: string, maxLockRetries?: number, redis?: import('ioredis').Redis | import('ioredis').Cluster }} [options]
   *   `redis`: a client to use instead of one made from `redisUrl` (not in the article; the
   *   benchmark's cluster scenario gives it an ioredis `Cluster`, which carries its own keyPrefix)
   */
  constructor({ redisUrl, keyPrefix, maxLockRetries = 100, redis } = {}) {
    this.l1 = new NodeCache({ stdTTL: 60, useClones: false })
    this.redis = redis || (keyPrefix ? new Redis(redisUrl, { keyPrefix }) : new Redis(redisUrl))
    this.maxLockRetries = maxLockRetries
  }

  async get(key) {
    const l1Data = this.l1.get(key)
    // FLAW (kept as in the article): a falsy check, so cached `0`, `false`, `''` and `null`
    // fall through to Redis on every read. The benchmark's values are non-empty objects
    // (always truthy), so this does not change any timing measured here.
    if (l1Data) return l1Data

    const l2Data = await this.redis.get(key)
    if (l2Data) {
      const parsed = JSON.parse(l2Data)
      this.l1.set(key, parsed)
      return parsed
    }
    return null
  }

  /**
   * @param {string} key
   * @param {unknown} value
   * @param {{ ttl?: number, tags?: string[] }} [options]
   */
  async set(key, value, options = {}) {
    const ttl = options.ttl || 3600
    this.l1.set(key, value)
    await this.redis.set(key, JSON.stringify(value), 'EX', ttl)
    if (options.tags) {
      for (const tag of options.tags) {
        await this.redis.sadd(`tag:${tag}`, key)
      }
    }
  }

  async del(key) {
    this.l1.del(key)
    await this.redis.del(key)
  }

  async exists(key) {
    if (this.l1.has(key)) return true
    return (await this.redis.exists(key)) === 1
  }

  /**
   * Stampede protection as in the article: whoever wins `SET lock:<key> 1 NX EX 2` runs the
   * loader and fills both layers; everyone else sleeps 50 ms and tries again from the top.
   * FLAW (kept): the lock is not owned (any caller's DEL releases it), a loader slower than
   * 2 s lets a second caller in, and waiters poll Redis every 50 ms.
   * @param {string} key
   * @param {(key: string) => unknown} loader
   * @param {{ ttl?: number, tags?: string[] }} [options]
   */
  async getWithLock(key, loader, options) {
    // The article recurses without limit; bounded here (100 x 50 ms ≈ 5 s, well past the
    // lock's 2 s expiry), after which the call fails instead of spinning forever.
    for (let attempt = 0; attempt <= this.maxLockRetries; attempt++) {
      const cached = await this.get(key)
      if (cached) return cached

      const lockKey = `lock:${key}`
      const acquired = await this.redis.set(lockKey, '1', 'EX', 2, 'NX')
      if (acquired) {
        try {
          const value = await loader(key)
          await this.set(key, value, options)
          return value
        } finally {
          await this.redis.del(lockKey)
        }
      }
      await sleep(50)
    }
    throw new Error(`getWithLock(${JSON.stringify(key)}): lock still held after ${this.maxLockRetries} retries`)
  }

  /**
   * Tag invalidation as in the article: the tag is a Redis set of keys.
   * FLAW (kept): only this process's L1 is cleared; other processes keep serving their L1
   * copies until the 60 s TTL runs out. Keys deleted or expired stay in the tag set.
   * @param {string} tag
   */
  async invalidateTag(tag) {
    const keys = await this.redis.smembers(`tag:${tag}`)
    if (keys.length > 0) {
      await this.redis.del(...keys)
      for (const key of keys) this.l1.del(key)
    }
    await this.redis.del(`tag:${tag}`)
  }

  /** Not in the article: lets the benchmark release the connection and node-cache's timer. */
  async close() {
    this.l1.close()
    await this.redis.quit()
  }
}

module.exports = { ArticleCache }
