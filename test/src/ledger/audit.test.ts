import t from 'tap'
import pg from 'pg'
import { TEST_DATABASE_URL, eventually, uniq } from '../../helper.js'
import { applyLedger } from '../../../src/ledger/apply.js'
import { load } from '../../../src/ledger/funds.js'
import { auditLedger, type Violation } from '../../../src/audit.js'
import { runAudit } from '../../../src/audit-cli.js'
import { runMigrate } from '../../../src/migrate-cli.js'
import { account, decideHold, holdOf, materializeHold, newCardholder, testPool } from './helper.js'

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
  // A hold placed by a webhook (a pending transfer and its holds row), and two placed by JIT decisions: one increased
  // (it has a holds row now), one still only its decision row.
  const jit = uniq('aud-h')
  await applyLedger(pool, { kind: 'hold', effect_key: `${jit}:hold`, jit_token: jit, user_token: user, card_token: card, currency_code: 'USD', amount_minor: 10_00n })
  const decided = uniq('aud-d')
  t.equal((await decideHold(pool, { user, card, jit: decided, amountMinor: 5_00n })).status_code, 200)
  t.equal((await decideHold(pool, { user, card, jit: uniq('aud-i'), amountMinor: 1_00n, original: decided })).status_code, 200)
  const untouched = uniq('aud-u')
  t.equal((await decideHold(pool, { user, card, jit: untouched, amountMinor: 2_00n })).status_code, 200)
  const accountId = (await account(pool, user))?.account_id as string
  const programId = (await pool.query('SELECT program_account_id::text AS id FROM holds WHERE jit_token = $1', [jit])).rows[0].id as string
  t.match(await holdOf(pool, decided), { status: 'PENDING', amount: 6_00n, remaining: 6_00n })
  t.match(await holdOf(pool, untouched), { status: 'PENDING', amount: 2_00n, remaining: 2_00n })
  t.equal((await pool.query('SELECT 1 FROM holds WHERE jit_token = $1', [untouched])).rowCount, 0, 'an unchanged JIT hold has no holds row')
  const report = await auditLedger(pool, { userTokens: [user] })
  t.same(report.violations, [], 'clean before')
  t.same(report.checked, { accounts: 1, holds: 3, transfers: 2 }, 'one account, three holds, the load and the webhook hold')

  /** Moves money as a buggy writer would: through ledger_transfer, so that the account columns stay consistent. */
  const transfer = async (c: pg.PoolClient, id: string, kind: string, code: string, amountMinor: number, releasedMinor: number, hold: string): Promise<void> => {
    await c.query("SELECT ledger_transfer($1, $2, $3, $4, $5, 'debit', $6, $7, $8, $9, 'USD', $1, NULL)",
      [id, kind, code, accountId, programId, amountMinor, releasedMinor, hold, user])
  }

  await t.test('an account column that disagrees with its journal', async (t) => {
    const scoped = await auditCorrupted(pool, (c) => c.query('UPDATE accounts SET credits_posted = credits_posted + 1 WHERE id = $1', [accountId]), [user])
    t.equal(scoped.length, 1)
    t.match(scoped[0], { check: 'account', account_id: accountId, message: /credits_posted 5001 but journal says 5000/ })
    const global = await auditCorrupted(pool, (c) => c.query('UPDATE accounts SET credits_posted = credits_posted + 1 WHERE id = $1', [accountId]))
    t.ok(global.some((v) => v.check === 'account' && v.account_id === accountId), 'the unscoped audit lists the account')
    t.ok(global.some((v) => v.check === 'conservation' && /sum to 1\b|sum to -?\d+/.test(v.message)), 'and the broken conservation')
  })

  await t.test('the pending side counts the holds that are decision rows', async (t) => {
    const v = await auditCorrupted(pool, (c) => c.query('UPDATE accounts SET debits_pending = debits_pending - 200 WHERE id = $1', [accountId]), [user])
    t.equal(v.length, 1)
    t.match(v[0], { check: 'account', account_id: accountId, message: /debits_pending 1600 but journal says 1800/ })
  })

  await t.test('a pending hold with nothing remaining, against its journal', async (t) => {
    const v = await auditCorrupted(pool, (c) => c.query('UPDATE holds SET remaining = 0 WHERE jit_token = $1', [jit]), [user])
    t.equal(v.length, 1)
    t.match(v[0], { check: 'hold', jit_token: jit, message: /remaining 0 but journal says 1000.*PENDING with nothing remaining/ })
  })

  await t.test('a hold materialized from its decision with the wrong amount', async (t) => {
    const v = await auditCorrupted(pool, async (c) => {
      await materializeHold(c, untouched)
      await c.query('UPDATE holds SET amount = amount + 1, remaining = remaining + 1 WHERE jit_token = $1', [untouched])
    }, [user])
    t.equal(v.length, 1)
    t.match(v[0], { check: 'hold', jit_token: untouched, message: /amount 201 but journal held 200; remaining 201 but journal says 200/ })
  })

  await t.test('a hold resolved without a transfer that resolves it', async (t) => {
    const v = await auditCorrupted(pool, (c) => c.query("UPDATE holds SET status = 'EXPIRED', remaining = 0, resolved_at = now() WHERE jit_token = $1", [decided]), [user])
    t.equal(v.length, 1)
    t.match(v[0], { check: 'hold', jit_token: decided, message: /remaining 0 but journal says 600; EXPIRED but no transfer resolved it/ })
  })

  await t.test('a JIT hold placed twice: as its decision and as a pending transfer', async (t) => {
    const v = await auditCorrupted(pool, async (c) => {
      await transfer(c, `${untouched}:hold`, 'pending', 'hold.created', 200, 0, untouched)
      await materializeHold(c, untouched)
      await c.query('UPDATE holds SET amount = 400, remaining = 400 WHERE jit_token = $1', [untouched])
    }, [user])
    t.equal(v.length, 1, 'the columns were kept consistent, only the duplicate shows')
    t.match(v[0], { check: 'duplicate', jit_token: untouched, transfer_id: `${untouched}:hold`, message: /placed its hold twice/ })
  })

  await t.test('a hold posted twice', async (t) => {
    const v = await auditCorrupted(pool, async (c) => {
      const settled = await applyLedger(c, { kind: 'settle', effect_key: uniq('aud-s'), jit_token: uniq('aud-s'), user_token: user, currency_code: 'USD', hold_tokens: [jit], amount_minor: 10_00n })
      t.equal(settled.status, 'applied')
      await transfer(c, uniq('aud-s2'), 'post', 'hold.posted', 3_00, 0, jit)
      await c.query('UPDATE holds SET posted = posted + 300 WHERE jit_token = $1', [jit])
    }, [user])
    t.equal(v.length, 1, 'only the second resolution shows')
    t.match(v[0], { check: 'duplicate', jit_token: jit, message: /resolved 2 times \(hold\.posted, hold\.posted\)/ })
  })

  await t.test('an increase of a hold that does not exist', async (t) => {
    const ghost = uniq('aud-g')
    const id = uniq('aud-inc')
    const v = await auditCorrupted(pool, (c) => transfer(c, id, 'pending', 'hold.increased', 1_00, 0, ghost), [user])
    t.equal(v.length, 1)
    t.match(v[0], { check: 'hold', transfer_id: id, message: new RegExp(`names hold ${ghost}, which does not exist`) })
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
  t.match(lines.pop(), /^migrations applied to .*: baseline\.sql, .*functions\/jit_decide\.sql/)
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
  t.match(clean.out[0], /^audit clean: 2 accounts, 0 holds, 1 transfers/)

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
