import pg from 'pg'
import { TEST_DATABASE_URL, uniq, type Teardown } from '../../helper.js'
import { migrate } from '../../../src/migrate.js'
import { userAccounts, type AccountState } from '../../../src/ledger/funds.js'
import type { Queryable } from '../../../src/db.js'


/** A pool on the test database with every migration applied, closed when the test ends. */
export async function testPool (t: Teardown, max = 10): Promise<pg.Pool> {
  const pool = new pg.Pool({ connectionString: TEST_DATABASE_URL, max })
  t.teardown(() => pool.end())
  await migrate(pool)
  return pool
}

/** A fresh ACTIVE user with one ACTIVE card, written straight to the tables. */
export async function newCardholder (db: Queryable, prefix = 'led'): Promise<{ user: string, card: string }> {
  const user = uniq(`${prefix}-u`)
  const card = uniq(`${prefix}-c`)
  await db.query('INSERT INTO users (token) VALUES ($1)', [user])
  await db.query('INSERT INTO cards (token, user_token) VALUES ($1, $2)', [card, user])
  return { user, card }
}

export async function account (db: Queryable, user: string, currency = 'USD'): Promise<AccountState | undefined> {
  return (await userAccounts(db, user)).find((a) => a.currency_code === currency)
}

/** The hold a JIT token placed or added to (an incremental's is its original's); `id` is the token that placed it. */
export async function holdOf (db: Queryable, jitToken: string): Promise<{ id: string, status: string, amount: bigint, remaining: bigint, posted: bigint } | undefined> {
  const { rows } = await db.query(
    `SELECT h.jit_token AS id, h.status, h.amount::text, h.remaining::text, h.posted::text
       FROM hold_states h WHERE h.jit_token = hold_root($1)`,
    [jitToken])
  const r = rows[0]
  return r === undefined ? undefined : { id: r.id, status: r.status, amount: BigInt(r.amount), remaining: BigInt(r.remaining), posted: BigInt(r.posted) }
}

/**
 * Makes the row of the hold `root` placed exist (a hold that is still only its decision row has none), so that a test
 * can age it with UPDATE holds. hold_lock wants the hold's account locked first, as the ledger functions do.
 */
export async function materializeHold (db: Queryable, root: string): Promise<void> {
  await db.query(
    `SELECT hold_lock($1, locked.id) FROM (SELECT a.id FROM accounts a
                                 WHERE a.id = (SELECT s.account_id FROM hold_states s WHERE s.jit_token = $1) FOR UPDATE) locked`, [root])
}

/** Ages the hold `root` placed: materialized, then its expiry set `ago` (an interval) in the past. */
export async function ageHold (db: Queryable, root: string, ago = '1 second'): Promise<void> {
  await materializeHold(db, root)
  await db.query('UPDATE holds SET expires_at = now() - $2::interval WHERE jit_token = $1', [root, ago])
}

/**
 * An approved JIT hold as the gateway records it: one jit_decide item, so the hold is the decision row itself (no
 * transfer, no holds row until its first change). `original` makes it an incremental.
 */
export async function decideHold (db: Queryable, h: { user: string, card: string, jit: string, amountMinor: bigint, original?: string, currency?: string, expirationDays?: number }): Promise<{ status_code: number, response: string, replay: boolean }> {
  const currency = h.currency ?? 'USD'
  const echo = { token: h.jit, method: h.original === undefined ? 'pgfs.authorization' : 'pgfs.authorization.incremental', user_token: h.user }
  const item = {
    echo,
    mode: 'decide',
    amount_text: (Number(h.amountMinor) / 100).toFixed(2),
    exponent: 2,
    currency_code: currency,
    card_token: h.card,
    transaction_token: `${h.jit}-txn`,
    effect: {
      kind: 'hold', effect_key: `${h.jit}:hold`, user_token: h.user, currency_code: currency, card_token: h.card,
      amount_minor: h.amountMinor.toString(), jit_token: h.jit, ...(h.original === undefined ? {} : { original_jit_token: h.original }),
      ...(h.expirationDays === undefined ? {} : { hold_expiration_days: h.expirationDays })
    },
    request: { jit_funding: echo }
  }
  const { rows } = await db.query('SELECT status_code, response, replay FROM jit_decide(ARRAY[$1::jsonb])', [JSON.stringify(item)])
  return rows[0]
}
