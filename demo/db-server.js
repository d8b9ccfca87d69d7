'use strict'
// The demo's database for several app instances (`npm run demo -- --instances 3`): the embedded
// SQLite of db.js lives in this one process, seeded once, and the instances send it their
// statements over HTTP on 127.0.0.1 (POST /query {sql, params} -> {rows}; GET /info). Like a
// database server, it is one place that every instance reads and writes, so an update made
// through one instance is what the others load. (With DATABASE_URL the instances share
// PostgreSQL instead, and this process is not started.)
//
// Started by run.js (IPC: reports { ready, port, info }); alone: `node demo/db-server.js`.

const http = require('node:http')
const { openDb } = require('./db.js')

async function serve(port = 0) {
  const db = await openDb()
  const info = { kind: db.kind, version: db.version, seedMs: Math.round(db.seedMs) }
  const server = http.createServer((req, res) => {
    const reply = (status, body) => {
      res.writeHead(status, { 'content-type': 'application/json' })
      res.end(JSON.stringify(body))
    }
    if (req.method === 'GET' && req.url === '/info') return reply(200, { ...info, queries: db.queries })
    if (req.method !== 'POST' || req.url !== '/query') return reply(404, { error: 'POST /query or GET /info' })
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      let sql, params
      try {
        ({ sql, params } = JSON.parse(Buffer.concat(chunks)))
      } catch {
        return reply(400, { error: 'a JSON body { sql, params }' })
      }
      db.query(sql, params).then((rows) => reply(200, { rows }), (e) => reply(500, { error: String(e.message || e) }))
    })
  })
  server.keepAliveTimeout = 60_000
  await new Promise((resolve, reject) => server.listen(port, '127.0.0.1', resolve).on('error', reject))
  return { port: server.address().port, info, close: () => new Promise((resolve) => server.close(() => db.close().then(resolve))) }
}

module.exports = { serve }

if (require.main === module) require('./child.js').runAsChild(serve(), 'database process')
