'use strict'
// Routes the Redis problems the core noticed (see core/src/problems.rs) to the `logger` option,
// or, without one, to process warnings. The core already dedupes per drain (one entry per code,
// with a count); this file decides how often each code reaches the user.

/** With a logger: each code is logged at most once per this many ms (repeats are counted). */
const LOG_INTERVAL_MS = 5000

const LEVELS = ['error', 'warn', 'info', 'debug']

/**
 * @typedef {{ code: string, level: string, message: string, redisCode?: string | null,
 *   detail: string, context: string, target: string, count: number }} NativeProblem
 */

class ProblemReporter {
  /** @param {object | undefined} logger a pino-compatible logger, already validated */
  constructor(logger) {
    this.logger = logger
    /** codes already emitted as process warnings (without a logger: once per code per cache) */
    this.warned = new Set()
    /** code -> time it was last logged */
    this.lastLogged = new Map()
    /** code -> occurrences not logged since (rate limit) */
    this.suppressed = new Map()
  }

  /** @param {NativeProblem[] | null} problems */
  report(problems) {
    if (problems === null) return
    for (const p of problems) {
      if (this.logger === undefined) this.#warn(p)
      else this.#log(p)
    }
  }

  #warn(p) {
    // a warning is for trouble; recovery is news only a logger asked for
    if (p.level === 'info' || p.level === 'debug' || this.warned.has(p.code)) return
    this.warned.add(p.code)
    process.emitWarning(p.message, { code: p.code })
  }

  #log(p) {
    const now = Date.now()
    const last = this.lastLogged.get(p.code)
    const count = p.count + (this.suppressed.get(p.code) || 0)
    if (last !== undefined && now - last < LOG_INTERVAL_MS) {
      this.suppressed.set(p.code, count)
      return
    }
    this.lastLogged.set(p.code, now)
    this.suppressed.delete(p.code)
    const fields = { code: p.code, context: p.context, target: p.target, occurrences: count }
    if (p.redisCode) fields.redisCode = p.redisCode
    if (p.detail) fields.detail = p.detail
    const level = LEVELS.includes(p.level) ? p.level : 'warn'
    try {
      this.logger[level](fields, p.message)
    } catch {
      // the user's logger failing must not break the cache
    }
  }
}

module.exports = { ProblemReporter, LOG_INTERVAL_MS, LEVELS }
