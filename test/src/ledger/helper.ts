import pg from 'pg'
import { TEST_DATABASE_URL, uniq } from '../../helper.js'
import { migrate } from '../../../src/migrate.js'
import { userAccounts, type AccountState } from '../../../src/ledger/funds.js'
import type { Queryable } from '../../../src/db.js'

interface Teardown { teardown: (fn: () => unknown) => void }

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

export async function holdOf (db: Queryable, jitToken: string): Promise<{ id: string, status: string, amount: bigint, remaining: bigint, posted: bigint } | undefined> {
  const { rows } = await db.query(
    `SELECT h.id::text, h.status, h.amount::text, h.remaining::text, h.posted::text
       FROM holds h WHERE h.id = coalesce((SELECT hold_id FROM hold_tokens WHERE jit_token = $1), (SELECT id FROM holds WHERE jit_token = $1))`,
    [jitToken])
  const r = rows[0]
  return r === undefined ? undefined : { id: r.id, status: r.status, amount: BigInt(r.amount), remaining: BigInt(r.remaining), posted: BigInt(r.posted) }
}
