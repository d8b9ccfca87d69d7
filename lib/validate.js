'use strict'
// Argument checks of every public call. Each returns an Error (not thrown) or undefined, so the
// hot path pays for a few comparisons and callers turn a failure into a rejected Promise.

const { codes, mlcError } = require('./errors.js')

/** @param {unknown} key @param {number} maxLength */
function checkKey(key, maxLength) {
  if (typeof key !== 'string' || key.length === 0) {
    const got = typeof key === 'string' ? 'an empty string' : describe(key)
    return mlcError(TypeError, codes.INVALID_KEY, `key must be a non-empty string, got ${got}`)
  }
  if (key.length > maxLength) {
    return mlcError(RangeError, codes.KEY_TOO_LONG, `key must be at most ${maxLength} characters, got ${key.length}`)
  }
  if (!key.isWellFormed()) {
    return mlcError(TypeError, codes.INVALID_KEY, 'key must be well-formed Unicode (it has a lone surrogate)')
  }
  return undefined
}

/**
 * Checks `options` of set/getOrSet. Returns an Error, or undefined when valid.
 * @param {unknown} options
 * @param {{ maxTtl: number, maxTagLength: number, maxTags: number }} limits
 */
/**
 * `getOrSet`'s options: those of `set`, plus `loaderTimeout` (seconds, this call's hard bound on
 * its loader).
 */
function checkGetOrSetOptions(options, limits) {
  const err = checkSetOptions(options, limits)
  if (err !== undefined || options === undefined || options === null) return err
  const { loaderTimeout } = options
  if (loaderTimeout !== undefined && !(typeof loaderTimeout === 'number' && loaderTimeout > 0 && loaderTimeout <= limits.maxTtl)) {
    return mlcError(RangeError, codes.INVALID_TTL,
      `loaderTimeout must be a positive finite number of seconds up to ${limits.maxTtl}, got ${describe(loaderTimeout)}`)
  }
  return checkDuration(options.graceBackoff, 'graceBackoff', limits.maxTtl, RangeError, codes.INVALID_TTL) ||
    checkDuration(options.softTimeout, 'softTimeout', limits.maxTtl, RangeError, codes.INVALID_TTL) ||
    checkFraction(options.eagerRefresh, 'eagerRefresh', RangeError, codes.INVALID_OPTION)
}

/** `set`'s options: `ttl`, `tags`, and `grace` (seconds the entry is kept past its ttl). */
function checkSetOptions(options, limits) {
  const err = checkCacheOptions(options, limits)
  if (err !== undefined || options === undefined || options === null) return err
  return checkDuration(options.grace, 'grace', limits.maxTtl, RangeError, codes.INVALID_TTL)
}

/**
 * A duration in seconds, 0 allowed (undefined: not given). A non-number is an error of
 * `TypeClass` too when it is TypeError (the constructor), else a RangeError (per call, like ttl).
 */
function checkDuration(v, name, max, TypeClass, code) {
  if (v === undefined) return undefined
  if (typeof v !== 'number') return mlcError(TypeClass, code, `${name} must be a number of seconds, got ${describe(v)}`)
  if (!(v >= 0) || v > max) return mlcError(RangeError, code, `${name} must be a finite number of seconds from 0 to ${max}, got ${v}`)
  return undefined
}

/** `invalidateTag`'s options: `{ mode: 'delete' | 'expire' }`. */
function checkInvalidateOptions(options) {
  if (options === undefined || options === null) return undefined
  if (typeof options !== 'object' || Array.isArray(options)) {
    return mlcError(TypeError, codes.INVALID_OPTION, `options must be an object, got ${describe(options)}`)
  }
  const { mode } = options
  if (mode !== undefined && mode !== 'delete' && mode !== 'expire') {
    return mlcError(typeof mode === 'string' ? RangeError : TypeError, codes.INVALID_OPTION,
      `mode must be 'delete' or 'expire', got ${describe(mode)}`)
  }
  return undefined
}

/** A fraction strictly between 0 and 1 (undefined: not given). */
function checkFraction(v, name, TypeClass, code) {
  if (v === undefined) return undefined
  if (typeof v !== 'number') return mlcError(TypeClass, code, `${name} must be a number between 0 and 1 (exclusive), got ${describe(v)}`)
  if (!(v > 0 && v < 1)) return mlcError(RangeError, code, `${name} must be between 0 and 1 (exclusive), got ${v}`)
  return undefined
}

function checkCacheOptions(options, limits) {
  if (options === undefined || options === null) return undefined
  if (typeof options !== 'object') {
    return mlcError(TypeError, codes.INVALID_OPTION, `options must be an object, got ${describe(options)}`)
  }
  const { ttl, tags } = options
  if (ttl !== undefined) {
    if (typeof ttl !== 'number') {
      return mlcError(RangeError, codes.INVALID_TTL, `ttl must be a number of seconds, got ${describe(ttl)}`)
    }
    if (!(ttl > 0) || ttl > limits.maxTtl) {
      return mlcError(RangeError, codes.INVALID_TTL, `ttl must be a positive finite number of seconds up to ${limits.maxTtl}, got ${ttl}`)
    }
  }
  if (tags !== undefined) {
    if (!Array.isArray(tags)) {
      return mlcError(TypeError, codes.INVALID_TAGS, `tags must be an array of non-empty strings, got ${describe(tags)}`)
    }
    if (tags.length > limits.maxTags) {
      return mlcError(RangeError, codes.INVALID_TAGS, `an entry may carry at most ${limits.maxTags} tags, got ${tags.length}`)
    }
    for (let i = 0; i < tags.length; i++) {
      const err = checkTag(tags[i], limits.maxTagLength, `tags[${i}]`)
      if (err) return err
    }
  }
  return undefined
}

/** @param {unknown} tag @param {number} maxLength @param {string} [name] */
function checkTag(tag, maxLength, name = 'tag') {
  if (typeof tag !== 'string' || tag.length === 0) {
    const got = typeof tag === 'string' ? 'an empty string' : describe(tag)
    return mlcError(TypeError, codes.INVALID_TAGS, `${name} must be a non-empty string, got ${got}`)
  }
  if (tag.length > maxLength) {
    return mlcError(RangeError, codes.INVALID_TAGS, `${name} must be at most ${maxLength} characters, got ${tag.length}`)
  }
  if (!tag.isWellFormed()) {
    return mlcError(TypeError, codes.INVALID_TAGS, `${name} must be well-formed Unicode (it has a lone surrogate)`)
  }
  return undefined
}

/**
 * JSON text of a value, or throws a TypeError/RangeError with a code.
 * `null` is refused: it is how a miss is reported, so it could never be read back.
 * @param {unknown} value @param {string} key @param {number} maxBytes @param {string} what
 */
function serialize(value, key, maxBytes, what) {
  const type = typeof value
  if (value === undefined || value === null || type === 'function' || type === 'symbol' || type === 'bigint') {
    throw mlcError(TypeError, codes.INVALID_VALUE,
      `${what} must be a value JSON can carry (not ${describe(value)})${value === null ? '; null means "missing": use del() to remove a key' : ''}`,
      { key })
  }
  let json
  try {
    json = JSON.stringify(value)
  } catch (cause) {
    throw mlcError(TypeError, codes.INVALID_VALUE, `${what} cannot be serialized as JSON: ${cause && cause.message}`, { key, cause })
  }
  if (json === undefined) {
    throw mlcError(TypeError, codes.INVALID_VALUE, `${what} serializes to nothing (a toJSON() returning undefined?)`, { key })
  }
  if (json === 'null') {
    // NaN, ±Infinity, an invalid Date (or a toJSON() returning null): JSON turns them into
    // null, which reads back as a miss while exists() says true
    throw mlcError(TypeError, codes.INVALID_VALUE,
      `${what} must be a value JSON can carry (not ${describeUnrepresentable(value)}): it serializes to null, and null means "missing"`,
      { key })
  }
  if (json.length > maxBytes || (json.length * 3 > maxBytes && Buffer.byteLength(json, 'utf8') > maxBytes)) {
    throw mlcError(RangeError, codes.VALUE_TOO_LARGE,
      `${what} is larger than limits.maxValueBytes (${maxBytes} bytes) once serialized`, { key })
  }
  return json
}

/** What a value that JSON writes as `null` is. */
function describeUnrepresentable(v) {
  if (typeof v === 'number') return `number ${String(v)}`
  if (v instanceof Date) return 'an invalid Date'
  return 'an object whose toJSON() returns null'
}

/** A short, safe description of a value for error messages. */
function describe(v) {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'an array'
  const t = typeof v
  if (t === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)
  if (t === 'number' || t === 'boolean' || t === 'bigint') return `${t} ${String(v)}`
  return t === 'object' ? 'an object' : t
}

module.exports = { checkKey, checkCacheOptions, checkTag, serialize, describe, checkGetOrSetOptions, checkSetOptions, checkInvalidateOptions, checkDuration, checkFraction }
