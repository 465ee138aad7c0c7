import type { Database, Queryable } from '../db.js'
import { userAccounts } from '../ledger/funds.js'
import { httpError } from './errors.js'
import { balancesOf, type Balances } from './money.js'
import { iso, tokenOrNew } from './tokens.js'

export type UserStatus = 'ACTIVE' | 'SUSPENDED' | 'CLOSED'

export interface User {
  token: string
  first_name?: string
  last_name?: string
  metadata: Record<string, string>
  status: UserStatus
  created_time: string
  last_modified_time: string
}

export interface NewUser { token?: string, first_name?: string, last_name?: string, metadata?: Record<string, string> }

const COLUMNS = 'token, first_name, last_name, metadata, status, created_time, last_modified_time'

function toUser (row: any): User {
  const user: User = {
    token: row.token,
    metadata: row.metadata ?? {},
    status: row.status,
    created_time: iso(row.created_time),
    last_modified_time: iso(row.last_modified_time)
  }
  if (row.first_name !== null) user.first_name = row.first_name
  if (row.last_name !== null) user.last_name = row.last_name
  return user
}

export async function createUser (db: Queryable, input: NewUser): Promise<User> {
  const token = tokenOrNew(input.token)
  const { rows } = await db.query(
    `INSERT INTO users (token, first_name, last_name, metadata) VALUES ($1, $2, $3, $4)
     ON CONFLICT (token) DO NOTHING RETURNING ${COLUMNS}`,
    [token, input.first_name ?? null, input.last_name ?? null, JSON.stringify(input.metadata ?? {})])
  if (rows.length === 0) throw httpError(409, `a user with token ${token} already exists`, 'DUPLICATE_TOKEN')
  return toUser(rows[0])
}

export async function getUser (db: Queryable, token: string): Promise<User> {
  const { rows } = await db.query(`SELECT ${COLUMNS} FROM users WHERE token = $1`, [token])
  if (rows.length === 0) throw httpError(404, `user ${token} not found`, 'NOT_FOUND')
  return toUser(rows[0])
}

/** Changes the status; CLOSED is final (another status after it is a 409), setting the same status is a no-op. */
export async function setUserStatus (db: Database, token: string, status: UserStatus): Promise<{ user: User, changed: boolean }> {
  return await db.transaction(async (client) => {
    const { rows } = await client.query(`SELECT ${COLUMNS} FROM users WHERE token = $1 FOR UPDATE`, [token])
    if (rows.length === 0) throw httpError(404, `user ${token} not found`, 'NOT_FOUND')
    const current = toUser(rows[0])
    if (current.status === status) return { user: current, changed: false }
    if (current.status === 'CLOSED') throw httpError(409, `user ${token} is CLOSED, which is final`, 'INVALID_TRANSITION')
    const updated = await client.query(
      `UPDATE users SET status = $2, status_since = now(), last_modified_time = now() WHERE token = $1 RETURNING ${COLUMNS}`, [token, status])
    return { user: toUser(updated.rows[0]), changed: true }
  })
}

/** One entry per currency account the user has; 404 for an unknown user. */
export async function userBalances (db: Queryable, token: string): Promise<Record<string, Balances>> {
  const [exists, accounts] = await Promise.all([
    db.query('SELECT 1 FROM users WHERE token = $1', [token]),
    userAccounts(db, token)
  ])
  if (exists.rows.length === 0) throw httpError(404, `user ${token} not found`, 'NOT_FOUND')
  return Object.fromEntries(accounts.map((a) => [a.currency_code, balancesOf(a)]))
}
