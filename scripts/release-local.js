#!/usr/bin/env node
'use strict'
// The release workflow (.github/workflows/release.yml) for this machine's platform only:
// build the addon, run the tests, put the .node into its platform package (npm/<platform>/),
// and `npm pack` that package and the main package. `npm run release:local`.
//
//   node scripts/release-local.js                  build, test, pack into dist/
//   node scripts/release-local.js --skip-build     reuse the .node built by `npm install`
//   node scripts/release-local.js --skip-tests     no `npm test`
//   node scripts/release-local.js --out DIR        where the tarballs go (default dist/)
//   node scripts/release-local.js --publish        then `npm publish` both tarballs (platform
//                                                  package first; needs `npm login`); without it,
//                                                  `npm publish --dry-run` shows what would go out
//   node scripts/release-local.js --sync-versions  only: set the version of every npm/<platform>
//                                                  package and of the optionalDependencies to
//                                                  package.json's (the `version` script: npm version)
//
// The functions below are also what __test__/packaging.test.js uses to pack.

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.join(__dirname, '..')
const pkg = require(path.join(root, 'package.json'))

/** The napi-rs platform name of this machine (linux-x64-gnu, darwin-arm64, win32-x64-msvc, ...). */
function hostPlatform() {
  const { platform, arch } = process
  if (platform === 'linux') {
    const report = process.report.getReport()
    const musl = !(report.header && report.header.glibcVersionRuntime)
    return `linux-${arch}-${musl ? 'musl' : 'gnu'}`
  }
  if (platform === 'win32') return `win32-${arch}-msvc`
  return `${platform}-${arch}`
}

/**
 * The versions a release must agree on: every npm/<platform>/package.json and every
 * optionalDependencies entry equal to package.json's version, and one platform package per
 * optional dependency. Returns the list of disagreements (empty when all agree); with
 * `write`, fixes them first.
 */
function checkVersions({ write = false } = {}) {
  const file = path.join(root, 'package.json')
  const main = JSON.parse(fs.readFileSync(file, 'utf8'))
  const problems = []
  const dirs = fs.readdirSync(path.join(root, 'npm')).sort()
  const expected = Object.fromEntries(dirs.map((d) => [`${main.name}-${d}`, main.version]))
  if (JSON.stringify(main.optionalDependencies) !== JSON.stringify(expected)) {
    problems.push(`optionalDependencies ${JSON.stringify(main.optionalDependencies)} should be ${JSON.stringify(expected)}`)
    if (write) {
      main.optionalDependencies = expected
      fs.writeFileSync(file, `${JSON.stringify(main, null, 2)}\n`)
    }
  }
  for (const d of dirs) {
    const f = path.join(root, 'npm', d, 'package.json')
    const m = JSON.parse(fs.readFileSync(f, 'utf8'))
    if (m.name !== `${main.name}-${d}` || m.version !== main.version) {
      problems.push(`npm/${d}/package.json is ${m.name}@${m.version}, should be ${main.name}-${d}@${main.version}`)
      if (write) {
        m.version = main.version
        fs.writeFileSync(f, `${JSON.stringify(m, null, 2)}\n`)
      }
    }
  }
  return problems
}

/** The addon built for `platform` in the package root (by `npm install` or `napi build --platform`). */
function builtAddon(platform = hostPlatform()) {
  return path.join(root, `${pkg.napi.binaryName}.${platform}.node`)
}

/**
 * Copies npm/<platform>/ (package.json, README.md) and the addon into `dir`/<platform>/, the
 * version aligned with the main package's (what `napi artifacts` + `napi pre-publish` do in CI).
 * Returns the staged directory.
 */
function stagePlatformPackage(platform, addon, dir) {
  const src = path.join(root, 'npm', platform)
  if (!fs.existsSync(path.join(src, 'package.json'))) {
    throw new Error(`no platform package npm/${platform}: prebuilt binaries exist for ${fs.readdirSync(path.join(root, 'npm')).join(', ')}`)
  }
  const dest = path.join(dir, platform)
  fs.mkdirSync(dest, { recursive: true })
  const manifest = JSON.parse(fs.readFileSync(path.join(src, 'package.json'), 'utf8'))
  manifest.version = pkg.version
  fs.writeFileSync(path.join(dest, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`)
  fs.copyFileSync(path.join(src, 'README.md'), path.join(dest, 'README.md'))
  fs.copyFileSync(addon, path.join(dest, manifest.main))
  return dest
}

/** `npm pack` of the package in `dir` into `out`; resolves the tarball's path and file list. */
function pack(dir, out, env = process.env) {
  fs.mkdirSync(out, { recursive: true })
  const r = spawnSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', out], {
    cwd: dir, encoding: 'utf8', env, shell: process.platform === 'win32', timeout: 120_000,
  })
  if (r.status !== 0) throw new Error(`npm pack in ${dir} failed (exit ${r.status}): ${r.stderr || r.error}`)
  const [info] = JSON.parse(r.stdout.slice(r.stdout.indexOf('[')))
  return { tarball: path.join(out, info.filename), files: info.files.map((f) => f.path), size: info.size }
}

function run(cmd, args) {
  console.log(`$ ${cmd} ${args.join(' ')}`)
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' })
  if (r.status !== 0) {
    console.error(`${cmd} ${args.join(' ')} failed (exit ${r.status})`)
    process.exit(r.status || 1)
  }
}

function main(argv) {
  const args = { build: true, tests: true, publish: false, out: path.join(root, 'dist') }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--skip-build') args.build = false
    else if (a === '--skip-tests') args.tests = false
    else if (a === '--publish') args.publish = true
    else if (a === '--out' && argv[i + 1]) args.out = path.resolve(argv[++i])
    else if (a === '--sync-versions') {
      for (const p of checkVersions({ write: true })) console.log(`fixed: ${p}`)
      return
    }
    else {
      console.error(`unknown argument ${a}\n${fs.readFileSync(__filename, 'utf8').split('\n').slice(5, 14).join('\n')}`)
      process.exit(2)
    }
  }
  const disagreements = checkVersions()
  if (disagreements.length) {
    console.error(`${disagreements.join('\n')}\n(node scripts/release-local.js --sync-versions fixes them)`)
    process.exit(1)
  }
  const platform = hostPlatform()
  console.log(`release of ${pkg.name}@${pkg.version} for ${platform} (this machine)`)
  if (args.build) run('npx', ['napi', 'build', '--platform', '--release', '--js', 'binding.js', '--dts', 'binding.d.ts'])
  const addon = builtAddon(platform)
  if (!fs.existsSync(addon)) {
    console.error(`${path.relative(root, addon)} is missing: run without --skip-build (or \`npm install\`) first`)
    process.exit(1)
  }
  if (args.tests) run('npm', ['test'])

  fs.rmSync(args.out, { recursive: true, force: true })
  const staged = stagePlatformPackage(platform, addon, path.join(args.out, 'stage'))
  const platformTgz = pack(staged, args.out)
  const mainTgz = pack(root, args.out)
  if (mainTgz.files.some((f) => f.endsWith('.node'))) {
    console.error('the main package would ship a .node file: the prebuilt binaries belong in the platform packages')
    process.exit(1)
  }
  console.log(`\n${path.relative(root, platformTgz.tarball)}  (${(platformTgz.size / 1e6).toFixed(1)} MB)`)
  console.log(`${path.relative(root, mainTgz.tarball)}  (${(mainTgz.size / 1e3).toFixed(0)} kB, ${mainTgz.files.length} files)`)

  const publish = (tgz) => run('npm', ['publish', tgz, '--access', 'public', ...(args.publish ? [] : ['--dry-run'])])
  publish(platformTgz.tarball) // the platform package first: the main package's optionalDependencies name it
  publish(mainTgz.tarball)
  if (!args.publish) console.log('\ndry run: nothing was published (--publish publishes)')
}

module.exports = { hostPlatform, builtAddon, stagePlatformPackage, pack, checkVersions }

if (require.main === module) main(process.argv.slice(2))
