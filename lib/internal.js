'use strict'
// Symbols for package-internal methods of MultiLevelCache (used by registerMetrics), kept off
// the public surface.
module.exports = {
  kLatencies: Symbol('multi-level-cache.latencies'),
  kKeyspaceStats: Symbol('multi-level-cache.keyspaceStats'),
}
