'use strict'
// The child side of the IPC protocol of workers.js: every request `{ id, cmd, args }` gets
// exactly one reply `{ id, ok, result | error }`. The process exits when its parent goes away
// (IPC disconnect), so it can never outlive a test.

/** What a reply carries of an error (plain data: errors cannot cross IPC). */
function errorInfo(e) {
  return {
    message: e && e.message,
    code: e && e.code,
    name: e && e.constructor && e.constructor.name,
    causeCode: e && e.cause && e.cause.code,
  }
}

/**
 * Answers the parent's requests with `handlers[cmd](args)`, then tells it this process is ready.
 * @param {Record<string, (args: any) => unknown>} handlers
 */
function serve(handlers) {
  process.on('message', async (msg) => {
    if (!msg || typeof msg !== 'object' || typeof msg.cmd !== 'string') return
    const { id, cmd, args } = msg
    let reply
    try {
      const h = handlers[cmd]
      if (!h) throw new Error(`unknown command ${cmd}`)
      reply = { id, ok: true, result: await h(args || {}) }
    } catch (e) {
      reply = { id, ok: false, error: errorInfo(e) }
    }
    if (process.connected) process.send(reply)
  })
  process.on('disconnect', () => process.exit(0))
  process.send({ ready: true, pid: process.pid })
}

module.exports = { serve, errorInfo }
