import type { FastifyPluginAsync } from 'fastify'
import type pg from 'pg'
import { jitFundingOf, type Transaction } from '../src/marqeta.js'
import { decideJit } from '../src/jit/decide.js'
import { gatewayBatcher } from '../src/jit/batcher.js'
import type { ContextSource } from '../src/jit/context.js'

/**
 * Bench-only reference routes (never registered by the product): the cost of Fastify alone, of one Redis GET and of
 * one conditional PostgreSQL UPDATE, measured in the same run as the product's routes so that ratios are comparable;
 * and /bench/ledger, the JIT decision reduced to its ledger statement, which bounds what the JIT route can reach.
 */

export const BENCH_TABLE = 'bench_accounts'
/** The hot reference row: every /bench/pg-hot request updates it, like a corporate account under the JIT route. */
export const HOT_ROW = 0
export const REDIS_KEY = 'bench:reference'

export interface ReferenceOptions { rows: number }

export const updateSql = `UPDATE ${BENCH_TABLE} SET balance = balance - 1 WHERE id = $1 AND balance >= 1`

/** Creates the reference table and (re)sets `rows` rows plus the hot row to a balance no run can exhaust. */
export async function prepareReferenceTable (pool: pg.Pool, rows: number): Promise<void> {
  await pool.query(`CREATE TABLE IF NOT EXISTS ${BENCH_TABLE} (id int PRIMARY KEY, balance bigint NOT NULL)`)
  await pool.query(`INSERT INTO ${BENCH_TABLE} (id, balance) SELECT i, 1000000000000 FROM generate_series(0, $1::int) i
    ON CONFLICT (id) DO UPDATE SET balance = excluded.balance`, [rows])
}

// Every card and cardholder active, no controls, no I/O: the rules pass and the decision is the ledger's alone.
const contextFromMessage: ContextSource = {
  parts: async (cardToken, userToken) => ({
    card: cardToken === undefined ? null : { token: cardToken, user_token: userToken, state: 'ACTIVE' },
    user: { token: userToken, status: 'ACTIVE' },
    userControls: { auth: [], velocity: [] },
    programControls: { auth: [], velocity: [] }
  })
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

  // The JIT route's ledger call as the product makes it (decideJit, the same batcher settings, the same jit_decide
  // statement with the whole message), without credentials, schema validation, context lookups or the profiler.
  const batcher = gatewayBatcher(pool, app.config, { batchSize: app.telemetry.jitBatchSize, fallbacks: app.telemetry.jitBatchFallbacks })
  app.post('/bench/ledger', async (request, reply) => {
    const txn = request.body as Transaction
    const jit = jitFundingOf(txn)
    if (jit === undefined) return await reply.code(400).send({ message: 'gpa_order.jit_funding is required' })
    const answer = await decideJit({
      pool,
      context: contextFromMessage,
      now: () => new Date(),
      partialApproval: false,
      holdExpirationDays: app.config.HOLD_EXPIRATION_DAYS,
      stage: () => {},
      ledger: batcher.decide
    }, txn, jit, performance.now() + app.config.JIT_DEADLINE_MS)
    return await reply.code(answer.statusCode).type('application/json; charset=utf-8').send(answer.body)
  })
}

export default referenceRoutes
