import t from 'tap'
import pg from 'pg'
import { scratchDatabase, uniq } from '../../helper.js'
import { migrate } from '../../../src/migrate.js'
import { applyLedger, expireHold } from '../../../src/ledger/apply.js'
import { load } from '../../../src/ledger/funds.js'
import { decideHold, newCardholder } from './helper.js'
import { relayLag } from '../../../src/event-relay.js'

// Pooled connections live for hours and keep their statements' plans as long. A plan made while the ledger's tables
// were nearly empty (a new database, nothing ANALYZEd since) chose to scan them whole, and every later decision on that
// connection read every decision ever made.
t.test('a connection that first decided on nearly empty tables still finds rows by key once they have grown', async (t) => {
  const pool = new pg.Pool({ connectionString: await scratchDatabase(t, 'plans'), max: 1 })
  t.teardown(() => pool.end())
  await migrate(pool)
  const db = await pool.connect()
  t.teardown(() => db.release())

  const { user, card } = await newCardholder(db, 'plan')
  await load(db, { user_token: user, currency_code: 'USD', amount_minor: 1_000_00n, effect_key: uniq('load') })
  const exercise = async (): Promise<void> => {
    const jit = uniq('jit')
    t.equal((await decideHold(db, { user, card, jit, amountMinor: 1_00n })).status_code, 200)
    t.equal((await decideHold(db, { user, card, jit, amountMinor: 1_00n })).replay, true, 'a replay is found')
    const hold = uniq('hold')
    const base = { user_token: user, currency_code: 'USD', card_token: card }
    t.equal((await applyLedger(db, { ...base, kind: 'hold', effect_key: `${hold}:hold`, jit_token: hold, amount_minor: 1_00n })).status, 'applied')
    t.equal((await applyLedger(db, { ...base, kind: 'void', effect_key: `${hold}:void`, jit_token: hold })).status, 'applied')
    const cleared = uniq('clear')
    t.equal((await applyLedger(db, { ...base, kind: 'settle', effect_key: `${cleared}:settle`, jit_token: cleared, hold_tokens: [jit], amount_minor: 1_00n })).status, 'applied', 'a clearing of the decision\'s hold')
    t.equal(await expireHold(db, jit), 0n, 'a hold not yet expired is left alone')
    t.ok((await relayLag(db)).backlog > 0, 'the relay\'s lag counts the rows behind its cursor')
  }
  // More calls than PostgreSQL's five custom plans before it settles on a cached generic one.
  for (let i = 0; i < 6; i++) await exercise()

  await db.query(`INSERT INTO decisions (jit_token, method, user_token, result, decline_reason, status_code, response)
                  SELECT $1 || i, 'pgfs.authorization', $2, 'declined', 'INSUFFICIENT_FUNDS', 402, '{}'
                    FROM generate_series(1, 20000) i`, [uniq('grown'), user])
  // And 20 000 settled holds of the same account: a clearing finds its holds by token, not among the account's.
  await db.query(`INSERT INTO holds (jit_token, account_id, program_account_id, user_token, amount, remaining, posted, status, created_at, expires_at, resolved_at)
                  SELECT $1 || i, a.id, p.id, $2, 1, 0, 1, 'POSTED', now(), now(), now()
                    FROM generate_series(1, 20000) i,
                         (SELECT id FROM accounts WHERE user_token = $2) a,
                         (SELECT id FROM accounts WHERE user_token IS NULL LIMIT 1) p`, [uniq('grown-hold'), user])
  await db.query('BEGIN')
  try {
    await exercise()
    // Rows read by sequential scans (bitmap heap scans count as seq_scan here, but not in seq_tup_read).
    const { rows } = await db.query<{ relname: string, read: string }>(
      `SELECT relname, seq_tup_read::text AS read FROM pg_stat_xact_user_tables
        WHERE relname IN ('decisions', 'transfers', 'accounts', 'users', 'cards', 'holds', 'spend') AND seq_tup_read >= 1000
        ORDER BY relname`)
    t.same(rows, [], 'the 20 000 decisions and holds are not read one by one by a decision, a webhook effect, an expiry or the relay\'s lag')
  } finally {
    await db.query('ROLLBACK')
  }
})
