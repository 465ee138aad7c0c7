import type { Database, Queryable } from '../db.js'
import { httpError } from './errors.js'
import { iso, tokenOrNew } from './tokens.js'

export type CardState = 'ACTIVE' | 'SUSPENDED' | 'TERMINATED' | 'UNACTIVATED'

export interface Card { token: string, user_token: string, state: CardState, created_time: string, last_modified_time: string }

const COLUMNS = 'token, user_token, state, created_time, last_modified_time'

const toCard = (row: any): Card => ({
  token: row.token,
  user_token: row.user_token,
  state: row.state,
  created_time: iso(row.created_time),
  last_modified_time: iso(row.last_modified_time)
})

/** A new card of an existing user (404 otherwise); a CLOSED user gets no new card (409). */
export async function createCard (db: Queryable, input: { token?: string, user_token: string, state?: CardState }): Promise<Card> {
  const token = tokenOrNew(input.token)
  const { rows } = await db.query(
    `WITH u AS (SELECT token, status FROM users WHERE token = $2),
          ins AS (INSERT INTO cards (token, user_token, state)
                  SELECT $1, u.token, $3 FROM u WHERE u.status <> 'CLOSED'
                  ON CONFLICT (token) DO NOTHING RETURNING ${COLUMNS})
     SELECT (SELECT status FROM u) AS user_status, (SELECT row_to_json(ins) FROM ins) AS card`,
    [token, input.user_token, input.state ?? 'ACTIVE'])
  const { user_status: userStatus, card } = rows[0]
  if (userStatus === null) throw httpError(404, `user ${input.user_token} not found`, 'NOT_FOUND')
  if (userStatus === 'CLOSED') throw httpError(409, `user ${input.user_token} is CLOSED`, 'USER_CLOSED')
  if (card === null) throw httpError(409, `a card with token ${token} already exists`, 'DUPLICATE_TOKEN')
  return toCard(card)
}

export async function getCard (db: Queryable, token: string): Promise<Card> {
  const { rows } = await db.query(`SELECT ${COLUMNS} FROM cards WHERE token = $1`, [token])
  if (rows.length === 0) throw httpError(404, `card ${token} not found`, 'NOT_FOUND')
  return toCard(rows[0])
}

/** Changes the state; TERMINATED is final (another state after it is a 409), the same state is a no-op. */
export async function setCardState (db: Database, token: string, state: CardState): Promise<{ card: Card, changed: boolean }> {
  return await db.transaction(async (client) => {
    const { rows } = await client.query(`SELECT ${COLUMNS} FROM cards WHERE token = $1 FOR UPDATE`, [token])
    if (rows.length === 0) throw httpError(404, `card ${token} not found`, 'NOT_FOUND')
    const current = toCard(rows[0])
    if (current.state === state) return { card: current, changed: false }
    if (current.state === 'TERMINATED') throw httpError(409, `card ${token} is TERMINATED, which is final`, 'INVALID_TRANSITION')
    const updated = await client.query(
      `UPDATE cards SET state = $2, state_since = now(), last_modified_time = now() WHERE token = $1 RETURNING ${COLUMNS}`, [token, state])
    return { card: toCard(updated.rows[0]), changed: true }
  })
}
