'use strict'
// The Redis key layout (version 3) as core/src/keys.rs builds it, for tests that look at Redis
// directly. Each key's entry and lock share the hash tag `{<key>}`; a name that begins with `}`
// uses the tag `{~}` instead.

const LAYOUT = 'v3'
const WIRE = 'v2'

/** `<prefix>:v3:{<name>}<suffix>` (or the `{~}` form). */
function slotted(prefix, name, suffix) {
  return name.startsWith('}') ? `${prefix}:${LAYOUT}:~{~}${name}${suffix}` : `${prefix}:${LAYOUT}:{${name}}${suffix}`
}

module.exports = {
  entryName: (prefix, key) => slotted(prefix, key, ':k'),
  lockName: (prefix, key) => slotted(prefix, key, ':l'),
  markerName: (prefix, tag) => slotted(prefix, tag, ':m'),
  deletionName: (prefix, tag) => slotted(prefix, tag, ':d'),
  clockName: (prefix) => `${prefix}:${LAYOUT}:clock`,
  busChannel: (prefix) => `{${prefix}}:bus:${WIRE}`,
  ackChannel: (prefix, instance) => `{${prefix}}:bus:${WIRE}:ack:${instance}`,
  /** What kind of key of `prefix` a Redis name is: 'entry', 'lock', 'marker', 'deletion', 'clock' or null. */
  kindOf(prefix, name) {
    const base = `${prefix}:${LAYOUT}:`
    if (!name.startsWith(base)) return null
    if (name === `${base}clock`) return 'clock'
    const rest = name.slice(base.length)
    if (!rest.startsWith('{') && !rest.startsWith('~{~}')) return null
    return { ':k': 'entry', ':l': 'lock', ':m': 'marker', ':d': 'deletion' }[name.slice(-2)] || null
  },
}
