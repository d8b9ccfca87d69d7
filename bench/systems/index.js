'use strict'
// The systems the benchmark knows, by name. To add one, write `systems/<name>.js` exporting
//   { name, description, capabilities?, scenarios?: [scenario ids it takes part in; default all],
//     create(redisUrl, prefix, opts?) -> { get, set, getOrSet?, del?, invalidateTag?, stats?,
//     close } }
// and list it here. Every call returns a Promise; `get` resolves null on a miss; durations in
// options are seconds ({ ttl, tags }). `opts` may carry { l1MaxEntries, tags } (scenarios that
// need more L1 room, or tag tracking where it costs something). `BASELINE` is the denominator
// of the default ratio column.

const SYSTEMS = {
  mlc: './mlc.js',
  article: './article.js',
  bentocache: './bentocache.js',
  cacheable: './cacheable.js',
  'cache-manager': './cache-manager.js',
  'node-redis': './node-redis.js',
  'lru-cache': './lru-cache.js',
}

const BASELINE = 'article'
const SUBJECT = 'mlc'

/** @param {string} name */
function load(name) {
  const p = SYSTEMS[name]
  if (!p) throw new Error(`unknown system ${JSON.stringify(name)} (known: ${Object.keys(SYSTEMS).join(', ')})`)
  return require(p)
}

/** Whether system `name` takes part in scenario `id` (a system may name its scenarios). */
function appliesTo(name, id) {
  const s = load(name)
  return !s.scenarios || s.scenarios.includes(id)
}

module.exports = { SYSTEMS, BASELINE, SUBJECT, names: () => Object.keys(SYSTEMS), load, appliesTo }
