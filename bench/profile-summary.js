#!/usr/bin/env node
'use strict'
// Summarizes a V8 .cpuprofile (as written by `node bench/run.js --cpu-prof`): the functions
// with the most self time, and the share of time by category (JS, native, GC, idle).
//
//   node bench/profile-summary.js bench/profiles/l2-c64-mlc-r1.cpuprofile [top=25]

const fs = require('node:fs')
const path = require('node:path')

const file = process.argv[2]
const top = Number(process.argv[3]) || 25
if (!file) {
  console.error('usage: node bench/profile-summary.js FILE.cpuprofile [top]')
  process.exit(2)
}
const prof = JSON.parse(fs.readFileSync(file, 'utf8'))
const byId = new Map(prof.nodes.map((n) => [n.id, n]))
const self = new Map()
const deltas = prof.timeDeltas
for (let i = 0; i < prof.samples.length; i++) {
  const id = prof.samples[i]
  self.set(id, (self.get(id) || 0) + (deltas[i] || 0))
}
const total = [...self.values()].reduce((a, b) => a + b, 0)
const agg = new Map()
for (const [id, us] of self) {
  const n = byId.get(id)
  const cf = n.callFrame
  const where = cf.url ? `${path.basename(cf.url)}:${cf.lineNumber + 1}` : ''
  const name = `${cf.functionName || '(anonymous)'}${where ? ` ${where}` : ''}`
  agg.set(name, (agg.get(name) || 0) + us)
}
const rows = [...agg].sort((a, b) => b[1] - a[1]).slice(0, top)
console.log(`${path.basename(file)}: ${(total / 1000).toFixed(0)} ms sampled`)
for (const [name, us] of rows) console.log(`${((us / total) * 100).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(1).padStart(8)} ms  ${name}`)
