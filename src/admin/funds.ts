import { randomUUID } from 'node:crypto'
import type { Queryable } from '../db.js'
import type { ErrorBody } from './errors.js'
import { httpError } from './errors.js'
import { amountMinor, exponentOf, type Balances } from './money.js'

export type FundsDirection = 'loads' | 'unloads'

export interface FundsRequest {
  user_token: string
  idempotency_key: string
  amount: unknown
  currency_code: string
}

export interface FundsBody {
  token: string
  user_token: string
  amount: string
  currency_code: string
  balances: Record<string, Balances>
}

/** What the route sends: the first answer for this key, replayed for an equal request. */
export interface FundsAnswer { statusCode: 201 | 409, body: FundsBody | ErrorBody, replayed: boolean }

/**
 * A load or unload under an Idempotency-Key scoped to route and user, in one statement (admin_move_funds,
 * migrations/006_admin_funds.sql): the key row, the movement under the account's row lock and the stored answer.
 * The fingerprint compares amounts as values (minor units), so 12.5 and "12.50" are the same request.
 * A refusal (409) is stored and replayed like a success; an unknown user (404) stores nothing.
 */
export async function moveFunds (db: Queryable, direction: FundsDirection, req: FundsRequest): Promise<FundsAnswer> {
  const exponent = exponentOf(req.currency_code, 'body/currency_code')
  const minor = amountMinor(req.amount, exponent, 'body/amount', { positive: true })
  const scope = `${direction}:${req.user_token}`
  const { rows } = await db.query<{ status_code: number, response: FundsAnswer['body'] | null, replayed: boolean }>(
    'SELECT * FROM admin_move_funds($1::jsonb)',
    [JSON.stringify({
      direction,
      scope,
      key: req.idempotency_key,
      fingerprint: `${req.currency_code}:${minor}`,
      token: randomUUID(),
      user_token: req.user_token,
      currency_code: req.currency_code,
      amount_minor: minor.toString(),
      exponent
    })])
  const { status_code: statusCode, response, replayed } = rows[0]
  if (statusCode === 404) throw httpError(404, `user ${req.user_token} not found`, 'NOT_FOUND')
  if (statusCode === 422) throw httpError(422, 'this Idempotency-Key was already used with a different request body', 'IDEMPOTENCY_KEY_REUSED')
  if ((statusCode !== 201 && statusCode !== 409) || response === null) throw new Error(`admin_move_funds answered ${statusCode}`)
  return { statusCode, body: response, replayed }
}
