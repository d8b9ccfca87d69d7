'use strict'
// The package as a dependency, resolved by name through its `exports` map: from an ES module
// (.mjs) and from CommonJS at run time, and by TypeScript with `moduleResolution` node16 (ESM and
// CJS files) and bundler. The consumer project links node_modules/multi-level-cache to this
// repository (what `npm link` does); __test__/packaging.test.js does the same from the packed tarball.

const test = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const root = path.join(__dirname, '..')
const { name } = require('../package.json')
const tsc = require.resolve('typescript/bin/tsc')

function consumer(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mlc-esm-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  fs.mkdirSync(path.join(dir, 'node_modules'))
  fs.symlinkSync(root, path.join(dir, 'node_modules', name), process.platform === 'win32' ? 'junction' : 'dir')
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }))
  return dir
}

const node = (dir, file) => spawnSync(process.execPath, [file], { cwd: dir, encoding: 'utf8', timeout: 30_000 })

test('import from an .mjs file: named and default exports, the same classes as require()', (t) => {
  const dir = consumer(t)
  fs.writeFileSync(path.join(dir, 'main.mjs'), `
import { createRequire } from 'node:module'
import mlc, { MultiLevelCache, codes, registerMetrics } from '${name}'
const cjs = createRequire(import.meta.url)('${name}')
const cache = new MultiLevelCache({ l2: false, prefix: 'esm' })
await cache.set('k', { v: 1 })
const got = await cache.get('k')
let code
try { await cache.get('') } catch (e) { code = e.code }
await cache.close()
console.log(JSON.stringify({
  same: MultiLevelCache === cjs.MultiLevelCache && codes === cjs.codes && registerMetrics === cjs.registerMetrics && mlc === cjs,
  instance: cache instanceof cjs.MultiLevelCache,
  got, code, expected: codes.INVALID_KEY,
}))
`)
  const r = node(dir, 'main.mjs')
  assert.equal(r.status, 0, r.stderr)
  const out = JSON.parse(r.stdout)
  assert.equal(out.same, true, 'import and require give the same module')
  assert.equal(out.instance, true)
  assert.deepEqual(out.got, { v: 1 })
  assert.equal(out.code, out.expected, 'an empty key rejects with ERR_MLC_INVALID_KEY')
  assert.equal(out.expected, 'ERR_MLC_INVALID_KEY')
})

test('the exports map: only the entry and package.json are importable', (t) => {
  const dir = consumer(t)
  fs.writeFileSync(path.join(dir, 'deep.cjs'), `
const out = {}
for (const spec of ['${name}/package.json', '${name}/lib/errors.js', '${name}/binding.js']) {
  try { require.resolve(spec); out[spec] = 'ok' } catch (e) { out[spec] = e.code }
}
console.log(JSON.stringify(out))
`)
  const r = node(dir, 'deep.cjs')
  assert.equal(r.status, 0, r.stderr)
  assert.deepEqual(JSON.parse(r.stdout), {
    [`${name}/package.json`]: 'ok',
    [`${name}/lib/errors.js`]: 'ERR_PACKAGE_PATH_NOT_EXPORTED',
    [`${name}/binding.js`]: 'ERR_PACKAGE_PATH_NOT_EXPORTED',
  })
})

// Uses the types (a wrong option must be an error: `@ts-expect-error` fails when the import is `any`).
const usage = (importLine) => `${importLine}
const cache: MultiLevelCache = new MultiLevelCache({ prefix: 'ts', l1: { maxEntries: 100 } })
const options: GetOrSetOptions = { ttl: 60, tags: ['t'] }
export async function read(): Promise<number> {
  const n: number = await cache.getOrSet('k', async () => 1, options)
  const code: string = codes.LOADER_TIMEOUT
  void code
  // @ts-expect-error maxEntries is a number
  void new MultiLevelCache({ l1: { maxEntries: 'many' } })
  return n
}
`

function compile(dir, compilerOptions, files) {
  fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { target: 'ES2022', strict: true, noEmit: true, skipLibCheck: false, types: [], ...compilerOptions },
    files,
  }))
  return spawnSync(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: dir, encoding: 'utf8', timeout: 120_000 })
}

test('TypeScript, moduleResolution node16: an ES module (.mts) and a CommonJS file (.cts)', (t) => {
  const dir = consumer(t)
  const imports = `import { MultiLevelCache, codes, type GetOrSetOptions } from '${name}'`
  fs.writeFileSync(path.join(dir, 'esm.mts'), `${usage(imports)}
import mlc from '${name}'
export const same: typeof MultiLevelCache = mlc.MultiLevelCache
`)
  fs.writeFileSync(path.join(dir, 'cjs.cts'), usage(imports))
  const r = compile(dir, { module: 'node16', moduleResolution: 'node16' }, ['esm.mts', 'cjs.cts'])
  assert.equal(r.status, 0, `tsc failed:\n${r.stdout}${r.stderr}`)
})

test('TypeScript, moduleResolution bundler', (t) => {
  const dir = consumer(t)
  fs.writeFileSync(path.join(dir, 'app.ts'), usage(`import { MultiLevelCache, codes, type GetOrSetOptions } from '${name}'`))
  const r = compile(dir, { module: 'esnext', moduleResolution: 'bundler' }, ['app.ts'])
  assert.equal(r.status, 0, `tsc failed:\n${r.stdout}${r.stderr}`)
})
