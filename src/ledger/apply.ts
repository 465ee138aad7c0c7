import type { Queryable } from '../db.js'

export type LedgerKind = 'hold' | 'debit' | 'settle' | 'release' | 'void' | 'credit' | 'forced_debit'

/** The argument of `ledger_apply` (schema/functions/ledger_apply.sql); amounts in minor units. */
export interface LedgerEffect {
  kind: LedgerKind
  effect_key: string
  user_token: string
  currency_code: string
  amount_minor?: bigint | number
  jit_token?: string
  transaction_token?: string
  card_token?: string
  original_jit_token?: string
  hold_tokens?: string[]
  forced?: boolean
  partial_ok?: boolean
  mcc?: string
  mid?: string
  hold_expiration_days?: number
  velocity?: unknown[]
  reason?: string
}

export interface LedgerResult {
  status: 'applied' | 'duplicate' | 'declined' | 'no_account'
  reason?: string
  approved_minor: bigint
  account_id?: string
  overdrawn?: boolean
}

/** Applies one ledger effect in one statement, exactly once per effect_key. */
export async function applyLedger (db: Queryable, effect: LedgerEffect): Promise<LedgerResult> {
  const payload = { ...effect, amount_minor: effect.amount_minor === undefined ? undefined : effect.amount_minor.toString() }
  const { rows } = await db.query<{ r: Record<string, unknown> }>('SELECT ledger_apply($1::jsonb) AS r', [JSON.stringify(payload)])
  const r = rows[0].r
  return {
    status: r.status as LedgerResult['status'],
    reason: r.reason as string | undefined,
    approved_minor: BigInt(r.approved_minor as number | string ?? 0),
    account_id: r.account_id === undefined ? undefined : String(r.account_id),
    overdrawn: r.overdrawn as boolean | undefined
  }
}

/** Expires the hold created by `jitToken` if it is pending and past its expiry; returns the amount released. */
export async function expireHold (db: Queryable, jitToken: string): Promise<bigint> {
  const { rows } = await db.query<{ released: string | null }>('SELECT hold_expire($1)::text AS released', [jitToken])
  return BigInt(rows[0]?.released ?? 0)
}
