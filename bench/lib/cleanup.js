'use strict'
// Synchronous cleanups of a worker process (kill forked peers, private redis-servers), run on
// exit and on SIGTERM/SIGINT (the parent's time bound sends SIGTERM before SIGKILL).

const fns = new Set()
let installed = false

function runCleanups() {
  for (const fn of [...fns]) {
    fns.delete(fn)
    try { fn() } catch {}
  }
}

/** Registers `fn`; returns a function that unregisters it. */
function onCleanup(fn) {
  if (!installed) {
    installed = true
    process.on('exit', runCleanups)
    for (const sig of ['SIGTERM', 'SIGINT']) {
      process.on(sig, () => {
        runCleanups()
        process.exit(sig === 'SIGTERM' ? 143 : 130)
      })
    }
  }
  fns.add(fn)
  return () => fns.delete(fn)
}

module.exports = { onCleanup, runCleanups }
