import { randomUUID } from 'node:crypto'
import type { Database } from '../db.js'
import { formatMinor } from '../money.js'
import { load, unload } from '../ledger/funds.js'
import { httpError, type ErrorBody } from './errors.js'
import { amountMinor, balancesOf, exponentOf, type Balances } from './money.js'

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

const refusals: Record<string, string> = {
  INSUFFICIENT_FUNDS: 'available balance is lower than the amount',
  CLOSED_ACCOUNT: 'the user is CLOSED'
}

/**
 * A load or unload under an Idempotency-Key scoped to route and user, in one transaction: the key row is inserted
 * first, so a concurrent request with the same key waits on its unique index and then reads the stored answer.
 * The fingerprint compares amounts as values (minor units), so 12.5 and "12.50" are the same request.
 * A refusal (409) is stored and replayed like a success; an unknown user (404) rolls back and stores nothing.
 */
export async function moveFunds (db: Database, direction: FundsDirection, req: FundsRequest): Promise<FundsAnswer> {
  const exponent = exponentOf(req.currency_code, 'body/currency_code')
  const minor = amountMinor(req.amount, exponent, 'body/amount', { positive: true })
  const scope = `${direction}:${req.user_token}`
  const fingerprint = `${req.currency_code}:${minor}`

  return await db.transaction(async (client) => {
    const inserted = await client.query(
      `INSERT INTO idempotency_keys (scope, key, fingerprint) VALUES ($1, $2, $3)
       ON CONFLICT (scope, key) DO NOTHING RETURNING 1`, [scope, req.idempotency_key, fingerprint])
    if (inserted.rows.length === 0) {
      const { rows } = await client.query(
        'SELECT fingerprint, status_code, response FROM idempotency_keys WHERE scope = $1 AND key = $2', [scope, req.idempotency_key])
      const first = rows[0]
      if (first.fingerprint !== fingerprint) {
        throw httpError(422, 'this Idempotency-Key was already used with a different request body', 'IDEMPOTENCY_KEY_REUSED')
      }
      return { statusCode: first.status_code, body: first.response, replayed: true }
    }

    const token = randomUUID()
    const move = { user_token: req.user_token, currency_code: req.currency_code, amount_minor: minor, effect_key: `admin:${scope}:${req.idempotency_key}`, reference: token }
    const result = direction === 'loads' ? await load(client, move) : await unload(client, move)
    if (result.status === 'no_account') throw httpError(404, `user ${req.user_token} not found`, 'NOT_FOUND')

    let answer: FundsAnswer
    if (result.status === 'declined') {
      const reason = result.reason ?? 'DECLINED'
      answer = { statusCode: 409, body: { statusCode: 409, error: 'Conflict', message: refusals[reason] ?? reason, code: reason }, replayed: false }
    } else {
      if (result.account === undefined) throw new Error('ledger movement returned no account')
      answer = {
        statusCode: 201,
        body: {
          token,
          user_token: req.user_token,
          amount: formatMinor(minor, exponent),
          currency_code: req.currency_code,
          balances: { [req.currency_code]: balancesOf(result.account) }
        },
        replayed: false
      }
    }
    await client.query('UPDATE idempotency_keys SET status_code = $3, response = $4 WHERE scope = $1 AND key = $2',
      [scope, req.idempotency_key, answer.statusCode, JSON.stringify(answer.body)])
    return answer
  })
}
