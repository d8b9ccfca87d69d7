'use strict'

/**
 * Every error this package throws or rejects with carries one of these stable codes.
 * Tests and callers should branch on `err.code`, never on message text.
 */
const codes = Object.freeze({
  INVALID_KEY: 'ERR_MLC_INVALID_KEY',
  KEY_TOO_LONG: 'ERR_MLC_KEY_TOO_LONG',
  INVALID_VALUE: 'ERR_MLC_INVALID_VALUE',
  VALUE_TOO_LARGE: 'ERR_MLC_VALUE_TOO_LARGE',
  INVALID_TTL: 'ERR_MLC_INVALID_TTL',
  INVALID_TAGS: 'ERR_MLC_INVALID_TAGS',
  INVALID_OPTION: 'ERR_MLC_INVALID_OPTION',
  INVALID_LOADER: 'ERR_MLC_INVALID_LOADER',
  CLOSED: 'ERR_MLC_CLOSED',
  LOADER_TIMEOUT: 'ERR_MLC_LOADER_TIMEOUT',
  MISSING_DEPENDENCY: 'ERR_MLC_MISSING_DEPENDENCY',
  REDIS_REFUSED: 'ERR_MLC_REDIS_REFUSED',
})

/**
 * Builds an error of class `Cls` with a stable `code` (and the key involved, when there is one).
 * @param {ErrorConstructor} Cls TypeError, RangeError or Error
 * @param {string} code one of `codes`
 * @param {string} message what is wrong and what is expected
 * @param {{ key?: string, cause?: unknown, redisCode?: string }} [extra]
 */
function mlcError(Cls, code, message, extra) {
  const err = extra && extra.cause !== undefined ? new Cls(message, { cause: extra.cause }) : new Cls(message)
  err.code = code
  if (extra && extra.key !== undefined) err.key = extra.key
  if (extra && extra.redisCode !== undefined) err.redisCode = extra.redisCode
  return err
}

module.exports = { codes, mlcError }
