import type { FastifyRequest } from 'fastify'
import { Type, type ObjectOptions, type StringOptions } from '@sinclair/typebox'
import { httpError } from '../../src/admin/errors.js'
import { TOKEN_PATTERN } from '../../src/admin/tokens.js'

export { ErrorSchema, errors } from '../schemas.js'

// PostgreSQL text cannot hold U+0000 and jsonb refuses an unpaired surrogate (JSON.parse accepts "\ud800"): a string
// that reaches a column contains neither. Ajv matches with the u flag, so a well-formed pair (an emoji) passes.
export const TEXT_PATTERN = '^[^\\u0000\\uD800-\\uDFFF]*$'

/** Free text stored as is (names, MIDs, metadata). */
export const TextSchema = (options: StringOptions = {}) => Type.String({ pattern: TEXT_PATTERN, ...options })

/** Our tokens (users, cards, controls), in a body, a query or a path: 1–36 of [A-Za-z0-9_-] (DESIGN §6). */
export const TokenSchema = Type.String({ pattern: TOKEN_PATTERN })

/** A token in a path that does not have the token form is a 400 naming `params/token`, not a lookup. */
export const TokenParamsSchema = Type.Object({ token: Type.String({ pattern: TOKEN_PATTERN, description: 'the object\'s token', examples: ['alice'] }) })

/** Marqeta's own tokens (a JIT token, the user and card tokens a JIT request names): as the JIT schema accepts them. */
export const MarqetaTokenSchema = TextSchema({ minLength: 1, maxLength: 64 })

/**
 * Ajv coerces the text "Infinity" to a number that its minimum and maximum checks skip: integer fields of a query or
 * body written that way are refused here, naming the field.
 */
export const finiteIntegers = (part: 'query' | 'body', ...names: string[]) => async (request: FastifyRequest): Promise<void> => {
  const values = request[part] as Record<string, unknown> | undefined
  for (const name of names) {
    const value = values?.[name]
    if (typeof value === 'string' && !Number.isFinite(Number(value))) {
      throw httpError(400, `${part === 'query' ? 'querystring' : 'body'}/${name} must be a finite integer`, 'FST_ERR_VALIDATION')
    }
  }
}

// String first: Fastify's coercion then turns a JSON number into its shortest decimal text, which parseAmount reads exactly.
export const AmountSchema = Type.Union([Type.String(), Type.Number()], { description: 'a decimal string ("12.50") or a number; exact, no floats' })

export const CurrencyCodeSchema = Type.String({ pattern: '^[A-Z]{3}$' })

export const TimeSchema = Type.String({ format: 'date-time' })

export const BalancesSchema = Type.Object({
  currency_code: Type.String(),
  available_balance: Type.String({ description: 'credits posted - debits posted - pending holds' }),
  ledger_balance: Type.String({ description: 'credits posted - debits posted' }),
  pending_holds: Type.String()
})

/** Balances per currency, as the admin API answers them (decimal strings). */
export const BalancesByCurrencySchema = Type.Record(Type.String({ pattern: '^[A-Z]{3}$' }), BalancesSchema, {
  description: 'Balances by ISO 4217 currency code',
  examples: [{ USD: { currency_code: 'USD', available_balance: '87.50', ledger_balance: '100.00', pending_holds: '12.50' } }]
})

export const ListOf = <T extends Parameters<typeof Type.Array>[0]>(item: T, options: ObjectOptions = {}) =>
  Type.Object({ data: Type.Array(item) }, { description: 'A list, newest first where it has an order', ...options })
