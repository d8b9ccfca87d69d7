#!/usr/bin/env node
'use strict'
// `npm install` of multi-level-cache (the package's `install` script). Decides where the native
// addon comes from, in this order:
//
//   1. a git checkout (a `.git` next to package.json): always built from source with
//      `napi build` (the developers' and CI's case: the source is what is being tested);
//   2. MLC_BUILD_FROM_SOURCE=1: built from source, even when a prebuilt binary would load;
//   3. the prebuilt binary of this platform, the optional dependency
//      `multi-level-cache-<platform>` npm installed next to this package (same version): nothing to
//      do, the loader (binding.js) picks it up at run time;
//   4. otherwise built from source with `cargo`, the .node placed where binding.js looks first;
//   5. no `cargo`: says which platforms have prebuilt binaries and what to install, and exits 1
//      (nothing can work). With MLC_BUILD_FROM_SOURCE=1 but no `cargo`, a prebuilt binary that
//      loads is used after a warning.
//
// No dependency: this runs before anything else of the package can.

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.join(__dirname, '..')
const pkg = require(path.join(root, 'package.json'))
const NAME = pkg.name
const say = (line) => process.stderr.write(`${NAME}: ${line}\n`)

/** Platforms with a prebuilt package, from optionalDependencies (multi-level-cache-<platform>). */
const PREBUILT = Object.keys(pkg.optionalDependencies || {}).map((n) => n.slice(NAME.length + 1))

function isMusl() {
  if (process.platform !== 'linux') return false
  try {
    return fs.readFileSync('/usr/bin/ldd', 'utf8').includes('musl')
  } catch {}
  const report = process.report && typeof process.report.getReport === 'function' ? process.report.getReport() : null
  return !!(report && report.header && !report.header.glibcVersionRuntime)
}

/** The napi-rs platform name of this machine, as the loader (binding.js) spells it. */
function platformName() {
  const { platform, arch } = process
  if (platform === 'linux') {
    const libc = isMusl() ? 'musl' : 'gnu'
    return arch === 'arm' ? `linux-arm-${libc}eabihf` : `linux-${arch}-${libc}`
  }
  if (platform === 'win32') return `win32-${arch}-msvc`
  return `${platform}-${arch}` // darwin-x64, darwin-arm64, freebsd-x64, android-arm64, ...
}

/** The prebuilt package of this platform if it is installed, of this version, and loads. */
function prebuilt(platform) {
  const name = `${NAME}-${platform}`
  let manifest
  try {
    manifest = require.resolve(`${name}/package.json`, { paths: [root] })
  } catch {
    return { ok: false, why: `the optional dependency ${name} is not installed` }
  }
  const version = JSON.parse(fs.readFileSync(manifest, 'utf8')).version
  if (version !== pkg.version) {
    return { ok: false, why: `${name} is version ${version}, not ${pkg.version}` }
  }
  try {
    require(path.dirname(manifest))
  } catch (e) {
    return { ok: false, why: `${name} is installed but does not load: ${e.message.split('\n')[0]}` }
  }
  return { ok: true, name, dir: path.dirname(manifest) }
}

function hasCargo() {
  const r = spawnSync('cargo', ['--version'], { encoding: 'utf8', shell: process.platform === 'win32' })
  return r.status === 0 ? r.stdout.trim() : null
}

function noToolchain(platform, why) {
  const listed = PREBUILT.includes(platform)
  const lines = [
    `cannot install: ${why}, and \`cargo\` (Rust) is not on PATH to build the native addon from source.`,
    `Prebuilt binaries exist for: ${PREBUILT.join(', ')}. This machine is ${platform}.`,
  ]
  if (listed) {
    lines.push('Your platform has one: npm did not install it. Common causes: `--omit=optional` / `--no-optional`,',
      'or a package-lock.json written on another platform. Remove node_modules and package-lock.json and run',
      `\`npm install\` again, or add it yourself: \`npm install ${NAME}-${platform}@${pkg.version}\`.`)
  }
  lines.push(`${listed ? 'Or build' : 'To build'} from source: install Rust ${rustVersion()} or later (https://rustup.rs) and a C compiler`,
    '(Debian/Ubuntu: build-essential; macOS: xcode-select --install; Windows: Visual Studio Build Tools),',
    `then run \`npm rebuild ${NAME}\`. The build takes about 1.5 minutes.`)
  for (const l of lines) say(l)
}

function rustVersion() {
  try {
    return /rust-version\s*=\s*"([^"]+)"/.exec(fs.readFileSync(path.join(root, 'Cargo.toml'), 'utf8'))[1]
  } catch {
    return '1.88'
  }
}

function run(cmd, args, opts = {}) {
  say(`$ ${cmd} ${args.join(' ')}`)
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', shell: process.platform === 'win32', ...opts })
  if (r.status !== 0) {
    say(`${cmd} failed (exit ${r.status}${r.signal ? `, signal ${r.signal}` : ''})`)
    process.exit(r.status || 1)
  }
  return r
}

/** napi build, when @napi-rs/cli is installed (a checkout with its devDependencies): also regenerates binding.js/.d.ts. */
function napiCli() {
  try {
    const manifest = require.resolve('@napi-rs/cli/package.json', { paths: [root] })
    return path.join(path.dirname(manifest), require(manifest).bin.napi)
  } catch {
    return null
  }
}

/** cargo build, and the library copied to where binding.js looks first: ./multi-level-cache.<platform>.node */
function cargoBuild(platform) {
  say('building the native addon from source (about 1.5 minutes)')
  const r = spawnSync('cargo', ['build', '--release', '--lib', '-p', 'multi_level_cache', '--message-format=json-render-diagnostics'], {
    cwd: root, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', maxBuffer: 256 * 1024 * 1024,
    shell: process.platform === 'win32',
  })
  if (r.status !== 0) {
    say(`cargo build failed (exit ${r.status}); the compiler's messages are above`)
    process.exit(r.status || 1)
  }
  let library = null
  for (const line of r.stdout.split('\n')) {
    if (!line.startsWith('{')) continue
    const m = JSON.parse(line)
    if (m.reason === 'compiler-artifact' && m.target && m.target.kind.includes('cdylib')) {
      library = m.filenames.find((f) => /\.(so|dylib|dll)$/.test(f)) || library
    }
  }
  if (!library) {
    say('cargo build succeeded but named no cdylib artifact')
    process.exit(1)
  }
  const dest = path.join(root, `${pkg.napi.binaryName}.${platform}.node`)
  fs.copyFileSync(library, dest)
  say(`built ${path.basename(dest)}`)
  // the build tree of an installed copy is a few hundred MB that nothing reads again
  if (!process.env.CARGO_TARGET_DIR && !fs.existsSync(path.join(root, '.git'))) {
    fs.rmSync(path.join(root, 'target'), { recursive: true, force: true })
  }
}

function main() {
  const platform = platformName()
  const checkout = fs.existsSync(path.join(root, '.git'))
  const forced = ['1', 'true', 'yes'].includes(String(process.env.MLC_BUILD_FROM_SOURCE || '').toLowerCase())

  let why
  if (checkout) {
    why = 'a git checkout builds from source'
  } else {
    const found = prebuilt(platform)
    if (found.ok && !forced) {
      say(`using the prebuilt binary ${found.name} (MLC_BUILD_FROM_SOURCE=1 builds from source instead)`)
      return 0
    }
    why = forced ? 'MLC_BUILD_FROM_SOURCE is set'
      : PREBUILT.includes(platform) ? found.why : `no prebuilt binary for ${platform} (${found.why})`
    const cargo = hasCargo()
    if (!cargo) {
      if (found.ok) {
        say(`MLC_BUILD_FROM_SOURCE is set but \`cargo\` is not on PATH: using the prebuilt binary ${found.name}`)
        return 0
      }
      noToolchain(platform, why)
      return 1
    }
    say(`${why}; building with ${cargo}`)
  }

  const cli = napiCli()
  if (cli && checkout) {
    run(process.execPath, [cli, 'build', '--platform', '--release', '--js', 'binding.js', '--dts', 'binding.d.ts'], { shell: false })
  } else {
    if (!hasCargo()) {
      noToolchain(platform, why)
      return 1
    }
    cargoBuild(platform)
  }
  return 0
}

process.exitCode = main()
