import type { AuthContext, VelocityControlRow } from './context.js'
import type { DeclineReason } from '../marqeta.js'
import { windowStart } from './velocity.js'

export interface Purchase {
  cardToken: string | undefined
  userToken: string
  actingUserToken: string | undefined
  currencyCode: string
  amountMinor: bigint
  mcc: string | undefined
  mid: string | undefined
  /** An incremental adds to the amount of its purchase, not to the usage count. */
  incremental: boolean
}

/** A velocity window the ledger checks atomically, under the account's row lock. */
export interface VelocityCheck {
  token: string
  amount_limit: string | null
  usage_limit: number | null
  since: string
  user_token: string | null
  card_token: string | null
  mcc: string | null
  mid: string | null
}

export type RuleOutcome =
  | { decline: DeclineReason, memo: string }
  | { decline?: undefined, velocity: VelocityCheck[] }

const decline = (reason: DeclineReason, memo: string): RuleOutcome => ({ decline: reason, memo })

/** Card, then cardholder state (DESIGN §4 decision order, first two steps); used by inquiries too. */
export function checkCardAndHolder (ctx: AuthContext, p: Pick<Purchase, 'cardToken' | 'userToken' | 'actingUserToken'>): RuleOutcome | undefined {
  const { card, user } = ctx
  if (card === null) return decline('INVALID_CARD', 'unknown card')
  if (card.user_token !== p.userToken && card.user_token !== p.actingUserToken) return decline('INVALID_CARD', 'card does not belong to the user')
  if (card.state !== 'ACTIVE') return decline('CARD_NOT_ACTIVE', `card is ${card.state}`)
  if (user === null) return decline('INVALID_CARD', 'unknown user')
  if (user.status === 'SUSPENDED') return decline('CARDHOLDER_NOT_ACTIVE', 'cardholder is SUSPENDED')
  if (user.status === 'CLOSED') return decline('CLOSED_ACCOUNT', 'cardholder is CLOSED')
  return undefined
}

function controlApplies (c: { user_token: string | null, card_token: string | null, mcc: string | null, mid: string | null }, p: Purchase): boolean {
  if (c.card_token !== null && c.card_token !== p.cardToken) return false
  if (c.user_token !== null && c.user_token !== p.userToken && c.user_token !== p.actingUserToken) return false
  // A scope with both MCC and MID needs both to match.
  if (c.mcc !== null && c.mcc !== p.mcc) return false
  if (c.mid !== null && c.mid !== p.mid) return false
  return true
}

/**
 * The spending rules after the amount has been validated: auth controls block the merchants they scope, then
 * per-transaction caps; window controls are handed to the ledger, which counts usage atomically.
 */
export function checkSpendingControls (ctx: AuthContext, p: Purchase, now: Date): RuleOutcome {
  const blocking = ctx.controls.auth.find((c) => (c.mcc !== null || c.mid !== null) && controlApplies(c, p))
  if (blocking !== undefined) return decline('TRANSACTION_NOT_PERMITTED', `blocked by auth control ${blocking.token}`)

  const velocity = ctx.controls.velocity.filter((c) => c.currency_code === p.currencyCode && controlApplies(c, p))
  const cap = velocity.find((c) => c.velocity_window === 'TRANSACTION' && c.amount_limit !== null && p.amountMinor > BigInt(c.amount_limit))
  if (cap !== undefined) return decline('AMOUNT_LIMIT_EXCEEDED', `over the per-transaction limit of velocity control ${cap.token}`)

  return {
    velocity: velocity
      .filter((c): c is VelocityControlRow => c.velocity_window !== 'TRANSACTION')
      .map((c) => ({
        token: c.token,
        amount_limit: c.amount_limit,
        usage_limit: p.incremental ? null : c.usage_limit,
        since: (windowStart(c, now) as Date).toISOString(),
        // A program-wide control limits each cardholder (Marqeta's model), and only this user's account is locked
        // while the ledger counts, so usage is always counted per user (or per card for a card's control).
        user_token: c.card_token === null ? c.user_token ?? p.userToken : null,
        card_token: c.card_token,
        mcc: c.mcc,
        mid: c.mid
      }))
  }
}
