import { pathToFileURL } from 'node:url'
import pg from 'pg'
import { loadConfig, redactUrl } from './config.js'
import { auditSnapshot } from './audit.js'

export interface CliOutput { log: (line: string) => void, error: (line: string) => void }

/**
 * `npm run audit`: checks the ledger invariants of the configured database (DATABASE_URL) in one snapshot and
 * prints every violation. Returns the exit code: 0 clean, 1 violations, 2 the audit could not run.
 */
export async function runAudit (env?: Record<string, unknown>, out: CliOutput = console): Promise<number> {
  let url = '<unconfigured>'
  try {
    const config = loadConfig(env, () => {})
    url = redactUrl(config.DATABASE_URL)
    const pool = new pg.Pool({ connectionString: config.DATABASE_URL, max: 1, connectionTimeoutMillis: 5000, application_name: 'jit-gateway-audit' })
    try {
      const client = await pool.connect()
      try {
        const { violations, checked } = await auditSnapshot(client)
        const scope = `${checked.accounts} accounts, ${checked.holds} holds, ${checked.transfers} transfers`
        if (violations.length === 0) {
          out.log(`audit clean: ${scope} checked in ${url}`)
          return 0
        }
        for (const v of violations) out.error(`[${v.check}] ${v.message}`)
        out.error(`audit FAILED: ${violations.length} violation(s) in ${scope} of ${url}`)
        return 1
      } finally {
        client.release()
      }
    } finally {
      await pool.end()
    }
  } catch (err) {
    out.error(`audit could not run against ${url}: ${(err as Error).message}`)
    return 2
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runAudit().then((code) => { process.exitCode = code }, () => { process.exitCode = 2 })
}
