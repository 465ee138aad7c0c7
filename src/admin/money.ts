import { amountErrorMessages, currencyExponent, formatMinor, parseAmount } from '../money.js'
import type { AccountState } from '../ledger/funds.js'
import { httpError } from './errors.js'

/** The exponent of a currency code, or a 400 naming the field. */
export function exponentOf (currencyCode: string, field: string): number {
  const exponent = currencyExponent(currencyCode)
  if (exponent === undefined) throw httpError(400, `${field} must be a known ISO 4217 currency code`)
  return exponent
}

/** Exact minor units of a request amount (number or decimal string), or a 400 naming the field. */
export function amountMinor (value: unknown, exponent: number, field: string, options: { positive?: boolean } = {}): bigint {
  const parsed = parseAmount(value, exponent)
  if (!parsed.ok) throw httpError(400, `${field} ${amountErrorMessages[parsed.error]}`)
  if (options.positive === true && parsed.minor === 0n) throw httpError(400, `${field} must be greater than zero`)
  return parsed.minor
}

export interface Balances {
  currency_code: string
  available_balance: string
  ledger_balance: string
  pending_holds: string
}

/** An account's balances as decimal strings ("12.50"). */
export function balancesOf (a: AccountState): Balances {
  const exponent = currencyExponent(a.currency_code) ?? 2
  return {
    currency_code: a.currency_code,
    available_balance: formatMinor(a.credits_posted - a.debits_posted - a.debits_pending, exponent),
    ledger_balance: formatMinor(a.credits_posted - a.debits_posted, exponent),
    pending_holds: formatMinor(a.debits_pending, exponent)
  }
}
