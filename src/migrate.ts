import { createHash } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type pg from 'pg'

// Any constant works; it only has to be the same in every instance so that two boots never migrate at once.
const MIGRATION_LOCK = 727_274_001

/** DESIGN §3's schema files: the baseline, then numbered migrations (immutable), then one file per function. */
export interface SchemaLayout {
  baseline: string
  migrations: string
  functions: string
}

export const schemaLayout: SchemaLayout = {
  baseline: join(process.cwd(), 'schema', 'baseline.sql'),
  migrations: join(process.cwd(), 'migrations'),
  functions: join(process.cwd(), 'schema', 'functions')
}
export const migrationsDir = schemaLayout.migrations

/** The database was built by something other than these files: the boot stops and says what to do. */
export class SchemaMismatchError extends Error {
  override name = 'SchemaMismatchError'
}

const checksum = (sql: string): string => createHash('sha256').update(sql).digest('hex')

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

async function sqlFiles (dir: string, pattern: RegExp): Promise<string[]> {
  try {
    return (await readdir(dir)).filter((f) => pattern.test(f)).sort()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
}

/** Stops a boot on a database created by the pre-v2 migrations (001-014): the v2 baseline replaced them once. */
async function refuseLegacy (client: pg.PoolClient): Promise<void> {
  const { rows } = await client.query<{ legacy: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'schema_migrations' AND table_schema = current_schema())
        AND NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'schema_migrations' AND table_schema = current_schema()
                         AND column_name = 'checksum') AS legacy`)
  if (rows[0].legacy) {
    throw new SchemaMismatchError('this database was created by the pre-v2 migrations (001_schema.sql to 014); the ledger v2 ' +
      'baseline (schema/baseline.sql) replaces them. Recreate the database (for example `dropdb NAME && createdb NAME`) and start again.')
  }
}

/** Applies `file` unless it is recorded; a recorded file whose text changed stops everything, naming it. */
async function applyOnce (client: pg.PoolClient, name: string, sql: string): Promise<boolean> {
  const sum = checksum(sql)
  const { rows } = await client.query<{ checksum: string }>('SELECT checksum FROM schema_migrations WHERE name = $1', [name])
  if (rows.length > 0) {
    if (rows[0].checksum !== sum) {
      throw new SchemaMismatchError(`${name} changed after it was applied (checksum ${rows[0].checksum.slice(0, 12)} recorded, ` +
        `${sum.slice(0, 12)} now): an applied migration is never edited; add a new one`)
    }
    return false
  }
  try {
    await client.query(sql)
  } catch (err) {
    throw new Error(`migration ${name} failed: ${(err as Error).message}`)
  }
  await client.query('INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)', [name, sum])
  return true
}

/**
 * Brings the database to the schema files (DESIGN §3), under an advisory lock so that concurrent boots wait for each
 * other: the baseline on an empty database, then each numbered migration not yet recorded (each in its own
 * transaction), then every function file whose checksum changed (CREATE OR REPLACE). A recorded baseline or
 * migration whose text changed stops the boot naming the file. Returns what was applied.
 */
export async function migrate (pool: pg.Pool, migrations = schemaLayout.migrations, layout: SchemaLayout = schemaLayout): Promise<string[]> {
  const client = await pool.connect()
  const applied: string[] = []
  let broken: Error | undefined
  try {
    await underMigrationLock(client, async () => {
      await refuseLegacy(client)
      await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
        name text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`)
      await client.query(`CREATE TABLE IF NOT EXISTS schema_functions (
        name text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`)
      if (await applyOnce(client, 'baseline.sql', await readFile(layout.baseline, 'utf8'))) applied.push('baseline.sql')
    })
    for (const file of await sqlFiles(migrations, /^\d+_.+\.sql$/)) {
      const sql = await readFile(join(migrations, file), 'utf8')
      if (await underMigrationLock(client, () => applyOnce(client, file, sql))) applied.push(file)
    }
    const functions = await sqlFiles(layout.functions, /\.sql$/)
    const changed = await underMigrationLock(client, async () => {
      const { rows } = await client.query<{ name: string, checksum: string }>('SELECT name, checksum FROM schema_functions')
      const recorded = new Map(rows.map((r) => [r.name, r.checksum]))
      const done: string[] = []
      for (const file of functions) {
        const sql = await readFile(join(layout.functions, file), 'utf8')
        const sum = checksum(sql)
        if (recorded.get(file) === sum) continue
        try {
          await client.query(sql)
        } catch (err) {
          throw new Error(`function file ${file} failed: ${(err as Error).message}`)
        }
        await client.query(`INSERT INTO schema_functions (name, checksum) VALUES ($1, $2)
          ON CONFLICT (name) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()`, [file, sum])
        done.push(`functions/${file}`)
      }
      return done
    })
    applied.push(...changed)
  } catch (err) {
    broken = err as Error
    throw err
  } finally {
    // A connection that failed mid-way may be unusable or mid-transaction: destroy it rather than pool it.
    client.release(broken)
  }
  return applied
}
