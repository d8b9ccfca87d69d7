#!/usr/bin/env node
'use strict'
// The whole test suite: cargo fmt --check and clippy, Rust core unit tests, the typings test, and every JS test file under
// __test__/. Fails when redis-server is missing or when no test file is found (a glob that
// matches nothing must not pass).

const { spawnSync, execFileSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.join(__dirname, '..')

function run(cmd, args, opts = {}) {
  console.log(`\n$ ${cmd} ${args.join(' ')}`)
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', ...opts })
  if (r.status !== 0) {
    console.error(`\n${cmd} ${args.join(' ')} failed (exit ${r.status}${r.signal ? `, signal ${r.signal}` : ''})`)
    process.exit(r.status || 1)
  }
}

try {
  execFileSync('sh', ['-c', 'command -v redis-server'], { stdio: 'ignore' })
} catch {
  console.error('redis-server is not installed. The tests run against real Redis servers.\n' +
    'Install it (Debian/Ubuntu: apt-get install redis-server) and run `npm test` again.')
  process.exit(1)
}

if (!fs.existsSync(path.join(root, 'binding.js'))) {
  console.error('The native addon is not built: run `npm install` (it builds it from source).')
  process.exit(1)
}

function findTests(dir) {
  const out = []
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name)
    if (entry.isDirectory()) out.push(...findTests(p))
    else if (entry.name.endsWith('.test.js')) out.push(path.relative(root, p))
  }
  return out.sort()
}

const only = process.argv.slice(2)
const files = only.length ? only : findTests(path.join(root, '__test__'))
if (files.length === 0) {
  console.error('No test files (__test__/**/*.test.js) found: refusing to pass an empty suite.')
  process.exit(1)
}

if (only.length === 0) {
  // the habits CI enforces: formatted Rust, no clippy warning (the typings check follows)
  run('cargo', ['fmt', '--all', '--', '--check'])
  run('cargo', ['clippy', '--all-targets', '--quiet', '--', '-D', 'warnings'])
  run('cargo', ['test', '-p', 'mlc-core', '--quiet'])
  run(process.execPath, [require.resolve('typescript/bin/tsc'), '--noEmit', '-p', '__test__/typings/tsconfig.json'])
  console.log('typings test: ok')
}
run(process.execPath, ['--test', '--test-concurrency=2', '--test-timeout=120000', ...files])
