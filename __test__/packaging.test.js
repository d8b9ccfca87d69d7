'use strict'
// What a user gets from npm: the host platform's package (the prebuilt .node) and the main
// package are packed with `npm pack`, installed from the tarballs into a fresh project whose PATH
// has no `cargo`, with the install script running (it must pick the prebuilt binary, not build);
// then `require` and `import` of the installed package do a set/get through real Redis. The
// install script's other answers are checked there too: MLC_BUILD_FROM_SOURCE=1 without cargo
// (a warning, the prebuilt binary), and no platform package without cargo (exit 1, a message).
//
// The platform package reaches the project the way it does from the registry: as the main
// package's optional dependency (an `overrides` entry points that name at the local tarball).
// The other platforms' optional dependencies are skipped by npm (wrong os/cpu, or not in the
// cache: the install runs --offline, so it needs nothing from the network; the package has no
// runtime dependency).

const test = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { SHARED_URL, uniquePrefix } = require('./helpers/redis.js')
const { hostPlatform, builtAddon, stagePlatformPackage, pack, checkVersions } = require('../scripts/release-local.js')

const root = path.join(__dirname, '..')
const pkg = require('../package.json')

/** PATH without any directory holding cargo (or rustc), so that a source build cannot happen. */
function pathWithoutCargo() {
  const exe = process.platform === 'win32' ? ['cargo.exe', 'rustc.exe'] : ['cargo', 'rustc']
  return (process.env.PATH || '').split(path.delimiter)
    .filter((dir) => dir && !exe.some((e) => fs.existsSync(path.join(dir, e))))
    .join(path.delimiter)
}

/** The environment of a user's shell: no npm_* variables of the `npm test` that runs us, no cargo. */
function userEnv(extra = {}) {
  const env = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (/^npm_/i.test(k) || k === 'NAPI_RS_NATIVE_LIBRARY_PATH' || k === 'MLC_BUILD_FROM_SOURCE' || k === 'INIT_CWD') continue
    env[k] = v
  }
  return { ...env, PATH: pathWithoutCargo(), ...extra }
}

function npmAvailable() {
  const r = spawnSync('npm', ['--version'], { encoding: 'utf8', shell: process.platform === 'win32' })
  return r.status === 0 ? null : `npm is not on PATH (${r.error ? r.error.message : `exit ${r.status}`}): npm pack is impossible here`
}

const platform = hostPlatform()
const addon = builtAddon(platform)
const skip = npmAvailable() ||
  (fs.existsSync(path.join(root, 'npm', platform)) ? false
    : `this platform (${platform}) has no prebuilt package in npm/: npm pack of a platform package is impossible here`)

test('the packed tarballs install without a Rust toolchain; require and import work against Redis', { skip, timeout: 300_000 }, async (t) => {
  assert.ok(fs.existsSync(addon), `${path.basename(addon)} is missing: \`npm install\` builds it`)
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mlc-pack-'))
  t.after(() => fs.rmSync(tmp, { recursive: true, force: true }))
  const env = userEnv()
  assert.equal(spawnSync('cargo', ['--version'], { env, shell: process.platform === 'win32' }).status === 0, false,
    'cargo must not be reachable in the project')

  // 1. the two tarballs
  const staged = stagePlatformPackage(platform, addon, path.join(tmp, 'stage'))
  const platformTgz = pack(staged, tmp, env)
  const mainTgz = pack(root, tmp, env)
  assert.deepEqual(platformTgz.files.sort(), ['README.md', `${pkg.napi.binaryName}.${platform}.node`, 'package.json'])
  assert.deepEqual(mainTgz.files.filter((f) => f.endsWith('.node')), [], 'the main package ships no binary')
  for (const f of ['binding.js', 'index.mjs', 'index.d.mts', 'index.d.ts', 'scripts/install.js', 'Cargo.toml', 'core/Cargo.toml', 'src/lib.rs']) {
    assert.ok(mainTgz.files.includes(f), `the main tarball has ${f}`)
  }
  assert.equal(mainTgz.files.some((f) => f.startsWith('__test__/') || f.startsWith('target/') || f.startsWith('bench/')), false)

  // the project installs --offline: nothing may need the registry, so no runtime dependency
  assert.deepEqual(Object.keys(pkg.dependencies || {}), [],
    'the package gained runtime dependencies: they must be in the npm cache for --offline (use --prefer-offline then)')

  // 2. a fresh project depending on the main package only; its optional dependency for this
  //    platform resolves to the local tarball
  const app = path.join(tmp, 'app')
  fs.mkdirSync(app)
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({
    name: 'mlc-packaging-smoke',
    version: '1.0.0',
    private: true,
    dependencies: { [pkg.name]: `file:${mainTgz.tarball}` },
    overrides: { [`${pkg.name}-${platform}`]: `file:${platformTgz.tarball}` },
  }, null, 2))
  const install = spawnSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--foreground-scripts', '--loglevel', 'error'], {
    cwd: app, env, encoding: 'utf8', shell: process.platform === 'win32', timeout: 180_000,
  })
  const output = `${install.stdout}\n${install.stderr}`
  assert.equal(install.status, 0, `npm install failed:\n${output}`)
  assert.match(output, new RegExp(`using the prebuilt binary ${pkg.name}-${platform}`), `the install script picked the prebuilt binary:\n${output}`)
  const installed = path.join(app, 'node_modules', pkg.name)
  assert.deepEqual(fs.readdirSync(installed).filter((f) => f.endsWith('.node')), [], 'nothing was built into the main package')
  assert.ok(fs.existsSync(path.join(app, 'node_modules', `${pkg.name}-${platform}`, `${pkg.napi.binaryName}.${platform}.node`)))
  // every file the exports map names is in the installed package
  const manifest = JSON.parse(fs.readFileSync(path.join(installed, 'package.json'), 'utf8'))
  const targets = JSON.stringify(manifest.exports).match(/"\.\/[^"]+"/g).map((s) => JSON.parse(s))
  for (const f of new Set(targets)) if (f !== './') assert.ok(fs.existsSync(path.join(installed, f)), `exports names ${f}, which is installed`)

  // 3. require and import, each with a set in one instance and a get from a second one (empty
  //    L1: the value can only come from Redis)
  const body = (load) => `
${load}
const prefix = process.argv[2]
const url = process.argv[3]
;(async () => {
  const a = new MultiLevelCache({ redisUrl: url, prefix })
  const b = new MultiLevelCache({ redisUrl: url, prefix })
  try {
    await a.set('k', { hello: 'world', n: 42 }, { ttl: 30 })
    const got = await b.get('k')
    const s = b.stats()
    console.log(JSON.stringify({ got, l2Hits: s.l2Hits, codes: Object.keys(codes).length }))
  } finally {
    await a.close()
    await b.close()
  }
})().catch((e) => { console.error(e); process.exit(1) })
`
  fs.writeFileSync(path.join(app, 'smoke.cjs'), body(`const { MultiLevelCache, codes } = require('${pkg.name}')`))
  fs.writeFileSync(path.join(app, 'smoke.mjs'), body(`import { MultiLevelCache, codes } from '${pkg.name}'`))
  for (const file of ['smoke.cjs', 'smoke.mjs']) {
    const r = spawnSync(process.execPath, [file, uniquePrefix(`pack-${file}`), SHARED_URL], { cwd: app, env, encoding: 'utf8', timeout: 60_000 })
    assert.equal(r.status, 0, `${file} failed:\n${r.stdout}\n${r.stderr}`)
    const out = JSON.parse(r.stdout.trim().split('\n').pop())
    assert.deepEqual(out.got, { hello: 'world', n: 42 }, `${file}: the value read back`)
    assert.equal(out.l2Hits, 1, `${file}: the second instance read it from Redis`)
    assert.ok(out.codes > 0, `${file}: codes exported`)
  }
  // 4. the install script's other answers, in the same project (still no cargo):
  //    MLC_BUILD_FROM_SOURCE=1 warns and keeps the prebuilt binary ...
  const rebuild = spawnSync('npm', ['rebuild', pkg.name, '--foreground-scripts'], {
    cwd: app, env: { ...env, MLC_BUILD_FROM_SOURCE: '1' }, encoding: 'utf8', shell: process.platform === 'win32', timeout: 60_000,
  })
  assert.equal(rebuild.status, 0, `${rebuild.stdout}\n${rebuild.stderr}`)
  assert.match(`${rebuild.stdout}${rebuild.stderr}`, /MLC_BUILD_FROM_SOURCE is set but `cargo` is not on PATH: using the prebuilt binary/)
  //    ... and without the platform package it fails, naming the prebuilt platforms and what to install
  fs.renameSync(path.join(app, 'node_modules', `${pkg.name}-${platform}`), path.join(tmp, 'moved-away'))
  const missing = spawnSync(process.execPath, [path.join(installed, 'scripts', 'install.js')], { cwd: installed, env, encoding: 'utf8', timeout: 30_000 })
  assert.equal(missing.status, 1, missing.stderr)
  assert.match(missing.stderr, new RegExp(`Prebuilt binaries exist for: .*${platform}`))
  assert.match(missing.stderr, /npm install multi-level-cache-\S+@\d/)
  assert.match(missing.stderr, /install Rust .* \(https:\/\/rustup\.rs\)/)
  fs.renameSync(path.join(tmp, 'moved-away'), path.join(app, 'node_modules', `${pkg.name}-${platform}`))

  // the addon loaded is the platform package's, not one from this repository
  const which = spawnSync(process.execPath, ['-e', `require('${pkg.name}'); console.log(Object.keys(require.cache).filter((f) => f.endsWith('.node')).join('\\n'))`],
    { cwd: app, env, encoding: 'utf8' })
  assert.equal(which.status, 0, which.stderr)
  assert.equal(path.relative(app, which.stdout.trim()), path.join('node_modules', `${pkg.name}-${platform}`, `${pkg.napi.binaryName}.${platform}.node`))
})

test('the platform packages and the optionalDependencies carry the package version', () => {
  assert.deepEqual(checkVersions(), [])
  assert.ok(Object.keys(pkg.optionalDependencies).length >= 7, 'linux gnu/musl x64/arm64, darwin x64/arm64, win32 x64')
})
