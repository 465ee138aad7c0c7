import pg from 'pg'
import { loadConfig, redactUrl } from './config.js'
import { auditSnapshot } from './audit.js'

/** `npm run audit`: checks the ledger invariants of the configured database; exit 1 on any violation, 2 if it cannot run. */
async function main (): Promise<number> {
  const config = loadConfig()
  const pool = new pg.Pool({ connectionString: config.DATABASE_URL, max: 1, application_name: 'jit-gateway-audit' })
  try {
    const client = await pool.connect()
    try {
      const { violations, checked } = await auditSnapshot(client)
      const scope = `${checked.accounts} accounts, ${checked.holds} holds, ${checked.entries} entries`
      if (violations.length === 0) {
        console.log(`audit clean: ${scope} checked in ${redactUrl(config.DATABASE_URL)}`)
        return 0
      }
      for (const v of violations) console.error(`[${v.check}] ${v.message}`)
      console.error(`audit FAILED: ${violations.length} violation(s) in ${scope} of ${redactUrl(config.DATABASE_URL)}`)
      return 1
    } finally {
      client.release()
    }
  } finally {
    await pool.end()
  }
}

main().then((code) => { process.exitCode = code }, (err: Error) => {
  console.error(`audit could not run: ${err.message}`)
  process.exitCode = 2
})
