import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type pg from 'pg'

// Any constant works; it only has to be the same in every instance so that two boots never migrate at once.
const MIGRATION_LOCK = 727_274_001

export const migrationsDir = join(process.cwd(), 'migrations')

/**
 * Runs `fn` in a transaction that holds the migration lock and has no statement timeout. Both are transaction-scoped
 * (`pg_advisory_xact_lock`, `SET LOCAL`), so the pooled connection goes back to the pool with its own settings even
 * when `fn` or the connection fails.
 */
async function underMigrationLock<T> (client: pg.PoolClient, fn: () => Promise<T>): Promise<T> {
  await client.query('BEGIN')
  try {
    // A migration may rewrite a large table, and a second boot waits for the first one's lock: neither is bounded
    // by the pool's statement timeout (meant for the request path).
    await client.query('SET LOCAL statement_timeout = 0')
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK])
    const result = await fn()
    await client.query('COMMIT')
    return result
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {})
    throw err
  }
}

/**
 * Applies the numbered `migrations/NNN_name.sql` files not yet recorded in `schema_migrations`, each in its own
 * transaction under an advisory lock, so that concurrent boots wait for each other instead of colliding (whoever
 * takes the lock first applies a file; the other finds it recorded). Returns the names applied by this call.
 */
export async function migrate (pool: pg.Pool, dir = migrationsDir): Promise<string[]> {
  const files = (await readdir(dir)).filter((f) => /^\d+_.+\.sql$/.test(f)).sort()
  const client = await pool.connect()
  const applied: string[] = []
  let broken: Error | undefined
  try {
    await underMigrationLock(client, () => client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`))
    for (const file of files) {
      const sql = await readFile(join(dir, file), 'utf8')
      const done = await underMigrationLock(client, async () => {
        if ((await client.query('SELECT 1 FROM schema_migrations WHERE name = $1', [file])).rowCount !== 0) return false
        try {
          await client.query(sql)
        } catch (err) {
          throw new Error(`migration ${file} failed: ${(err as Error).message}`)
        }
        await client.query('INSERT INTO schema_migrations (name) VALUES ($1)', [file])
        return true
      })
      if (done) applied.push(file)
    }
  } catch (err) {
    broken = err as Error
    throw err
  } finally {
    // A connection that failed mid-way may be unusable or mid-transaction: destroy it rather than pool it.
    client.release(broken)
  }
  return applied
}
