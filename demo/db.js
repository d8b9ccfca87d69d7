'use strict'
// The demo's data layer: an embedded SQLite (sql.js, WebAssembly, nothing to install or run) by
// default, or PostgreSQL (pg) when DATABASE_URL is set. Same schema, same seeded rows and same
// SQL on both; every statement sent to the database is counted in `db.queries`.
//
//   categories  (id, name)                                      50 rows
//   products    (id, category_id, name, price, stock, version)  50 000 rows
//   order_items (id, product_id, qty)                           200 000 rows
//
// The product page is deliberately not a primary-key lookup: its "similar products" part is a
// LIKE scan over the names of a tenth of the products, a few milliseconds uncached, which is the
// kind of query a cache is for. `version` goes up by one on every update; responses carry it so
// the load generator can detect stale reads.

const CATEGORIES = 50
const PRODUCTS = 50_000
const ORDER_ITEMS = 200_000
const DEPARTMENT = 5 // categories

const ADJECTIVES = ['Small', 'Large', 'Ergonomic', 'Rustic', 'Sleek', 'Heavy', 'Light', 'Vintage', 'Modern', 'Compact', 'Deluxe', 'Basic']
const MATERIALS = ['Steel', 'Wooden', 'Cotton', 'Granite', 'Rubber', 'Plastic', 'Bronze', 'Leather', 'Glass', 'Concrete']
const NOUNS = ['Chair', 'Table', 'Lamp', 'Shoes', 'Gloves', 'Clock', 'Bottle', 'Keyboard', 'Wallet', 'Bag', 'Hat', 'Knife']

const SCHEMA = [
  'CREATE TABLE {categories} (id INTEGER PRIMARY KEY, name TEXT NOT NULL)',
  `CREATE TABLE {products} (id INTEGER PRIMARY KEY, category_id INTEGER NOT NULL, name TEXT NOT NULL,
     price INTEGER NOT NULL, stock INTEGER NOT NULL, version INTEGER NOT NULL)`,
  'CREATE TABLE {order_items} (id INTEGER PRIMARY KEY, product_id INTEGER NOT NULL, qty INTEGER NOT NULL)',
]
const INDEXES = [
  'CREATE INDEX {products}_category ON {products} (category_id, name)',
  'CREATE INDEX {order_items}_product ON {order_items} (product_id, qty)',
]

const SQL = {
  product: `SELECT p.id, p.name, p.price, p.stock, p.version, c.id AS category_id, c.name AS category
            FROM {products} p JOIN {categories} c ON c.id = p.category_id WHERE p.id = ?`,
  // products of the same department (5 categories, 5 000 products) whose name has the same
  // "material noun": a LIKE over an index range, a few milliseconds (names never change, so the
  // list only shows ids and names)
  similar: `SELECT id, name FROM {products}
            WHERE category_id BETWEEN ? AND ? AND name LIKE ? AND id <> ? ORDER BY name, id LIMIT 5`,
  // best sellers of a category: units sold per product, an aggregate over order_items for each of
  // its 1 000 products (ranked by units sold, which the demo never changes; the prices shown
  // change with every update of a listed product)
  top: `SELECT p.id, p.name, p.price, p.version,
          (SELECT COALESCE(SUM(o.qty), 0) FROM {order_items} o WHERE o.product_id = p.id) AS sold
        FROM {products} p WHERE p.category_id = ? ORDER BY sold DESC, p.id LIMIT 10`,
  update: 'UPDATE {products} SET price = ?, version = version + 1 WHERE id = ? RETURNING id, category_id, version',
}

/** Deterministic seed data, the same for both databases. */
function seedRows() {
  let state = 42
  const random = () => { // mulberry32
    state = (state + 0x6d2b79f5) | 0
    let t = Math.imul(state ^ (state >>> 15), 1 | state)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const pick = (list) => list[Math.floor(random() * list.length)]
  const categories = Array.from({ length: CATEGORIES }, (_, i) => [i + 1, `Category ${i + 1}`])
  const products = Array.from({ length: PRODUCTS }, (_, i) => [
    i + 1, (i % CATEGORIES) + 1, `${pick(ADJECTIVES)} ${pick(MATERIALS)} ${pick(NOUNS)} #${i + 1}`,
    100 + Math.floor(random() * 99_900), Math.floor(random() * 500), 1,
  ])
  // skewed sales: low ids sell more
  const orderItems = Array.from({ length: ORDER_ITEMS }, (_, i) => [
    i + 1, 1 + Math.floor(PRODUCTS * random() ** 2), 1 + Math.floor(random() * 5),
  ])
  return { categories, products, orderItems }
}

/** The name pattern of a product's similar products: `%<material> <noun> #%`. */
function similarPattern(name) {
  const words = name.split(' ')
  return `%${words[1]} ${words[2]} #%`
}

/**
 * Opens the database named by `url` (a postgres:// URL, or the http:// URL of demo/db-server.js)
 * or an in-memory SQLite, creates and seeds the demo's tables (unless `seed` is false: another
 * instance did), and returns the data layer.
 * @param {{ url?: string, seed?: boolean }} [options]
 */
async function openDb({ url, seed = true } = {}) {
  const driver = !url ? await sqlite() : url.startsWith('http://') ? await remote(url) : await postgres(url)
  const db = {
    kind: driver.kind,
    version: driver.version,
    queries: 0,
    async query(sql, params) {
      db.queries++
      return driver.query(sql, params)
    },
    /** The product page, or null: the product, its category and 5 similar products. */
    async product(id) {
      const [p] = await db.query(SQL.product, [id])
      if (!p) return null
      const first = Math.floor((p.category_id - 1) / DEPARTMENT) * DEPARTMENT + 1
      const similar = await db.query(SQL.similar, [first, first + DEPARTMENT - 1, similarPattern(p.name), id])
      return {
        id: p.id, name: p.name, price: p.price, stock: p.stock, version: p.version,
        category: { id: p.category_id, name: p.category },
        similar: similar.map((s) => ({ id: s.id, name: s.name })),
      }
    },
    /** The 10 best sellers of a category. */
    async topOfCategory(categoryId) {
      const rows = await db.query(SQL.top, [categoryId])
      return rows.map((r) => ({ id: r.id, name: r.name, price: r.price, version: r.version, sold: Number(r.sold) }))
    },
    /** Sets a product's price; returns { id, category_id, version } or null. */
    async updatePrice(id, price) {
      const [row] = await db.query(SQL.update, [price, id])
      return row || null
    },
    close: () => driver.close(),
  }
  const t = performance.now()
  if (seed && driver.seed) await driver.seed(seedRows())
  db.seedMs = performance.now() - t
  return db
}

// ---- SQLite (sql.js) -----------------------------------------------------------------------

async function sqlite() {
  const initSqlJs = require('sql.js')
  const SQLjs = await initSqlJs()
  const handle = new SQLjs.Database()
  const names = (sql) => sql.replace(/\{(\w+)\}/g, '$1')
  const statements = new Map()
  const prepared = (sql) => {
    let stmt = statements.get(sql)
    if (stmt === undefined) {
      stmt = handle.prepare(names(sql))
      statements.set(sql, stmt)
    }
    return stmt
  }
  return {
    kind: 'SQLite (sql.js, in memory)',
    version: `SQLite ${handle.exec('SELECT sqlite_version()')[0].values[0][0]}`,
    // sql.js is synchronous: the query runs now, on this thread
    async query(sql, params) {
      const stmt = prepared(sql)
      stmt.bind(params)
      const rows = []
      while (stmt.step()) rows.push(stmt.getAsObject())
      stmt.reset()
      return rows
    },
    async seed({ categories, products, orderItems }) {
      for (const sql of SCHEMA) handle.run(names(sql))
      handle.run('BEGIN')
      const insert = (table, columns, rows) => {
        const stmt = handle.prepare(`INSERT INTO ${table} VALUES (${columns.map(() => '?').join(', ')})`)
        for (const row of rows) stmt.run(row)
        stmt.free()
      }
      insert('categories', ['id', 'name'], categories)
      insert('products', ['id', 'category_id', 'name', 'price', 'stock', 'version'], products)
      insert('order_items', ['id', 'product_id', 'qty'], orderItems)
      handle.run('COMMIT')
      for (const sql of INDEXES) handle.run(names(sql))
      handle.run('ANALYZE')
    },
    async close() {
      for (const stmt of statements.values()) stmt.free()
      handle.close()
    },
  }
}

// ---- the SQLite of demo/db-server.js, shared by several app processes ------------------------

/** Several instances need one database: the SQLite of demo/db-server.js, over HTTP (keep-alive). */
async function remote(url) {
  const info = await (await fetch(`${url}/info`)).json()
  return {
    kind: `${info.kind}, in one database process shared by the instances`,
    version: info.version,
    async query(sql, params) {
      const res = await fetch(`${url}/query`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sql, params }),
      })
      const body = await res.json()
      if (!res.ok) throw new Error(`database process: ${body.error}`)
      return body.rows
    },
    seed: null, // the database process seeded it
    async close() {},
  }
}

// ---- PostgreSQL (pg) -----------------------------------------------------------------------

/** Tables are prefixed so the demo never touches tables of yours: mlc_demo_products, ... */
const PG_PREFIX = 'mlc_demo_'

async function postgres(url) {
  const { Pool, types } = require('pg')
  types.setTypeParser(20, Number) // int8 (SUM, COUNT) as a number, as SQLite gives it
  const pool = new Pool({ connectionString: url, max: 10 })
  const names = (sql) => sql.replace(/\{(\w+)\}/g, `${PG_PREFIX}$1`)
  const numbered = (sql) => { let n = 0; return names(sql).replace(/\?/g, () => `$${++n}`) }
  const statements = new Map() // sql -> a named (prepared once per connection) statement
  const statement = (sql) => {
    let s = statements.get(sql)
    if (s === undefined) statements.set(sql, (s = { name: `mlc_demo_${statements.size}`, text: numbered(sql) }))
    return s
  }
  const { rows: [{ server_version: version }] } = await pool.query('SHOW server_version')
  return {
    kind: `PostgreSQL (${url.replace(/\/\/[^@/]*@/, '//')})`,
    version: `PostgreSQL ${version}`,
    async query(sql, params) {
      return (await pool.query({ ...statement(sql), values: params })).rows
    },
    async seed({ categories, products, orderItems }) {
      const client = await pool.connect()
      try {
        await client.query('BEGIN')
        for (const t of ['order_items', 'products', 'categories']) await client.query(`DROP TABLE IF EXISTS ${PG_PREFIX}${t}`)
        for (const sql of SCHEMA) await client.query(names(sql))
        // one INSERT per table: each column travels as one array
        const insert = (table, casts, rows) => client.query(
          `INSERT INTO ${PG_PREFIX}${table} SELECT * FROM unnest(${casts.map((c, i) => `$${i + 1}::${c}[]`).join(', ')})`,
          casts.map((_, i) => rows.map((r) => r[i])))
        await insert('categories', ['int', 'text'], categories)
        await insert('products', ['int', 'int', 'text', 'int', 'int', 'int'], products)
        await insert('order_items', ['int', 'int', 'int'], orderItems)
        for (const sql of INDEXES) await client.query(names(sql))
        await client.query('COMMIT')
        for (const t of ['categories', 'products', 'order_items']) await client.query(`VACUUM ANALYZE ${PG_PREFIX}${t}`)
      } catch (e) {
        await client.query('ROLLBACK').catch(() => {})
        throw e
      } finally {
        client.release()
      }
    },
    close: () => pool.end(),
  }
}

module.exports = { openDb, CATEGORIES, PRODUCTS }
