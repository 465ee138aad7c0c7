import { Value } from '@sinclair/typebox/value'
import { TransactionSchema, effectOf, jitFundingOf, methodGroup, settledHoldTokens, type MethodGroup, type Transaction } from '../marqeta.js'
import { currencyExponent, parseAmount } from '../money.js'

/** The argument of ledger_apply (migrations/002) for an effect that a webhook reports. */
export interface LedgerEffect {
  kind: 'hold' | 'debit' | 'settle' | 'release' | 'void' | 'credit' | 'forced_debit'
  effect_key: string
  user_token: string
  currency_code: string
  /** Minor units as a decimal string: bigint-safe in JSON. */
  amount_minor: string
  forced: true
  transaction_token?: string
  jit_token?: string
  card_token?: string
  mcc?: string
  mid?: string
  original_jit_token?: string
  hold_tokens?: string[]
  hold_expiration_days?: number
  reason?: string
}

export type TransactionPlan =
  | {
    action: 'ledger'
    method: string
    group: MethodGroup
    effect: LedgerEffect
    /**
     * Effect keys that this effect makes obsolete when they have not happened yet: a clearing or a void that arrives
     * before the webhook of the authorization it ends (DESIGN §5: out of order is normal) must stop that later
     * webhook, or a late JIT answer, from holding the money again.
     */
    supersedes: string[]
  }
  | { action: 'none', reason: string, method?: string, group?: MethodGroup }

/** A webhook item that can never be applied, whatever the retries: it goes to the dead-letter queue. */
export class InvalidWebhookItemError extends Error {
  override name = 'InvalidWebhookItemError'
}

const voidable = new Set<MethodGroup>(['hold', 'debit', 'standin_hold', 'standin_debit'])
// Marqeta's states of a transaction that did not happen.
const failedStates = new Set(['DECLINED', 'ERROR'])

/**
 * What one `transactions` webhook item does to the ledger (DESIGN §4's table, §5's keys). Keys are the JIT path's:
 * `${jit_funding.token}:${hold|debit|post|release|credit}`, `${jit_funding.token}:void` for a timeout or a later
 * decline, `${transaction.token}:${transaction.type}` without a jit_funding. Every movement is forced: the network has
 * already moved the money, so a webhook is never refused.
 */
export function planTransaction (input: unknown, holdExpirationDays: number): TransactionPlan {
  if (!Value.Check(TransactionSchema, input)) {
    const error = Value.Errors(TransactionSchema, input).First()
    throw new InvalidWebhookItemError(`invalid transaction: ${error?.path || '/'} ${error?.message ?? 'is not an object'}`)
  }
  const txn: Transaction = input
  const currency = txn.currency_code ?? 'USD'
  const exponent = currencyExponent(currency)
  if (exponent === undefined) throw new InvalidWebhookItemError(`invalid transaction: unknown currency_code ${currency}`)
  const amountMinor = (value: unknown, field: string): string => {
    const parsed = parseAmount(value, exponent)
    if (!parsed.ok) throw new InvalidWebhookItemError(`invalid transaction: ${field} ${parsed.error.replace(/_/g, ' ')}`)
    return parsed.minor.toString()
  }
  const jit = jitFundingOf(txn)
  const failed = txn.state !== undefined && failedStates.has(txn.state)

  if (jit === undefined) {
    // Not routed through a JIT gateway: only posted movements make sense, keyed by (transaction token, type).
    if (txn.type === undefined || txn.token === undefined || txn.user_token === undefined) return { action: 'none', reason: 'no jit_funding' }
    const method = `pgfs.${txn.type}`
    const group = methodGroup(method)
    const kind = group === 'credit' ? 'credit' : ['forced_debit', 'settle', 'debit', 'standin_debit'].includes(group) ? 'forced_debit' : undefined
    if (kind === undefined || failed) return { action: 'none', reason: failed ? `state ${txn.state}` : 'no ledger effect', method, group }
    return {
      action: 'ledger',
      method,
      group,
      supersedes: [],
      effect: {
        kind,
        effect_key: `${txn.token}:${txn.type}`,
        user_token: txn.user_token,
        currency_code: currency,
        amount_minor: amountMinor(txn.amount, 'amount'),
        forced: true,
        transaction_token: txn.token,
        card_token: txn.card_token
      }
    }
  }

  const method = jit.method
  const group = methodGroup(method)
  const common = {
    user_token: jit.user_token,
    currency_code: currency,
    forced: true as const,
    transaction_token: txn.token,
    jit_token: jit.token,
    card_token: txn.card_token
  }
  const timedOut = txn.gpa_order?.funding?.gateway_log?.timed_out === true || txn.gpa_order_unload?.funding?.gateway_log?.timed_out === true

  if (voidable.has(group) && (timedOut || txn.state === 'DECLINED')) {
    // Marqeta ignored our late answer, or it or the network declined after us: the money we held (or debited) returns.
    const superseded = effectOf[group]!.key
    return {
      action: 'ledger',
      method,
      group,
      supersedes: [`${jit.token}:${superseded}`],
      effect: { ...common, kind: 'void', effect_key: `${jit.token}:void`, amount_minor: '0', reason: timedOut ? 'timed_out' : 'declined' }
    }
  }
  const effect = effectOf[group]
  if (effect === undefined) return { action: 'none', reason: `${group} method`, method, group }
  if (failed) return { action: 'none', reason: `state ${txn.state}`, method, group }

  const planned: LedgerEffect = {
    ...common,
    kind: effect.kind as LedgerEffect['kind'],
    effect_key: `${jit.token}:${effect.key}`,
    amount_minor: amountMinor(jit.amount, 'jit_funding.amount')
  }
  let supersedes: string[] = []
  switch (effect.kind) {
    case 'hold':
    case 'debit':
      planned.mcc = txn.card_acceptor?.mcc
      planned.mid = txn.card_acceptor?.mid
      if (effect.kind === 'hold') {
        planned.original_jit_token = jit.original_jit_funding_token
        planned.hold_expiration_days = holdExpirationDays
      }
      break
    case 'settle':
      planned.hold_tokens = settledHoldTokens(jit)
      supersedes = planned.hold_tokens.map((token) => `${token}:hold`)
      break
    case 'release':
      planned.original_jit_token = jit.original_jit_funding_token
      break
  }
  return { action: 'ledger', method, group, effect: planned, supersedes }
}
