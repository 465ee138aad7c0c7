import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type pg from 'pg'

// Any constant works; it only has to be the same in every instance so that two boots never migrate at once.
const MIGRATION_LOCK = 727_274_001

export const migrationsDir = join(process.cwd(), 'migrations')

/**
 * Applies the numbered `migrations/NNN_name.sql` files not yet recorded in `schema_migrations`, each in its own
 * transaction, under a session advisory lock so that concurrent boots wait for each other instead of colliding.
 * Returns the names applied by this call.
 */
export async function migrate (pool: pg.Pool, dir = migrationsDir): Promise<string[]> {
  const files = (await readdir(dir)).filter((f) => /^\d+_.+\.sql$/.test(f)).sort()
  const client = await pool.connect()
  const applied: string[] = []
  try {
    await client.query('SET statement_timeout = 0')
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK])
    try {
      await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
        name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`)
      const done = new Set((await client.query<{ name: string }>('SELECT name FROM schema_migrations')).rows.map((r) => r.name))
      for (const file of files) {
        if (done.has(file)) continue
        const sql = await readFile(join(dir, file), 'utf8')
        await client.query('BEGIN')
        try {
          await client.query(sql)
          await client.query('INSERT INTO schema_migrations (name) VALUES ($1)', [file])
          await client.query('COMMIT')
        } catch (err) {
          await client.query('ROLLBACK')
          throw new Error(`migration ${file} failed: ${(err as Error).message}`)
        }
        applied.push(file)
      }
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK])
    }
  } finally {
    client.release()
  }
  return applied
}
