import t from 'tap'
import pg from 'pg'
import { TEST_DATABASE_URL, eventually, uniq } from '../../helper.js'
import { applyLedger } from '../../../src/ledger/apply.js'
import { load } from '../../../src/ledger/funds.js'
import { auditLedger, type Violation } from '../../../src/audit.js'
import { runAudit } from '../../../src/audit-cli.js'
import { runMigrate } from '../../../src/migrate-cli.js'
import { account, holdOf, newCardholder, testPool } from './helper.js'

/** Runs `corrupt` then the audit in one transaction on one client, and always rolls back. */
async function auditCorrupted (pool: pg.Pool, corrupt: (c: pg.PoolClient) => Promise<unknown>, userTokens?: string[]): Promise<Violation[]> {
  const client = await pool.connect()
  try {
    await client.query('BEGIN')
    await corrupt(client)
    return (await auditLedger(client, userTokens === undefined ? {} : { userTokens })).violations
  } finally {
    await client.query('ROLLBACK')
    client.release()
  }
}

t.test('the audit finds deliberately corrupted rows, and only them', async (t) => {
  const pool = await testPool(t)
  const { user, card } = await newCardholder(pool, 'aud')
  await load(pool, { user_token: user, currency_code: 'USD', amount_minor: 50_00n, effect_key: uniq('load') })
  const jit = uniq('aud-h')
  await applyLedger(pool, { kind: 'hold', effect_key: `${jit}:hold`, jit_token: jit, user_token: user, card_token: card, currency_code: 'USD', amount_minor: 10_00n })
  const accountId = (await account(pool, user))?.account_id as string
  const holdId = (await holdOf(pool, jit))?.id as string

  t.same((await auditLedger(pool, { userTokens: [user] })).violations, [], 'clean before')

  await t.test('an account column that disagrees with its journal', async (t) => {
    const scoped = await auditCorrupted(pool, (c) => c.query('UPDATE accounts SET credits_posted = credits_posted + 1 WHERE id = $1', [accountId]), [user])
    t.equal(scoped.length, 1)
    t.match(scoped[0], { check: 'account', account_id: accountId, message: /credits_posted 5001 but journal says 5000/ })
    const global = await auditCorrupted(pool, (c) => c.query('UPDATE accounts SET credits_posted = credits_posted + 1 WHERE id = $1', [accountId]))
    t.ok(global.some((v) => v.check === 'account' && v.account_id === accountId), 'the unscoped audit lists the account')
    t.ok(global.some((v) => v.check === 'conservation' && /sum to 1\b|sum to -?\d+/.test(v.message)), 'and the broken conservation')
  })

  await t.test('a pending hold with nothing remaining, against its journal', async (t) => {
    const v = await auditCorrupted(pool, (c) => c.query('UPDATE holds SET remaining = 0 WHERE id = $1', [holdId]), [user])
    t.equal(v.length, 1)
    t.match(v[0], { check: 'hold', hold_id: holdId, message: /remaining 0 but journal says 1000.*PENDING with nothing remaining/ })
  })

  await t.test('the same movement journaled twice under one effect key', async (t) => {
    const v = await auditCorrupted(pool, async (c) => {
      await c.query(`INSERT INTO entries (debit_account_id, credit_account_id, amount, phase, kind, hold_id, jit_token, effect_key)
                     SELECT debit_account_id, credit_account_id, amount, phase, kind, hold_id, jit_token, effect_key FROM entries WHERE effect_key = $1`, [`${jit}:hold`])
      await c.query('UPDATE accounts SET debits_pending = debits_pending + 1000 WHERE id = $1', [accountId])
      await c.query('UPDATE holds SET amount = amount + 1000, remaining = remaining + 1000 WHERE id = $1', [holdId])
    }, [user])
    t.ok(v.some((x) => x.check === 'duplicate' && x.effect_key === `${jit}:hold`), 'by effect key')
    t.ok(v.some((x) => x.check === 'duplicate' && x.jit_token === jit), 'by jit token')
    t.notOk(v.some((x) => x.check === 'account' || x.check === 'hold'), 'the columns were kept consistent, only the duplicate shows')
  })

  await t.test('a jit token that belongs to two holds', async (t) => {
    const other = uniq('aud-h2')
    await applyLedger(pool, { kind: 'hold', effect_key: `${other}:hold`, jit_token: other, user_token: user, card_token: card, currency_code: 'USD', amount_minor: 1_00n })
    const v = await auditCorrupted(pool, (c) => c.query('UPDATE hold_tokens SET hold_id = $1 WHERE jit_token = $2', [holdId, other]), [user])
    t.ok(v.some((x) => x.check === 'duplicate' && x.jit_token === other && /belongs to holds/.test(x.message)))
  })

  t.same((await auditLedger(pool, { userTokens: [user] })).violations, [], 'clean after every rollback')
})

t.test('npm run migrate prepares a new database; npm run audit exits 0 on it, then 1 listing a corrupted account', async (t) => {
  const name = `audit_${uniq('db').replace(/-/g, '_')}`
  const admin = new pg.Client({ connectionString: TEST_DATABASE_URL })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${name}`)
  const url = new URL(TEST_DATABASE_URL)
  url.pathname = `/${name}`
  const pool = new pg.Pool({ connectionString: url.toString(), max: 2 })
  t.teardown(async () => {
    await pool.end()
    // pool.end() resolves before the sockets close; forcing the drop while a backend still exits would kill it and
    // surface as an uncaught error of the CLI's client in this process.
    await eventually(async () => {
      const { rows } = await admin.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1', [name])
      return rows[0].n === 0
    })
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    await admin.end()
  })
  const lines: string[] = []
  const quiet = { log: (l: string) => lines.push(l), error: (l: string) => lines.push(l) }
  t.equal(await runMigrate({ DATABASE_URL: url.toString() }, quiet), 0)
  t.match(lines.pop(), /^migrations applied to .*: 001_schema\.sql, 002_ledger_functions\.sql/)
  t.equal(await runMigrate({ DATABASE_URL: url.toString() }, quiet), 0)
  t.match(lines.pop(), /is up to date$/)
  t.equal(await runMigrate({ DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' }, quiet), 1)
  t.match(lines.pop(), /^migrate failed on postgres:\/\/postgres@127\.0\.0\.1:1\/none: /)
  t.equal(await runMigrate({ DATABASE_URL: 'mysql://nope' }, quiet), 1)
  t.match(lines.pop(), /DATABASE_URL/, 'a bad value names the variable')
  const { user } = await newCardholder(pool, 'cli')
  await load(pool, { user_token: user, currency_code: 'EUR', amount_minor: 12_34n, effect_key: uniq('load') })

  const run = async (): Promise<{ code: number, out: string[], err: string[] }> => {
    const out: string[] = []
    const err: string[] = []
    const code = await runAudit({ DATABASE_URL: url.toString() }, { log: (l) => out.push(l), error: (l) => err.push(l) })
    return { code, out, err }
  }
  const clean = await run()
  t.equal(clean.code, 0)
  t.match(clean.out[0], /^audit clean: 2 accounts, 0 holds, 1 entries/)

  const accountId = (await account(pool, user, 'EUR'))?.account_id
  await pool.query('UPDATE accounts SET debits_posted = debits_posted + 7 WHERE id = $1', [accountId])
  const dirty = await run()
  t.equal(dirty.code, 1)
  t.ok(dirty.err.some((l) => l.includes(`account ${accountId} of user ${user}`) && l.includes('debits_posted 7 but journal says 0')), dirty.err.join('\n'))
  t.ok(dirty.err.some((l) => l.startsWith('[conservation]')))
  t.match(dirty.err.at(-1), /audit FAILED: 2 violation/)

  const unreachable = await runAudit({ DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' }, { log: () => {}, error: () => {} })
  t.equal(unreachable, 2, 'exit 2 when it cannot run')
})
