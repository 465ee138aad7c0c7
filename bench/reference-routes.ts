import type { FastifyPluginAsync } from 'fastify'
import type pg from 'pg'

/**
 * Bench-only reference routes (never registered by the product): the cost of Fastify alone, of one Redis GET and of
 * one conditional PostgreSQL UPDATE, measured in the same run as the product's routes so that ratios are comparable.
 */

export const BENCH_TABLE = 'bench_accounts'
/** The hot reference row: every /bench/pg-hot request updates it, like a corporate account under the JIT route. */
export const HOT_ROW = 0
export const REDIS_KEY = 'bench:reference'

export interface ReferenceOptions { rows: number }

const updateSql = `UPDATE ${BENCH_TABLE} SET balance = balance - 1 WHERE id = $1 AND balance >= 1`

/** Creates the reference table and (re)sets `rows` rows plus the hot row to a balance no run can exhaust. */
export async function prepareReferenceTable (pool: pg.Pool, rows: number): Promise<void> {
  await pool.query(`CREATE TABLE IF NOT EXISTS ${BENCH_TABLE} (id int PRIMARY KEY, balance bigint NOT NULL)`)
  await pool.query(`INSERT INTO ${BENCH_TABLE} (id, balance) SELECT i, 1000000000000 FROM generate_series(0, $1::int) i
    ON CONFLICT (id) DO UPDATE SET balance = excluded.balance`, [rows])
}

const referenceRoutes: FastifyPluginAsync<ReferenceOptions> = async (app, opts) => {
  const { rows } = opts
  const pool = app.db.pool
  const okSchema = { schema: { response: { 200: { type: 'object', properties: { ok: { type: 'boolean' } } } } } }

  app.get('/bench/hello', okSchema, async () => ({ ok: true }))

  app.get('/bench/redis', okSchema, async () => {
    const value = await app.redis.get(REDIS_KEY)
    return { ok: value !== null }
  })

  app.post('/bench/pg', okSchema, async () => {
    const id = 1 + Math.floor(Math.random() * rows)
    const { rowCount } = await pool.query(updateSql, [id])
    return { ok: rowCount === 1 }
  })

  app.post('/bench/pg-hot', okSchema, async () => {
    const { rowCount } = await pool.query(updateSql, [HOT_ROW])
    return { ok: rowCount === 1 }
  })
}

export default referenceRoutes
