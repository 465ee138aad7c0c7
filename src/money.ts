import currencyCodes from 'currency-codes'

export const MAX_AMOUNT_UNITS = 10n ** 12n

export type AmountError = 'missing' | 'not_a_number' | 'exponent' | 'negative' | 'too_many_decimals' | 'too_large'

export type ParsedAmount = { ok: true, minor: bigint, text: string } | { ok: false, error: AmountError }

/** ISO 4217 minor-unit exponent, or undefined for an unknown code (from the kept `currency-codes` table). */
export function currencyExponent (code: string): number | undefined {
  if (!/^[A-Z]{3}$/.test(code)) return undefined
  const digits = currencyCodes.code(code)?.digits
  return typeof digits === 'number' ? digits : undefined
}

const DECIMAL = /^(\d+)(?:\.(\d+))?$/

/**
 * Exact amount parsing: a JSON number is read through its shortest decimal representation (String(n)), a string
 * must be a plain decimal. Trailing zeros are not significant ("12.500" = 12.5); more significant decimals than the
 * currency has, negatives, exponent forms and values of 10^12 units or more are rejected. No float arithmetic.
 */
export function parseAmount (value: unknown, exponent: number): ParsedAmount {
  if (value === undefined || value === null || value === '') return { ok: false, error: 'missing' }
  let text: string
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) return { ok: false, error: 'not_a_number' }
    text = String(value)
    if (/e/i.test(text)) return { ok: false, error: Math.abs(value) >= 1 ? 'too_large' : 'too_many_decimals' }
  } else if (typeof value === 'string') {
    text = value.trim()
    if (/[eE]/.test(text) && /^-?[\d.]+[eE][-+]?\d+$/.test(text)) return { ok: false, error: 'exponent' }
  } else {
    return { ok: false, error: 'not_a_number' }
  }
  if (text.startsWith('-')) return /^-\d/.test(text) && !/^-0*(\.0*)?$/.test(text) ? { ok: false, error: 'negative' } : { ok: false, error: 'not_a_number' }
  if (text.startsWith('+')) return { ok: false, error: 'not_a_number' }
  const match = DECIMAL.exec(text)
  if (match === null) return { ok: false, error: 'not_a_number' }
  const whole = match[1]
  const fraction = (match[2] ?? '').replace(/0+$/, '')
  if (fraction.length > exponent) return { ok: false, error: 'too_many_decimals' }
  const units = BigInt(whole)
  if (units >= MAX_AMOUNT_UNITS) return { ok: false, error: 'too_large' }
  const minor = units * 10n ** BigInt(exponent) + BigInt(fraction.padEnd(exponent, '0') || '0')
  return { ok: true, minor, text: formatMinor(minor, exponent, false) }
}

/** Minor units as a decimal string: "12.50" (fixed, for the admin API) or "12.5" (trimmed, a JSON number's text). */
export function formatMinor (minor: bigint | number | string, exponent: number, fixed = true): string {
  const value = BigInt(minor)
  const negative = value < 0n
  const digits = (negative ? -value : value).toString().padStart(exponent + 1, '0')
  const whole = digits.slice(0, digits.length - exponent)
  let fraction = exponent > 0 ? digits.slice(digits.length - exponent) : ''
  if (!fixed) fraction = fraction.replace(/0+$/, '')
  return `${negative ? '-' : ''}${whole}${fraction.length > 0 ? '.' + fraction : ''}`
}

export const amountErrorMessages: Record<AmountError, string> = {
  missing: 'is required',
  not_a_number: 'must be a decimal number',
  exponent: 'must be a plain decimal, not exponent notation',
  negative: 'must not be negative',
  too_many_decimals: 'has more decimals than the currency allows',
  too_large: 'is too large'
}
