import type { Db } from 'mongodb'
import type { Queryable } from '../db.js'
import { archiveCollection } from '../archive.js'
import { currencyExponent, formatMinor } from '../money.js'
import { httpError } from './errors.js'
import { iso } from './tokens.js'

export interface Decision {
  jit_token: string
  method: string
  result: string
  decline_reason: string | null
  status_code: number
  amount: string | null
  currency_code: string | null
  user_token: string | null
  card_token: string | null
  transaction_token: string | null
  created_time: string
  response: unknown
}

export interface HoldState {
  jit_token: string
  status: string
  amount: string
  remaining: string
  posted: string
  currency_code: string
  created_time: string
  expires_at: string
  resolved_at: string | null
}

export interface DecisionDetail extends Decision {
  hold: HoldState | null
  archived: unknown[]
  archive_status: 'available' | 'unavailable'
}

const DECISION_COLUMNS = `d.jit_token, d.method, d.result, d.decline_reason, d.status_code, d.amount_minor::text, d.currency_code,
  d.user_token, d.card_token, d.transaction_token, d.created_at, d.response`

const exponentFor = (currencyCode: string | null): number => (currencyCode === null ? 2 : currencyExponent(currencyCode) ?? 2)

function parseResponse (text: string): unknown {
  if (text === '') return null
  try { return JSON.parse(text) } catch { return text }
}

function toDecision (row: any): Decision {
  return {
    jit_token: row.jit_token,
    method: row.method,
    result: row.result,
    decline_reason: row.decline_reason,
    status_code: row.status_code,
    amount: row.amount_minor === null ? null : formatMinor(row.amount_minor, exponentFor(row.currency_code)),
    currency_code: row.currency_code,
    user_token: row.user_token,
    card_token: row.card_token,
    transaction_token: row.transaction_token,
    created_time: iso(row.created_at),
    response: parseResponse(row.response)
  }
}

export interface DecisionFilter { user_token?: string, card_token?: string, limit: number }

/** JIT decisions, newest first. */
export async function listDecisions (db: Queryable, filter: DecisionFilter): Promise<Decision[]> {
  const clauses: string[] = []
  const values: unknown[] = []
  if (filter.user_token !== undefined) { values.push(filter.user_token); clauses.push(`d.user_token = $${values.length}`) }
  if (filter.card_token !== undefined) { values.push(filter.card_token); clauses.push(`d.card_token = $${values.length}`) }
  values.push(filter.limit)
  const { rows } = await db.query(
    `SELECT ${DECISION_COLUMNS} FROM decisions d ${clauses.length > 0 ? 'WHERE ' + clauses.join(' AND ') : ''}
      ORDER BY d.created_at DESC, d.jit_token DESC LIMIT $${values.length}`, values)
  return rows.map(toDecision)
}

/** How long the archive may take before the answer goes out without it (MongoDB is off the critical path). */
export const ARCHIVE_TIMEOUT_MS = 1000

async function archivedMessages (mongo: Db | undefined, jitToken: string): Promise<{ archived: unknown[], archive_status: 'available' | 'unavailable' }> {
  if (mongo === undefined) return { archived: [], archive_status: 'unavailable' }
  let timer: NodeJS.Timeout | undefined
  try {
    const docs = await Promise.race([
      mongo.collection(archiveCollection).find({ jit_token: jitToken }, { maxTimeMS: ARCHIVE_TIMEOUT_MS }).sort({ received_at: 1 }).limit(100).toArray(),
      new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error('archive timeout')), ARCHIVE_TIMEOUT_MS) })
    ])
    return { archived: docs.map((doc) => JSON.parse(JSON.stringify(doc))), archive_status: 'available' }
  } catch {
    return { archived: [], archive_status: 'unavailable' }
  } finally {
    clearTimeout(timer)
  }
}

/** One decision with the hold its token created or contributed to (an incremental's is the original's) and its archive. */
export async function getDecision (db: Queryable, mongo: Db | undefined, jitToken: string): Promise<DecisionDetail> {
  const [decision, hold, archive] = await Promise.all([
    db.query(`SELECT ${DECISION_COLUMNS} FROM decisions d WHERE d.jit_token = $1`, [jitToken]),
    db.query(
      `SELECT h.jit_token, h.status, h.amount::text, h.remaining::text, h.posted::text, a.currency_code, h.created_at, h.expires_at, h.resolved_at
         FROM hold_states h JOIN accounts a ON a.id = h.account_id
        WHERE h.jit_token = hold_root($1)`,
      [jitToken]),
    archivedMessages(mongo, jitToken)
  ])
  if (decision.rows.length === 0) throw httpError(404, `transaction ${jitToken} not found`, 'NOT_FOUND')
  const h = hold.rows[0]
  const exponent = exponentFor(h?.currency_code ?? null)
  return {
    ...toDecision(decision.rows[0]),
    hold: h === undefined
      ? null
      : {
          jit_token: h.jit_token,
          status: h.status,
          amount: formatMinor(h.amount, exponent),
          remaining: formatMinor(h.remaining, exponent),
          posted: formatMinor(h.posted, exponent),
          currency_code: h.currency_code,
          created_time: iso(h.created_at),
          expires_at: iso(h.expires_at),
          resolved_at: h.resolved_at === null ? null : iso(h.resolved_at)
        },
    ...archive
  }
}
