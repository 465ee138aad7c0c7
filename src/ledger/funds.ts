import type { Queryable } from '../db.js'

/** An account's four columns, in minor units. */
export interface AccountState {
  account_id: string
  currency_code: string
  credits_posted: bigint
  debits_posted: bigint
  credits_pending: bigint
  debits_pending: bigint
}

export interface FundsMove {
  user_token: string
  currency_code: string
  amount_minor: bigint
  /** Exactly-once key of the movement. */
  effect_key: string
  /** Recorded as the transfer's reference and in the event. */
  reference?: string
}

export interface FundsResult {
  status: 'applied' | 'duplicate' | 'declined' | 'no_account'
  reason?: 'INSUFFICIENT_FUNDS' | 'CLOSED_ACCOUNT'
  account?: AccountState
}

export const availableMinor = (a: AccountState): bigint => a.credits_posted - a.debits_posted - a.debits_pending
export const ledgerMinor = (a: AccountState): bigint => a.credits_posted - a.debits_posted

function toAccountState (raw: Record<string, string> | undefined): AccountState | undefined {
  if (raw === undefined || raw === null) return undefined
  return {
    account_id: String(raw.account_id),
    currency_code: raw.currency_code,
    credits_posted: BigInt(raw.credits_posted),
    debits_posted: BigInt(raw.debits_posted),
    credits_pending: BigInt(raw.credits_pending),
    debits_pending: BigInt(raw.debits_pending)
  }
}

async function move (db: Queryable, kind: 'load' | 'unload', m: FundsMove): Promise<FundsResult> {
  if (m.amount_minor <= 0n) throw new RangeError(`${kind}: amount_minor must be positive`)
  const payload = JSON.stringify({ ...m, amount_minor: m.amount_minor.toString() })
  const { rows } = await db.query<{ r: Record<string, any> }>('SELECT ledger_admin_move($1::jsonb, $2) AS r', [payload, kind])
  const r = rows[0].r
  return { status: r.status, reason: r.reason, account: toAccountState(r.account) }
}

/** Credits the user's account from the program funding account (created on first use). */
export const load = async (db: Queryable, m: FundsMove): Promise<FundsResult> => await move(db, 'load', m)

/** Debits the user's account to the program funding account; declined (no effect) when available < amount. */
export const unload = async (db: Queryable, m: FundsMove): Promise<FundsResult> => await move(db, 'unload', m)

/** The user's accounts, one per currency, ordered by currency. */
export async function userAccounts (db: Queryable, userToken: string): Promise<AccountState[]> {
  const { rows } = await db.query(
    `SELECT id::text AS account_id, currency_code, credits_posted::text, debits_posted::text,
            credits_pending::text, debits_pending::text
       FROM accounts WHERE user_token = $1 ORDER BY currency_code`, [userToken])
  return rows.map((r) => toAccountState(r) as AccountState)
}
