'use strict'
// What a demo process does once it serves (the app, the shared database process): tell its
// parent (run.js, over IPC: { ready, port, info } or { ready: false, error }) or print where it
// listens when run on its own, and close cleanly on SIGTERM, SIGINT or the parent's exit.

/**
 * @param {Promise<{ port: number, info: object, close: () => Promise<void> }>} started
 * @param {string} what how a run on its own names the process (`listening`, `database process`)
 */
function runAsChild(started, what) {
  started.then(({ port, info, close }) => {
    if (process.send) process.send({ ready: true, port, info })
    else console.log(`${what} on http://127.0.0.1:${port}`, info)
    let stopping
    const stop = () => (stopping ??= close().then(() => process.exit(0), () => process.exit(1)))
    process.on('SIGTERM', stop)
    process.on('SIGINT', stop)
    process.on('disconnect', stop)
  }, (e) => {
    if (process.send) process.send({ ready: false, error: String(e.message || e) }, () => process.exit(1))
    else {
      console.error(e)
      process.exit(1)
    }
  })
}

module.exports = { runAsChild }
