import { pathToFileURL } from 'node:url'
import pg from 'pg'
import { loadConfig, redactUrl } from './config.js'
import { migrate } from './migrate.js'
import type { CliOutput } from './audit-cli.js'

/** `npm run migrate`: applies pending migrations to the configured database (DATABASE_URL). Returns the exit code: 0 or 1. */
export async function runMigrate (env?: Record<string, unknown>, out: CliOutput = console): Promise<number> {
  let url = '<unconfigured>'
  try {
    const config = loadConfig(env, () => {})
    url = redactUrl(config.DATABASE_URL)
    const pool = new pg.Pool({ connectionString: config.DATABASE_URL, max: 1, connectionTimeoutMillis: 5000, application_name: 'jit-gateway-migrate' })
    try {
      const applied = await migrate(pool)
      out.log(applied.length === 0 ? `migrations: ${url} is up to date` : `migrations applied to ${url}: ${applied.join(', ')}`)
      return 0
    } finally {
      await pool.end()
    }
  } catch (err) {
    out.error(`migrate failed on ${url}: ${(err as Error).message}`)
    return 1
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runMigrate().then((code) => { process.exitCode = code }, () => { process.exitCode = 1 })
}
