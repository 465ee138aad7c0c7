/**
 * The latency floor of this machine for `npm run bench:latency`: a process with the product's HTTP, PostgreSQL and Redis
 * libraries answering POST /marqeta/jit with one Redis GET and one conditional UPDATE (committed, so one WAL flush) per
 * request, nothing else. The bench drives it with the same open loop as the gateway, in the same run, so that the
 * gateway's latency reads against what any service with a durable write per request gets here.
 * Run as `node dist/bench/latency-reference.js` with PORT (and DATABASE_URL, REDIS_URL as the service reads them).
 */
import Fastify from 'fastify'
import pg from 'pg'
import { Redis } from 'ioredis'
import { loadConfig } from '../src/config.js'
import { prepareReferenceTable, REDIS_KEY, updateSql } from './reference-routes.js'

const ROWS = 1000

const config = loadConfig(undefined, () => {})
const pool = new pg.Pool({ connectionString: config.DATABASE_URL, max: config.PG_POOL_MAX })
const redis = new Redis(config.REDIS_URL)
await prepareReferenceTable(pool, ROWS)
await redis.set(REDIS_KEY, 'reference')

const app = Fastify({ logger: false })
app.get('/ready', async () => ({ ok: true }))
app.post('/marqeta/jit', async () => {
  const cached = await redis.get(REDIS_KEY)
  const { rowCount } = await pool.query(updateSql, [1 + Math.floor(Math.random() * ROWS)])
  return { ok: rowCount === 1 && cached !== null }
})
const close = async (): Promise<void> => {
  await app.close()
  await pool.end()
  redis.disconnect()
  process.exit(0)
}
process.once('SIGTERM', () => { void close() })
await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT) })
