import pg from 'pg'
import { loadConfig, redactUrl } from './config.js'
import { migrate } from './migrate.js'

/** `npm run migrate`: applies pending migrations to the configured database, then exits 0, or 1 with a message. */
async function main (): Promise<void> {
  const config = loadConfig()
  const pool = new pg.Pool({ connectionString: config.DATABASE_URL, max: 1, connectionTimeoutMillis: 5000, application_name: 'jit-gateway-migrate' })
  try {
    const applied = await migrate(pool)
    console.log(applied.length === 0
      ? `migrations: ${redactUrl(config.DATABASE_URL)} is up to date`
      : `migrations applied to ${redactUrl(config.DATABASE_URL)}: ${applied.join(', ')}`)
  } finally {
    await pool.end()
  }
}

main().then(() => { process.exitCode = 0 }, (err: Error) => {
  console.error(`migrate failed: ${err.message}`)
  process.exitCode = 1
})
