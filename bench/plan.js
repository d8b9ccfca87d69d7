'use strict'
// Repeats and targets of the throughput scenarios whose modules predate them (l1, l2), kept
// here so those modules stay as they are. Newer scenarios carry their own (`cfg.repeats`,
// `targets()`). A case listed here overrides the case's own `target`.
//
// Targets are the issue's: ratios of median throughputs, mlc over the named system.

module.exports = {
  l1: {
    // the fastest systems' runs are short and vary with GC and JIT timing: 5 repeats
    repeats: { full: 5, quick: 1 },
    // The systems that answer an L1 hit in 10-30 µs would need 10-30 s per run for the
    // scenario's 1 000 000 timed ops; 50 000 (after 10 000 untimed) give them runs of 0.5-2 s.
    systemCfg: {
      bentocache: { ops: 50000, warmupOps: 10000 },
      cacheable: { ops: 50000, warmupOps: 10000 },
      'cache-manager': { ops: 50000, warmupOps: 10000 },
    },
    note: 'bentocache, cacheable and cache-manager run 50,000 timed ops after 10,000 untimed ones (bench/plan.js: at 30-90k ops/s the full count would take 10-30 s per run); with `--quick` or `--l1-ops` every system runs the same count.',
    targets: {
      // the hot-path issue's: 0.6x the bare Map (the limit) and 1.3x the article
      seq: [{ vs: 'map', min: 0.6 }, { vs: 'article', min: 1.3 }],
      c64: [{ vs: 'map', min: 0.6 }, { vs: 'article', min: 1.3 }],
    },
  },
  l2: {
    // runs last 0.3-0.6 s and single runs of one system vary by 20-40 % on the 2-core machine:
    // 5 repeats (about a minute more than 3) keep the medians steadier
    repeats: { full: 5, quick: 1 },
    targets: {
      // 1.5x the article is the foundation's own target, 3x the performance issue's
      c64: [{ vs: 'node-redis', min: 1.0 }, { vs: 'article', min: 1.5 }, { vs: 'article', min: 3 }],
      c256: [{ vs: 'node-redis', min: 1.0 }, { vs: 'article', min: 3 }],
    },
  },
}
